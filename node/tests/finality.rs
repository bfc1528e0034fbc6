//! Finality as an attacker tries it (issue 29): three honest members and a fourth member
//! key held by the attacker. Once the honest blocks are final, a chain rebuilt from genesis
//! with more work (every record's Vab raised by 5 kV) is refused by a restarted node, a
//! running node and a freshly joining node alike, each says so, and `/readings` never
//! serves a forged value. Also: a member that signs two votes at one height is caught on
//! every honest node; with more than a third of the members down the chain grows and
//! finality waits, then resumes by itself.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gridledger::chain::finality::{self, Checkpoint, Kind, Source, Vote};
use gridledger::chain::{Block, Network};
use gridledger::run::{start, NodeConfig, RunningNode};
use relay_core::{Minute, MinuteRecord, Volts};
use serde_json::Value;

use common::free_port;

/// Honest members' keys are 1, 2, 3; the attacker's is 9.
const ATTACKER: u8 = 9;

fn network(name: &str, members: &[u8]) -> Network {
    let mut net = Network::new(name, 8);
    net.allow_list = Some(
        members
            .iter()
            .map(|k| common::key(*k).verifying_key().to_bytes())
            .collect(),
    );
    net
}

/// Members 1, 2 and 3 on loopback ports, a full mesh, each polling `relay`: their ports,
/// data dirs and nodes.
async fn honest_members(
    net: &Network,
    relay: SocketAddr,
) -> (Vec<u16>, Vec<tempfile::TempDir>, Vec<RunningNode>) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let peers: Vec<u16> = ports.iter().copied().filter(|p| *p != ports[i]).collect();
        let c = common::node_config_at(ports[i], dirs[i].path(), net, Some(relay), &peers);
        nodes.push(start(c, common::key(i as u8 + 1)).await.expect("starts"));
    }
    (ports, dirs, nodes)
}

fn final_height(s: &Value) -> u64 {
    s["finality"]["final_height"].as_u64().unwrap_or(0)
}

/// The attacker's rewrite: from the genesis block, one block per record, each record's
/// first Vab raised by 5 kV, and one block more than the honest chain.
fn rewrite(net: &Network, honest: &[MinuteRecord], honest_height: usize, kv: u32) -> Vec<Block> {
    let mut forged: Vec<MinuteRecord> = honest
        .iter()
        .map(|r| {
            let mut f = r.clone();
            if let Some(s) = f.samples.first_mut() {
                s.vab = Volts(s.vab.0 + kv * 1_000);
            }
            f
        })
        .collect();
    // Enough blocks for more work than the honest chain.
    let last = forged.last().expect("records").clone();
    let mut m = last.minute.0;
    while forged.len() <= honest_height {
        m += 1;
        let mut extra = last.clone();
        extra.minute = Minute(m);
        forged.push(extra);
    }
    let mut parent = net.genesis().header;
    let mut out = Vec::new();
    for r in &forged {
        let b = common::block_on(&parent, std::slice::from_ref(r), net, ATTACKER);
        parent = b.header;
        out.push(b);
    }
    out
}

/// Posts blocks in order; returns the answers' statuses and bodies.
async fn post_all(client: &reqwest::Client, port: u16, blocks: &[Block]) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    for b in blocks {
        let r = client
            .post(format!("http://127.0.0.1:{port}/blocks"))
            .header("content-type", "application/octet-stream")
            .body(b.to_bytes())
            .send()
            .await
            .expect("POST /blocks");
        let code = r.status().as_u16();
        out.push((code, r.text().await.unwrap_or_default()));
    }
    out
}

/// What `/readings` serves for relay 1 over the honest records' minutes: each minute's
/// samples.
async fn readings(
    client: &reqwest::Client,
    port: u16,
    honest: &[MinuteRecord],
) -> Vec<(u64, Value)> {
    let from = honest.first().expect("records").minute.0;
    let to = honest.last().expect("records").minute.0;
    let r = common::get_json(
        client,
        format!("http://127.0.0.1:{port}/readings?relay=1&from={from}&to={to}"),
    )
    .await;
    r["readings"]
        .as_array()
        .expect("readings")
        .iter()
        .map(|x| (x["minute"].as_u64().unwrap_or(0), x["samples"].clone()))
        .collect()
}

