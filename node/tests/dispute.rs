//! A witness never forgets: a peer's block carries a forged record for a minute that this
//! node reads from the relay only later. After the read the node shows the dispute in
//! `/disputes`, `/status`, `/metrics` and `/readings`, and nothing else changes.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use gridledger::chain::{assemble, Network};
use gridledger::core::Origin;
use gridledger::run::{block_time, start};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_record_read_later_is_a_dispute_and_nothing_else_changes() {
    let sim = relay_sim::Simulator::bind(relay_sim::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        minute_secs: 1.0,
        ..relay_sim::Config::default()
    })
    .await
    .expect("binds");
    let (relay, clock) = (sim.local_addr(), sim.clock());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sim.run(async move {
        let _ = stop_rx.await;
    }));

    let dir = tempfile::tempdir().expect("tempdir");
    let net = Network::new("dispute", 8);
    let node = start(
        common::node_config(dir.path(), net.clone(), &[relay], Vec::new()),
        common::key(1),
    )
    .await
    .expect("starts");
    let base = format!("http://{}", node.addr);
    let client = gridledger::wire::builder().build().expect("http client");

    // A minute the relay closes about four wall seconds from now (a relay minute lasts one).
    let forged_minute = Minute(u32::try_from(clock.now_ms() / 60_000).expect("minute") + 4);
    let forged = SignalModel::new(99, Profile::Paper).record(
        RelayId(1),
        forged_minute,
        6,
        RecordFlags::CLOCK_SET,
    );
    // A hostile peer's block with it, on the node's tip, taken as a pushed block is.
    let forged_id = {
        let mut core = node.shared.lock().expect("lock");
        let parent = core.ledger.tip_header().expect("tip");
        let time = block_time(
            common::now_ms(),
            core.ledger.tree().median_time_past(&parent.id()),
            std::slice::from_ref(&forged),
        );
        let block = assemble(
            &parent,
            std::slice::from_ref(&forged),
            &common::key(2),
            time,
            net.bits,
            &AtomicBool::new(false),
        )
        .expect("mined");
        core.accept(block, common::now_ms(), Origin::Peer)
            .expect("accepted: the node has not read that minute yet")
            .id
    };

    // The node reads the real record later: a dispute.
    let deadline = Instant::now() + Duration::from_secs(20);
    let disputes = loop {
        let d = common::get_json(&client, format!("{base}/disputes")).await;
        if d["disputes"].as_array().is_some_and(|a| !a.is_empty()) {
            break d;
        }
        assert!(Instant::now() < deadline, "no dispute: {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let list = disputes["disputes"].as_array().expect("list");
    assert_eq!(list.len(), 1, "{disputes}");
    let d = &list[0];
    assert_eq!(d["relay"], 1);
    assert_eq!(d["minute"], forged_minute.0);
    assert_eq!(d["block_id"], forged_id.to_hex());
    assert_eq!(d["on_chain"]["raw"], {
        let mut buf = [0u8; relay_core::MinuteRecord::MAX_ENCODED_LEN];
        hex::encode(forged.encode(&mut buf).expect("encodes"))
    });
    assert_ne!(d["read"]["raw"], d["on_chain"]["raw"], "{d}");
    assert_eq!(disputes["total"], 1);

    // The node goes on reading and mining; let it pass a few more minutes.
    let h0 = common::get_json(&client, format!("{base}/status")).await["height"]
        .as_u64()
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let s = common::get_json(&client, format!("{base}/status")).await;
        if s["height"].as_u64().unwrap_or(0) >= h0 + 3 {
            break s;
        }
        assert!(Instant::now() < deadline, "the node stopped mining: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status["disputes"]["open"], 1, "{status}");
    assert_eq!(status["disputes"]["total"], 1, "{status}");
    assert_eq!(
        status["disputes"]["latest"][0]["minute"], forged_minute.0,
        "{status}"
    );
    let metrics = common::get_text(&client, format!("{base}/metrics")).await;
    assert!(
        metrics.contains("gridledger_witness_disputes_total 1\n"),
        "{metrics}"
    );
    // It was no witness conflict: the block was taken before the read.
    assert!(
        metrics.contains("gridledger_witness_conflicts_total 0\n"),
        "{metrics}"
    );

    // /readings flags the chain's value for that minute, and only that one.
    let r = common::get_json(
        &client,
        format!(
            "{base}/readings?relay=1&from={}&to={}",
            forged_minute.0 - 2,
            forged_minute.0 + 2
        ),
    )
    .await;
    let readings = r["readings"].as_array().expect("readings");
    assert_eq!(readings.len(), 5, "{r}");
    for x in readings {
        let is_forged = x["minute"] == forged_minute.0;
        assert_eq!(x["disputed"], is_forged, "{x}");
        if is_forged {
            assert_eq!(x["block_id"], forged_id.to_hex());
        }
    }
    // Nothing else changed: the forged block is still on the main chain, every minute is
    // there once, and the node did not mine its own version of the disputed minute.
    {
        let core = node.shared.lock().expect("lock");
        assert!(core.ledger.tree().is_main(&forged_id));
        assert!(!core.mempool.contains(&gridledger::chain::RecordKey {
            relay: RelayId(1),
            minute: forged_minute
        }));
        assert_eq!(core.counters.reorgs, 0);
        assert_eq!(core.counters.rejected, 0);
    }
    node.stop().await;

    // A witness never forgets, not even across a restart: the dispute is kept in the data
    // dir and open again, with both versions.
    let node = start(
        common::node_config(dir.path(), net, &[], Vec::new()),
        common::key(1),
    )
    .await
    .expect("restarts");
    let again = common::get_json(&client, format!("http://{}/disputes", node.addr)).await;
    assert_eq!(
        again["disputes"].as_array().map(Vec::len),
        Some(1),
        "{again}"
    );
    assert_eq!(again["disputes"][0]["minute"], forged_minute.0);
    assert_eq!(
        again["disputes"][0]["read"],
        disputes["disputes"][0]["read"]
    );
    assert_eq!(
        again["disputes"][0]["on_chain"],
        disputes["disputes"][0]["on_chain"]
    );
    node.stop().await;
    let _ = stop_tx.send(());
}
