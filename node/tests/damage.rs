//! A damaged store: `verify` and `export` never panic and never write to it, `run` refuses
//! it with a way out, and `repair` brings the node back to its peers' tip.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use gridledger::ledger::Ledger;
use gridledger::store::DB_FILE;

const BIN: &str = env!("CARGO_BIN_EXE_gridledger");

/// xorshift64*: repeatable noise from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// One tool run on one flipped file: flip number, command, exit code, stderr.
type Run = (usize, &'static str, Option<i32>, String);

fn fingerprint(path: &Path) -> (Vec<u8>, SystemTime) {
    let bytes = std::fs::read(path).expect("read");
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime");
    (bytes, mtime)
}

/// Runs `gridledger ARGS --data-dir DIR`, output discarded but stderr; returns the exit code
/// (None: killed by a signal, an abort) and stderr.
fn tool(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn append(dir: &Path, blocks: u32) {
    let out = Command::new(BIN)
        .args([
            "debug-append",
            "--blocks",
            &blocks.to_string(),
            "--data-dir",
        ])
        .arg(dir)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn random_byte_flips_never_crash_verify_or_export_nor_change_the_file() {
    let source = tempfile::tempdir().expect("tempdir");
    append(source.path(), 40);
    // Both files of the data dir; each flip goes into one of them (the database's indexes
    // and structures, or the block file's entries).
    let files = [DB_FILE, gridledger::blockfile::FILE];
    let originals: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(source.path().join(f)).expect("data dir file"))
        .collect();
    // Where the data is: flips in the unused tail of the database test little.
    let used: Vec<Vec<usize>> = originals
        .iter()
        .map(|o| (0..o.len()).filter(|&i| o[i] != 0).collect())
        .collect();
    assert!(used.iter().all(|u| !u.is_empty()));

    // GRIDLEDGER_FLIP_SEED tries another set of flips.
    let seed = std::env::var("GRIDLEDGER_FLIP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6772_6964_6c65_6467u64)
        | 1;
    eprintln!(
        "flip test seed {seed:#x}, files {} and {} bytes, {} and {} non-zero",
        originals[0].len(),
        originals[1].len(),
        used[0].len(),
        used[1].len()
    );
    let flips = 500usize;
    let deadline = Instant::now() + Duration::from_secs(420);
    let work: Vec<(usize, usize, u8)> = {
        let mut rng = Rng(seed);
        (0..flips)
            .map(|n| {
                // Three in four flips in the database (its structures are the harder
                // input), one in four in the block file.
                let which = usize::from(n % 4 == 3);
                let (o, u) = (&originals[which], &used[which]);
                let at = if n % 8 == 0 {
                    (rng.next() % o.len() as u64) as usize
                } else {
                    u[(rng.next() % u.len() as u64) as usize]
                };
                (which, at, 1u8 << (rng.next() % 8))
            })
            .collect()
    };
    // Two workers: the machine has two cores.
    let results: Vec<Vec<Run>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|w| {
                let (work, originals, files) = (&work, &originals, &files);
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (n, (which, at, bit)) in work.iter().enumerate().filter(|(n, _)| n % 2 == w)
                    {
                        if Instant::now() > deadline {
                            break;
                        }
                        let dir = tempfile::tempdir().expect("tempdir");
                        for (i, (name, o)) in files.iter().zip(originals).enumerate() {
                            let mut bytes = o.clone();
                            if i == *which {
                                bytes[*at] ^= bit;
                            }
                            std::fs::write(dir.path().join(name), &bytes).expect("write");
                        }
                        let file = dir.path().join(files[*which]);
                        let before = fingerprint(&file);
                        for cmd in ["verify", "export"] {
                            let (code, stderr) = tool(&[cmd], dir.path());
                            let after = fingerprint(&file);
                            assert!(
                                after == before,
                                "flip {n} at {at}: `{cmd}` changed the file"
                            );
                            out.push((n, cmd, code, stderr));
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let results: Vec<_> = results.into_iter().flatten().collect();
    let mut by_code = std::collections::BTreeMap::<Option<i32>, usize>::new();
    for (n, cmd, code, stderr) in &results {
        *by_code.entry(*code).or_default() += 1;
        assert!(
            matches!(code, Some(0..=2)),
            "flip {n}: `{cmd}` exited {code:?}: {stderr}"
        );
        if *code != Some(0) {
            let lines = stderr.lines().count();
            assert_eq!(lines, 1, "flip {n}: `{cmd}` says one line: {stderr}");
            assert!(!stderr.contains("panicked"), "flip {n}: {stderr}");
        }
    }
    eprintln!("exit codes over {} runs: {by_code:?}", results.len());
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for (_, _, _, stderr) in &results {
        if let Some(line) = stderr.lines().next() {
            let kind: String = line.chars().take(60).collect();
            *reasons.entry(kind).or_default() += 1;
        }
    }
    eprintln!("reasons: {reasons:#?}");
    assert!(
        results.len() >= 2 * flips,
        "only {} of {} runs within the time bound",
        results.len(),
        2 * flips
    );
    // The flips must reach the data: some runs find damage.
    assert!(
        by_code.get(&Some(2)).copied().unwrap_or(0) > 0,
        "{by_code:?}"
    );
}

#[test]
fn verify_and_export_leave_a_killed_nodes_file_alone() {
    // A store that was not closed cleanly needs redb's repair before it is read: the offline
    // tools do it on a scratch copy, never on the data dir.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BIN)
        .args(["debug-append", "--blocks", "100000", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let file = dir.path().join(DB_FILE);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&file).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "no store written");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("killed");
    let _ = child.wait();
    let before = fingerprint(&file);
    for cmd in ["verify", "export"] {
        let (code, stderr) = tool(&[cmd], dir.path());
        assert_eq!(code, Some(0), "`{cmd}`: {stderr}");
        assert!(fingerprint(&file) == before, "`{cmd}` changed the file");
    }
}

/// Damage in the middle of a node's chain: `run` refuses to start and says how to recover;
/// `repair --from-peer` keeps the good blocks, fetches the rest, and the node's chain then
/// equals the peer's, every record included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_brings_a_damaged_node_back_to_its_peers_tip() {
    let net = gridledger::chain::Network::new("crash-test", 4);
    // The peer: a node serving a chain of 30 blocks.
    let peer_dir = tempfile::tempdir().expect("tempdir");
    append(peer_dir.path(), 30);
    let peer = gridledger::run::start(
        common::node_config(peer_dir.path(), net.clone(), &[], Vec::new()),
        common::key(3),
    )
    .await
    .expect("peer starts");
    let peer_url = format!("http://{}", peer.addr);

    // Our node had the same chain; a byte of block 12 is flipped in every stored copy.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(peer_dir.path().join(DB_FILE), dir.path().join(DB_FILE)).ok();
    let (peer_tip, peer_records) = {
        let core = peer.shared.lock().expect("lock");
        let s = core.ledger.summary();
        (s.tip, s.records)
    };
    // (The peer holds its file open; our copy above may be mid-write, so rebuild ours from
    // a clean export of the same blocks instead.)
    let _ = std::fs::remove_file(dir.path().join(DB_FILE));
    // Our node ran with a relay registry (relay 99, none of whose records are on this
    // chain): the repaired store keeps it.
    let mut ours_net = net.clone();
    ours_net.registry = gridledger::chain::Registry::parse(&format!(
        "99 {}\n",
        hex::encode(common::key(9).verifying_key().to_bytes())
    ))
    .expect("a registry");
    {
        let mut ours = Ledger::open(dir.path(), ours_net.clone()).expect("opens");
        let core = peer.shared.lock().expect("lock");
        for h in 1..=core.ledger.tree().height() {
            let b = core.ledger.block_at(h).expect("read").expect("block");
            ours.add(b, common::now_ms()).expect("adds");
        }
    }
    let damaged = {
        let ledger = Ledger::open_existing(dir.path()).expect("opens");
        ledger.block_at(12).expect("reads").expect("exists")
    };
    // A record byte (its Merkle root no longer matches, and its block file entry's
    // checksum), which a node's start-up checks under the verified mark too (a signature
    // there is left to `gridledger verify`).
    let rec = damaged.records[0].clone();
    assert!(common::flip_stored(dir.path(), &rec, rec.len() - 1, 0x01) > 0);

    // `run` refuses, exit 2, naming the height and the way out.
    let out = Command::new(BIN)
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--network",
            "crash-test",
            "--difficulty-bits",
            "4",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("height 12"), "{stderr}");
    assert!(stderr.contains("gridledger repair"), "{stderr}");

    // Repair from the peer.
    let out = tokio::task::spawn_blocking({
        let (dir, peer_url) = (dir.path().to_owned(), peer_url.clone());
        move || {
            Command::new(BIN)
                .arg("repair")
                .arg("--data-dir")
                .arg(&dir)
                .args(["--from-peer", &peer_url])
                .output()
                .expect("runs")
        }
    })
    .await
    .expect("joined");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("kept 11 blocks"), "{stdout}");
    assert!(stdout.contains("fetched 19"), "{stdout}");
    // The damaged files (database and block file) are kept beside the new ones.
    let kept = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("damaged"))
        .count();
    assert_eq!(kept, 2);

    let (code, stderr) = tool(&["verify"], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    let repaired = Ledger::open_read_only(dir.path()).expect("opens");
    let s = repaired.summary();
    assert_eq!((s.tip, s.records), (peer_tip, peer_records));
    assert_eq!(
        repaired.network().registry,
        ours_net.registry,
        "the repaired store keeps the relay registry"
    );
    peer.stop().await;
}

/// Rule 9 holds for stored chains too: a block written straight into a data dir (past the
/// node's validation) with a record whose minute closes after the block's time makes
/// `verify` exit 2 naming the height and the rule.
#[test]
fn verify_refuses_a_stored_record_from_the_future() {
    use gridledger::chain::{assemble, BlockTree, RecordKey};
    let dir = tempfile::tempdir().expect("tempdir");
    let net = gridledger::chain::Network::new("crash-test", 4);
    let store =
        gridledger::store::Store::open(dir.path(), &net.name, net.bits, true).expect("store");
    let genesis = net.genesis();
    let mut tree = BlockTree::new(&genesis.header);
    let record = common::record(1, 0);
    let closes = gridledger::chain::validate::minute_closes_ms(record.minute);
    let block = assemble(
        &genesis.header,
        std::slice::from_ref(&record),
        &common::key(1),
        closes - 60_000,
        net.bits,
        &std::sync::atomic::AtomicBool::new(false),
    )
    .expect("mined");
    let change = tree.insert(
        &block.header,
        vec![RecordKey {
            relay: record.relay,
            minute: record.minute,
        }],
    );
    store
        .commit(&block, &block.id(), &change, &tree)
        .expect("stored");
    drop(store);
    let (code, stderr) = tool(&["verify"], dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("height 1") && stderr.contains("from the future"),
        "{stderr}"
    );
}
