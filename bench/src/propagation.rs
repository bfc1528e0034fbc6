//! `propagation`: how long a block takes to become every node's tip.
//!
//! Starts N nodes in this process on loopback ports, all peers of each other, on a network
//! of difficulty 8. For each of `--blocks` rounds it hands one new record to node 1 only;
//! node 1 mines it and pushes the block; the time from node 1 storing the block to the last
//! node taking it as its tip is one sample. Prints p50, p99 and max per N, over plain
//! HTTP and over HTTPS (mutual TLS, certificates from `gridledger::tls::issue`), with the
//! ratio of the two p99s and the TLS handshakes each node served per second (connection
//! reuse keeps it near zero once the peers are connected).
//!
//! `cargo run --release -p gridledger-bench --bin propagation -- --nodes 4 --nodes 16`

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use clap::Parser;
use ed25519_dalek::SigningKey;
use gridledger::poll::PollConfig;
use gridledger::run::{start, NodeConfig, RunningNode};
use gridledger::tls::issue::Consortium;
use gridledger_chain::Network;
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

/// Block propagation across N nodes on loopback.
#[derive(Debug, Parser)]
#[command(name = "propagation", about)]
struct Args {
    /// Node counts to measure (repeat).
    #[arg(long = "nodes", default_values_t = [4u16, 16])]
    nodes: Vec<u16>,
    /// Blocks per node count.
    #[arg(long, default_value_t = 60)]
    blocks: u32,
    /// Blocks mined first and not counted: the peers' first connections (and their TLS
    /// handshakes) are made then, and counted apart.
    #[arg(long, default_value_t = 3)]
    warmup: u32,
    /// Plain HTTP only (skip the HTTPS run).
    #[arg(long)]
    no_tls: bool,
}

/// What one run measured.
struct Run {
    samples: Vec<Duration>,
    /// TLS handshakes served by all nodes while blocks were measured.
    handshakes: u64,
    /// The same, warm-up included.
    all_handshakes: u64,
    elapsed: Duration,
}

/// Per-node certificate files for a run over HTTPS, under `dir`.
fn tls_files(
    set: &Consortium,
    dir: &std::path::Path,
    i: usize,
) -> Result<gridledger::tls::TlsFiles, String> {
    let made = set
        .node(&format!("node{i}"), &[])
        .map_err(|e| e.to_string())?;
    let (cert, key, ca) = (
        dir.join("node.pem"),
        dir.join("node.key"),
        dir.join("ca.pem"),
    );
    for (p, text) in [
        (&cert, &made.cert_pem),
        (&key, &made.key_pem),
        (&ca, &set.ca_pem),
    ] {
        std::fs::write(p, text).map_err(|e| e.to_string())?;
    }
    Ok(gridledger::tls::TlsFiles {
        cert: Some(cert),
        key: Some(key),
        ca: Some(ca.clone()),
        client_ca: Some(ca),
    })
}

fn tip(n: &RunningNode) -> String {
    n.shared
        .lock()
        .map(|c| c.ledger.tree().tip().to_hex())
        .unwrap_or_default()
}

