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

/// Nodes on `edges` (links of `delay` each way) that pull once an hour, only the first
/// reading a relay (so every block starts there), all up.
struct Net {
    nodes: Vec<Node>,
    client: reqwest::Client,
    _proxies: Vec<Proxy>,
    relay_task: tokio::task::JoinHandle<Result<(), relay_sim::SimError>>,
    _dir: tempfile::TempDir,
}

impl Net {
    async fn start(
        n: usize,
        edges: &topology::Edges,
        delay: Duration,
        mode: &str,
        name: &str,
    ) -> Net {
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
        let listens: Vec<SocketAddr> = free_ports(n).expect("ports");
        let mut proxies = Vec::new();
        let mut peers = vec![Vec::new(); n];
        for &(a, b) in edges {
            let (ab, ba) = (
                Link::new(delay, Duration::ZERO),
                Link::new(delay, Duration::ZERO),
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
                        relays: if i == 0 { vec![relay] } else { Vec::new() },
                        peers: std::mem::take(&mut peers[i]),
                        network: name.to_owned(),
                        bits: 8,
                        poll_secs: 0.5,
                        slot_secs: 0.0,
                        sync_secs: 3600.0,
                        block_relay: mode.to_owned(),
                        namespace: None,
                        key_file: None,
                        allow_list: None,
                        finality_interval_secs: None,
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
        Net {
            nodes,
            client,
            _proxies: proxies,
            relay_task,
            _dir: dir,
        }
    }

    async fn height(&self, i: usize) -> Option<u64> {
        let v: serde_json::Value = self
            .client
            .get(format!("{}/status", self.nodes[i].url()))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v.get("height")?.as_u64()
    }

    /// Waits up to `within` for node `i` to reach `height`; its height then.
    async fn wait_height(&self, i: usize, height: u64, within: Duration) -> u64 {
        let began = tokio::time::Instant::now();
        let mut h = 0;
        while began.elapsed() < within {
            h = self.height(i).await.unwrap_or(0);
            if h >= height {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        h
    }

    /// Node `i`'s `/metrics` sample `name{how="…"}`, 0 if absent.
    async fn sent(&self, i: usize, name: &str, how: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.nodes[i].url()))
            .send()
            .await
            .expect("metrics answered")
            .text()
            .await
            .expect("metrics text");
        let prefix = format!("{name}_total{{how=\"{how}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn stop(mut self) {
        for node in &mut self.nodes {
            node.kill().await;
        }
        self.relay_task.abort();
    }
}

async fn line_of_five(mode: &str) {
    let n = 5;
    let ms30 = Duration::from_millis(30);
    let net = Net::start(n, &topology::line(n), ms30, mode, "gridledger-line").await;
    // The first block at the near end.
    let mined = net.wait_height(0, 1, Duration::from_secs(60)).await;
    assert!(mined >= 1, "the first node mined nothing in 60 s");
    // ... reaches the far end, four hops on, well before any pull (an hour away).
    let reached = tokio::time::Instant::now();
    let far = net.wait_height(n - 1, mined, Duration::from_secs(30)).await;
    let took = reached.elapsed();
    net.stop().await;
    assert!(
        far >= mined,
        "the far end has height {far}, the near end {mined}: the block was not relayed"
    );
    println!("{mode}: a block crossed 4 hops of 30 ms in {took:?}");
}

/// `--block-relay adaptive` on a triangle where node 0 mines every block: nodes 1 and 2
/// each get it straight from node 0 (one hop of 80 ms) before the other's relay (two hops)
/// arrives, so each relay between them is a whole block the other has held for about 80 ms
/// (well over `fanout::CLEAR_MS`). After
/// `fanout::REDUNDANT_AFTER` of those they announce to each other instead, and still every
/// node takes every block, by relay alone (pulls are an hour apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_relay_stops_sending_whole_blocks_a_peer_already_has() {
    let triangle = [(0, 1), (0, 2), (1, 2)].into_iter().collect();
    let ms80 = Duration::from_millis(80);
    let net = Net::start(3, &triangle, ms80, "adaptive", "gridledger-triangle").await;
    let want = 10;
    let mined = net.wait_height(0, want, Duration::from_secs(90)).await;
    assert!(mined >= want, "node 0 mined {mined} blocks in 90 s");
    let ends = [
        net.wait_height(1, mined, Duration::from_secs(10)).await,
        net.wait_height(2, mined, Duration::from_secs(10)).await,
    ];
    let mut seen = Vec::new();
    for i in 1..3 {
        seen.push((
            net.sent(i, "gridledger_blocks_sent", "whole").await,
            net.sent(i, "gridledger_blocks_sent_held", "whole").await,
            net.sent(i, "gridledger_blocks_sent", "id").await,
            net.sent(i, "gridledger_blocks_sent_held", "id").await,
        ));
    }
    let own = net.sent(0, "gridledger_blocks_sent", "whole").await;
    net.stop().await;
    assert_eq!(ends, [mined, mined], "every block by relay alone");
    assert!(
        own >= 2.0 * want as f64,
        "node 0 sent its own {own} times whole"
    );
    let after = f64::from(gridledger::fanout::REDUNDANT_AFTER);
    println!("node 0 mined {mined}+; nodes 1, 2 sent (whole, held, ids, held): {seen:?}");
    for (i, (whole, whole_held, id, id_held)) in seen.into_iter().enumerate() {
        // `push` would send each block whole to node 2 (or 1), which holds it already:
        // at least `mined` wasted. Here: whole blocks until the peer held
        // `REDUNDANT_AFTER` in a row (one more may be in flight as the count is reached),
        // to the other node and, until a poll told node 0's key (the relay skips the
        // sender by it), back to node 0; ids from then on. An id the peer wanted (it was
        // still validating the block from node 0) puts it back on whole blocks.
        let wanted = id - id_held;
        assert!(
            whole_held < mined as f64 - 1.0
                && whole_held <= (2.0 + wanted) * (after + 1.0)
                && whole <= whole_held + wanted + 2.0,
            "node {}: {whole} whole blocks sent, {whole_held} held already, {wanted} ids wanted",
            i + 1
        );
        assert!(
            id_held >= 1.0 && id_held >= wanted,
            "node {}: {id} ids sent, {id_held} not wanted",
            i + 1
        );
    }
}