/// The first Vab of a record, in kV as `/readings` writes it.
fn vab0(r: &MinuteRecord) -> f64 {
    f64::from(r.samples[0].vab.0) / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_rewrite_final_history_on_a_restarted_running_or_joining_node() {
    let (relay, stop_relay) =
        common::relay_sim(SocketAddr::from(([127, 0, 0, 1], 0)), 1, 1.0, None).await;
    let net = network("finality-attack", &[1, 2, 3, ATTACKER]);
    let (ports, dirs, mut nodes) = honest_members(&net, relay).await;
    let client = gridledger::wire::builder().build().expect("client");
    // The three honest members make blocks final (the attacker's key does not vote: the
    // quorum of 3 of 4 is all of them).
    for p in &ports {
        common::until(&client, *p, 60, "8 blocks final", |s| final_height(s) >= 8).await;
    }
    drop(stop_relay);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let honest_chain = common::chain_of(&client, ports[1]).await;
    let honest = common::records_of(&honest_chain);
    let before = readings(&client, ports[1], &honest).await;
    assert!(before.len() >= 8, "{before:?}");

    // Node A restarts (its reads and final checkpoint come from its data dir).
    let a = nodes.remove(0);
    a.stop().await;
    let peers_a: Vec<u16> = ports[1..].to_vec();
    let a = start(
        common::node_config_at(ports[0], dirs[0].path(), &net, None, &peers_a),
        common::key(1),
    )
    .await
    .expect("restarts");
    nodes.insert(0, a);
    let s = common::status(&client, ports[0]).await;
    assert!(
        final_height(&s) >= 8,
        "the final checkpoint survives a restart: {s}"
    );

    // The rewrite: more work than the honest chain, from the genesis block.
    let forged = rewrite(&net, &honest, honest_chain.len(), 5);
    assert!(forged.len() > honest_chain.len());
    for (who, port) in [("restarted", ports[0]), ("running", ports[1])] {
        let answers = post_all(&client, port, &forged).await;
        let (code, body) = &answers[0];
        assert_eq!(*code, 422, "{who}: {body}");
        assert!(body.contains("final block"), "{who}: {body}");
        assert!(answers.iter().all(|(c, _)| *c != 200), "{who}: {answers:?}");
        let s = common::status(&client, port).await;
        assert!(
            s["finality"]["refused_below_final"].as_u64().unwrap_or(0) >= 1,
            "{who} reports the attempt: {s}"
        );
        let metrics = common::get_text(&client, format!("http://127.0.0.1:{port}/metrics")).await;
        assert!(
            !metrics.contains("gridledger_blocks_below_final_total 0\n")
                && metrics.contains("gridledger_blocks_below_final_total"),
            "{who}: {metrics}"
        );
    }

    // A fresh node, on its own, takes the rewrite first (it knows nothing final yet)...
    let fresh_port = free_port();
    let fresh_dir = tempfile::tempdir().expect("tempdir");
    let fresh = start(
        common::node_config_at(fresh_port, fresh_dir.path(), &net, None, &[]),
        common::key(4),
    )
    .await
    .expect("starts");
    let answers = post_all(&client, fresh_port, &forged).await;
    assert!(answers.iter().all(|(c, _)| *c == 200), "{answers:?}");
    let s = common::status(&client, fresh_port).await;
    assert_eq!(s["height"].as_u64(), Some(forged.len() as u64), "{s}");
    // ... then meets the honest members: their final checkpoint contradicts its chain, which
    // it drops for the honest one.
    let added = client
        .post(format!("http://127.0.0.1:{fresh_port}/peers"))
        .json(&serde_json::json!({ "url": format!("http://127.0.0.1:{}", ports[1]) }))
        .send()
        .await
        .expect("POST /peers");
    assert!(added.status().is_success(), "{added:?}");
    let honest_final = final_height(&common::status(&client, ports[1]).await);
    common::until(&client, fresh_port, 30, "the honest chain, final", |s| {
        final_height(s) >= honest_final
    })
    .await;
    let fresh_chain = common::chain_of(&client, fresh_port).await;
    assert_eq!(
        fresh_chain[..honest_chain.len()],
        honest_chain[..],
        "the joining node holds the honest chain"
    );
    // It keeps the rewrite's blocks it took (known, off the main chain); another rewrite
    // it refuses, as the others do.
    let answers = post_all(&client, fresh_port, &forged[..2]).await;
    assert!(
        answers.iter().all(|(_, b)| b.contains("known")),
        "{answers:?}"
    );
    let again = rewrite(&net, &honest, honest_chain.len(), 6);
    let answers = post_all(&client, fresh_port, &again[..3]).await;
    assert_eq!(answers[0].0, 422, "{answers:?}");
    let s = common::status(&client, fresh_port).await;
    assert!(
        s["finality"]["refused_below_final"].as_u64().unwrap_or(0) >= 1,
        "{s}"
    );

    // No node serves a forged value.
    for port in [ports[0], ports[1], fresh_port] {
        let served = readings(&client, port, &honest).await;
        assert_eq!(served, before, "node :{port}");
        for r in &honest {
            let got = served.iter().find(|(m, _)| *m == u64::from(r.minute.0));
            let vab = got.and_then(|(_, samples)| {
                let first = samples[0].as_object()?;
                first
                    .iter()
                    .find(|(k, _)| k.as_str() == "Vab_kV")
                    .and_then(|(_, v)| v.as_f64())
            });
            assert_eq!(
                vab,
                Some(vab0(r)),
                "node :{port}, minute {}: {got:?}",
                r.minute.0
            );
        }
    }
    fresh.stop().await;
    for n in nodes {
        n.stop().await;
    }
}

/// A member that signs two different prevotes for one height: both votes reach every honest
/// node (each is checked and relayed on its own), and each keeps the pair as evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_equivocates_is_caught_on_every_honest_node() {
    let (relay, _stop_relay) =
        common::relay_sim(SocketAddr::from(([127, 0, 0, 1], 0)), 1, 1.0, None).await;
    let net = network("finality-equivocation", &[1, 2, 3, ATTACKER]);
    let (ports, _dirs, nodes) = honest_members(&net, relay).await;
    let client = gridledger::wire::builder().build().expect("client");
    let s = common::until(&client, ports[0], 60, "2 blocks final", |s| {
        final_height(s) >= 2
    })
    .await;
    let origin = finality::origin(&net.name);
    // Two checkpoints of one height far above the tip: no block has them, but a vote is a
    // signed statement anyone can check, and two at one height are an offence.
    let size = s["height"].as_u64().unwrap_or(0) + 50;
    let source = Source {
        epoch: 0,
        root: gridledger::chain::tlog::root(&[net.genesis().id()]),
    };
    let attacker = common::key(ATTACKER);
    let vote = |r: u8| {
        Vote::sign(
            Kind::Prevote(source),
            Checkpoint {
                size,
                root: [r; 32],
            },
            &attacker,
            &origin,
        )
        .expect("links")
    };
    for (port, v) in [(ports[0], vote(1)), (ports[2], vote(2))] {
        let r = client
            .post(format!("http://127.0.0.1:{port}/votes"))
            .body(v.to_bytes(&origin))
            .send()
            .await
            .expect("POST /votes");
        assert_eq!(r.status().as_u16(), 204);
    }
    // A vote with a broken signature is dropped, not an error, and not evidence.
    let mut bad = vote(3);
    bad.sig[5] ^= 1;
    let r = client
        .post(format!("http://127.0.0.1:{}/votes", ports[1]))
        .body(bad.to_bytes(&origin))
        .send()
        .await
        .expect("POST /votes");
    assert_eq!(r.status().as_u16(), 204);
    // Junk is refused.
    let r = client
        .post(format!("http://127.0.0.1:{}/votes", ports[1]))
        .body(vec![7u8; 50])
        .send()
        .await
        .expect("POST /votes");
    assert_eq!(r.status().as_u16(), 400);
    let attacker_hex = hex::encode(attacker.verifying_key().to_bytes());
    for port in &ports {
        let deadline = Instant::now() + Duration::from_secs(10);
        let e = loop {
            let e = common::get_json(&client, format!("http://127.0.0.1:{port}/evidence")).await;
            if e["offences"].as_array().is_some_and(|a| !a.is_empty()) {
                break e;
            }
            assert!(
                Instant::now() < deadline,
                "node :{port} did not catch it: {e}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let offences = e["offences"].as_array().expect("list");
        assert_eq!(offences.len(), 1, "{e}");
        assert_eq!(offences[0]["member"], attacker_hex.as_str());
        assert_eq!(offences[0]["offence"], "double vote");
        // Both notes verify with the member's key, by anyone.
        let members = common::get_json(&client, format!("http://127.0.0.1:{port}/members")).await;
        let vkey = members["members"]
            .as_array()
            .expect("members")
            .iter()
            .find(|m| m["key"] == attacker_hex.as_str())
            .and_then(|m| m["vkey"].as_str())
            .expect("the attacker is a member")
            .to_owned();
        let verifier = gridledger::chain::note::Verifier::from_vkey(&vkey).expect("vkey");
        for n in offences[0]["notes"].as_array().expect("notes") {
            let note = gridledger::chain::note::Note::parse(n.as_str().unwrap_or("").as_bytes())
                .expect("a note");
            assert!(note.verify(std::slice::from_ref(&verifier)).is_ok());
        }
        let s = common::status(&client, *port).await;
        assert_eq!(s["finality"]["offences"], 1, "{s}");
        let metrics = common::get_text(&client, format!("http://127.0.0.1:{port}/metrics")).await;
        assert!(
            metrics.contains("gridledger_finality_offences_total 1\n"),
            "{metrics}"
        );
    }
    for n in nodes {
        n.stop().await;
    }
}

/// Four members, quorum three: with two down the chain grows and records are mined, but
/// nothing new is final and `/status` says since when it waits; back up, finality resumes
/// by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_third_of_the_members_down_the_chain_grows_and_finality_waits_then_resumes() {
    let (relay, _stop_relay) =
        common::relay_sim(SocketAddr::from(([127, 0, 0, 1], 0)), 1, 1.0, None).await;
    let net = network("finality-liveness", &[1, 2, 3, 4]);
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let dirs: Vec<_> = (0..4)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let configs: Vec<NodeConfig> = (0..4)
        .map(|i| {
            let peers: Vec<u16> = ports.iter().copied().filter(|p| *p != ports[i]).collect();
            common::node_config_at(ports[i], dirs[i].path(), &net, Some(relay), &peers)
        })
        .collect();
    let mut nodes = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        nodes.push(Some(
            start(c.clone(), common::key(i as u8 + 1))
                .await
                .expect("starts"),
        ));
    }
    let client = gridledger::wire::builder().build().expect("client");
    common::until(&client, ports[0], 60, "3 blocks final", |s| {
        final_height(s) >= 3
    })
    .await;
    // Two of four down: more than a third.
    for n in nodes.iter_mut().skip(2) {
        if let Some(n) = n.take() {
            n.stop().await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stalled = final_height(&common::status(&client, ports[0]).await);
    let h0 = common::status(&client, ports[0]).await["height"]
        .as_u64()
        .unwrap_or(0);
    let s = common::until(&client, ports[0], 30, "the chain grows", |s| {
        s["height"].as_u64().unwrap_or(0) >= h0 + 5
    })
    .await;
    assert_eq!(final_height(&s), stalled, "nothing new is final: {s}");
    assert!(s["finality"]["waiting_since_ms"].as_u64().is_some(), "{s}");
    assert!(
        s["finality"]["lag_blocks"].as_u64().unwrap_or(0) >= 5,
        "{s}"
    );
    // Back up: finality resumes, up to a block mined while they were down and beyond.
    for i in 2..4 {
        nodes[i] = Some(
            start(configs[i].clone(), common::key(i as u8 + 1))
                .await
                .expect("restarts"),
        );
    }
    let target = s["height"].as_u64().unwrap_or(0);
    for p in &ports {
        common::until(&client, *p, 60, "finality resumes", |s| {
            final_height(s) >= target
        })
        .await;
    }
    for n in nodes.into_iter().flatten() {
        n.stop().await;
    }
}

/// An operator's pinned checkpoint (`--pin-checkpoint`): a fresh node holds it as final, so a
/// chain that contradicts it is dropped at its height and refused above; a note without a
/// quorum of member signatures stops the node at start with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_checkpoint_holds_on_a_fresh_node_and_a_forged_pin_is_refused() {
    let (relay, stop_relay) =
        common::relay_sim(SocketAddr::from(([127, 0, 0, 1], 0)), 1, 1.0, None).await;
    let net = network("finality-pin", &[1, 2, 3, ATTACKER]);
    let (ports, _dirs, nodes) = honest_members(&net, relay).await;
    let client = gridledger::wire::builder().build().expect("client");
    common::until(&client, ports[0], 60, "5 blocks final", |s| {
        final_height(s) >= 5
    })
    .await;
    drop(stop_relay);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let note = common::get_text(&client, format!("http://127.0.0.1:{}/checkpoint", ports[0])).await;
    let pinned_height = final_height(&common::status(&client, ports[0]).await);
    let honest_chain = common::chain_of(&client, ports[0]).await;
    let honest = common::records_of(&honest_chain);
    for n in nodes {
        n.stop().await;
    }
    let files = tempfile::tempdir().expect("tempdir");
    let pin = files.path().join("pin.note");
    std::fs::write(&pin, &note).expect("write");

    // A fresh node, no peers, pinned: the rewrite is taken up to the pinned height, where
    // its block contradicts the pin and is dropped; what builds on it is refused.
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = common::node_config_at(port, dir.path(), &net, None, &[]);
    c.finality.pin = Some(pin.clone());
    let fresh = start(c, common::key(1)).await.expect("starts pinned");
    let forged = rewrite(&net, &honest, honest_chain.len(), 5);
    let answers = post_all(&client, port, &forged).await;
    let at = usize::try_from(pinned_height).expect("height");
    assert!(
        answers[..at - 1].iter().all(|(c, _)| *c == 200),
        "{answers:?}"
    );
    let refused = answers[at..]
        .iter()
        .filter(|(c, b)| *c == 422 && b.contains("contradicts a final checkpoint"))
        .count();
    assert!(refused >= 1, "{answers:?}");
    let s = common::status(&client, port).await;
    assert!(
        s["height"].as_u64().unwrap_or(0) < pinned_height as u64,
        "the contradicting branch is no main chain: {s}"
    );
    fresh.stop().await;

    // A pin signed by one member only: the node does not start, and says why.
    let forged_note = {
        let mut lines: Vec<&str> = note.lines().collect();
        lines.truncate(lines.len() - 2);
        lines.join("\n") + "\n"
    };
    std::fs::write(&pin, &forged_note).expect("write");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = common::node_config_at(free_port(), dir.path(), &net, None, &[]);
    c.finality.pin = Some(pin);
    let e = start(c, common::key(1))
        .await
        .expect_err("a pin without a quorum");
    assert!(e.to_string().contains("quorum"), "{e}");
}
