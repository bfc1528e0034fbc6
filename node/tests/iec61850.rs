//! IEC 61850 over MMS, both directions, against peers written apart from gridledger:
//!
//! - relay-sim as an IED: open61850 (a pure-Python MMS client, `tools/mms_read.py`) reads
//!   its MMXU1, XCBR1 and PTRC1 and the values equal its Modbus live block, and finds the
//!   ICD relay-sim publishes equal to the model its server serves;
//! - the recorder reads a foreign IED (PyPI's `iec61850` server hosting a model written in
//!   `tools/mms_ied.py`: another IED name, another logical device, kV and kW), three nodes
//!   mine its records, and every sample on the chain is one the test served;
//! - that IED dropping every association mid-recording: the recorder associates again by
//!   itself and the samples it could not read are missing slots, never invented.
//!
//! The Python packages come from PyPI (`.ci/run` installs the pinned versions into
//! `target/pydeps` and sets `GRIDLEDGER_PYTHONPATH`). Without them each test says so loudly
//! and skips; GRIDLEDGER_REQUIRE_TOOLS=1 (CI) turns the skip into a failure.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use device_profile::iec61850::MmsProfile;
use gateway::recorder::{Clock, Device, Upstream};
use relay_core::{MinuteRecord, RelayId};

fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools")
}

/// Where the PyPI peers are: `GRIDLEDGER_PYTHONPATH`, else `target/pydeps` if `.ci/run`
/// put them there, else Python's own path.
fn pythonpath() -> Option<std::ffi::OsString> {
    std::env::var_os("GRIDLEDGER_PYTHONPATH").or_else(|| {
        let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pydeps");
        local.is_dir().then(|| local.into_os_string())
    })
}

/// `python3` with the PyPI peers on its path, or `None` (said loudly) if `module` is not
/// importable.
fn python(module: &str) -> Option<Command> {
    let mut cmd = Command::new("python3");
    let mut probe = Command::new("python3");
    if let Some(p) = pythonpath() {
        cmd.env("PYTHONPATH", &p);
        probe.env("PYTHONPATH", &p);
    }
    let ok = probe
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(cmd);
    }
    let why = format!(
        "python3 cannot import {module}: python3 -m pip install --target target/pydeps \
         iec61850==0.14.0 open61850==0.9.12 (or set GRIDLEDGER_PYTHONPATH)"
    );
    if std::env::var_os("GRIDLEDGER_REQUIRE_TOOLS").is_some() {
        panic!("{why} (GRIDLEDGER_REQUIRE_TOOLS is set)");
    }
    eprintln!("\n*** SKIPPED: {why} ***\n");
    None
}

