//! Upgrades: a data dir written by the previous release (v0.1.0, the tag; the fixture
//! `fixtures/v0.1.0-datadir` is node 1 of its `demo --fast`, 13 blocks, final, with its
//! witness and votes) is opened by this one, which stamps it with its format; and a data
//! dir of a newer format is refused by this one with a clear message, never guessed at.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gridledger::store::{Store, FORMAT};

const BIN: &str = env!("CARGO_BIN_EXE_gridledger");

mod common;

use common::Proc;

fn copy_fixture(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0.1.0-datadir");
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(&from).expect("the fixture") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

#[test]
fn the_previous_release_data_dir_opens_and_is_stamped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    copy_fixture(&dir);
    assert_eq!(
        Store::open_read_only(&dir)
            .expect("opens")
            .format()
            .expect("format"),
        0,
        "the fixture predates format numbers"
    );
    // Read-only tools read it as it is, and leave it so.
    let verify = Command::new(BIN)
        .args(["verify", "--data-dir"])
        .arg(&dir)
        .output()
        .expect("verify");
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(said.contains("height 13"), "{said}");
    assert_eq!(
        Store::open_read_only(&dir)
            .expect("opens")
            .format()
            .expect("format"),
        0
    );
    // A node runs on it, serving the same chain, and stamps it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a port");
    let node = Proc(
        Command::new(BIN)
            .args([
                "run",
                "--network",
                "gridledger-demo",
                "--difficulty-bits",
                "16",
            ])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run"),
    );
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("curl")
            .args(["-s", "--fail", "--max-time", "2"])
            .arg(format!("http://127.0.0.1:{port}/status"))
            .output()
            .expect("curl");
        if String::from_utf8_lossy(&out.stdout).contains("\"height\":13") {
            break;
        }
        assert!(
            Instant::now() < until,
            "the node did not serve the old chain in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(node);
    let store = Store::open_read_only(&dir).expect("opens");
    assert_eq!(store.format().expect("format"), FORMAT);
}

#[test]
fn a_newer_format_is_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    copy_fixture(&dir);
    {
        let store = Store::open_existing(&dir).expect("opens");
        store.set_format(FORMAT + 1).expect("stamps");
    }
    let newer = format!("format {}", FORMAT + 1);
    for args in [
        vec!["verify", "--data-dir"],
        vec!["export", "--format", "csv", "--data-dir"],
        vec![
            "run",
            "--network",
            "gridledger-demo",
            "--difficulty-bits",
            "16",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .arg(&dir)
            .output()
            .expect("gridledger");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("newer gridledger") && err.contains(&newer),
            "{args:?}: {err}"
        );
    }
    // And nothing was changed: the library refuses it too, naming the stamp it found.
    match Store::open_read_only(&dir) {
        Err(gridledger::store::StoreError::NewerFormat {
            found, supported, ..
        }) => {
            assert_eq!((found, supported), (FORMAT + 1, FORMAT));
        }
        other => panic!("a newer data dir opened: {other:?}"),
    }
}

#[test]
fn a_damaged_format_stamp_is_damage_not_an_unstamped_data_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    copy_fixture(&dir);
    {
        let db = redb::Database::open(dir.join("chain.redb")).expect("opens");
        let txn = db.begin_write().expect("txn");
        {
            let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
            let mut t = txn.open_table(meta).expect("meta");
            t.insert("format", [2u8, 0, 0].as_slice()).expect("row");
        }
        txn.commit().expect("commits");
    }
    let out = Command::new(BIN)
        .args(["verify", "--data-dir"])
        .arg(&dir)
        .output()
        .expect("gridledger");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("format stamp is 3 bytes"), "{err}");
    // A writable open refuses it too, and leaves the stamp as it was.
    assert!(matches!(
        Store::open_existing(&dir),
        Err(gridledger::store::StoreError::BadStamp(_))
    ));
    let db = redb::Database::open(dir.join("chain.redb")).expect("opens");
    let txn = redb::ReadableDatabase::begin_read(&db).expect("txn");
    let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
    let t = txn.open_table(meta).expect("meta");
    let v = t.get("format").expect("get").expect("still there");
    assert_eq!(v.value(), [2u8, 0, 0].as_slice());
}
