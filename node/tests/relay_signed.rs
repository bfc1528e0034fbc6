//! Issue 30: readings signed at the source. A relay-sim relay signs every record it closes;
//! the network's relay registry names its key. A member that invents a record for a minute
//! no node read, or changes a signed one, is refused by every node, over HTTP and in sync;
//! a node whose registry names another key reports the relay and mines none of its records.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{block_on, free_port, key};
use ed25519_dalek::{Signer, SigningKey};
use gridledger::chain::registry::{Entry, Registry};
use gridledger::chain::{Block, Network};
use gridledger::run::{start, RunningNode};
use relay_core::{Minute, MinuteRecord, RecordFlags, RecordSignature, RelayId};
use serde_json::Value;

/// The relay's signing seed: relay-sim signs with it, the registry names its public key.
const RELAY_SEED: [u8; 32] = [21; 32];

fn relay_key() -> SigningKey {
    SigningKey::from_bytes(&RELAY_SEED)
}

fn registry_of(pk: [u8; 32]) -> Registry {
    Registry::new([Entry {
        relay: RelayId(1),
        from: Minute(0),
        key: pk,
    }])
    .expect("a valid key")
}

/// Members 1, 2 (honest nodes) and 9 (the hostile one); relay 1 registered.
fn network(name: &str) -> Network {
    let mut net = Network::new(name, 8);
    net.allow_list = Some(
        [1u8, 2, 9]
            .iter()
            .map(|k| key(*k).verifying_key().to_bytes())
            .collect(),
    );
    net.registry = registry_of(relay_key().verifying_key().to_bytes());
    net
}

/// relay-sim serving relay 1, signing with [`RELAY_SEED`], a relay minute a second.
async fn signing_relay() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    common::relay_sim_with(relay_sim::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        relay_id: 1,
        minute_secs: 1.0,
        keys: relay_sim::keys::RelayKeys::from_seeds([(RelayId(1), RELAY_SEED)]),
        ..relay_sim::Config::default()
    })
    .await
}

async fn node(
    net: &Network,
    dir: &std::path::Path,
    port: u16,
    relay: Option<SocketAddr>,
    peers: &[u16],
    member: u8,
) -> RunningNode {
    let c = common::node_config_at(port, dir, net, relay, peers);
    start(c, key(member)).await.expect("starts")
}

fn height(s: &Value) -> u64 {
    s["height"].as_u64().unwrap_or(0)
}

