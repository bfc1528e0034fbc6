//! The testbed in `cargo test`: real `gridledger run` processes on emulated WAN links.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use gridledger_testbed::link::{Link, Proxy};
use gridledger_testbed::node::{free_ports, Node, NodeSpec};
use gridledger_testbed::scenario::{self, Disturbance, Scenario};
use gridledger_testbed::topology;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_testbed-gridledger"))
}

/// Eight sites on 100 ms links, two or three peers each, cut in two halves for 15 s and
/// healed: every node ends on one tip, and every record any node read is on the final
/// chain exactly once. Each node in a network namespace of its own where the machine
/// allows (root, `ip netns`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_nodes_partitioned_and_healed_agree_and_lose_nothing() {
    // As root, this test runs again inside a hub namespace of its own, each node in its
    // own namespace; elsewhere (or with GRIDLEDGER_TESTBED_NETNS=0) on loopback ports.
    const NAME: &str = "eight_nodes_partitioned_and_healed_agree_and_lose_nothing";
    if let Some(ended) = gridledger_testbed::netns::enter_hub([
        "--exact",
        NAME,
        "--nocapture",
        "--test-threads",
        "1",
    ]) {
        let status = ended.expect("the run inside the hub namespace");
        assert!(
            status.success(),
            "the run inside the hub namespace failed: {status}"
        );
        return;
    }
    println!(
        "{}",
        if gridledger_testbed::netns::hub().is_some() {
            "nodes in network namespaces"
        } else {
            "nodes on loopback ports"
        }
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let ms = Duration::from_millis;
    let mut s = Scenario::steady("partition", 8, ms(100), ms(10));
    s.degree = (2, 3);
    s.minute_secs = 5.0;
    s.poll_secs = 0.5;
    s.slot_secs = 0.5;
    s.sync_secs = 1.0;
    s.warmup = Duration::from_secs(15);
    s.measure = Duration::from_secs(45);
    s.drain = Duration::from_secs(40);
    s.disturbance = Disturbance::Partition {
        after: Duration::from_secs(5),
        lasting: Duration::from_secs(15),
    };
    let report = scenario::run(&s, exe(), dir.path())
        .await
        .expect("scenario");
    println!("{}\n{}", scenario::Report::header(), report.row());
    assert!(
        report.converged,
        "no single tip after the drain: {report:?}"
    );
    assert!(report.heal_to_one_tip_ms.is_some(), "{report:?}");
    assert!(report.records_read >= 8, "too few records read: {report:?}");
    assert_eq!(report.lost, 0, "records lost: {report:?}");
    assert_eq!(report.duplicated, 0, "{report:?}");
    assert!(report.height > 0);
}

/// On a line of five nodes (each peers with its neighbours only) that pull once an hour, a
/// block mined at one end reaches the other end: only relay (each node passing on the
/// block that became its best) can carry it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_crosses_a_line_of_five_by_relay_alone() {
    line_of_five("push").await;
}

/// The same with `--block-relay announce`: each hop offers the id and sends the block only
/// to a peer that asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_block_crosses_a_line_of_five() {
    line_of_five("announce").await;
}

async fn line_of_five(mode: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sim = relay_sim::Simulator::bind(relay_sim::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        minute_secs: 2.0,
        ..relay_sim::Config::default()
    })
    .await
    .expect("relay-sim");
    let relay = sim.local_addr();
    let relay_task = tokio::spawn(sim.run(std::future::pending()));

    let n = 5;
    let edges = topology::line(n);
    let listens: Vec<SocketAddr> = free_ports(n).expect("ports");
    let mut proxies = Vec::new();
    let mut peers = vec![Vec::new(); n];
    for &(a, b) in &edges {
        let (ab, ba) = (
            Link::new(Duration::from_millis(30), Duration::ZERO),
            Link::new(Duration::from_millis(30), Duration::ZERO),
        );
        for (from, to, fwd, back) in [(a, b, &ab, &ba), (b, a, &ba, &ab)] {
            let p = Proxy::start(listens[to], fwd.clone(), back.clone())
                .await
                .expect("proxy");
            peers[from].push(format!("http://{}", p.addr()));
            proxies.push(p);
        }
    }
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(
            Node::start(
                exe(),
                NodeSpec {
                    index: i,
                    listen: listens[i],
                    data_dir: dir.path().join(format!("node{i}")),
                    // Only the first node reads the relay: every block starts there.
                    relays: if i == 0 { vec![relay] } else { Vec::new() },
                    peers: std::mem::take(&mut peers[i]),
                    network: "gridledger-line".to_owned(),
                    bits: 8,
                    poll_secs: 0.5,
                    slot_secs: 0.0,
                    sync_secs: 3600.0,
                    block_relay: mode.to_owned(),
                    namespace: None,
                },
            )
            .expect("node"),
        );
    }
    let client = gridledger_testbed::node::http_client().expect("client");
    for node in &mut nodes {
        node.wait_up(&client, Duration::from_secs(60))
            .await
            .expect("up");
    }
    let height = |url: String| {
        let client = client.clone();
        async move {
            let v: serde_json::Value = client
                .get(format!("{url}/status"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            v.get("height")?.as_u64()
        }
    };
    // The first block at the near end.
    let began = tokio::time::Instant::now();
    let mut mined = 0;
    while began.elapsed() < Duration::from_secs(60) {
        mined = height(nodes[0].url()).await.unwrap_or(0);
        if mined >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(mined >= 1, "the first node mined nothing in 60 s");
    // ... reaches the far end, four hops on, well before any pull (an hour away).
    let mut far = 0;
    let reached = tokio::time::Instant::now();
    while reached.elapsed() < Duration::from_secs(30) {
        far = height(nodes[n - 1].url()).await.unwrap_or(0);
        if far >= mined {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = reached.elapsed();
    for node in &mut nodes {
        node.kill().await;
    }
    relay_task.abort();
    assert!(
        far >= mined,
        "the far end has height {far}, the near end {mined}: the block was not relayed"
    );
    println!("{mode}: a block crossed 4 hops of 30 ms in {took:?}");
}
