//! System tests of the node at run time: relay-sim and several nodes on loopback ports.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gridledger::chain::{Network, RecordKey};
use gridledger::run::{start, NodeConfig, RunningNode};
use relay_core::{Minute, RelayId};

use common::free_port;

async fn relay(minute_secs: f64) -> SocketAddr {
    let (addr, stop) =
        common::relay_sim(SocketAddr::from(([127, 0, 0, 1], 0)), 1, minute_secs, None).await;
    // Runs for the rest of the test.
    std::mem::forget(stop);
    addr
}

/// Node `i` of a full mesh on `ports`, polling `relay`.
fn node_config(i: usize, ports: &[u16], relay: SocketAddr, dir: &tempfile::TempDir) -> NodeConfig {
    let others: Vec<u16> = ports.iter().copied().filter(|p| *p != ports[i]).collect();
    config_with(ports[i], &[relay], &others, dir)
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
    let (ports, nodes) = nodes(4, relay, &dirs).await;
    tokio::time::sleep(Duration::from_secs(22)).await;
    // Let the last blocks spread, then compare.
    same_tip_within(&nodes, Duration::from_secs(10)).await;
    // The mining policy: the nodes take turns instead of all mining every record (which
    // made about three stale blocks per record with four nodes).
    let mined: u64 = nodes
        .iter()
        .map(|n| n.shared.lock().expect("lock").counters.mined)
        .sum();
    let height = u64::from(tip(&nodes[0]).0);
    assert!(
        mined - height <= mined / 4,
        "{mined} blocks mined for a chain of {height}: too many stale"
    );
    // Every node saw its records reach its main chain, and peers' blocks arrive.
    let client = gridledger::wire::builder().build().expect("client");
    for port in &ports {
        let m = common::get_text(&client, format!("http://127.0.0.1:{port}/metrics")).await;
        let count = |name: &str| {
            m.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}_count ")))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        assert!(count("gridledger_record_to_tip_seconds") >= 10, "{m}");
        assert!(count("gridledger_block_propagation_seconds") >= 1, "{m}");
        assert!(m.contains("gridledger_stale_blocks "), "{m}");
        assert!(
            m.contains("gridledger_peer_request_seconds_count{peer="),
            "{m}"
        );
    }
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

/// A node that starts behind its peers (a restart after they went on) catches up before
/// it mines: every block it mines goes on its peer's chain, none on the tip it started
/// with (a block there would be stale at birth). Here the peer holds twelve blocks and
/// mines nothing; the starting node holds none and reads a relay at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_starts_behind_catches_up_before_it_mines() {
    let relay = relay(1.0).await;
    let net = Network::new("system-test", 8);
    let (ahead_dir, behind_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let mut ledger =
        gridledger::ledger::Ledger::open(ahead_dir.path(), net.clone()).expect("opens");
    let mut parent = net.genesis().header;
    for m in 0..12 {
        let b = common::block_on(&parent, &[common::record(9, m)], &net, 9);
        ledger.add(b.clone(), common::now_ms()).expect("valid");
        parent = b.header;
    }
    drop(ledger);
    let ahead_port = free_port();
    let ahead = start(
        config_with(ahead_port, &[], &[], &ahead_dir),
        common::key(9),
    )
    .await
    .expect("starts");
    let behind = start(
        config_with(free_port(), &[relay], &[ahead_port], &behind_dir),
        common::key(1),
    )
    .await
    .expect("starts");
    let own = common::key(1).verifying_key().to_bytes();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (mined, on_main) = {
            let core = behind.shared.lock().expect("lock");
            let tree = core.ledger.tree();
            let on_main = (1..=tree.height())
                .filter_map(|h| tree.main_at(h))
                .filter(|id| {
                    core.ledger
                        .block(id)
                        .ok()
                        .flatten()
                        .is_some_and(|b| b.header.miner == own)
                })
                .count() as u64;
            (core.counters.mined, on_main)
        };
        assert_eq!(
            mined, on_main,
            "every block the node mined is on the main chain (none on the tip it started with)"
        );
        if mined >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "mined {mined} blocks in 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let on_peers_chain = behind
        .shared
        .lock()
        .expect("lock")
        .ledger
        .tree()
        .main_at(12);
    assert_eq!(on_peers_chain, Some(parent.id()), "on the peer's chain");
    behind.stop().await;
    ahead.stop().await;
}

/// A peer that never answers (it accepts connections and holds them) does not keep a
/// started node from mining: its first pull ends at the request timeout, and however a
/// peer holds a pull open the miner waits at most `CATCH_UP_MAX`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_does_not_stop_a_started_node_mining() {
    let relay = relay(1.0).await;
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let hole_port = hole.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = hole.accept().await {
            held.push(conn);
        }
    });
    mines_beside(relay, hole_port, "a peer that never answers").await;
}

