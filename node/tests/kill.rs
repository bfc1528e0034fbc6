//! System test 6: a `gridledger run` process killed with SIGKILL while it mines restarts on
//! its data dir, verifies it, and rejoins its peer's chain, several times over.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridledger::chain::Network;
use gridledger::run::{start, NodeConfig};

const BIN: &str = env!("CARGO_BIN_EXE_gridledger");
const NETWORK: &str = "kill-test";
/// Enough work that mining a block takes a noticeable while, so that kills land in it.
const BITS: u8 = 20;

fn spawn(port: u16, dir: &Path, relay: SocketAddr, peer: &str) -> Child {
    Command::new(BIN)
        .arg("run")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .args(["--network", NETWORK])
        .args(["--difficulty-bits", &BITS.to_string()])
        .args(["--relay", &format!("{relay}/1")])
        .args(["--peer", peer])
        .args(["--poll-secs", "1"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gridledger run starts")
}

/// Records of `relay` on the node's main chain, each minute checked to be there once.
fn relay_records(node: &gridledger::run::RunningNode, relay: u32) -> usize {
    let core = node.shared.lock().expect("lock");
    let tree = core.ledger.tree();
    let mut minutes: Vec<u32> = (1..=tree.height())
        .filter_map(|h| tree.main_at(h))
        .flat_map(|id| tree.keys_of(&id).to_vec())
        .filter(|k| k.relay.0 == relay)
        .map(|k| k.minute.0)
        .collect();
    let n = minutes.len();
    minutes.sort_unstable();
    minutes.dedup();
    assert_eq!(minutes.len(), n, "a minute of relay {relay} twice");
    n
}

/// Blocks the node mined since it started, from its `/metrics`.
async fn mined(client: &reqwest::Client, base: &str) -> u64 {
    let Ok(r) = client.get(format!("{base}/metrics")).send().await else {
        return 0;
    };
    r.text()
        .await
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("gridledger_blocks_mined_total ")?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

async fn status(client: &reqwest::Client, base: &str) -> Option<serde_json::Value> {
    client
        .get(format!("{base}/status"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_while_mining_restarts_verifies_and_rejoins() {
    // B alone reads relay 1, so that only B mines its records; A reads relay 2.
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let (relay, _stop1) = common::relay_sim(any, 1, 1.0, None).await;
    let (relay2, _stop2) = common::relay_sim(any, 2, 1.0, None).await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let port_b = common::free_port();
    let peer_b = format!("http://127.0.0.1:{port_b}");
    let a = start(
        NodeConfig {
            mining_slot: Duration::from_millis(100),
            block_relay: Default::default(),
            tls: Default::default(),
            cors_origins: Vec::new(),
            finality: Default::default(),
            ..common::node_config(
                dir_a.path(),
                Network::new(NETWORK, BITS),
                &[relay2],
                vec![peer_b.clone()],
            )
        },
        common::key(1),
    )
    .await
    .expect("node A starts");
    let base_a = format!("http://{}", a.addr);
    let client = gridledger::wire::builder().build().expect("http client");
    let mut kills_while_mining = 0;

    for round in 0..4 {
        let mut child = spawn(port_b, dir_b.path(), relay, &base_a);
        // Wait until B is up and has mined two blocks of its own, then until it has
        // records pending again (its miner is at work), and kill it.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut height_before_kill = 0;
        let mut first_mined = None;
        loop {
            if let Some(s) = status(&client, &peer_b).await {
                height_before_kill = s["height"].as_u64().unwrap_or(0);
                let mined = mined(&client, &peer_b).await;
                let first = *first_mined.get_or_insert(mined);
                if mined >= first + 2 && s["mempool"].as_u64().unwrap_or(0) > 0 {
                    kills_while_mining += 1;
                    break;
                }
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().expect("SIGKILL delivered");
        let exit = child.wait().expect("reaped");
        assert!(!exit.success(), "round {round}: B dies by the signal");

        // The data dir verifies offline.
        let verify = Command::new(BIN)
            .args(["verify", "--data-dir"])
            .arg(dir_b.path())
            .output()
            .expect("verify runs");
        assert!(
            verify.status.success(),
            "round {round}: verify after SIGKILL: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        eprintln!(
            "round {round}: killed at height {height_before_kill}: {}",
            String::from_utf8_lossy(&verify.stdout).trim()
        );
    }
    assert!(
        kills_while_mining >= 3,
        "only {kills_while_mining} of 4 kills hit B with records pending"
    );

    // Restarted once more, B rejoins A's chain, and A gets B's new blocks.
    let before = relay_records(&a, 1);
    let mut child = spawn(port_b, dir_b.path(), relay, &base_a);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (sa, sb) = (
            status(&client, &base_a).await,
            status(&client, &peer_b).await,
        );
        if let (Some(sa), Some(sb)) = (&sa, &sb) {
            let a_has_b = relay_records(&a, 1) > before;
            if sa["tip"] == sb["tip"] && a_has_b && sb["mempool"] == 0 {
                break;
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("B did not rejoin: A {sa:?}, B {sb:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    a.stop().await;
}

/// Issue 14: a fresh node syncing a long chain, killed with SIGKILL between and during its
/// batch commits, keeps what it stored (its data dir verifies), resumes from there when
/// restarted, and ends on exactly the peer's chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_mid_batch_resumes_and_ends_equal_to_the_peer() {
    const SYNC_NET: &str = "kill-sync-test";
    const BLOCKS: u32 = 16_000;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    gridledger::offline::debug_append(dir_a.path(), SYNC_NET, 0, BLOCKS, &mut std::io::sink())
        .expect("chain built");
    let a = start(
        common::node_config(dir_a.path(), Network::new(SYNC_NET, 0), &[], Vec::new()),
        common::key(1),
    )
    .await
    .expect("node A starts");
    let base_a = format!("http://{}", a.addr);
    let client = gridledger::wire::builder().build().expect("http client");
    let tip_a = status(&client, &base_a).await.expect("A answers")["tip"].clone();
    let port_b = common::free_port();
    let peer_b = format!("http://127.0.0.1:{port_b}");
    let spawn_b = || {
        Command::new(BIN)
            .arg("run")
            .args(["--listen", &format!("127.0.0.1:{port_b}")])
            .arg("--data-dir")
            .arg(dir_b.path())
            .args(["--network", SYNC_NET, "--difficulty-bits", "0"])
            .args(["--peer", &base_a])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gridledger run starts")
    };

    // Killed as soon as it holds some of the chain but not all of it, three times over.
    let mut heights = Vec::new();
    for round in 0..3 {
        let mut child = spawn_b();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        while Instant::now() < deadline {
            if let Some(s) = status(&client, &peer_b).await {
                seen = s["height"].as_u64().unwrap_or(0);
                let before = heights.last().copied().unwrap_or(0);
                if seen > before && seen < u64::from(BLOCKS) {
                    // A little later each round, so that the kills land at different
                    // points of the next batch: fetching, verifying, committing.
                    tokio::time::sleep(Duration::from_millis(round * 20)).await;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.kill().expect("SIGKILL delivered");
        let _ = child.wait();
        let verify = Command::new(BIN)
            .args(["verify", "--data-dir"])
            .arg(dir_b.path())
            .output()
            .expect("verify runs");
        let said = String::from_utf8_lossy(&verify.stdout).to_string();
        assert!(
            verify.status.success(),
            "round {round}: verify after SIGKILL: {said}{}",
            String::from_utf8_lossy(&verify.stderr)
        );
        eprintln!("round {round}: killed after height {seen}: {}", said.trim());
        // Nothing it had stored is lost: the next round starts at least where this one was.
        heights.push(seen);
        if seen >= u64::from(BLOCKS) {
            break;
        }
    }
    assert!(
        heights.iter().any(|&h| h > 0 && h < u64::from(BLOCKS)),
        "no kill landed mid-sync: {heights:?}"
    );

    // Restarted, it resumes (it does not start again from genesis) and ends on A's tip.
    let mut child = spawn_b();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut first_height = None;
    loop {
        if let Some(s) = status(&client, &peer_b).await {
            first_height.get_or_insert(s["height"].as_u64().unwrap_or(0));
            if s["tip"] == tip_a {
                break;
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("B did not reach A's tip");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let resumed_at = first_height.unwrap_or(0);
    let last_kill = heights.last().copied().unwrap_or(0);
    assert!(
        resumed_at >= last_kill,
        "restarted at height {resumed_at}, below the {last_kill} it had verified"
    );
    // The same chain, block for block.
    let b = gridledger::ledger::Ledger::open_read_only(dir_b.path()).expect("B's dir opens");
    {
        let core = a.shared.lock().expect("lock");
        let tree_a = core.ledger.tree();
        assert_eq!(b.tree().height(), BLOCKS);
        for h in 0..=BLOCKS {
            assert_eq!(b.tree().main_at(h), tree_a.main_at(h), "height {h}");
        }
    }
    a.stop().await;
}
