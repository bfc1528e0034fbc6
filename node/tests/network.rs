//! System tests of the node at run time: relay-sim and several nodes on loopback ports.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use gridledger::chain::{Network, RecordKey};
use gridledger::poll::PollConfig;
use gridledger::run::{start, NodeConfig, RunningNode};
use relay_core::{Minute, RelayId};
use relay_sim::{Config, Simulator};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn relay(minute_secs: f64) -> SocketAddr {
    let s = Simulator::bind(Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        minute_secs,
        ..Config::default()
    })
    .await
    .expect("relay-sim binds");
    let addr = s.local_addr();
    tokio::spawn(s.run(std::future::pending()));
    addr
}

fn node_config(i: usize, ports: &[u16], relay: SocketAddr, dir: &tempfile::TempDir) -> NodeConfig {
    let port = ports[i];
    NodeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        data_dir: dir.path().to_owned(),
        network: Network::new("system-test", 8),
        relays: vec![format!("{relay}/1").parse().expect("relay")],
        peers: ports
            .iter()
            .filter(|p| **p != port)
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect(),
        poll: PollConfig {
            period: Duration::from_millis(250),
            offset: Duration::from_millis(10),
            io_timeout: Duration::from_millis(500),
        },
        sync_every: Duration::from_millis(500),
        max_records_per_block: 64,
        mining_jitter: Duration::from_millis(200),
    }
}

async fn nodes(
    n: usize,
    relay: SocketAddr,
    dirs: &[tempfile::TempDir],
) -> (Vec<u16>, Vec<RunningNode>) {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let mut out = Vec::new();
    for (i, dir) in dirs.iter().enumerate().take(n) {
        let config = node_config(i, &ports, relay, dir);
        out.push(
            start(config, common::key(i as u8 + 1))
                .await
                .expect("node starts"),
        );
    }
    (ports, out)
}

async fn same_tip_within(nodes: &[RunningNode], wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let tips: Vec<_> = nodes.iter().map(tip).collect();
        if tips.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(Instant::now() < deadline, "nodes disagree: {tips:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn tip(node: &RunningNode) -> (u32, String) {
    let core = node.shared.lock().expect("lock");
    let t = core.ledger.tree();
    (t.height(), t.tip().to_hex())
}

/// Four nodes and a relay whose minute lasts one second, for at least 20 relay minutes:
/// every node ends on the same tip, and every minute the relay closed while the nodes ran is
/// in the chain exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_agree_on_every_record() {
    let relay = relay(1.0).await;
    let dirs: Vec<_> = (0..4)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let (_, nodes) = nodes(4, relay, &dirs).await;
    tokio::time::sleep(Duration::from_secs(22)).await;
    // Let the last blocks spread, then compare.
    same_tip_within(&nodes, Duration::from_secs(10)).await;
    {
        let core = nodes[0].shared.lock().expect("lock");
        let tree = core.ledger.tree();
        let mut minutes: Vec<u32> = (1..=tree.height())
            .filter_map(|h| tree.main_at(h))
            .flat_map(|id| tree.keys_of(&id).to_vec())
            .map(|k| k.minute.0)
            .collect();
        let on_chain = minutes.len();
        minutes.sort_unstable();
        minutes.dedup();
        assert_eq!(minutes.len(), on_chain, "a record appears twice");
        assert!(on_chain >= 20, "only {on_chain} minutes recorded");
        let (first, last) = (minutes[0], minutes[minutes.len() - 1]);
        assert_eq!(
            minutes.len() as u32,
            last - first + 1,
            "a gap in {first}..={last}"
        );
        for m in first..=last {
            let key = RecordKey {
                relay: RelayId(1),
                minute: Minute(m),
            };
            assert!(tree.record_height(&key).is_some());
        }
    }
    for n in &nodes {
        let st = n.relays[0].lock().expect("lock").clone();
        assert_eq!(st.missed_minutes, 0, "{st:?}");
    }
    for n in nodes {
        n.stop().await;
    }
}

/// A node down for several relay minutes, restarted on its data dir, catches up by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_down_catches_up() {
    let relay = relay(1.0).await;
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let (ports, mut nodes) = nodes(3, relay, &dirs).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let down = nodes.pop().expect("three nodes");
    let height_when_down = tip(&down).0;
    down.stop().await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let ahead = tip(&nodes[0]).0;
    assert!(
        ahead >= height_when_down + 4,
        "the others went on: {ahead} vs {height_when_down}"
    );

    let back = start(node_config(2, &ports, relay, &dirs[2]), common::key(3))
        .await
        .expect("restarts");
    nodes.push(back);
    same_tip_within(&nodes, Duration::from_secs(15)).await;
    assert!(
        tip(&nodes[2]).0 >= ahead,
        "the restarted node has the blocks mined while it was down"
    );
    for n in nodes {
        n.stop().await;
    }
}
