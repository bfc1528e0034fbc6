//! `recorder-jitter`: how precisely the gateway's recorder samples, and how many requests
//! a sample takes.
//!
//! For 1, 8 and 32 devices on one gateway (each a relay-sim playing a shipped profile,
//! round robin, over Modbus TCP on loopback), runs the recorder for `--secs` wall seconds
//! with its clock `--speed` times faster than the wall clock (a sample every 10 s of
//! recorder time), and prints the p50, p99 and max delay from each aligned instant to the
//! start of its sample (in wall time), and the Modbus requests per sample per device for
//! each profile.
//!
//! `cargo run --release -p gridledger-bench --bin recorder-jitter`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use device_profile::Profile;
use gateway::recorder::{Clock, Device, Upstream};
use relay_core::RelayId;

/// Recorder sampling jitter.
#[derive(Debug, Parser)]
#[command(name = "recorder-jitter", about)]
struct Args {
    /// Device counts (repeat).
    #[arg(long = "devices", default_values_t = [1u16, 8, 32])]
    devices: Vec<u16>,
    /// Wall seconds per device count.
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Recorder time per wall time (10: a sample every second).
    #[arg(long, default_value_t = 10.0)]
    speed: f64,
}

fn profiles() -> Result<Vec<(String, Arc<Profile>)>, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../profiles");
    let files = device_profile::load_dir(&dir).map_err(|e| e.to_string())?;
    Ok(files
        .into_iter()
        .map(|(f, p)| {
            let name = f
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            (name, Arc::new(p))
        })
        .collect())
}

async fn run(n: u16, args: &Args, profiles: &[(String, Arc<Profile>)]) -> Result<(), String> {
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let start = (now_s - 86_400) / 60 * 60;
    let mut stops = Vec::new();
    let mut devices = Vec::new();
    for i in 0..n {
        let (name, profile) = &profiles[usize::from(i) % profiles.len()];
        let sim = relay_sim::Simulator::bind(relay_sim::Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            unit_id: profile.unit,
            relay_id: 1000 + u32::from(i),
            minute_secs: 60.0 / args.speed,
            start_time: Some(start + 5),
            layout: Some(Arc::clone(profile)),
            ..relay_sim::Config::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        let addr = sim.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(sim.run(async move {
            let _ = rx.await;
        }));
        stops.push(tx);
        devices.push((
            name.clone(),
            Device {
                profile: Arc::clone(profile).into(),
                unit: u8::try_from(i + 1).map_err(|e| e.to_string())?,
                device_unit: profile.unit,
                relay: RelayId(1000 + u32::from(i)),
                name: format!("dev {i}"),
                substation: String::new(),
                upstream: Upstream::Tcp(addr.to_string()),
                ied: None,
                key: None,
            },
        ));
    }
    let g = gateway::Gateway::bind(gateway::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        devices: devices.iter().map(|(_, d)| d.clone()).collect(),
        clock: Some(Clock::compressed(start * 1000, args.speed)),
        ..gateway::Config::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let recordings = g.recordings();
    let task = tokio::spawn(g.run(std::future::pending::<()>()));
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    task.abort();
    let mut jitter: Vec<u64> = Vec::new();
    let mut per_profile: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let (mut samples, mut missed) = (0, 0);
    for (i, (name, _)) in devices.iter().enumerate() {
        let rec = recordings
            .get(&u8::try_from(i + 1).map_err(|e| e.to_string())?)
            .ok_or("recording")?;
        jitter.extend(rec.stats.jitter_us());
        let s = rec.stats.samples.load(Ordering::Relaxed);
        let m = rec.stats.missed.load(Ordering::Relaxed);
        let r = rec.stats.requests.load(Ordering::Relaxed);
        samples += s;
        missed += m;
        let e = per_profile.entry(name.clone()).or_default();
        e.0 += s + m;
        e.1 += r;
    }
    drop(stops);
    jitter.sort_unstable();
    if jitter.is_empty() {
        return Err("no sample taken".into());
    }
    let pct = |p: f64| jitter[((jitter.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    println!(
        "{n:>8} {:>8} {:>7} {:>10.3} {:>10.3} {:>10.3}",
        samples,
        missed,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    for (name, (s, r)) in per_profile {
        println!(
            "{:>8} requests per sample, {name}: {:.2}",
            "",
            r as f64 / s.max(1) as f64
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let profiles = match profiles() {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => {
            eprintln!("recorder-jitter: no profile in profiles/");
            return std::process::ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("recorder-jitter: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let Some(rt) = gridledger_bench::runtime("recorder-jitter") else {
        return std::process::ExitCode::FAILURE;
    };
    println!(
        "recorder-jitter: delay from each aligned instant to its sample's start (wall ms), {} s per run, recorder clock x{}, devices on loopback Modbus TCP",
        args.secs, args.speed
    );
    println!(
        "{:>8} {:>8} {:>7} {:>10} {:>10} {:>10}",
        "devices", "samples", "missed", "p50 ms", "p99 ms", "max ms"
    );
    let mut failed = false;
    for &n in &args.devices {
        if let Err(e) = rt.block_on(run(n, &args, &profiles)) {
            println!("{n:>8} failed: {e}");
            failed = true;
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