/// Starts a node reading `relay` with the one peer on `peer_port`, and waits until it has
/// mined, at most `CATCH_UP_MAX` and 5 s: asserts that its own `/status` answers all the
/// while.
async fn mines_beside(relay: SocketAddr, peer_port: u16, peer: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(
        config_with(free_port(), &[relay], &[peer_port], &dir),
        common::key(1),
    )
    .await
    .expect("starts");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let started = Instant::now();
    let limit = gridledger::core::CATCH_UP_MAX + Duration::from_secs(5);
    while node.shared.lock().expect("lock").counters.mined == 0 {
        assert!(
            started.elapsed() < limit,
            "nothing mined in {limit:?} beside {peer}"
        );
        let status = client
            .get(format!("http://{}/status", node.addr))
            .send()
            .await
            .expect("the node's own API answers meanwhile");
        assert!(status.status().is_success());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    node.stop().await;
}

/// A peer that answers every request at once and then trickles its body, a byte every
/// 200 ms, without end (it would hold a pull open for days within any idle timeout) does
/// not keep a started node from mining, and the node's own API keeps answering meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_trickles_its_answers_does_not_stop_a_started_node_mining() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = relay(1.0).await;
    let trickle = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let trickle_port = trickle.local_addr().expect("addr").port();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = trickle.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                if conn.read(&mut request).await.is_err() {
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            content-length: 100000000\r\n\r\n";
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                // Bounded: 30 minutes of bytes, far past the test's end.
                for _ in 0..9_000 {
                    if conn.write_all(b" ").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        }
    });
    mines_beside(relay, trickle_port, "a peer that trickles its answers").await;
    assert!(
        asked.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the node asked the trickling peer"
    );
}

fn config_with(
    port: u16,
    relays: &[SocketAddr],
    peers: &[u16],
    dir: &tempfile::TempDir,
) -> NodeConfig {
    let peers = peers
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    NodeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        ..common::node_config(dir.path(), Network::new("system-test", 8), relays, peers)
    }
}

/// Every (relay, minute) on `node`'s main chain, by relay.
fn minutes_on_chain(node: &RunningNode) -> std::collections::BTreeMap<u32, Vec<u32>> {
    let core = node.shared.lock().expect("lock");
    let tree = core.ledger.tree();
    let mut out: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
    for h in 1..=tree.height() {
        let id = tree.main_at(h).expect("main chain");
        for k in tree.keys_of(&id).iter() {
            out.entry(k.relay.0).or_default().push(k.minute.0);
        }
    }
    out
}

/// Asserts each relay's minutes appear once each, with no gap from the first up to
/// `last[relay]` (later minutes may still be on their way).
fn every_minute_once(
    chain: &std::collections::BTreeMap<u32, Vec<u32>>,
    last: &std::collections::BTreeMap<u32, u32>,
) {
    assert_eq!(chain.len(), last.len(), "every relay is on the chain");
    for (relay, minutes) in chain {
        let mut sorted = minutes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), minutes.len(), "relay {relay}: a minute twice");
        let (first, end) = (sorted[0], last[relay]);
        let upto = sorted.iter().filter(|m| **m <= end).count() as u32;
        assert_eq!(
            upto,
            end - first + 1,
            "relay {relay}: a gap in {first}..={end}"
        );
    }
}