/// relay-sim's Modbus live block (input registers 100..124) as the ten values in their
/// people units, and (minute, second) of the sample.
async fn live_block(addr: SocketAddr) -> ([f32; 10], u32, u16, u16) {
    use tokio_modbus::prelude::*;
    let mut ctx = tcp::connect_slave(addr, Slave(1)).await.expect("modbus");
    let w = ctx
        .read_input_registers(100, 25)
        .await
        .expect("io")
        .expect("no exception");
    let f = |i: usize| f32::from_bits((u32::from(w[i]) << 16) | u32::from(w[i + 1]));
    let vals = [
        f(0),
        f(2),
        f(4),
        f(6),
        f(8),
        f(10),
        f(12),
        f(14),
        f(16),
        f(18),
    ];
    let minute = (u32::from(w[20]) << 16) | u32::from(w[21]);
    (vals, minute, w[22], w[23])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_mms_client_reads_relay_sim_and_it_equals_the_modbus_live_block() {
    let Some(mut py) = python("open61850") else {
        return;
    };
    let sim = relay_sim::Simulator::bind(relay_sim::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        iec61850: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        seed: 5,
        // A sample every 10 s of wall time: reads rarely straddle one.
        minute_secs: 60.0,
        ..relay_sim::Config::default()
    })
    .await
    .expect("relay-sim binds");
    let modbus = sim.local_addr();
    let mms = sim.mms_addr().expect("MMS bound");
    let icd = sim.icd();
    assert!(icd.contains(&format!("<P type=\"MMS-Port\">{}</P>", mms.port())));
    tokio::spawn(sim.run(std::future::pending::<()>()));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let script = tools().join("mms_read.py");
    let mut compared = false;
    for _ in 0..5 {
        let before = live_block(modbus).await;
        let out = py
            .arg(&script)
            .args(["127.0.0.1", &mms.port().to_string(), "GLRelayLD0"])
            .output()
            .expect("python3 runs");
        let after = live_block(modbus).await;
        assert!(
            out.status.success(),
            "mms_read.py: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if (before.1, before.2) != (after.1, after.2) {
            // A new sample between the reads: which one MMS saw is unknown. Again.
            py = python("open61850").expect("still there");
            continue;
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("mms_read.py prints JSON");
        let v = |k: &str| doc[k].as_f64().unwrap_or_else(|| panic!("{k} in {doc}"));
        let (live, _, _, faults_so_far) = before;
        let kilo = |x: f32| f64::from(x) * 1000.0;
        let close = |mms: f64, modbus: f64, what: &str| {
            let tol = modbus.abs() * 1e-6 + 1e-3;
            assert!(
                (mms - modbus).abs() <= tol,
                "{what}: MMS {mms} vs Modbus {modbus}"
            );
        };
        close(v("PPV.phsAB.cVal.mag.f"), kilo(live[0]), "Vab (V)");
        close(v("PPV.phsBC.cVal.mag.f"), kilo(live[1]), "Vbc (V)");
        close(v("PPV.phsCA.cVal.mag.f"), kilo(live[2]), "Vca (V)");
        close(
            v("PhV.phsA.cVal.mag.f"),
            kilo(live[0]) / 3f64.sqrt(),
            "PhV A (V)",
        );
        close(v("A.phsA.cVal.mag.f"), f64::from(live[3]), "Ia (A)");
        close(v("A.phsB.cVal.mag.f"), f64::from(live[4]), "Ib (A)");
        close(v("A.phsC.cVal.mag.f"), f64::from(live[5]), "Ic (A)");
        close(v("Hz.mag.f"), f64::from(live[6]), "f (Hz)");
        close(v("TotPF.mag.f"), f64::from(live[7]), "PF");
        close(v("TotW.mag.f"), kilo(live[8]), "P (W)");
        close(v("TotVAr.mag.f"), kilo(live[9]), "Q (var)");
        // The values' time: the sample's instant by the relay's clock (IEC 61850-7-3), not
        // 1970.
        let (_, minute, second, _) = before;
        let instant = f64::from(minute) * 60.0 + f64::from(second);
        let t = v("PPV.phsAB.t");
        assert!(
            (t - instant).abs() < 1.0,
            "t = {t}, the sample's instant {instant} (minute {minute}, second {second})"
        );
        assert!(
            v("XCBR1.OpCnt.stVal") >= f64::from(faults_so_far),
            "OpCnt counts at least this minute's openings: {doc}"
        );
        assert!(doc["PTRC1.Op.general"].is_boolean(), "{doc}");
        compared = true;
        break;
    }
    assert!(compared, "five reads all straddled a sample");

    // The ICD relay-sim publishes describes what it serves: open61850 reads the file with
    // its own SCL reader and the server's model over MMS, and finds no difference.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("relay-sim.icd");
    std::fs::write(&file, &icd).expect("write the ICD");
    let out = python("open61850")
        .expect("still there")
        .arg(&script)
        .args([
            "127.0.0.1",
            &mms.port().to_string(),
            "GLRelay",
            "--compare-icd",
        ])
        .arg(&file)
        .output()
        .expect("python3 runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the ICD and the server differ: {said}"
    );
    assert!(said.contains("the ICD and the server agree"), "{said}");
    eprintln!("open61850: {said}");
}

/// The foreign IED (`tools/mms_ied.py`), driven over its stdin.
struct ForeignIed {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    addr: String,
}

impl ForeignIed {
    fn start(mut py: Command) -> ForeignIed {
        let mut child = py
            .arg(tools().join("mms_ied.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("mms_ied.py speaks");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("mms_ied.py: {line}"))
            .to_owned();
        ForeignIed {
            child,
            stdin,
            stdout,
            addr,
        }
    }

    fn send(&mut self, cmd: &serde_json::Value) {
        writeln!(self.stdin, "{cmd}").expect("write");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("answer");
        assert_eq!(line.trim(), "ok", "mms_ied.py refused {cmd}");
    }
}

impl Drop for ForeignIed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A profile for the foreign IED, derived from its model as docs/book/src/iec61850.md describes:
/// logical device PROT, voltages in kV and powers in kW/kvar (multiplier 3).
const FOREIGN_PROFILE: &str = r#"
[device]
kind = "iec61850"
name = "foreign IED"
maker = "test"
model = "tools/mms_ied.py"
source = "tools/mms_ied.py's SCL"
tested_on_hardware = false
timeout_ms = 1000

[quantities]
Vab = { reference = "PROT/MMXU1.PPV.phsAB.cVal.mag.f", unit = "V", multiplier = 3 }
Vbc = { reference = "PROT/MMXU1.PPV.phsBC.cVal.mag.f", unit = "V", multiplier = 3 }
Vca = { reference = "PROT/MMXU1.PPV.phsCA.cVal.mag.f", unit = "V", multiplier = 3 }
Ia  = { reference = "PROT/MMXU1.A.phsA.cVal.mag.f", unit = "A" }
Ib  = { reference = "PROT/MMXU1.A.phsB.cVal.mag.f", unit = "A" }
Ic  = { reference = "PROT/MMXU1.A.phsC.cVal.mag.f", unit = "A" }
f   = { reference = "PROT/MMXU1.Hz.mag.f", unit = "Hz" }
PF  = { reference = "PROT/MMXU1.TotPF.mag.f", unit = "1" }
P   = { reference = "PROT/MMXU1.TotW.mag.f", unit = "W", multiplier = 3 }
Q   = { reference = "PROT/MMXU1.TotVAr.mag.f", unit = "var", multiplier = 3 }

[faults]
from = "counter"
reference = "PROT/XCBR1.OpCnt.stVal"
"#;

const PATHS: [&str; 10] = [
    "MMXU1.PPV.phsAB.cVal.mag.f",
    "MMXU1.PPV.phsBC.cVal.mag.f",
    "MMXU1.PPV.phsCA.cVal.mag.f",
    "MMXU1.A.phsA.cVal.mag.f",
    "MMXU1.A.phsB.cVal.mag.f",
    "MMXU1.A.phsC.cVal.mag.f",
    "MMXU1.Hz.mag.f",
    "MMXU1.TotPF.mag.f",
    "MMXU1.TotW.mag.f",
    "MMXU1.TotVAr.mag.f",
];

/// Two sets of values the IED serves (kV, A, Hz, 1, kW, kvar), and the stored integers
/// they must become (V, mA, mHz, ‰, W, var).
const SERVED: [[f64; 10]; 2] = [
    [
        115.234, 115.301, 114.987, 412.345, 409.876, 415.002, 60.012, 0.953, 48_123.5, -3_210.25,
    ],
    [
        118.5, 118.25, 118.75, 96.5, 97.25, 95.75, 59.975, 0.881, 11_250.75, 1_500.5,
    ],
];

fn stored(set: &[f64; 10]) -> [i64; 10] {
    let factor = [1e3, 1e3, 1e3, 1e3, 1e3, 1e3, 1e3, 1e3, 1e3, 1e3];
    let mut out = [0i64; 10];
    for ((o, v), f) in out.iter_mut().zip(set).zip(factor) {
        // What the IED sends is a float32.
        *o = (f64::from(*v as f32) * f).round() as i64;
    }
    out
}

fn set_cmd(set: &[f64; 10], opcnt: i32) -> serde_json::Value {
    let mut values = serde_json::Map::new();
    for (p, v) in PATHS.iter().zip(set) {
        values.insert((*p).to_owned(), serde_json::json!(v));
    }
    serde_json::json!({ "set": values, "opcnt": opcnt })
}

/// The gateway recording the IED at `addr` under unit 7 as relay 77, on `clock`.
async fn recorder(addr: &str, clock: Clock) -> (SocketAddr, Arc<gateway::recorder::Recording>) {
    let profile = Arc::new(MmsProfile::parse("foreign.toml", FOREIGN_PROFILE).expect("profile"));
    recorder_with(profile, addr, clock).await
}

/// The gateway recording the IED at `addr` through `profile`.
async fn recorder_with(
    profile: Arc<MmsProfile>,
    addr: &str,
    clock: Clock,
) -> (SocketAddr, Arc<gateway::recorder::Recording>) {
    let g = gateway::Gateway::bind(gateway::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        devices: vec![Device {
            profile: profile.into(),
            unit: 7,
            device_unit: 1,
            relay: RelayId(77),
            name: "foreign IED".into(),
            substation: "Test".into(),
            upstream: Upstream::Mms(addr.to_owned()),
            ied: None,
            // The recorder signs for the IED (issue 30).
            key: Some(ied_key()),
        }],
        clock: Some(clock),
        ..gateway::Config::default()
    })
    .await
    .expect("gateway binds");
    let gw = g.local_addr();
    let rec = Arc::clone(g.recordings().get(&7).expect("recording"));
    tokio::spawn(g.run(std::future::pending::<()>()));
    (gw, rec)
}

/// The key the recorder signs the IED's records with (relay 77).
fn ied_key() -> gateway::signer::DeviceKey {
    gateway::signer::DeviceKey::from_seed([61; 32])
}

async fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Which served set a sample is (0 or 1), or a panic naming the difference.
fn which_set(s: &relay_core::Sample) -> usize {
    use relay_core::measure::Quantity;
    let got: Vec<i64> = Quantity::ALL.iter().map(|q| q.raw(s)).collect();
    for (k, set) in SERVED.iter().enumerate() {
        if got == stored(set) {
            return k;
        }
    }
    panic!(
        "a sample the IED never served: {got:?} (served {:?} or {:?})",
        stored(&SERVED[0]),
        stored(&SERVED[1])
    );
}

const SPEED: f64 = 30.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_reads_a_foreign_ied_and_three_nodes_mine_its_records() {
    let Some(py) = python("iec61850") else {
        return;
    };
    let mut ied = ForeignIed::start(py);
    ied.send(&set_cmd(&SERVED[0], 100));
    let start = (common::now_ms() / 1000 - 2 * 86_400) / 60 * 60;
    let (gw, rec) = recorder(&ied.addr, Clock::compressed(start * 1000, SPEED)).await;

    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    // The nodes' relay registry names the recorder's key for the IED's relay 77.
    let registry = dirs[0].path().join("relay-registry");
    std::fs::write(
        &registry,
        format!("77 {}\n", hex::encode(ied_key().public())),
    )
    .expect("registry written");
    let _nodes: Vec<common::Proc> = (0..3)
        .map(|i| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_gridledger"));
            cmd.args(["run", "--network", "mms-test", "--difficulty-bits", "8"])
                .args(["--listen", &format!("127.0.0.1:{}", ports[i])])
                .arg("--data-dir")
                .arg(dirs[i].path().join("data"))
                .arg("--relay-registry")
                .arg(&registry)
                .args(["--relay", &format!("{gw}/7"), "--poll-secs", "0.25"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            for (j, p) in ports.iter().enumerate() {
                if j != i {
                    cmd.args(["--peer", &format!("http://127.0.0.1:{p}")]);
                }
            }
            common::Proc(cmd.spawn().expect("gridledger run starts"))
        })
        .collect();

    // Three minutes of the first set, then the second with three openings.
    let records = |n: u64| {
        let rec = Arc::clone(&rec);
        move || rec.stats.records.load(std::sync::atomic::Ordering::Relaxed) >= n
    };
    wait_until("three records of the first set", 30, records(3)).await;
    ied.send(&set_cmd(&SERVED[1], 103));
    let closed = rec.stats.records.load(std::sync::atomic::Ordering::Relaxed);
    wait_until("three records of the second set", 30, records(closed + 3)).await;

    let client = gridledger::wire::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    let chain = loop {
        let mut views = Vec::new();
        for p in &ports {
            views.push(common::chain_records(&client, *p, RelayId(77)).await);
        }
        if let [Some(a), Some(b), Some(c)] = &views[..] {
            let both =
                a.1.iter()
                    .any(|r| r.samples.iter().any(|s| which_set(s) == 1));
            if a.1.len() >= 6 && both && a.0 == b.0 && b.0 == c.0 {
                assert_eq!(a.1, b.1, "identical records");
                assert_eq!(b.1, c.1, "identical records");
                break a.1.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "three nodes on one tip holding both sets: not within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Every record is signed by the recorder's key for the IED (checked by ed25519-dalek
    // here; the nodes' registry made it a rule).
    let public = ed25519_dalek::VerifyingKey::from_bytes(&ied_key().public()).expect("key");
    for r in &chain {
        let sig = r.signature.expect("every record is signed");
        let mut buf = [0u8; relay_core::MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
        let msg = r.signing_message(&mut buf).expect("fits");
        assert!(public
            .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .is_ok());
    }
    // Every sample is one the IED served, the first set before the second; the openings
    // are the counter's increase, counted once.
    let sets: Vec<usize> = chain
        .iter()
        .flat_map(|r| r.samples.iter().map(which_set))
        .collect();
    assert!(
        sets.windows(2).all(|w| w[0] <= w[1]),
        "sets in order: {sets:?}"
    );
    assert!(sets.contains(&0) && sets.contains(&1), "{sets:?}");
    let faults: u32 = chain.iter().map(|r| u32::from(r.faults)).sum();
    assert_eq!(faults, 3, "three openings: {chain:?}");
    for w in chain.windows(2) {
        assert_eq!(w[1].minute.0, w[0].minute.0 + 1, "consecutive minutes");
    }
}

/// A TCP proxy in front of `upstream` that, when `cut` is set, drops the next connection
/// that sends anything, without forwarding it: the IED vanishing with a request in flight.
async fn cutting_proxy(upstream: String, cut: Arc<std::sync::atomic::AtomicBool>) -> SocketAddr {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                continue;
            };
            let cut = Arc::clone(&cut);
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if cut.swap(false, Ordering::SeqCst) {
                            return;
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                };
                // Either direction ending ends both: the connection is gone.
                tokio::select! {
                    () = up => {}
                    () = down => {}
                }
            });
        }
    });
    addr
}

/// Every record the gateway's recording has closed so far, polled into `seen` by minute.
fn poll_record(
    rec: &gateway::recorder::Recording,
    seen: &mut std::collections::BTreeMap<u32, MinuteRecord>,
) {
    use relay_core::registers::{decode_record, RECORD};
    if let Ok(regs) = rec.read(RECORD.start, RECORD.len) {
        if let Ok(r) = decode_record(&regs) {
            seen.insert(r.record.minute.0, r.record);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ied_that_drops_the_association_is_reassociated_and_its_misses_are_gaps() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(py) = python("iec61850") else {
        return;
    };
    let mut ied = ForeignIed::start(py);
    ied.send(&set_cmd(&SERVED[0], 7));
    let cut = Arc::new(AtomicBool::new(false));
    let proxy = cutting_proxy(ied.addr.clone(), Arc::clone(&cut)).await;
    let start = (common::now_ms() / 1000 - 2 * 86_400) / 60 * 60;
    let (_gw, rec) = recorder(&proxy.to_string(), Clock::compressed(start * 1000, SPEED)).await;
    let mut seen = std::collections::BTreeMap::new();
    let count = |rec: &gateway::recorder::Recording| {
        (
            rec.stats.samples.load(Ordering::Relaxed),
            rec.stats.missed.load(Ordering::Relaxed),
            rec.stats.records.load(Ordering::Relaxed),
        )
    };
    // Two whole minutes recorded, then the connection dies with the next Read in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&rec).2 < 2 {
        assert!(Instant::now() < deadline, "two records: not within 30 s");
        poll_record(&rec, &mut seen);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, missed_before, _) = count(&rec);
    assert_eq!(missed_before, 0, "nothing missed before the cut");
    cut.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cut.load(Ordering::SeqCst) || count(&rec).1 == 0 {
        assert!(Instant::now() < deadline, "the cut read: not within 30 s");
        poll_record(&rec, &mut seen);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (samples_at_cut, _, records_at_cut) = count(&rec);
    // Sampling resumes on a new association, and two more minutes close.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&rec).0 < samples_at_cut + 6 || count(&rec).2 < records_at_cut + 2 {
        assert!(Instant::now() < deadline, "sampling again: not within 30 s");
        poll_record(&rec, &mut seen);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, missed, _) = count(&rec);
    assert!(missed >= 1, "the read on the cut association failed");
    // The miss is a missing slot in its minute's record; every sample there is one the
    // IED served. (The first record starts mid-minute and has missing slots of its own.)
    let full: Vec<&MinuteRecord> = seen.values().skip(1).collect();
    let missing: u32 = full.iter().map(|r| r.flags.missing().count_ones()).sum();
    assert!(
        missing >= 1,
        "the missed sample is a missing slot: {full:?}"
    );
    for r in &full {
        assert_eq!(
            r.samples.len() + r.flags.missing().count_ones() as usize,
            6,
            "six slots a minute, each a sample or missing: {r:?}"
        );
        for s in &r.samples {
            assert_eq!(which_set(s), 0);
        }
    }

    // The IED itself cuts every association and comes back on the same port.
    ied.send(&serde_json::json!({ "drop": true }));
    let (before, _, _) = count(&rec);
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&rec).0 < before + 6 {
        assert!(
            Instant::now() < deadline,
            "sampling after the IED's restart: not within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_of_invalid_quality_are_missing_samples_not_numbers() {
    use std::sync::atomic::Ordering;
    // relay-sim as the IED, its clock 5 s ahead of the recorder's, both 30 times faster
    // than the wall clock; the generic profile, which reads each value's quality.
    let s = (common::now_ms() / 1000 - 2 * 86_400) / 60 * 60 + 5;
    let sim = relay_sim::Simulator::bind(relay_sim::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        iec61850: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        minute_secs: 60.0 / SPEED,
        start_time: Some(s),
        ..relay_sim::Config::default()
    })
    .await
    .expect("relay-sim binds");
    let mms = sim.mms_addr().expect("MMS bound");
    let control = sim.mms_control().expect("MMS control");
    tokio::spawn(sim.run(std::future::pending::<()>()));
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/generic-iec61850-ied.toml"),
    )
    .expect("the generic profile");
    let profile = Arc::new(MmsProfile::parse("generic", &text).expect("checks"));
    assert_eq!(
        profile.targets().len(),
        21,
        "ten values, the counter, ten qualities"
    );
    let (_gw, rec) = recorder_with(
        profile,
        &mms.to_string(),
        Clock::compressed((s - 5) * 1000, SPEED),
    )
    .await;
    let stat = |rec: &gateway::recorder::Recording| {
        (
            rec.stats.samples.load(Ordering::Relaxed),
            rec.stats.missed.load(Ordering::Relaxed),
            rec.stats.records.load(Ordering::Relaxed),
        )
    };
    let mut seen = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stat(&rec).2 < 2 {
        assert!(Instant::now() < deadline, "two records: not within 30 s");
        poll_record(&rec, &mut seen);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stat(&rec).1, 0, "all good before");
    // The relay's measuring input fails: every value invalid for a while.
    control.set_invalid(0, true).expect("quality set");
    let deadline = Instant::now() + Duration::from_secs(30);
    while stat(&rec).1 < 3 {
        assert!(
            Instant::now() < deadline,
            "three invalid samples: not within 30 s"
        );
        poll_record(&rec, &mut seen);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    control.set_invalid(0, false).expect("quality set");
    let (samples, _, records) = stat(&rec);
    let deadline = Instant::now() + Duration::from_secs(30);
    while stat(&rec).0 < samples + 6 || stat(&rec).2 < records + 2 {
        assert!(Instant::now() < deadline, "good again: not within 30 s");
        poll_record(&rec, &mut seen);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, missed, _) = stat(&rec);
    let full: Vec<&MinuteRecord> = seen.values().skip(1).collect();
    let missing: u32 = full.iter().map(|r| r.flags.missing().count_ones()).sum();
    assert!(
        missing >= 3,
        "the invalid samples are missing slots ({missed} missed): {full:?}"
    );
    for r in &full {
        assert_eq!(
            r.samples.len() + r.flags.missing().count_ones() as usize,
            6,
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_off_by_a_thousand_is_refused_not_recorded() {
    use std::sync::atomic::Ordering;
    // relay-sim publishes volts with multiplier 0 in units (CF); a profile that says the
    // IED publishes kV (multiplier 3) would record every voltage a thousand times too
    // large. The recorder reads the IED's units at association and records nothing.
    let sim = relay_sim::Simulator::bind(relay_sim::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        iec61850: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        minute_secs: 60.0 / SPEED,
        ..relay_sim::Config::default()
    })
    .await
    .expect("relay-sim binds");
    let mms = sim.mms_addr().expect("MMS bound");
    tokio::spawn(sim.run(std::future::pending::<()>()));
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/generic-iec61850-ied.toml"),
    )
    .expect("the generic profile");
    let wrong = text.replacen(
        r#"unit = "V", multiplier = 0"#,
        r#"unit = "V", multiplier = 3"#,
        1,
    );
    assert_ne!(wrong, text);
    let profile = Arc::new(MmsProfile::parse("wrong", &wrong).expect("checks"));
    let start = (common::now_ms() / 1000 - 2 * 86_400) / 60 * 60;
    let (_gw, rec) = recorder_with(
        profile,
        &mms.to_string(),
        Clock::compressed(start * 1000, SPEED),
    )
    .await;
    wait_until("five refused samples", 30, || {
        rec.stats.missed.load(Ordering::Relaxed) >= 5
    })
    .await;
    assert_eq!(
        rec.stats.samples.load(Ordering::Relaxed),
        0,
        "nothing recorded through a profile the IED's units contradict"
    );
}