/// POSTs a block; the status and the error's text.
async fn post(client: &reqwest::Client, port: u16, block: &Block) -> (u16, String) {
    let r = client
        .post(format!("http://127.0.0.1:{port}/blocks"))
        .header("content-type", "application/octet-stream")
        .body(block.to_bytes())
        .send()
        .await
        .expect("the node answers");
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or_default();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

fn sign(mut r: MinuteRecord, k: &SigningKey) -> MinuteRecord {
    let mut buf = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
    let m = r.signing_message(&mut buf).expect("fits");
    r.signature = Some(RecordSignature(k.sign(m).to_bytes()));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invented_or_changed_reading_of_a_signing_relay_is_refused_by_every_node() {
    let net = network("signed-readings");
    let (relay, _stop_relay) = signing_relay().await;
    let client = gridledger::wire::builder().build().expect("client");
    let ports = [free_port(), free_port()];
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let a = node(&net, dirs[0].path(), ports[0], Some(relay), &[ports[1]], 1).await;
    let b = node(&net, dirs[1].path(), ports[1], Some(relay), &[ports[0]], 2).await;
    for p in ports {
        common::until(&client, p, 60, "signed records mined", |s| height(s) >= 3).await;
    }
    // What the honest nodes mined is signed by the relay, and shown so.
    let chain = common::chain_of(&client, ports[0]).await;
    let honest = common::records_of(&chain);
    assert!(honest.iter().all(|r| r.signature.is_some()), "{honest:?}");
    let s = common::status(&client, ports[0]).await;
    assert_eq!(s["relays"][0]["signed"], "relay", "{s}");
    assert_eq!(s["relays"][0]["bad_signatures"], 0, "{s}");
    let first = honest.iter().map(|r| r.minute.0).min().expect("records");
    let readings = common::get_json(
        &client,
        format!(
            "http://127.0.0.1:{}/readings?relay=1&from={first}&to={}",
            ports[0],
            first + 100
        ),
    )
    .await;
    let list = readings["readings"].as_array().expect("readings");
    assert!(!list.is_empty());
    assert!(list.iter().all(|r| r["signed"] == "relay"), "{readings}");
    let proof = common::get_json(
        &client,
        format!("http://127.0.0.1:{}/readings/1/{first}/proof", ports[0]),
    )
    .await;
    assert_eq!(proof["relay_signature"]["signed"], "relay", "{proof}");
    assert_eq!(
        proof["relay_signature"]["registered_key"],
        hex::encode(relay_key().verifying_key().to_bytes())
    );

    // The hostile member 9 fills a minute no node read (before the relay started) for the
    // registered relay, on the honest tip.
    let tip = chain.last().expect("a tip").header;
    let invented_minute = first - 10;
    let invented = relay_core::signal::SignalModel::new(3, relay_core::signal::Profile::Realistic)
        .record(
            RelayId(1),
            Minute(invented_minute),
            6,
            RecordFlags::CLOCK_SET,
        );
    let unsigned = block_on(&tip, std::slice::from_ref(&invented), &net, 9);
    let self_signed = block_on(&tip, &[sign(invented.clone(), &key(9))], &net, 9);
    // A genuine signed record with one bit of one sample changed, on a fork from genesis
    // (so that no chain holds that minute yet).
    let mut changed = honest[0].clone();
    changed.samples[0].vab.0 ^= 1;
    let flipped = block_on(
        &net.genesis().header,
        std::slice::from_ref(&changed),
        &net,
        9,
    );
    // A node that reads no relay (no witness of its own: only the rule can stop it), and
    // the two honest nodes.
    let judge_dir = tempfile::tempdir().expect("tempdir");
    let (judge_addr, _judge) = common::serve_api(judge_dir.path(), net.clone()).await;
    for p in [ports[0], ports[1], judge_addr.port()] {
        let (st, why) = post(&client, p, &unsigned).await;
        assert!(
            (400..500).contains(&st) && why.contains("unsigned") && why.contains("registry"),
            "invented unsigned record on :{p}: {st} {why}"
        );
        let (st, why) = post(&client, p, &self_signed).await;
        assert!(
            (400..500).contains(&st) && why.contains("not signed by the relay's registered key"),
            "invented record signed by the miner on :{p}: {st} {why}"
        );
        // The honest nodes read that minute, and may refuse it as a witness first; the
        // judge has only the rule.
        let (st, why) = post(&client, p, &flipped).await;
        assert!(
            (400..500).contains(&st)
                && (why.contains("not signed by the relay's registered key")
                    || (p != judge_addr.port() && why.contains("witness conflict"))),
            "changed record on :{p}: {st} {why}"
        );
    }

    // In sync: a hostile peer (it runs without the registry, so its chain holds the
    // invented record) offers a chain from genesis: a block of an unregistered relay, then
    // the invented record, then more work. A fresh node of the network takes the first and
    // refuses the rest.
    let lax = {
        let mut n = net.clone();
        n.registry = Registry::default();
        n
    };
    let hostile_dir = tempfile::tempdir().expect("tempdir");
    let (hostile_addr, hostile) = common::serve_api(hostile_dir.path(), lax.clone()).await;
    let g = lax.genesis().header;
    let ok = block_on(&g, &[common::record(5, 1)], &lax, 9);
    let bad = block_on(&ok.header, std::slice::from_ref(&invented), &lax, 9);
    let more = block_on(&bad.header, &[common::record(5, 2)], &lax, 9);
    {
        let mut core = hostile.lock().expect("core");
        for blk in [&ok, &bad, &more] {
            core.accept(
                blk.clone(),
                common::now_ms(),
                gridledger::core::Origin::Peer,
            )
            .expect("the lax node takes it");
        }
    }
    let fresh_port = free_port();
    let fresh_dir = tempfile::tempdir().expect("tempdir");
    let mut c = common::node_config(
        fresh_dir.path(),
        net.clone(),
        &[],
        vec![format!("http://{hostile_addr}")],
    );
    c.listen = SocketAddr::from(([127, 0, 0, 1], fresh_port));
    let fresh = start(c, key(2)).await.expect("starts");
    let s = common::until(&client, fresh_port, 30, "the fresh node syncs", |s| {
        height(s) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s2 = common::status(&client, fresh_port).await;
    assert_eq!(height(&s2), 1, "took the invented block in sync: {s} {s2}");
    let synced = common::records_of(&common::chain_of(&client, fresh_port).await);
    assert!(synced.iter().all(|r| r.relay != RelayId(1)), "{synced:?}");
    // The honest nodes never took it either.
    for p in ports {
        let recs = common::records_of(&common::chain_of(&client, p).await);
        assert!(
            !recs.iter().any(|r| r.minute.0 == invented_minute),
            "node :{p} holds the invented minute"
        );
    }
    fresh.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_signature_fails_is_reported_and_not_mined() {
    // The registry names a key the relay does not sign with.
    let mut net = network("wrong-relay-key");
    net.registry = registry_of(key(77).verifying_key().to_bytes());
    let (relay, _stop_relay) = signing_relay().await;
    let client = gridledger::wire::builder().build().expect("client");
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(&net, dir.path(), port, Some(relay), &[], 1).await;
    let s = common::until(&client, port, 30, "the bad signature reported", |s| {
        s["relays"][0]["bad_signatures"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    let err = s["relays"][0]["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("does not verify under its registered key") && err.contains("serves key"),
        "{s}"
    );
    assert_eq!(
        s["relays"][0]["key"],
        hex::encode(relay_key().verifying_key().to_bytes())
    );
    assert_eq!(height(&s), 0, "records of a failing signer were mined: {s}");
    // And in the metrics, for an alert.
    let metrics = common::get_text(&client, format!("http://127.0.0.1:{port}/metrics")).await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("gridledger_relay_bad_signatures_total{"))
        .unwrap_or_else(|| panic!("no bad-signature counter: {metrics}"));
    let bad: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(bad >= 2, "{line}");
    n.stop().await;
}
