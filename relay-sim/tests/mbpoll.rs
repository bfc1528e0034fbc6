//! An outside Modbus client (Debian's `mbpoll`) reads the relay-sim *binary* following
//! only `docs/book/src/registers.md`, and what it prints matches the register map's decoding.
//!
//! When mbpoll is not installed the test says so loudly and skips; with
//! `GRIDLEDGER_REQUIRE_TOOLS=1` (CI sets it) a missing mbpoll fails the test instead.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use relay_core::registers::{decode_live, decode_record, LIVE, RECORD};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{RecordFlags, RelayId};
use tokio_modbus::prelude::*;

/// Kills the child when the test ends, pass or fail.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mbpoll_available() -> bool {
    let found = Command::new("mbpoll").arg("-V").output().is_ok();
    if !found {
        let required = std::env::var("GRIDLEDGER_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "mbpoll is required (GRIDLEDGER_REQUIRE_TOOLS=1) but not installed"
        );
        eprintln!("\n**** SKIPPED: mbpoll is not installed (apt-get install mbpoll); set GRIDLEDGER_REQUIRE_TOOLS=1 to make this a failure ****\n");
    }
    found
}

/// Starts the relay-sim binary on a free loopback port and returns it with its address,
/// read from its "serving Modbus TCP on ADDR" log line.
fn start_sim(args: &[&str]) -> (Sim, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay-sim"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("relay-sim starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let sim = Sim(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("relay-sim: {line}");
            if !sent {
                if let Some(rest) = line.split("serving Modbus TCP on ").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("relay-sim logs its address within 10 s");
    (sim, addr.parse().expect("a socket address"))
}

/// Runs mbpoll once and returns (exit success, stdout values by reference, stderr).
fn mbpoll(addr: SocketAddr, args: &[&str]) -> (bool, Vec<(u32, String)>, String) {
    mbpoll_write(addr, args, &[])
}

/// Runs mbpoll once with values to write after the host (`mbpoll OPTIONS HOST VALUES`).
fn mbpoll_write(
    addr: SocketAddr,
    args: &[&str],
    write: &[&str],
) -> (bool, Vec<(u32, String)>, String) {
    let port = addr.port().to_string();
    let out = Command::new("mbpoll")
        .args(["-m", "tcp", "-p", &port, "-1", "-o", "2"])
        .args(args)
        .arg(addr.ip().to_string())
        .args(write)
        .output()
        .expect("mbpoll runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Value lines look like "[101]: \t114.25".
    let values = stdout
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (reference, value) = l.strip_prefix('[')?.split_once("]:")?;
            Some((reference.parse().ok()?, value.trim().to_owned()))
        })
        .collect();
    (
        out.status.success(),
        values,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbpoll_reads_what_the_map_says() {
    if !mbpoll_available() {
        return;
    }
    let (_sim, addr) = start_sim(&["--minute-secs", "2", "--seed", "7"]);
    let mut ctx = tcp::connect_slave(addr, Slave(1)).await.expect("connects");

    // Identity: map version 2 at reference 1, name as hex ("Re" = 0x5265) at reference 9.
    let (ok, values, err) = mbpoll(addr, &["-a", "1", "-t", "3:hex", "-r", "1", "-c", "12"]);
    assert!(ok, "mbpoll failed: {err}");
    assert_eq!(values[0], (1, "0x0002".to_owned()));
    assert_eq!(values[8], (9, "0x5265".to_owned()), "'Re' of 'Relay 1'");

    // Live floats, command line from docs/book/src/registers.md. The values change every sample
    // (1/3 s here), so compare only when a read before and after mbpoll agree.
    let mut compared = false;
    for _ in 0..20 {
        let before = ctx
            .read_input_registers(LIVE.start, LIVE.len)
            .await
            .expect("io")
            .expect("ok");
        let (ok, values, err) = mbpoll(
            addr,
            &["-a", "1", "-t", "3:float", "-B", "-r", "101", "-c", "10"],
        );
        let after = ctx
            .read_input_registers(LIVE.start, LIVE.len)
            .await
            .expect("io")
            .expect("ok");
        assert!(ok, "mbpoll failed: {err}");
        if before[..20] != after[..20] {
            continue;
        }
        let live = decode_live(&before).expect("decodes");
        assert_eq!(values.len(), 10, "{values:?}");
        for (i, (reference, text)) in values.iter().enumerate() {
            assert_eq!(*reference, 101 + 2 * i as u32);
            let v: f32 = text.parse().expect("a float");
            let expected = live.values[i];
            assert!(
                (v - expected).abs() <= expected.abs() * 1e-5 + 1e-6,
                "reference {reference}: mbpoll {v}, map {expected}"
            );
        }
        compared = true;
        break;
    }
    assert!(compared, "live values never held still for one mbpoll run");

    // The whole record block in one request, as 16-bit hex, decodes to the model's record.
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let (ok, values, err) = mbpoll(addr, &["-a", "1", "-t", "3:hex", "-r", "201", "-c", "117"]);
        assert!(ok, "mbpoll failed: {err}");
        let regs: Vec<u16> = values
            .iter()
            .map(|(_, v)| u16::from_str_radix(v.trim_start_matches("0x"), 16).expect("hex"))
            .collect();
        assert_eq!(regs.len(), usize::from(RECORD.len));
        if let Ok(read) = decode_record(&regs) {
            break read.record;
        }
        assert!(Instant::now() < deadline, "no record within 10 s");
        std::thread::sleep(Duration::from_millis(300));
    };
    let model = SignalModel::new(7, Profile::Realistic);
    assert_eq!(
        record,
        model.record(RelayId(1), record.minute, 6, RecordFlags::CLOCK_SET)
    );

    // Relay id and minute as 32-bit integers.
    let (ok, values, err) = mbpoll(
        addr,
        &["-a", "1", "-t", "3:int", "-B", "-r", "202", "-c", "2"],
    );
    assert!(ok, "mbpoll failed: {err}");
    assert_eq!(values[0], (202, "1".to_owned()));
    let minute: u32 = values[1].1.parse().expect("an integer");
    assert!(
        minute >= record.minute.0 && minute <= record.minute.0 + 10,
        "minute {minute}"
    );

    // The documented exceptions, as mbpoll reports them.
    let (ok, _, err) = mbpoll(addr, &["-a", "1", "-t", "3", "-r", "405"]);
    assert!(!ok && err.contains("Illegal data address"), "{err}");
    let (ok, _, err) = mbpoll(addr, &["-a", "9", "-t", "3", "-r", "1"]);
    assert!(
        !ok && err.contains("Target device failed to respond"),
        "{err}"
    );
    let (ok, _, err) = mbpoll_write(addr, &["-a", "1", "-t", "4", "-r", "1"], &["5"]);
    assert!(!ok && err.contains("Illegal function"), "{err}");
}

/// Every mbpoll command line in docs/book/src/registers.md runs and prints values against the
/// relay-sim binary (with the documented port swapped for the test's).
#[test]
fn documented_mbpoll_lines_work() {
    if !mbpoll_available() {
        return;
    }
    let doc = include_str!("../../docs/book/src/registers.md");
    let lines: Vec<&str> = doc
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("mbpoll "))
        .collect();
    assert!(
        lines.len() >= 4,
        "docs/book/src/registers.md lost its mbpoll lines"
    );
    let (_sim, addr) = start_sim(&["--minute-secs", "2"]);
    // The record lines need a closed record: wait for the first one.
    std::thread::sleep(Duration::from_millis(2500));
    for line in lines {
        let args: Vec<String> = line
            .split_whitespace()
            .skip(1)
            .map(|a| {
                if a == "5010" {
                    addr.port().to_string()
                } else {
                    a.to_owned()
                }
            })
            .collect();
        assert!(
            args.iter().any(|a| a == &addr.port().to_string()),
            "documented line does not use port 5010: {line}"
        );
        let out = Command::new("mbpoll")
            .args(&args)
            .output()
            .expect("mbpoll runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "documented line failed: {line}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("]: "),
            "documented line printed no value: {line}\n{stdout}"
        );
    }
}

/// A signing relay, read as docs/book/src/registers.md says: the key at references 57-72 is the one
/// `--print-registry` gives, and the signature block names the record's sequence number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbpoll_reads_the_relays_key_and_signature() {
    if !mbpoll_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("relay-sim-mbpoll-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key_file = dir.join("relays.key");
    let key_arg = key_file.to_string_lossy().into_owned();
    let printed = Command::new(env!("CARGO_BIN_EXE_relay-sim"))
        .args(["--key-file", &key_arg, "--print-registry"])
        .output()
        .expect("relay-sim runs");
    assert!(printed.status.success());
    let registry = String::from_utf8_lossy(&printed.stdout).into_owned();
    let public = registry
        .split_whitespace()
        .nth(1)
        .expect("RELAY_ID PUBLIC_KEY")
        .to_owned();
    assert_eq!(public.len(), 64, "{registry}");
    let (_sim, addr) = start_sim(&["--minute-secs", "1", "--key-file", &key_arg]);
    let (ok, values, err) = mbpoll(addr, &["-a", "1", "-t", "3:hex", "-r", "57", "-c", "16"]);
    assert!(ok, "mbpoll failed: {err}");
    let served: String = values
        .iter()
        .map(|(_, v)| v.trim_start_matches("0x").to_lowercase())
        .collect();
    assert_eq!(served, public, "the key served is the key registered");
    std::thread::sleep(Duration::from_millis(2500));
    // Record and signature in two reads; a record closing between them tears the pair,
    // which a reader sees by the sequence numbers and reads again.
    let mut matched = false;
    for _ in 0..10 {
        let (ok1, rec, _) = mbpoll(addr, &["-a", "1", "-t", "3", "-r", "201", "-c", "1"]);
        let (ok2, sig, _) = mbpoll(addr, &["-a", "1", "-t", "3:hex", "-r", "321", "-c", "33"]);
        assert!(ok1 && ok2);
        assert_eq!(sig.len(), 33);
        let seq = rec[0].1.parse::<u32>().expect("a number");
        let sig_seq = u32::from_str_radix(sig[0].1.trim_start_matches("0x"), 16).expect("hex");
        if seq != 0 && seq == sig_seq {
            assert!(
                sig[1..].iter().any(|(_, v)| v != "0x0000"),
                "a signature, not zeros"
            );
            matched = true;
            break;
        }
    }
    assert!(
        matched,
        "no consistent record and signature pair in 10 tries"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