/// System test 3: two pairs of nodes that cannot reach each other both mine; relay 2 is
/// read by the second pair only. Healed through the API (`POST /peers`, then `POST
/// /peers/resolve`), the four end on one chain holding every minute of both relays once:
/// the losing pair's blocks are abandoned but none of their records is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_into_one_chain_with_every_record_once() {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let (relay1, stop1) = common::relay_sim(any, 1, 1.0, None).await;
    let (relay2, stop2) = common::relay_sim(any, 2, 1.0, None).await;
    let dirs: Vec<_> = (0..4)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let sides: [(&[SocketAddr], usize); 4] = [
        (&[relay1], 1),
        (&[relay1], 0),
        (&[relay1, relay2], 3),
        (&[relay1, relay2], 2),
    ];
    let mut nodes = Vec::new();
    for (i, (relays, peer)) in sides.iter().enumerate() {
        let c = config_with(ports[i], relays, &[ports[*peer]], &dirs[i]);
        nodes.push(
            start(c, common::key(i as u8 + 1))
                .await
                .expect("node starts"),
        );
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (a, b) = (tip(&nodes[0]), tip(&nodes[2]));
    assert_ne!(a.1, b.1, "the two sides mined apart");
    assert!(a.0 >= 4 && b.0 >= 4, "both sides mined: {a:?} {b:?}");

    // Heal: every node learns the other side's nodes, then one asks all to resolve.
    let client = gridledger::wire::builder().build().expect("http client");
    for (i, port) in ports.iter().enumerate() {
        for (j, other) in ports.iter().enumerate() {
            if i / 2 != j / 2 {
                let r = client
                    .post(format!("http://127.0.0.1:{port}/peers"))
                    .json(&serde_json::json!({ "url": format!("http://127.0.0.1:{other}") }))
                    .send()
                    .await
                    .expect("answered");
                assert_eq!(r.status().as_u16(), 200);
            }
        }
    }
    // What the pollers had read when the partition healed: all of it must end up on the
    // one chain.
    let mut last = std::collections::BTreeMap::new();
    for n in &nodes {
        for st in &n.relays {
            let st = st.lock().expect("lock").clone();
            let relay: u32 = if st.relay == format!("{relay1}/1") {
                1
            } else {
                2
            };
            let m = st.last_minute.expect("read something").0;
            let e = last.entry(relay).or_insert(m);
            *e = (*e).max(m);
        }
    }
    let r = common::post_json(
        &client,
        format!("http://127.0.0.1:{}/peers/resolve", ports[0]),
    )
    .await;
    assert_eq!(r["peers"].as_array().map(Vec::len), Some(3), "{r}");

    // The relays go on; wait for one tip holding everything read before the heal.
    let deadline = Instant::now() + Duration::from_secs(30);
    let chain = loop {
        let tips: Vec<_> = nodes.iter().map(tip).collect();
        let chain = minutes_on_chain(&nodes[0]);
        let holds_all = last
            .iter()
            .all(|(relay, m)| chain.get(relay).is_some_and(|ms| ms.iter().any(|x| x >= m)));
        if holds_all && tips.windows(2).all(|w| w[0] == w[1]) {
            break chain;
        }
        assert!(
            Instant::now() < deadline,
            "not one chain with every record: tips {tips:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop((stop1, stop2));
    every_minute_once(&chain, &last);
    assert!(chain[&2].len() >= 6, "relay 2's records: {:?}", chain[&2]);
    let reorgs: u64 = nodes
        .iter()
        .map(|n| n.shared.lock().expect("lock").counters.reorgs)
        .sum();
    assert!(reorgs >= 1, "one side gave up its branch");
    for n in nodes {
        n.stop().await;
    }
}

/// System test 4: the relay stops and comes back. The nodes stay up and keep answering,
/// `/status` and `/metrics` show it down with the error, then the gap; polling resumes and
/// the chain goes on with the relay's new minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_stops_and_comes_back_leaves_a_reported_gap() {
    // Compressed, and far enough in the past that it stays behind UTC (see relay-sim's clock).
    let start_time = (common::now_ms() - relay_sim::clock::headroom_ms(1.0)) / 1000;
    let began = Instant::now();
    let (relay, stop) = common::relay_sim(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        1,
        1.0,
        Some(start_time),
    )
    .await;
    let dirs: Vec<_> = (0..2)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let (ports, nodes) = nodes(2, relay, &dirs).await;
    let client = gridledger::wire::builder().build().expect("http client");
    let status =
        |i: usize| common::get_json(&client, format!("http://127.0.0.1:{}/status", ports[i]));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = status(0).await;
    assert_eq!(before["relays"][0]["up"], true, "{before}");

    drop(stop);
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (i, port) in ports.iter().enumerate() {
        let s = status(i).await;
        let r = &s["relays"][0];
        assert_eq!(r["up"], false, "{s}");
        assert!(
            r["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "{s}"
        );
        let metrics = common::get_text(&client, format!("http://127.0.0.1:{port}/metrics")).await;
        assert!(
            metrics.contains(&format!("gridledger_relay_up{{relay=\"{relay}/1\"}} 0")),
            "{metrics}"
        );
    }
    let height_down = tip(&nodes[0]).0;

    // Back on the same port, its clock where it would have been.
    let elapsed = began.elapsed().as_secs();
    let (_, _stop) = common::relay_sim(relay, 1, 1.0, Some(start_time + elapsed * 60)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(0).await;
        let r = &s["relays"][0];
        if r["up"] == true
            && r["missed_minutes"].as_u64().unwrap_or(0) >= 3
            && tip(&nodes[0]).0 >= height_down + 2
        {
            break;
        }
        assert!(Instant::now() < deadline, "polling did not resume: {s}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    same_tip_within(&nodes, Duration::from_secs(10)).await;
    let metrics = common::get_text(&client, format!("http://127.0.0.1:{}/metrics", ports[1])).await;
    let missed = metrics
        .lines()
        .find(|l| l.starts_with("gridledger_relay_missed_minutes_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("missed minutes metric");
    assert!(missed >= 3, "the gap shows in /metrics: {metrics}");
    for n in nodes {
        n.stop().await;
    }
}
