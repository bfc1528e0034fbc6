//! A relay whose clock runs far ahead of the node's: its records are read but wait in the
//! mempool (a block may not hold a minute that has not closed, rule 9), `/status` names the
//! clock problem, and the node never builds a block the rule refuses.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gridledger::chain::Network;
use gridledger::run::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_clock_far_ahead_is_reported_and_its_records_wait() {
    // Ten minutes ahead of UTC and running faster (a relay minute a second).
    let ahead_secs = 600;
    let sim = relay_sim::Simulator::bind(relay_sim::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        minute_secs: 1.0,
        start_time: Some(common::now_ms() / 1000 + ahead_secs),
        clock_may_run_ahead: true,
        ..relay_sim::Config::default()
    })
    .await
    .expect("binds");
    let relay = sim.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sim.run(async move {
        let _ = stop_rx.await;
    }));
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(
        common::node_config(dir.path(), Network::new("clock", 8), &[relay], Vec::new()),
        common::key(1),
    )
    .await
    .expect("starts");
    let client = gridledger::wire::builder().build().expect("http client");
    let base = format!("http://{}", node.addr);

    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let s = common::get_json(&client, format!("{base}/status")).await;
        if s["relays"][0]["records"].as_u64().unwrap_or(0) >= 1 {
            break s;
        }
        assert!(Instant::now() < deadline, "no record read: {s}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let r = &status["relays"][0];
    let ahead_ms = r["clock_ahead_ms"].as_u64().unwrap_or(0);
    assert!(
        ahead_ms >= (ahead_secs - 60) * 1000,
        "clock_ahead_ms {ahead_ms}: {status}"
    );
    assert!(
        r["clock_problem"]
            .as_str()
            .is_some_and(|p| p.contains("ahead")),
        "{status}"
    );
    // The record waits: nothing mined for it, and it is pending.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = common::get_json(&client, format!("{base}/status")).await;
    assert_eq!(s["height"], 0, "a block with a record from the future: {s}");
    assert!(s["mempool"].as_u64().unwrap_or(0) >= 1, "{s}");
    node.stop().await;
    let _ = stop_tx.send(());
}
