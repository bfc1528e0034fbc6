//! `gridledger demo --fast`, as the book's Getting started runs it (on free ports and a temporary data
//! dir): the nodes agree on one chain, Ctrl-C stops it all cleanly, a second run resumes
//! the same chains (even when a hostile block of another relay sits on them), and every
//! data dir verifies afterwards.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

const BIN: &str = env!("CARGO_BIN_EXE_gridledger");
const NODES: u16 = 3;

/// A base port with `NODES` free ports from it, and a free relay port.
fn ports() -> (u16, u16) {
    for _ in 0..50 {
        let base = common::free_port();
        let free = (0..NODES).all(|i| {
            base.checked_add(i)
                .is_some_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if free {
            let relay = common::free_port();
            if !(base..base + NODES).contains(&relay) {
                return (base, relay);
            }
        }
    }
    panic!("no run of free ports found");
}

fn start(dir: &Path, base: u16, relay: u16) -> Child {
    Command::new(BIN)
        .args(["demo", "--fast", "--difficulty-bits", "12"])
        .args(["--nodes", &NODES.to_string()])
        .args(["--base-port", &base.to_string()])
        .args(["--relay-port", &relay.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts")
}

/// Ctrl-C, then the exit status.
fn interrupt(mut child: Child) -> std::process::ExitStatus {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("waits") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not stop within 15 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn tips(client: &reqwest::Client, base: u16) -> Option<Vec<(u64, String)>> {
    let mut out = Vec::new();
    for i in 0..NODES {
        let s: serde_json::Value = client
            .get(format!("http://127.0.0.1:{}/status", base + i))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        out.push((
            s["height"].as_u64()?,
            s["tip"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    Some(out)
}

/// Waits until every node answers, all on one tip at least `min_height` high.
async fn agree(client: &reqwest::Client, base: u16, min_height: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let t = tips(client, base).await;
        if let Some(t) = &t {
            if t[0].0 >= min_height && t.windows(2).all(|w| w[0] == w[1]) {
                return t[0].0;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the demo's nodes do not agree at height >= {min_height}: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_stops_on_ctrl_c_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("demo-data");
    let client = gridledger::wire::builder().build().expect("http client");

    let (base, relay) = ports();
    let first = start(&data, base, relay);
    let first_height = agree(&client, base, 3).await;
    let status = interrupt(first);
    assert!(status.success(), "first run: {status}");

    // A hostile miner's valid block reaches node1's chain: a record of relay u32::MAX at the
    // latest minute rule 9 allows (u32::MAX itself can never be in a valid block). The
    // resumed demo's relay clock must not follow it. The demo's nodes are its allow-list, so
    // the hostile miner is one of them (node3's key).
    let h1: u64 = {
        let net = gridledger::chain::Network::new("gridledger-demo", 12);
        let mut ledger =
            gridledger::ledger::Ledger::open(&data.join("node1"), net.clone()).expect("opens");
        let parent = ledger.tip_header().expect("tip");
        let now = common::now_ms();
        let hostile = SignalModel::new(7, Profile::Paper).record(
            RelayId(u32::MAX),
            Minute(u32::try_from(now / 60_000).expect("minute") - 1),
            6,
            RecordFlags::CLOCK_SET,
        );
        let time = gridledger::run::block_time(
            now,
            ledger.tree().median_time_past(&parent.id()),
            std::slice::from_ref(&hostile),
        );
        let block = gridledger::chain::assemble(
            &parent,
            std::slice::from_ref(&hostile),
            &gridledger::keys::load_or_create(&data.join("node3").join("miner.key"))
                .expect("node3's key"),
            time,
            net.bits,
            &std::sync::atomic::AtomicBool::new(false),
        )
        .expect("mined");
        ledger.add(block, now).expect("a valid block").height.into()
    };
    assert!(h1 > first_height, "{h1} after {first_height}");

    let (base, relay) = ports();
    let second = start(&data, base, relay);
    let h2 = agree(&client, base, h1 + 3).await;
    let status = interrupt(second);
    assert!(status.success(), "second run: {status}");
    eprintln!("demo: height {h1} after the first run, {h2} after the second");

    for i in 1..=NODES {
        let out = Command::new(BIN)
            .args(["verify", "--data-dir"])
            .arg(data.join(format!("node{i}")))
            .output()
            .expect("verify runs");
        assert!(
            out.status.success(),
            "node{i}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let height: u64 = text
            .split("height ")
            .nth(1)
            .and_then(|t| t.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("node{i}: no height in {text}"));
        assert!(height >= h2, "node{i} kept height {height} < {h2}: {text}");
    }
}
