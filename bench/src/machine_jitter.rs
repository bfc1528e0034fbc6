//! `machine-jitter`: how much this machine alone stretches a fixed piece of work. A
//! latency goal is only as tight as the machine allows: this loop does the same
//! computation (no I/O, no allocation, no locks) again and again on `--threads` threads
//! and prints how long each took, p50/p90/p99/max. On a virtual machine the tail comes
//! from the host (other guests, interrupts), and no code in the measured program can
//! remove it; issue 14's day `/readings` (about 7 ms of work) is compared with it.
//!
//! `cargo run --release -p gridledger-bench --bin machine-jitter -- --ms 7`

use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "machine-jitter", about)]
struct Args {
    /// The work's length on this machine when nothing disturbs it (calibrated), ms.
    #[arg(long, default_value_t = 7.0)]
    ms: f64,
    /// How long each run lasts, s.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Threads working at once, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
}

/// A fixed computation over a 4 MiB buffer, `passes` times (its result is used so that
/// the compiler keeps it).
fn work(buf: &mut [u64], passes: u32) -> u64 {
    let mut x = 0u64;
    for _ in 0..passes {
        for v in buf.iter_mut() {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(*v);
            *v ^= x >> 7;
        }
    }
    x
}

fn percentile(v: &[Duration], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
}

fn main() {
    let args = Args::parse();
    // Calibrate: the least time of a few single passes.
    let mut buf = vec![1u64; 1 << 19];
    let one = (0..20)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(work(&mut buf, 1));
            t.elapsed()
        })
        .min()
        .unwrap_or(Duration::from_millis(1));
    let passes = ((args.ms / (one.as_secs_f64() * 1e3)).round() as u32).max(1);
    println!(
        "machine-jitter: {passes} passes of {:.2} ms (work of about {:.1} ms), {} s per run",
        one.as_secs_f64() * 1e3,
        one.as_secs_f64() * 1e3 * f64::from(passes),
        args.secs
    );
    for &threads in &args.threads {
        let end = Instant::now() + Duration::from_secs(args.secs);
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                std::thread::spawn(move || {
                    let mut buf = vec![1u64; 1 << 19];
                    let mut lat = Vec::new();
                    while Instant::now() < end {
                        let t = Instant::now();
                        std::hint::black_box(work(&mut buf, passes));
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut lat: Vec<Duration> = workers
            .into_iter()
            .filter_map(|w| w.join().ok())
            .flatten()
            .collect();
        if lat.is_empty() {
            println!("  {threads} thread(s): no samples");
            continue;
        }
        lat.sort();
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        println!(
            "  {threads} thread(s): p50 {p50:.2} ms  p90 {:.2} ms  p99 {p99:.2} ms  max {:.2} ms  \
             p99/p50 {:.2}  ({} samples)",
            percentile(&lat, 0.9),
            percentile(&lat, 1.0),
            p99 / p50,
            lat.len()
        );
    }
}
