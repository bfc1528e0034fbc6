//! `gridledger backup` and `restore` (issue 35): a running node copied while blocks arrive,
//! restored, verified and rejoined; a data dir a kill -9 left unclean; and every way a
//! backup file can be cut, altered or forged, each refused before the data dir changes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridledger::backup::archive::{Frame, Reader, Writer};
use gridledger::chain::{Block, Network};
use gridledger::ledger::Ledger;
use gridledger::run::start;

const BIN: &str = env!("CARGO_BIN_EXE_gridledger");

fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("gridledger runs")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that the command exited with `code` and named `what` on stderr.
fn refused_saying(o: &Output, code: i32, what: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(what),
        "wanted '{what}': {}",
        text(o)
    );
}

/// Asserts that the command succeeded and said `what` on stdout.
fn done_saying(o: &Output, what: &str) {
    assert!(o.status.success(), "{}", text(o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(what),
        "wanted '{what}': {}",
        text(o)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A chain of `n` blocks of relay `relay`'s records, from `parent`, mined by key 3.
fn blocks_on(
    mut parent: gridledger::chain::Header,
    n: u32,
    relay: u32,
    net: &Network,
) -> Vec<Block> {
    let mut out = Vec::new();
    for _ in 0..n {
        let b = common::block_on(&parent, &[common::record(relay, parent.height)], net, 3);
        parent = b.header;
        out.push(b);
    }
    out
}

/// Builds a data dir of `n` blocks, offline.
fn build(dir: &Path, net: &Network, n: u32) {
    let mut ledger = Ledger::open(dir, net.clone()).expect("opens");
    let tip = ledger.tip_header().expect("tip");
    for r in ledger.add_batch(blocks_on(tip, n, 50, net), u64::MAX / 2) {
        r.expect("stored");
    }
}

/// The frames of a backup that carry the data dir (rows and block-file bytes), in order.
fn contents(path: &Path) -> Vec<Frame> {
    let f = std::fs::File::open(path).expect("backup opens");
    let mut r = Reader::new(std::io::BufReader::new(f)).expect("a backup");
    let mut out = Vec::new();
    while let Some(frame) = r.next_frame().expect("a whole backup") {
        if matches!(frame, Frame::Row { .. } | Frame::Blocks(_)) {
            out.push(frame);
        }
    }
    out
}

fn rows_of(frames: &[Frame], table: &str) -> usize {
    frames
        .iter()
        .filter(|f| matches!(f, Frame::Row { table: t, .. } if t == table))
        .count()
}

/// The backup at `from` rewritten frame by frame through `edit` (`None` drops a frame),
/// sealed anew: a forgery whose seal is right.
fn reseal(from: &Path, to: &Path, edit: impl Fn(Frame) -> Option<Frame>) {
    let f = std::fs::File::open(from).expect("opens");
    let mut r = Reader::new(std::io::BufReader::new(f)).expect("a backup");
    let mut w = Writer::new(Vec::new()).expect("writer");
    while let Some(frame) = r.next_frame().expect("whole") {
        let Some(frame) = edit(frame) else { continue };
        match frame {
            Frame::Manifest(m) => w.manifest(&m),
            Frame::Row { table, key, value } => w.row(&table, &key, &value),
            Frame::Blocks(b) => w.blocks(&b),
            Frame::File { name, bytes } => w.file(&name, &bytes),
        }
        .expect("written");
    }
    std::fs::write(to, w.finish().expect("sealed").0).expect("written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_backed_up_under_load_restores_whole_verifies_and_rejoins() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a_dir, r_dir) = (tmp.path().join("a"), tmp.path().join("restored"));
    let net = Network::new("backup-test", 0);
    // A chain long enough that a copy takes a while, then a node that reads a relay (so
    // that it keeps a witness) and takes blocks from outside while it is copied.
    build(&a_dir, &net, 3000);
    let (relay, _relay_stop) = common::relay_sim(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        1,
        0.5,
        None,
    )
    .await;
    let a = start(
        common::node_config(&a_dir, net.clone(), &[relay], vec![]),
        common::key(1),
    )
    .await
    .expect("node A starts");
    let base = format!("http://{}", a.addr);
    let client = reqwest::Client::new();
    // A mines a few blocks of its own reads first: then it has a witness to copy.
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::status(&client, a.addr.port()).await["height"]
        .as_u64()
        .unwrap_or(0)
        < 3002
    {
        assert!(
            Instant::now() < deadline,
            "node A did not mine its relay's records"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        a_dir.join("control.sock").exists(),
        "the running node has its control socket"
    );

    // The load: blocks of relay 60 on A's tip, posted back to back until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, accepted, shared, net, client, base) = (
            Arc::clone(&stop),
            Arc::clone(&accepted),
            Arc::clone(&a.shared),
            net.clone(),
            client.clone(),
            base.clone(),
        );
        tokio::spawn(async move {
            // Minutes from the test records' first: closed ones (a record of a minute still
            // to come is refused), a few thousand at most.
            let mut minute = 0;
            let began = Instant::now();
            while !stop.load(Ordering::Relaxed)
                && began.elapsed() < Duration::from_secs(60)
                && minute < 10_000
            {
                let tip = shared
                    .lock()
                    .expect("lock")
                    .ledger
                    .tip_header()
                    .expect("tip");
                minute += 1;
                let b = common::block_on(&tip, &[common::record(60, minute)], &net, 3);
                let r = client
                    .post(format!("{base}/blocks"))
                    .header("content-type", "application/octet-stream")
                    .body(b.to_bytes())
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted.load(Ordering::Relaxed) < 5 {
        assert!(
            Instant::now() < deadline,
            "node A does not take the load's blocks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = tmp.path().join("a.backup");
    // A copy overlaps the load when a block was accepted while it ran; a copy so quick
    // that none was is made again (a few times at most).
    let mut tries = 0;
    let (o, during) = loop {
        tries += 1;
        let before = accepted.load(Ordering::Relaxed);
        let (out, dir) = (out.clone(), a_dir.clone());
        let o = tokio::task::spawn_blocking(move || {
            cli(&["backup", "--data-dir", s(&dir), "--out", s(&out), "--force"])
        })
        .await
        .expect("joins");
        let during = accepted.load(Ordering::Relaxed) - before;
        if during > 0 || !o.status.success() || tries == 5 {
            break (o, during);
        }
    };
    assert!(o.status.success(), "backup failed: {}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(said.contains("copied from the running node"), "{said}");
    assert!(
        during > 0,
        "no block arrived while the backup ran: not a backup under load"
    );
    // The backup is the node's private state: its owner's alone.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&out).expect("exists").permissions(),
    );
    assert_eq!(mode & 0o077, 0, "backup readable by others: {mode:o}");
    let original = contents(&out);
    assert!(
        rows_of(&original, "witness") > 0,
        "the witness is in the backup"
    );
    assert!(
        rows_of(&original, "main") >= 3000,
        "the chain is in the backup"
    );
    let f = std::fs::File::open(&out).expect("opens");
    let Some(Frame::Manifest(m)) = Reader::new(f).expect("backup").next_frame().expect("frame")
    else {
        panic!("no manifest first");
    };
    assert!(
        !std::fs::read(&out)
            .expect("reads")
            .windows(9)
            .any(|w| w == b"miner.key"),
        "a backup without --with-key holds no key"
    );

    // Restore, and nothing is lost: a backup of the restored data dir carries the same
    // rows and bytes, and the restored tip is the one the manifest names, on A's chain.
    let o = cli(&["restore", "--from", s(&out), "--data-dir", s(&r_dir)]);
    assert!(o.status.success(), "restore failed: {}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        said.contains(&format!(
            "ok: network 'backup-test' (0 bits), height {}",
            m.height
        )),
        "{said}"
    );
    assert!(said.contains(&m.tip), "{said}");
    assert!(
        !r_dir.join(".restoring").exists(),
        "the staging dir is gone"
    );
    let again = tmp.path().join("again.backup");
    let o = cli(&["backup", "--data-dir", s(&r_dir), "--out", s(&again)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        contents(&again) == original,
        "the restored data dir differs from what was backed up"
    );
    {
        let core = a.shared.lock().expect("lock");
        let at = core
            .ledger
            .tree()
            .main_at(m.height)
            .expect("A has that height");
        assert_eq!(at.to_string(), m.tip, "the backup's tip is on A's chain");
    }

    // The restored node rejoins: it reaches A's tip.
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load ends");
    let r = start(
        common::node_config(&r_dir, net.clone(), &[], vec![base.clone()]),
        common::key(2),
    )
    .await
    .expect("the restored node starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a_tip = common::status(&client, a.addr.port()).await["tip"].clone();
        let r_tip = common::status(&client, r.addr.port()).await["tip"].clone();
        if a_tip == r_tip {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restored node did not rejoin: {r_tip} vs {a_tip}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    r.stop().await;
    a.stop().await;
    assert!(
        !a_dir.join("control.sock").exists(),
        "a stopped node removes its socket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_left_unclean_by_kill_9_backs_up_and_restores() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node");
    let (relay, _relay_stop) = common::relay_sim(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        1,
        0.5,
        None,
    )
    .await;
    let port = common::free_port();
    let mut node = common::Proc(
        Command::new(BIN)
            .args([
                "run",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                s(&dir),
            ])
            .args(["--network", "unclean", "--difficulty-bits", "4"])
            .args(["--relay", &format!("{relay}/1"), "--poll-secs", "1"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = common::http_get(&format!("http://127.0.0.1:{port}/status"))
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["height"].as_u64())
            .unwrap_or(0);
        if h >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the node did not mine 3 blocks");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.0.kill().expect("SIGKILL");
    let _ = node.0.wait();
    assert!(
        dir.join("control.sock").exists(),
        "a killed node leaves its socket behind"
    );

    let out = tmp.path().join("unclean.backup");
    let o = cli(&[
        "backup",
        "--data-dir",
        s(&dir),
        "--out",
        s(&out),
        "--with-key",
    ]);
    assert!(
        o.status.success(),
        "backup of an unclean data dir failed: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("at rest"),
        "{}",
        text(&o)
    );
    let restored = tmp.path().join("restored");
    let o = cli(&["restore", "--from", s(&out), "--data-dir", s(&restored)]);
    assert!(o.status.success(), "{}", text(&o));
    let verified = cli(&["verify", "--data-dir", s(&dir)]);
    assert!(verified.status.success(), "{}", text(&verified));
    let line = String::from_utf8_lossy(&verified.stdout).trim().to_owned();
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l == line),
        "the restored data dir verifies as the original does ({line}): {}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(dir.join("miner.key")).expect("key"),
        std::fs::read(restored.join("miner.key")).expect("restored key"),
        "--with-key restores the key"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(restored.join("miner.key"))
            .expect("key")
            .permissions(),
    );
    assert_eq!(
        mode & 0o077,
        0,
        "the restored key is its owner's alone: {mode:o}"
    );
}

/// What a refused restore must leave: no chain, no staging files.
fn untouched(dir: &Path) {
    for name in ["chain.redb", "blocks.dat", ".restoring", "miner.key"] {
        assert!(!dir.join(name).exists(), "a refused restore left {name}");
    }
}

#[test]
fn cut_altered_and_forged_backups_are_refused_before_anything_changes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("src");
    let net = Network::new("hostile-backup", 0);
    build(&dir, &net, 40);
    let good = tmp.path().join("good.backup");
    let o = cli(&["backup", "--data-dir", s(&dir), "--out", s(&good)]);
    assert!(o.status.success(), "{}", text(&o));
    let bytes = std::fs::read(&good).expect("reads");
    let mut case = 0;
    let mut refused = |file: &Path, code: i32, needle: &str| {
        case += 1;
        let target = tmp.path().join(format!("target-{case}"));
        let o = cli(&["restore", "--from", s(file), "--data-dir", s(&target)]);
        assert_eq!(o.status.code(), Some(code), "case {case}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(needle),
            "case {case}: wanted '{needle}': {}",
            text(&o)
        );
        untouched(&target);
    };
    let bad = tmp.path().join("bad.backup");
    // Cut short anywhere: refused.
    for cut in [0, 7, 12, 40, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&bad, &bytes[..cut]).expect("written");
        refused(&bad, 2, if cut < 12 { "" } else { "cut short" });
    }
    // A byte flipped in the middle: the seal says so.
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    std::fs::write(&bad, &flipped).expect("written");
    refused(&bad, 2, "backup");
    // Forgeries with a right seal: a row of the wrong width, a table nobody has, a block
    // altered (the chain does not verify), a newer format, a file it has no place for.
    reseal(&good, &bad, |f| match f {
        Frame::Row { table, value, .. } if table == "main" => Some(Frame::Row {
            table,
            key: vec![1, 2, 3],
            value,
        }),
        f => Some(f),
    });
    refused(&bad, 2, "backup row of table 'main'");
    reseal(&good, &bad, |f| match f {
        Frame::Row { table, key, value } if table == "ids" => Some(Frame::Row {
            table: "mystery".into(),
            key,
            value,
        }),
        f => Some(f),
    });
    refused(&bad, 2, "mystery");
    reseal(&good, &bad, |f| match f {
        Frame::Blocks(mut b) => {
            let at = b.len() - 40;
            b[at] ^= 0x01;
            Some(Frame::Blocks(b))
        }
        f => Some(f),
    });
    refused(&bad, 2, "does not verify");
    reseal(&good, &bad, |f| match f {
        Frame::Manifest(mut m) => {
            m.format = 99;
            Some(Frame::Manifest(m))
        }
        f => Some(f),
    });
    refused(&bad, 1, "format 99");
    reseal(&good, &bad, |f| match f {
        Frame::Blocks(b) => Some(Frame::File {
            name: "../../etc/passwd".into(),
            bytes: b,
        }),
        f => Some(f),
    });
    refused(&bad, 2, "does not restore");
    reseal(&good, &bad, |f| match f {
        Frame::Row { table, .. } if table == "meta" => None,
        f => Some(f),
    });
    refused(&bad, 2, "no network stamp");

    // A data dir that holds a chain is not overwritten, unless --force, which moves it aside.
    let other = tmp.path().join("occupied");
    build(&other, &Network::new("other", 0), 5);
    let o = cli(&["restore", "--from", s(&good), "--data-dir", s(&other)]);
    refused_saying(&o, 1, "already holds");
    let o = cli(&[
        "restore",
        "--from",
        s(&good),
        "--data-dir",
        s(&other),
        "--force",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let aside: Vec<PathBuf> = std::fs::read_dir(&other)
        .expect("lists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".replaced-"))
        .collect();
    assert_eq!(
        aside.len(),
        2,
        "the old chain and block file are kept aside: {aside:?}"
    );
}

#[test]
fn a_table_the_backup_does_not_know_fails_the_backup_rather_than_being_left_out() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("src");
    build(&dir, &Network::new("unknown-table", 0), 3);
    {
        let db = redb::Database::open(dir.join("chain.redb")).expect("opens");
        let txn = db.begin_write().expect("txn");
        {
            let def: redb::TableDefinition<u32, u32> = redb::TableDefinition::new("mystery");
            txn.open_table(def)
                .expect("table")
                .insert(1, 2)
                .expect("row");
        }
        txn.commit().expect("commits");
    }
    let out = tmp.path().join("b");
    let o = cli(&["backup", "--data-dir", s(&dir), "--out", s(&out)]);
    refused_saying(&o, 1, "'mystery'");
    assert!(!out.exists(), "no backup file is left");
    assert!(
        !tmp.path().join("b.partial").exists(),
        "no partial file is left"
    );
}

#[test]
fn a_node_that_never_mined_backs_up_and_restores() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("empty");
    build(&dir, &Network::new("never-mined", 0), 0);
    let out = tmp.path().join("empty.backup");
    let o = cli(&["backup", "--data-dir", s(&dir), "--out", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let restored = tmp.path().join("restored");
    let o = cli(&["restore", "--from", s(&out), "--data-dir", s(&restored)]);
    done_saying(&o, "ok: network 'never-mined' (0 bits), height 0");
}

/// The control socket is the node's user's alone (mode 0600), but what comes over it is
/// still checked: garbage is refused by name and takes no slot, and a client that asks for
/// a copy and then reads nothing loses it after the stall limit, freeing the slot.
#[test]
fn garbage_and_a_client_that_stops_reading_leave_the_node_free_for_the_next() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node");
    // Bigger than a socket's buffers: the node must block on a client that reads nothing.
    build(&dir, &Network::new("stall", 0), 2000);
    let port = common::free_port();
    let _node = common::Proc(
        Command::new(BIN)
            .args([
                "run",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                s(&dir),
            ])
            .args(["--network", "stall", "--difficulty-bits", "0"])
            .env("GRIDLEDGER_BACKUP_STALL_SECS", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts"),
    );
    let socket = dir.join("control.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stalled = loop {
        if let Ok(c) = std::os::unix::net::UnixStream::connect(&socket) {
            break c;
        }
        assert!(Instant::now() < deadline, "no control socket");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Garbage on the socket gets a named refusal and takes no slot: a word, a line longer
    // than any request, a rate that is not a number, bytes that are not UTF-8.
    for garbage in [
        &b"hello\n"[..],
        &[b'x'; 300][..],
        &b"backup 1 max-rate=fast\n"[..],
        &b"backup 1\xff\xfe\n"[..],
    ] {
        let mut c = std::os::unix::net::UnixStream::connect(&socket).expect("connects");
        c.write_all(garbage).expect("sent");
        let mut answer = String::new();
        c.read_to_string(&mut answer).expect("an answer");
        assert!(
            answer.starts_with("ERR unknown request"),
            "{garbage:?} answered {answer:?}"
        );
    }
    stalled.write_all(b"backup 1\n").expect("request");
    let mut head = [0u8; 8];
    stalled.read_exact(&mut head).expect("the copy starts");
    assert_eq!(&head, b"GLBACKUP");
    // While the stalled copy holds the slot, another is refused, and says why.
    let out = tmp.path().join("b");
    let o = cli(&["backup", "--data-dir", s(&dir), "--out", s(&out)]);
    refused_saying(&o, 1, "already being made");
    // Past the stall limit the node gives up on it, and the next copy is whole. (The limit
    // holds for each write, and the write blocked on may have sent part of its bytes
    // first: up to twice the limit.)
    std::thread::sleep(Duration::from_secs(7));
    let o = cli(&["backup", "--data-dir", s(&dir), "--out", s(&out)]);
    done_saying(&o, "height 2000");
    // The stalled client's copy ends short of its seal: never a whole-looking backup.
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    let mut all = head.to_vec();
    all.extend_from_slice(&rest);
    let mut r = Reader::new(all.as_slice()).expect("a backup's header");
    let mut end = Ok(Some(()));
    while let Ok(Some(_)) = end {
        end = r.next_frame().map(|f| f.map(|_| ()));
    }
    assert!(end.is_err(), "the stalled copy read as whole");
}
