//! `modbus-load`: N concurrent Modbus TCP clients read one block as fast as they can for S
//! seconds, against one or more servers in turn; prints reads/s and latency percentiles.
//!
//! Each client owns one connection and keeps one request in flight, like a poller. Every
//! run is bounded by time (`--secs`) and by count (`--max-reads`).
//!
//! ```text
//! modbus-load --clients 16 --secs 5 --target relay-sim=127.0.0.1:5010 --target pymodbus=127.0.0.1:5020
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio_modbus::prelude::*;

/// Modbus TCP load generator: reads/s and p50/p99 latency, server by server.
#[derive(Debug, Parser)]
#[command(name = "modbus-load", version, about)]
struct Args {
    /// A server to load, as NAME=HOST:PORT; repeat to compare servers in one run (the first
    /// is the reference of the printed ratios).
    #[arg(long = "target", required = true, value_parser = parse_target)]
    targets: Vec<(String, SocketAddr)>,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of measurement per server (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Seconds of unmeasured warm-up before each round of each server.
    #[arg(long, default_value_t = 0.2)]
    warmup_secs: f64,
    /// Stop a server's round after this many reads, even before its time is up.
    #[arg(long, default_value_t = 5_000_000)]
    max_reads: u64,
    /// Unit id to read.
    #[arg(long, default_value_t = 1)]
    unit: u8,
    /// First register (0-based); the default is relay-sim's record block.
    #[arg(long, default_value_t = 200)]
    address: u16,
    /// Registers per read.
    #[arg(long, default_value_t = 117)]
    quantity: u16,
    /// Function: 4 = input registers, 3 = holding registers.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(3..=4))]
    function: u8,
    /// A server's process id, as NAME=PID (NAME as in --target): its CPU time (user +
    /// system, from /proc) is measured too and printed per read. Linux only.
    #[arg(long = "server-pid", value_parser = parse_pid)]
    pids: Vec<(String, u32)>,
    /// Rounds: each server is loaded for --secs/--rounds at a time, servers in turn, so
    /// that a noisy machine slows every server alike; figures are over all rounds.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
}

fn parse_target(s: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=HOST:PORT"))?;
    let addr = addr
        .parse()
        .map_err(|e| format!("'{addr}' is not HOST:PORT: {e}"))?;
    Ok((name.to_owned(), addr))
}

fn parse_pid(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=PID"))?;
    let pid = pid
        .parse()
        .map_err(|e| format!("'{pid}' is not a PID: {e}"))?;
    Ok((name.to_owned(), pid))
}

/// CPU time (user + system) a process has used so far, in seconds, from /proc.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture we run on.
    Some(ticks as f64 / 100.0)
}

/// What one server's run measured.
#[derive(Debug)]
struct Figures {
    reads: u64,
    errors: u64,
    secs: f64,
    /// Latencies of successful reads, in nanoseconds (sorted before percentiles are read).
    latencies: Vec<u64>,
    /// Server CPU seconds used during the measured time, if its PID was given.
    server_cpu: Option<f64>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.reads as f64 / self.secs
    }

    fn percentile_us(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i] as f64 / 1000.0
    }
}

async fn one_client(
    addr: SocketAddr,
    args: Arc<Args>,
    warmup_until: Instant,
    until: Instant,
    budget: Arc<AtomicU64>,
) -> Result<(Vec<u64>, u64), String> {
    let mut ctx = tcp::connect_slave(addr, Slave(args.unit))
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let mut latencies = Vec::new();
    let mut errors = 0;
    loop {
        let start = Instant::now();
        if start >= until {
            break;
        }
        let measured = start >= warmup_until;
        if measured && budget.fetch_sub(1, Ordering::Relaxed) == 0 {
            budget.store(0, Ordering::Relaxed);
            break;
        }
        let result = if args.function == 4 {
            ctx.read_input_registers(args.address, args.quantity).await
        } else {
            ctx.read_holding_registers(args.address, args.quantity)
                .await
        };
        let elapsed = start.elapsed();
        match result {
            Ok(Ok(regs)) if regs.len() == usize::from(args.quantity) => {
                if measured {
                    latencies.push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
                }
            }
            Ok(_) => errors += 1,
            Err(e) => return Err(format!("connection to {addr} failed: {e}")),
        }
    }
    Ok((latencies, errors))
}

