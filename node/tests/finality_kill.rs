//! Kill -9 against what finality and the witness keep (issue 29): a member's node killed
//! with SIGKILL at random moments while it reads, votes and finalises never signs two
//! votes an honest member would not (the other members find no offence), never loses or
//! doubles a record, and ends with the same final history as the others; a node killed
//! right after it read the relay still refuses a rewrite of what it read.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridledger::chain::Network;
use gridledger::run::start;
use relay_core::{MinuteRecord, Volts};

const BIN: &str = env!("CARGO_BIN_EXE_gridledger");

fn write_key(dir: &Path, n: u8) -> std::path::PathBuf {
    let path = dir.join(format!("key{n}"));
    std::fs::write(&path, hex::encode(common::key(n).to_bytes())).expect("key file");
    path
}

fn spawn(
    port: u16,
    dir: &Path,
    net: &str,
    relay: SocketAddr,
    peers: &[u16],
    key: &Path,
    allow: Option<&Path>,
) -> Child {
    let mut c = Command::new(BIN);
    c.arg("run")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .args(["--network", net, "--difficulty-bits", "8"])
        .args(["--relay", &format!("{relay}/1")])
        .args([
            "--poll-secs",
            "0.25",
            "--sync-secs",
            "0.5",
            "--mining-slot-secs",
            "0.2",
        ])
        .arg("--key-file")
        .arg(key);
    for p in peers {
        c.args(["--peer", &format!("http://127.0.0.1:{p}")]);
    }
    if let Some(a) = allow {
        c.arg("--allow-list").arg(a);
    }
    c.env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gridledger run starts")
}

async fn json(client: &reqwest::Client, url: String) -> Option<serde_json::Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

