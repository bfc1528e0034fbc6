//! System test 5: a hostile peer pushes a block breaking each validation rule, garbage
//! bodies and bad requests at a running node (relay-sim, polling, mining). Every one is
//! refused with a 4xx naming the reason, counted, and the node keeps serving and mining.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use gridledger::chain::block::VERSION;
use gridledger::chain::validate::sign;
use gridledger::chain::{merkle, pow, Block, Header, Network};
use gridledger::run::{start, NodeConfig};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, MinuteRecord, RecordFlags, RelayId};

/// A block on `parent` of `records`, mined and signed by `key`, after `edit` changed its
/// header (before mining, so that the proof of work still holds).
fn forge(
    parent: &Header,
    records: Vec<Vec<u8>>,
    key: &SigningKey,
    bits: u8,
    edit: impl FnOnce(&mut Header),
) -> Block {
    let mut header = Header {
        version: VERSION,
        height: parent.height + 1,
        prev: parent.id(),
        merkle_root: merkle::root(&records),
        time_ms: common::now_ms(),
        bits,
        miner: key.verifying_key().to_bytes(),
        nonce: 0,
    };
    edit(&mut header);
    let id = pow::mine(&mut header, &AtomicBool::new(false)).expect("mined");
    Block {
        header,
        signature: sign(key, &id),
        records,
    }
}

fn encoded(r: &MinuteRecord) -> Vec<u8> {
    let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
    r.encode(&mut buf).expect("encodes").to_vec()
}

/// A record of a relay the node does not poll, so that only the rule under test fails.
fn foreign(minute: u32, flags: RecordFlags) -> Vec<u8> {
    let m = Minute(u32::try_from(common::now_ms() / 60_000).expect("minute") - 10 + minute);
    encoded(&SignalModel::new(7, Profile::Realistic).record(RelayId(99), m, 6, flags))
}

