//! `mms-bench`: IEC 61850 over MMS on loopback.
//!
//! 1. Read latency of the full set one sample takes (the ten quantities, the operation
//!    counter and the ten qualities: 21 references in one MMS Read, as the recorder makes it), p50/p99/max
//!    over `--reads` reads on one association, against relay-sim's MMS server and against
//!    PyPI's `iec61850` server (`tools/mms_ied.py`, when Python has it).
//! 2. The same set read by open61850 (`tools/mms_read.py --repeat`, a Python client) from
//!    relay-sim, for an outside view.
//! 3. Samples per second one recorder sustains across `--ieds` IEDs (each a relay-sim MMS
//!    server of its own): every IED sampled back to back by its own task for `--secs`.
//!
//! `cargo run --release -p gridledger-bench --bin mms-bench`

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use device_profile::iec61850::MmsProfile;
use gateway::mms::MmsSource;

/// IEC 61850 read latency and recorder throughput.
#[derive(Debug, Parser)]
#[command(name = "mms-bench", about)]
struct Args {
    /// Reads per latency figure.
    #[arg(long, default_value_t = 2000)]
    reads: usize,
    /// IEDs for the throughput figure.
    #[arg(long, default_value_t = 32)]
    ieds: usize,
    /// Seconds of the throughput run.
    #[arg(long, default_value_t = 10)]
    secs: u64,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn generic() -> Result<Arc<MmsProfile>, String> {
    let path = root().join("profiles/generic-iec61850-ied.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    MmsProfile::parse("generic-iec61850-ied.toml", &text)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// The generic profile moved to the foreign IED's model: logical device PROT.
fn foreign(generic: &MmsProfile) -> Arc<MmsProfile> {
    let mut p = generic.clone();
    for pt in &mut p.points {
        pt.reference.ld = "PROT".into();
        if let Some(q) = &mut pt.quality {
            q.ld = "PROT".into();
        }
    }
    if let Some(
        device_profile::iec61850::MmsFaults::Counter { reference, .. }
        | device_profile::iec61850::MmsFaults::Status { reference, .. },
    ) = &mut p.faults
    {
        reference.ld = "PROT".into();
    }
    Arc::new(p)
}

async fn relay_sim() -> Result<SocketAddr, String> {
    let sim = relay_sim::Simulator::bind(relay_sim::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        iec61850: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..relay_sim::Config::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let mms = sim.mms_addr().ok_or("no MMS address")?;
    tokio::spawn(sim.run(std::future::pending::<()>()));
    Ok(mms)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn latency(what: &str, mut src: MmsSource, refs: usize, reads: usize) -> Result<(), String> {
    // The first sample associates; it is not counted.
    src.sample().await?;
    let mut ms = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        src.sample().await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "{what:<44} p50 {:>6.3} ms  p99 {:>6.3} ms  max {:>6.3} ms  ({reads} reads of {} references)",
        pct(&ms, 0.5),
        pct(&ms, 0.99),
        pct(&ms, 1.0),
        refs
    );
    Ok(())
}

fn pythonpath() -> Option<std::ffi::OsString> {
    std::env::var_os("GRIDLEDGER_PYTHONPATH").or_else(|| {
        let local = root().join("target/pydeps");
        local.is_dir().then(|| local.into_os_string())
    })
}

fn python() -> Command {
    let mut c = Command::new("python3");
    if let Some(p) = pythonpath() {
        c.env("PYTHONPATH", p);
    }
    c
}

async fn against_pypi(profile: &MmsProfile, reads: usize) -> Result<(), String> {
    let mut child = python()
        .arg(root().join("tools/mms_ied.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let result = match line.trim().strip_prefix("listening ") {
        Some(addr) => {
            let src = MmsSource::new(addr.to_owned(), foreign(profile), None);
            let refs = profile.targets().len();
            latency("PyPI iec61850 server (tools/mms_ied.py)", src, refs, reads).await
        }
        None => {
            println!("PyPI iec61850 server: not measured (python3 cannot import iec61850)");
            Ok(())
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn open61850(addr: SocketAddr, reads: usize) {
    let out = python()
        .arg(root().join("tools/mms_read.py"))
        .args([
            "127.0.0.1",
            &addr.port().to_string(),
            "GLRelayLD0",
            "--repeat",
            &reads.to_string(),
        ])
        .output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        println!("open61850 client: not measured (python3 cannot import open61850)");
        return;
    };
    let mut ms: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["took_s"].as_f64())
        .map(|s| s * 1000.0)
        .skip(1)
        .collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "{:<44} p50 {:>6.3} ms  p99 {:>6.3} ms  max {:>6.3} ms  ({} reads of 15 references)",
        "relay-sim, read by open61850 (Python)",
        pct(&ms, 0.5),
        pct(&ms, 0.99),
        pct(&ms, 1.0),
        ms.len()
    );
}

async fn throughput(profile: &Arc<MmsProfile>, ieds: usize, secs: u64) -> Result<(), String> {
    let mut addrs = Vec::with_capacity(ieds);
    for _ in 0..ieds {
        addrs.push(relay_sim().await?);
    }
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for a in addrs {
        let (done, failed, profile) = (Arc::clone(&done), Arc::clone(&failed), Arc::clone(profile));
        tasks.push(tokio::spawn(async move {
            let mut src = MmsSource::new(a.to_string(), profile, None);
            let _ = src.sample().await;
            while Instant::now() < until {
                match src.sample().await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let t = Instant::now();
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "one recorder, {ieds} relay-sim IEDs, back to back: {:.0} samples/s ({n} in {:.1} s, {} failed; a 10 s sampling period needs {:.1}/s)",
        n as f64 / t.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64(),
        failed.load(Ordering::Relaxed),
        ieds as f64 / 10.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let profile = generic()?;
    println!("== IEC 61850 over MMS on loopback: the recorder's one Read per sample");
    let sim = relay_sim().await?;
    latency(
        "relay-sim --iec61850 (iec61850-server)",
        MmsSource::new(sim.to_string(), Arc::clone(&profile), None),
        profile.targets().len(),
        args.reads,
    )
    .await?;
    against_pypi(&profile, args.reads).await?;
    open61850(sim, args.reads.min(1000));
    throughput(&profile, args.ieds, args.secs).await?;
    Ok(())
}