/// Three members in this process and a fourth in a process killed six times at random
/// moments (a fixed seed) while the chain grows and is finalised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_while_it_votes_never_equivocates_and_loses_nothing() {
    let (relay, _stop) =
        common::relay_sim(SocketAddr::from(([127, 0, 0, 1], 0)), 1, 1.0, None).await;
    let name = "finality-kill";
    let mut net = Network::new(name, 8);
    net.allow_list = Some(
        (1..=4)
            .map(|k| common::key(k).verifying_key().to_bytes())
            .collect(),
    );
    let files = tempfile::tempdir().expect("tempdir");
    let allow = files.path().join("allow");
    std::fs::write(
        &allow,
        (1..=4)
            .map(|k| hex::encode(common::key(k).verifying_key().to_bytes()) + "\n")
            .collect::<String>(),
    )
    .expect("allow-list");
    let key4 = write_key(files.path(), 4);
    let ports: Vec<u16> = (0..4).map(|_| common::free_port()).collect();
    let dirs: Vec<_> = (0..4)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let peers = ports
            .iter()
            .filter(|p| **p != ports[i])
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let mut c = common::node_config(dirs[i].path(), net.clone(), &[relay], peers);
        c.listen = SocketAddr::from(([127, 0, 0, 1], ports[i]));
        nodes.push(start(c, common::key(i as u8 + 1)).await.expect("starts"));
    }
    let client = gridledger::wire::builder().build().expect("client");
    let peers4: Vec<u16> = ports[..3].to_vec();
    let mut rng = 0x9e37_79b9_u64;
    for round in 0..6 {
        let mut child = spawn(
            ports[3],
            dirs[3].path(),
            name,
            relay,
            &peers4,
            &key4,
            Some(&allow),
        );
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = 700 + rng % 1500;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        eprintln!("round {round}: killed after {wait} ms");
        let verify = Command::new(BIN)
            .args(["verify", "--data-dir"])
            .arg(dirs[3].path())
            .output()
            .expect("verify");
        assert!(
            verify.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    // Up once more: it catches up and votes again.
    let mut child = spawn(
        ports[3],
        dirs[3].path(),
        name,
        relay,
        &peers4,
        &key4,
        Some(&allow),
    );
    let target = json(&client, format!("http://127.0.0.1:{}/status", ports[0]))
        .await
        .and_then(|s| s["height"].as_u64())
        .unwrap_or(0)
        + 3;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let s = json(&client, format!("http://127.0.0.1:{}/status", ports[3])).await;
        if s.as_ref()
            .is_some_and(|s| s["finality"]["final_height"].as_u64().unwrap_or(0) >= target)
        {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the killed member never caught up with finality: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No member found an offence by it: it never voted twice for one height, whatever the
    // moment it died.
    for p in &ports {
        let e = json(&client, format!("http://127.0.0.1:{p}/evidence"))
            .await
            .expect("evidence");
        assert_eq!(
            e["offences"].as_array().map(Vec::len),
            Some(0),
            "node :{p}: {e}"
        );
    }
    // The same final history everywhere: each node's final block is on every other's chain.
    let finals: Vec<(u64, String)> = {
        let mut out = Vec::new();
        for p in &ports {
            let s = json(&client, format!("http://127.0.0.1:{p}/status"))
                .await
                .expect("status");
            out.push((
                s["finality"]["final_height"].as_u64().unwrap_or(0),
                s["finality"]["final_block"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            ));
        }
        out
    };
    for (h, id) in &finals {
        for p in &ports {
            let b = json(&client, format!("http://127.0.0.1:{p}/blocks/{h}"))
                .await
                .expect("block");
            assert_eq!(
                b["id"].as_str(),
                Some(id.as_str()),
                "node :{p} at final height {h}"
            );
        }
    }
    // Every record of the relay on the chain once.
    {
        let core = nodes[0].shared.lock().expect("lock");
        let tree = core.ledger.tree();
        let mut minutes: Vec<u32> = (1..=tree.height())
            .filter_map(|h| tree.main_at(h))
            .flat_map(|id| tree.keys_of(&id).to_vec())
            .map(|k| k.minute.0)
            .collect();
        let n = minutes.len();
        minutes.sort_unstable();
        minutes.dedup();
        assert_eq!(minutes.len(), n, "a minute twice");
        // The relay closes a minute a second; none of them is missing between the first and
        // the last on the chain.
        let span = minutes.last().copied().unwrap_or(0) - minutes.first().copied().unwrap_or(0) + 1;
        assert_eq!(n as u32, span, "a minute lost: {minutes:?}");
    }
    let _ = child.kill();
    let _ = child.wait();
    for n in nodes {
        n.stop().await;
    }
}

/// A node killed right after it read the relay, then repaired, remembers what it read: a
/// rewrite of those minutes, offered after the restart, is a witness conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_after_a_read_and_repaired_still_refuses_a_rewrite_of_it() {
    let (relay, stop) =
        common::relay_sim(SocketAddr::from(([127, 0, 0, 1], 0)), 1, 1.0, None).await;
    let files = tempfile::tempdir().expect("tempdir");
    let key = write_key(files.path(), 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = gridledger::wire::builder().build().expect("client");
    let mut child = spawn(port, dir.path(), "witness-kill", relay, &[], &key, None);
    // Until it has mined four records, then at once: SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = json(&client, format!("{base}/status")).await;
        if s.as_ref()
            .is_some_and(|s| s["records"].as_u64().unwrap_or(0) >= 4)
        {
            break;
        }
        assert!(Instant::now() < deadline, "it never mined: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    drop(stop);
    // And repaired: a new store is built beside the old one, which must carry the reads.
    let repaired = Command::new(BIN)
        .args(["repair", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("repair runs");
    assert!(
        repaired.status.success(),
        "{}{}",
        String::from_utf8_lossy(&repaired.stdout),
        String::from_utf8_lossy(&repaired.stderr)
    );
    // Its chain, read offline: the records it read.
    let ledger = gridledger::ledger::Ledger::open_existing(dir.path()).expect("opens");
    let tree = ledger.tree();
    let read: Vec<MinuteRecord> = (1..=tree.height())
        .filter_map(|h| ledger.block_at(h).ok().flatten())
        .flat_map(|b| b.records.into_iter())
        .filter_map(|r| MinuteRecord::decode(&r).ok())
        .collect();
    let net = ledger.network().clone();
    drop(ledger);
    assert!(read.len() >= 4);
    // A rival chain from the genesis block, longer, with every record's Vab changed.
    let mut parent = net.genesis().header;
    let mut forged = Vec::new();
    for r in read.iter().chain(read.iter().rev().take(2)) {
        let mut f = r.clone();
        if let Some(s) = f.samples.first_mut() {
            s.vab = Volts(s.vab.0 + 5_000);
        }
        if forged.len() >= read.len() {
            f.minute = relay_core::Minute(f.minute.0 + 1000 + forged.len() as u32);
        }
        let b = common::block_on(&parent, std::slice::from_ref(&f), &net, 7);
        parent = b.header;
        forged.push(b);
    }
    let mut child = spawn(port, dir.path(), "witness-kill", relay, &[], &key, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while json(&client, format!("{base}/status")).await.is_none() {
        assert!(Instant::now() < deadline, "it did not restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client
        .post(format!("{base}/blocks"))
        .body(forged[0].to_bytes())
        .send()
        .await
        .expect("POST /blocks");
    let code = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("witness conflict"), "{body}");
    let _ = child.kill();
    let _ = child.wait();
}
