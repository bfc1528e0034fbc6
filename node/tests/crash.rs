//! Crash safety with real SIGKILLs, and the CLI on a tampered data dir.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use gridledger::chain::BlockId;
use gridledger::ledger::Ledger;

const BIN: &str = env!("CARGO_BIN_EXE_gridledger");

/// A child appends blocks in a loop and is killed with SIGKILL at a random moment, 30
/// times over the same data dir. After every kill the data dir opens (which re-verifies
/// the whole chain) and holds every block the child reported as stored.
#[test]
fn sigkill_at_random_moments_loses_nothing_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash test seed {seed}");
    let mut reported: Vec<(u32, BlockId)> = Vec::new();
    for round in 0..30 {
        // xorshift64: a kill moment between 30 and 330 ms after the child starts.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let wait = Duration::from_millis(30 + seed % 300);
        let mut child = Command::new(BIN)
            .args(["debug-append", "--blocks", "100000", "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child starts");
        let stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut parts = line.split_whitespace();
                if let (Some("stored"), Some(h), Some(id)) =
                    (parts.next(), parts.next(), parts.next())
                {
                    if let (Ok(h), Some(id)) = (h.parse(), BlockId::from_hex(id)) {
                        lines.push((h, id));
                    }
                }
            }
            lines
        });
        std::thread::sleep(wait);
        child.kill().expect("SIGKILL delivered");
        let status = child.wait().expect("reaped");
        assert!(
            !status.success(),
            "round {round}: the child must die by the signal"
        );
        reported.extend(reader.join().expect("reader"));

        // The full check (signatures included, as `gridledger verify`).
        // A child killed before it made its data dir leaves none (never a half-made one).
        let ledger = match Ledger::open_read_only(dir.path()) {
            Err(gridledger::store::StoreError::NoChain(_)) if reported.is_empty() => continue,
            opened => {
                opened.unwrap_or_else(|e| panic!("round {round}: data dir does not verify: {e}"))
            }
        };
        for (h, id) in &reported {
            assert!(
                ledger.tree().is_main(id) && ledger.tree().height_of(id) == Some(*h),
                "round {round}: block {id} reported stored at {h} is missing"
            );
        }
    }
    assert!(
        reported.len() >= 30,
        "only {} blocks stored in 30 rounds",
        reported.len()
    );
    eprintln!(
        "{} blocks reported and kept across 30 SIGKILLs",
        reported.len()
    );
}

#[test]
fn verify_names_the_height_of_a_flipped_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["debug-append", "--blocks", "6", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(out.status.success());
    let ok = Command::new(BIN)
        .arg("verify")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("height 6"));

    // Find the block at height 4 in the database file through its signature, flip a byte.
    let ledger = Ledger::open_existing(dir.path()).expect("opens");
    let block = ledger.block_at(4).expect("reads").expect("exists");
    drop(ledger);
    // Every copy: redb writes pages copy-on-write, so stale ones may linger.
    let n = common::flip_stored(dir.path(), &block.signature, 0, 0x80);
    assert!(n > 0, "the signature is stored verbatim");

    let bad = Command::new(BIN)
        .arg("verify")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("height 4"), "{stderr}");

    let missing = Command::new(BIN)
        .arg("verify")
        .arg("--data-dir")
        .arg(dir.path().join("nope"))
        .output()
        .expect("runs");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no chain"));
}

/// `verify` and `export` show their progress on stderr: lines with the rate and the time
/// left when stderr is not a terminal (every step here: GRIDLEDGER_PROGRESS_SECS=0), and
/// a last line with the total; stdout keeps only the answer.
#[test]
fn verify_and_export_show_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["debug-append", "--blocks", "5000", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let verify = Command::new(BIN)
        .arg("verify")
        .arg("--data-dir")
        .arg(dir.path())
        .env("GRIDLEDGER_PROGRESS_SECS", "0")
        .output()
        .expect("runs");
    assert!(verify.status.success(), "{verify:?}");
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        err.contains("verify: 4096 of 5000 blocks, ") && err.contains("blocks/s, about "),
        "{err}"
    );
    assert!(err.contains("verify: 5000 blocks in "), "{err}");
    assert!(String::from_utf8_lossy(&verify.stdout).starts_with("ok: "));
    let export = Command::new(BIN)
        .args(["export", "--format", "csv", "--data-dir"])
        .arg(dir.path())
        .env("GRIDLEDGER_PROGRESS_SECS", "0")
        .output()
        .expect("runs");
    assert!(export.status.success(), "{export:?}");
    let err = String::from_utf8_lossy(&export.stderr);
    assert!(err.contains("export: 1024 of 5000 blocks, "), "{err}");
    assert!(err.contains("export: 5000 blocks in "), "{err}");
    assert!(String::from_utf8_lossy(&export.stdout).starts_with("height,block_id,"));
}