/// Loads one server for `secs` seconds after the warm-up.
async fn load(
    addr: SocketAddr,
    args: Arc<Args>,
    secs: f64,
    pid: Option<u32>,
) -> Result<Figures, String> {
    let warmup_until = Instant::now() + Duration::from_secs_f64(args.warmup_secs);
    let until = warmup_until + Duration::from_secs_f64(secs);
    let cpu_probe = async move {
        tokio::time::sleep_until(warmup_until.into()).await;
        let start = pid.and_then(cpu_secs);
        tokio::time::sleep_until(until.into()).await;
        start.zip(pid.and_then(cpu_secs)).map(|(a, b)| b - a)
    };
    let cpu_probe = tokio::spawn(cpu_probe);
    let budget = Arc::new(AtomicU64::new(args.max_reads));
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            tokio::spawn(one_client(
                addr,
                Arc::clone(&args),
                warmup_until,
                until,
                Arc::clone(&budget),
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task
            .await
            .map_err(|e| format!("client task failed: {e}"))??;
        latencies.extend(l);
        errors += e;
    }
    let secs = Instant::now()
        .min(until)
        .saturating_duration_since(warmup_until)
        .as_secs_f64();
    let server_cpu = cpu_probe.await.ok().flatten();
    Ok(Figures {
        reads: latencies.len() as u64,
        errors,
        secs,
        latencies,
        server_cpu,
    })
}

fn main() -> ExitCode {
    let args = Arc::new(Args::parse());
    // One thread for all clients: the cheapest client, so the server is what is measured.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("modbus-load: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "modbus-load: {} clients, {} s per server in {} rounds, FC{:02} {} registers at {}, unit {}",
        args.clients, args.secs, args.rounds, args.function, args.quantity, args.address, args.unit
    );
    let rounds = args.rounds.max(1);
    let slice = args.secs / f64::from(rounds);
    let mut totals: Vec<Option<Figures>> = args
        .targets
        .iter()
        .map(|_| {
            Some(Figures {
                reads: 0,
                errors: 0,
                secs: 0.0,
                latencies: Vec::new(),
                server_cpu: None,
            })
        })
        .collect();
    for _ in 0..rounds {
        for ((name, addr), total) in args.targets.iter().zip(&mut totals) {
            let Some(t) = total else { continue };
            let pid = args.pids.iter().find(|(n, _)| n == name).map(|&(_, p)| p);
            match runtime.block_on(load(*addr, Arc::clone(&args), slice, pid)) {
                Ok(f) => {
                    if let Some(cpu) = f.server_cpu {
                        t.server_cpu = Some(t.server_cpu.unwrap_or(0.0) + cpu);
                    }
                    t.reads += f.reads;
                    t.errors += f.errors;
                    t.secs += f.secs;
                    t.latencies.extend(f.latencies);
                }
                Err(e) => {
                    println!("{name}: {e}");
                    *total = None;
                }
            }
        }
    }
    println!(
        "{:<12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>8} {:>14}",
        "server",
        "reads/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "errors",
        "server CPU µs/read"
    );
    let mut failed = false;
    for ((name, _), total) in args.targets.iter().zip(&mut totals) {
        let Some(f) = total else {
            println!("{name:<12} failed");
            failed = true;
            continue;
        };
        f.latencies.sort_unstable();
        let max = f.latencies.last().map_or(f64::NAN, |&n| n as f64 / 1000.0);
        let cpu = f.server_cpu.map_or_else(
            || "-".to_owned(),
            |c| format!("{:.1}", c * 1e6 / f.reads.max(1) as f64),
        );
        println!(
            "{:<12} {:>12.0} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>8} {:>14}",
            name,
            f.rate(),
            f.percentile_us(0.50),
            f.percentile_us(0.99),
            f.percentile_us(0.999),
            max,
            f.errors,
            cpu
        );
        failed |= f.errors > 0 || f.reads == 0;
    }
    if let (Some(Some(first)), Some((name, _))) = (totals.first(), args.targets.first()) {
        for ((other, _), f) in args.targets.iter().zip(&totals).skip(1) {
            if let Some(f) = f {
                println!("ratio {name} / {other}: {:.1}x", first.rate() / f.rate());
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