async fn measure(n: u16, blocks: u32, warmup: u32, tls: bool) -> Result<Run, String> {
    let set = if tls {
        Some(Consortium::new("bench", 2).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let scheme = if tls {
        "https://localhost"
    } else {
        "http://127.0.0.1"
    };
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect::<Result<_, _>>()?;
    let dirs: Vec<tempfile::TempDir> = (0..n)
        .map(|_| tempfile::tempdir().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let config = NodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], *port)),
            data_dir: dirs[i].path().to_owned(),
            network: Network::new("propagation", 8),
            relays: Vec::new(),
            peers: ports
                .iter()
                .filter(|p| *p != port)
                .map(|p| format!("{scheme}:{p}"))
                .collect(),
            poll: PollConfig {
                period: Duration::from_secs(60),
                offset: Duration::from_secs(1),
                io_timeout: Duration::from_secs(1),
            },
            // Pull sync is the fallback; this measures the push.
            sync_every: Duration::from_secs(30),
            max_records_per_block: 16,
            mining_slot: Duration::ZERO,
            block_relay: Default::default(),
            tls: match &set {
                Some(set) => tls_files(set, dirs[i].path(), i)?,
                None => Default::default(),
            },
            cors_origins: Vec::new(),
            finality: Default::default(),
            admin_token: None,
        };
        let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
        nodes.push(start(config, key).await.map_err(|e| e.to_string())?);
    }
    // Every node syncs once now, so that it connects to each of its peers (the HTTPS run
    // makes its TLS handshakes here, counted apart from the measured blocks).
    for node in &nodes {
        if let Ok(core) = node.shared.lock() {
            core.sync_wanted.notify_one();
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let model = SignalModel::new(1, Profile::Realistic);
    let mut samples = Vec::new();
    let mut began = Instant::now();
    let mut before = 0;
    for b in 0..blocks + warmup {
        if b == warmup {
            began = Instant::now();
            before = handshakes(&nodes);
        }
        let before = tip(&nodes[0]);
        let record = model.record(
            RelayId(1),
            Minute(29_000_000 + b),
            6,
            RecordFlags::CLOCK_SET,
        );
        nodes[0]
            .shared
            .lock()
            .map_err(|_| "poisoned".to_owned())?
            .read(record);
        // Node 1 mines it (its miner looks at least every 500 ms).
        let deadline = Instant::now() + Duration::from_secs(10);
        let new_tip = loop {
            let t = tip(&nodes[0]);
            if t != before {
                break t;
            }
            if Instant::now() > deadline {
                return Err(format!("block {b} was not mined within 10 s"));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        let mined = Instant::now();
        let deadline = mined + Duration::from_secs(10);
        while !nodes.iter().all(|node| tip(node) == new_tip) {
            if Instant::now() > deadline {
                return Err(format!("block {b} did not reach every node within 10 s"));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        if b >= warmup {
            samples.push(mined.elapsed());
        }
    }
    let elapsed = began.elapsed();
    let after = handshakes(&nodes);
    for node in nodes {
        node.stop().await;
    }
    samples.sort_unstable();
    Ok(Run {
        samples,
        handshakes: after - before,
        all_handshakes: after,
        elapsed,
    })
}

/// A free loopback port below the kernel's ephemeral range (32768 and up), so that no
/// outgoing connection of the nodes already started can take it before its node binds it.
fn free_port() -> Result<u16, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919) % 10_000;
    for _ in 0..10_000 {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((seed + k * 13) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port between 20000 and 32000".into())
}

/// TLS handshakes served by every node so far.
fn handshakes(nodes: &[RunningNode]) -> u64 {
    nodes
        .iter()
        .filter_map(|n| {
            n.shared.lock().ok().and_then(|c| {
                c.tls
                    .as_ref()
                    .map(|t| t.handshakes.load(std::sync::atomic::Ordering::Relaxed))
            })
        })
        .sum()
}

fn pct(s: &[Duration], p: f64) -> f64 {
    s[((s.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let Some(rt) = gridledger_bench::runtime("propagation") else {
        return std::process::ExitCode::FAILURE;
    };
    println!(
        "propagation: a block from node 1 to every node's tip, {} blocks per run, loopback, full mesh",
        args.blocks
    );
    println!(
        "{:>6} {:>6} {:>10} {:>10} {:>10} {:>18}",
        "nodes", "proto", "p50 ms", "p99 ms", "max ms", "handshakes/s/node"
    );
    let mut failed = false;
    for &n in &args.nodes {
        let mut p99 = Vec::new();
        for tls in [false, true] {
            if tls && args.no_tls {
                continue;
            }
            let proto = if tls { "https" } else { "http" };
            match rt.block_on(measure(n, args.blocks, args.warmup, tls)) {
                Ok(run) if !run.samples.is_empty() => {
                    let s = &run.samples;
                    let rate =
                        run.handshakes as f64 / run.elapsed.as_secs_f64().max(1e-9) / f64::from(n);
                    println!(
                        "{n:>6} {proto:>6} {:>10.2} {:>10.2} {:>10.2} {:>18}",
                        pct(s, 0.5),
                        pct(s, 0.99),
                        pct(s, 1.0),
                        if tls {
                            format!(
                                "{rate:.3} ({} measured, {} with warm-up)",
                                run.handshakes, run.all_handshakes
                            )
                        } else {
                            "-".to_owned()
                        }
                    );
                    p99.push(pct(s, 0.99));
                }
                Ok(_) => {
                    println!("{n:>6} {proto:>6} no samples");
                    failed = true;
                }
                Err(e) => {
                    println!("{n:>6} {proto:>6} failed: {e}");
                    failed = true;
                }
            }
        }
        if let [http, https] = p99[..] {
            println!(
                "{n:>6} https/http p99 ratio {:.2} (goal <= 1.2)",
                https / http.max(1e-9)
            );
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
