//! Issue 30's outside check: relay-sim's signed record, read over Modbus TCP by pymodbus and
//! verified by PyNaCl (libsodium), through `tools/relay_signature.py`, which rebuilds the
//! record's canonical bytes from `docs/book/src/registers.md` alone. No gridledger code checks it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use relay_core::{MinuteRecord, RelayId};

const SEED: [u8; 32] = [42; 32];

fn pythonpath() -> Option<std::ffi::OsString> {
    std::env::var_os("GRIDLEDGER_PYTHONPATH").or_else(|| {
        let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pydeps");
        local.is_dir().then(|| local.into_os_string())
    })
}

/// `python3` able to import pymodbus and nacl, or `None` (said loudly; a failure when
/// GRIDLEDGER_REQUIRE_TOOLS is set, as in CI).
fn python() -> Option<Command> {
    let with_path = || {
        let mut c = Command::new("python3");
        if let Some(p) = pythonpath() {
            c.env("PYTHONPATH", p);
        }
        c
    };
    let ok = with_path()
        .args(["-c", "import pymodbus, nacl"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(with_path());
    }
    let why = "python3 cannot import pymodbus and nacl: python3 -m pip install --target \
               target/pydeps pymodbus==3.11.4 pynacl==1.6.2 (or set GRIDLEDGER_PYTHONPATH)";
    if std::env::var_os("GRIDLEDGER_REQUIRE_TOOLS").is_some() {
        panic!("{why} (GRIDLEDGER_REQUIRE_TOOLS is set)");
    }
    eprintln!("\n*** SKIPPED: {why} ***\n");
    None
}

fn tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/relay_signature.py")
}

fn check(py: &mut Command, addr: SocketAddr, key: &[u8; 32]) -> (i32, serde_json::Value) {
    let key_hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let out = py
        .arg(tool())
        .arg(addr.to_string())
        .args(["--key", &key_hex])
        .output()
        .expect("python3 runs");
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymodbus_and_pynacl_verify_relay_sims_signature() {
    let Some(_) = python() else { return };
    let keys = relay_sim::keys::RelayKeys::from_seeds([(RelayId(7), SEED)]);
    let pk = keys.public(RelayId(7)).expect("a key");
    let sim = relay_sim::Simulator::bind(relay_sim::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        relay_id: 7,
        minute_secs: 1.0,
        keys,
        ..relay_sim::Config::default()
    })
    .await
    .expect("binds");
    let addr = sim.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sim.run(async move {
        let _ = rx.await;
    }));
    // A record or two closes (a relay minute a second).
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let (code, v) = tokio::task::spawn_blocking(move || {
        check(&mut python().expect("checked above"), addr, &pk)
    })
    .await
    .expect("joins");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["relay"], 7);
    assert_eq!(v["served_key"].as_str(), Some(hex(&pk).as_str()));
    // The bytes Python rebuilt from the registers are the record's canonical bytes.
    let bytes = unhex(v["record"].as_str().expect("record hex"));
    let record = MinuteRecord::decode(&bytes).expect("a canonical record");
    assert_eq!(record.relay, RelayId(7));
    assert_eq!(
        u64::from(record.minute.0),
        v["minute"].as_u64().expect("minute")
    );

    // Under any other key the same signature fails: the check can fail.
    let other = ed25519_dalek::SigningKey::from_bytes(&[1; 32])
        .verifying_key()
        .to_bytes();
    let (code, v) = tokio::task::spawn_blocking(move || {
        check(&mut python().expect("checked above"), addr, &other)
    })
    .await
    .expect("joins");
    assert_eq!(
        (code, &v["valid"]),
        (1, &serde_json::Value::Bool(false)),
        "{v}"
    );
    let _ = tx.send(());
    let _ = task.await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}
