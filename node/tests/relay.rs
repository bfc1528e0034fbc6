//! Block relay: on a line of five nodes, each the peer of its neighbours only, a block mined
//! at one end reaches the other end by relay, long before any pull (the sync period here is
//! a minute).

mod common;

use std::time::{Duration, Instant};

use gridledger::chain::Network;
use gridledger::run::{start, RunningNode};

fn tip(n: &RunningNode) -> String {
    n.shared.lock().expect("lock").ledger.tree().tip().to_hex()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_crosses_a_line_of_five_nodes_by_relay() {
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().expect("dir")).collect();
    let ports: Vec<u16> = (0..5).map(|_| common::free_port()).collect();
    let mut nodes = Vec::new();
    for i in 0..5usize {
        let peers = [i.checked_sub(1), (i + 1 < 5).then_some(i + 1)]
            .into_iter()
            .flatten()
            .map(|j| format!("http://127.0.0.1:{}", ports[j]))
            .collect();
        let config = gridledger::run::NodeConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], ports[i])),
            // No pull within the test: only relay can carry the block.
            sync_every: Duration::from_secs(60),
            mining_slot: Duration::ZERO,
            block_relay: Default::default(),
            ..common::node_config(dirs[i].path(), Network::new("relay-test", 8), &[], peers)
        };
        nodes.push(start(config, common::key(i as u8 + 1)).await.expect("node"));
    }
    let before = tip(&nodes[4]);
    nodes[0]
        .shared
        .lock()
        .expect("lock")
        .read(common::record(1, 1));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mined = loop {
        let t = tip(&nodes[0]);
        if t != before {
            break t;
        }
        assert!(Instant::now() < deadline, "node 1 did not mine");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let sent = Instant::now();
    while tip(&nodes[4]) != mined {
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "the block did not reach the far end of the line within 10 s (the sync period is 60 s)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in &nodes[1..4] {
        assert_eq!(tip(n), mined);
    }
    eprintln!("relayed over four hops in {:?}", sent.elapsed());
    for n in nodes {
        n.stop().await;
    }
}

/// A child pushed before its parent (a miner pushes two blocks in a row at once, and either
/// may be taken first) is kept, placed when the parent comes, and relayed on: on a line of
/// two nodes whose sync period is a minute, the far node gets both blocks without a pull.
/// Before, the child was refused, never relayed, and the far node waited for its next pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_pushed_before_its_parent_is_placed_and_relayed() {
    let net = Network::new("relay-test", 8);
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("dir")).collect();
    let ports: Vec<u16> = (0..2).map(|_| common::free_port()).collect();
    let mut nodes = Vec::new();
    for i in 0..2usize {
        let config = gridledger::run::NodeConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], ports[i])),
            sync_every: Duration::from_secs(60),
            mining_slot: Duration::ZERO,
            ..common::node_config(
                dirs[i].path(),
                net.clone(),
                &[],
                vec![format!("http://127.0.0.1:{}", ports[1 - i])],
            )
        };
        nodes.push(start(config, common::key(i as u8 + 1)).await.expect("node"));
    }
    // Both nodes' first pulls (at start) are over before the blocks come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let parent = common::block_on(&net.genesis().header, &[common::record(1, 1)], &net, 9);
    let child = common::block_on(&parent.header, &[common::record(1, 2)], &net, 9);
    let client = gridledger::wire::builder().build().expect("client");
    let push = |b: &gridledger::chain::Block| {
        client
            .post(format!("http://127.0.0.1:{}/blocks", ports[0]))
            .header("content-type", "application/octet-stream")
            .body(b.to_bytes())
            .send()
    };
    let first = push(&child).await.expect("answered");
    assert_eq!(first.status().as_u16(), 409, "the parent is not there yet");
    assert_eq!(
        push(&parent).await.expect("answered").status().as_u16(),
        200
    );
    assert_eq!(tip(&nodes[0]), child.id().to_hex(), "placed at once");
    let sent = Instant::now();
    while tip(&nodes[1]) != child.id().to_hex() {
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "the far node did not get the child by relay within 10 s (the sync period is 60 s)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in nodes {
        n.stop().await;
    }
}