/// Cheap deterministic noise for garbage bodies.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Case {
    what: &'static str,
    body: Vec<u8>,
    status: u16,
    reason: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_is_refused_and_the_node_goes_on() {
    let (relay, _stop) =
        common::relay_sim(SocketAddr::from(([127, 0, 0, 1], 0)), 1, 1.0, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ours, theirs, stranger) = (common::key(1), common::key(2), common::key(9));
    let mut net = Network::new("hostile", 8);
    // The hostile peer's key is allowed, so each block below breaks one rule only.
    net.allow_list = Some(vec![
        ours.verifying_key().to_bytes(),
        theirs.verifying_key().to_bytes(),
    ]);
    let node = start(
        NodeConfig {
            mining_slot: Duration::ZERO,
            block_relay: Default::default(),
            tls: Default::default(),
            cors_origins: Vec::new(),
            finality: Default::default(),
            ..common::node_config(dir.path(), net.clone(), &[relay], Vec::new())
        },
        ours,
    )
    .await
    .expect("node starts");
    let base = format!("http://{}", node.addr);
    let client = gridledger::wire::builder().build().expect("http client");

    // Let the node mine a few blocks of its own.
    let deadline = Instant::now() + Duration::from_secs(20);
    let tip = loop {
        let s = common::get_json(&client, format!("{base}/status")).await;
        if s["height"].as_u64().unwrap_or(0) >= 3 {
            break s["height"].as_u64().unwrap_or(0);
        }
        assert!(Instant::now() < deadline, "the node does not mine: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let raw = common::get_raw(&client, format!("{base}/blocks/{tip}")).await;
    let top = Block::from_bytes(&raw, net.max_block_bytes, net.max_records).expect("a block");
    let parent = top.header;
    let bits = net.bits;
    let good = || vec![foreign(0, RecordFlags::CLOCK_SET)];

    let mut cases = vec![
        Case {
            what: "wrong version",
            body: forge(&parent, good(), &theirs, bits, |h| h.version = 2).to_bytes(),
            status: 422,
            reason: "version",
        },
        Case {
            what: "wrong difficulty",
            body: forge(&parent, good(), &theirs, bits, |h| h.bits = bits + 1).to_bytes(),
            status: 422,
            reason: "difficulty",
        },
        Case {
            what: "unknown parent",
            body: forge(&parent, good(), &theirs, bits, |h| {
                h.prev = gridledger::chain::BlockId([7; 32]);
            })
            .to_bytes(),
            status: 409,
            reason: "unknown parent",
        },
        // Kept until its parent comes only if it passes every rule that needs no chain.
        Case {
            what: "unknown parent, a key not on the allow-list",
            body: forge(&parent, good(), &stranger, bits, |h| {
                h.prev = gridledger::chain::BlockId([8; 32]);
            })
            .to_bytes(),
            status: 422,
            reason: "allow-list",
        },
        Case {
            what: "unknown parent, a bad signature",
            body: {
                let mut b = forge(&parent, good(), &theirs, bits, |h| {
                    h.prev = gridledger::chain::BlockId([9; 32]);
                });
                b.signature[0] ^= 1;
                b.to_bytes()
            },
            status: 422,
            reason: "signature",
        },
        Case {
            what: "wrong height",
            body: forge(&parent, good(), &theirs, bits, |h| h.height += 5).to_bytes(),
            status: 422,
            reason: "height",
        },
        Case {
            what: "time before the median",
            body: forge(&parent, good(), &theirs, bits, |h| h.time_ms = 1).to_bytes(),
            status: 422,
            reason: "median",
        },
        Case {
            what: "time in the future",
            body: forge(&parent, good(), &theirs, bits, |h| {
                h.time_ms = common::now_ms() + 600_000;
            })
            .to_bytes(),
            status: 422,
            reason: "ahead",
        },
        Case {
            what: "miner not allowed",
            body: forge(&parent, good(), &stranger, bits, |_| {}).to_bytes(),
            status: 422,
            reason: "allow-list",
        },
        Case {
            what: "not enough work",
            body: {
                let mut b = forge(&parent, good(), &theirs, bits, |_| {});
                while b.header.id().leading_zeros() >= u32::from(bits) {
                    b.header.nonce += 1;
                }
                b.signature = sign(&theirs, &b.header.id());
                b.to_bytes()
            },
            status: 422,
            reason: "leading zero bits",
        },
        Case {
            what: "empty body",
            body: forge(&parent, Vec::new(), &theirs, bits, |_| {}).to_bytes(),
            status: 422,
            reason: "no records",
        },
        Case {
            what: "Merkle root",
            body: forge(&parent, good(), &theirs, bits, |h| h.merkle_root = [1; 32]).to_bytes(),
            status: 422,
            reason: "Merkle",
        },
        Case {
            what: "record that does not decode",
            body: forge(
                &parent,
                vec![b"not a record".to_vec()],
                &theirs,
                bits,
                |_| {},
            )
            .to_bytes(),
            status: 422,
            reason: "does not decode",
        },
        Case {
            what: "clock not set",
            body: forge(
                &parent,
                vec![foreign(1, RecordFlags(0))],
                &theirs,
                bits,
                |_| {},
            )
            .to_bytes(),
            status: 422,
            reason: "clock",
        },
        Case {
            what: "record from the future (its minute closes after the block's time)",
            body: forge(
                &parent,
                vec![foreign(10, RecordFlags::CLOCK_SET)],
                &theirs,
                bits,
                |_| {},
            )
            .to_bytes(),
            status: 422,
            reason: "from the future",
        },
        Case {
            what: "record already on the chain",
            body: forge(&parent, vec![top.records[0].clone()], &theirs, bits, |_| {}).to_bytes(),
            status: 422,
            reason: "already in the chain",
        },
        Case {
            what: "record twice in one block",
            body: forge(
                &parent,
                vec![good()[0].clone(), good()[0].clone()],
                &theirs,
                bits,
                |_| {},
            )
            .to_bytes(),
            status: 422,
            reason: "already in the chain",
        },
        Case {
            what: "bad signature",
            body: {
                let mut b = forge(&parent, good(), &theirs, bits, |_| {});
                b.signature[0] ^= 1;
                b.to_bytes()
            },
            status: 422,
            reason: "signature",
        },
        Case {
            what: "a record that differs from the node's own read",
            body: {
                let mut r = MinuteRecord::decode(&top.records[0]).expect("decodes");
                r.faults = r.faults.wrapping_add(1);
                forge(&parent, vec![encoded(&r)], &theirs, bits, |_| {}).to_bytes()
            },
            status: 422,
            reason: "witness conflict",
        },
        Case {
            what: "empty body",
            body: Vec::new(),
            status: 400,
            reason: "malformed",
        },
        Case {
            what: "truncated block",
            body: raw[..raw.len() - 1].to_vec(),
            status: 400,
            reason: "malformed",
        },
        Case {
            what: "bytes after the block",
            body: [&raw[..], &[0u8][..]].concat(),
            status: 400,
            reason: "malformed",
        },
    ];
    for seed in 0..40u64 {
        cases.push(Case {
            what: "random bytes",
            body: noise(seed, 1 + (seed as usize * 97) % 3000),
            status: 400,
            reason: "malformed",
        });
    }

    // Everything at once, three times over, while the node keeps polling and mining.
    let mut posted = 0u64;
    let mut witness = 0u64;
    for _round in 0..3 {
        let sends: Vec<_> = cases
            .iter()
            .map(|c| {
                client
                    .post(format!("{base}/blocks"))
                    .header("content-type", "application/octet-stream")
                    .body(c.body.clone())
                    .send()
            })
            .collect();
        for (c, send) in cases.iter().zip(sends) {
            let r = send.await.expect("the node answers");
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.expect("a JSON reason");
            let reason = body["error"].as_str().unwrap_or_default();
            assert_eq!(status, c.status, "{}: {body}", c.what);
            assert!(
                reason.contains(c.reason),
                "{}: the reason '{reason}' does not say '{}'",
                c.what,
                c.reason
            );
            posted += 1;
            witness += u64::from(c.reason == "witness conflict");
        }
    }
    let too_big = client
        .post(format!("{base}/blocks"))
        .body(vec![0u8; net.max_block_bytes + 4096])
        .send()
        .await
        .expect("answered");
    assert_eq!(too_big.status().as_u16(), 413);
    for (path, bad) in [
        ("/peers", "not json"),
        ("/peers", r#"{"url":"ftp://x"}"#),
        ("/peers", r#"{"nope":1}"#),
    ] {
        let r = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .expect("answered");
        assert!(r.status().is_client_error(), "{path} {bad}: {}", r.status());
    }
    for path in [
        "/blocks?from=abc",
        "/blocks/zzz",
        "/readings?relay=x",
        "/readings/1/notaminute/proof",
    ] {
        let r = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("answered");
        assert!(r.status().is_client_error(), "{path}: {}", r.status());
    }

    // Counted, none stored, and the node goes on mining its relay's records.
    let metrics = common::get_text(&client, format!("{base}/metrics")).await;
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert_eq!(value("gridledger_blocks_rejected_total"), posted);
    assert_eq!(value("gridledger_witness_conflicts_total"), witness);
    assert_eq!(
        value("gridledger_blocks_early_total"),
        1,
        "only the well-formed one is kept"
    );
    assert_eq!(value("gridledger_blocks_received_total"), 0);
    let after = common::get_json(&client, format!("{base}/status")).await["height"]
        .as_u64()
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = common::get_json(&client, format!("{base}/status")).await;
        if s["height"].as_u64().unwrap_or(0) >= after + 3 {
            assert_eq!(s["relays"][0]["missed_minutes"], 0, "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "the node stopped mining: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    {
        let core = node.shared.lock().expect("lock");
        let tree = core.ledger.tree();
        let keys: Vec<_> = (1..=tree.height())
            .filter_map(|h| tree.main_at(h))
            .flat_map(|id| tree.keys_of(&id).to_vec())
            .collect();
        assert!(
            keys.iter().all(|k| k.relay == RelayId(1)),
            "only the node's own relay is on the chain"
        );
    }
    node.stop().await;
}
