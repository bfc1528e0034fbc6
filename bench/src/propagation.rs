//! `propagation`: how long a block takes to become every node's tip.
//!
//! Starts N nodes in this process on loopback ports, all peers of each other, on a network
//! of difficulty 8. For each of `--blocks` rounds it hands one new record to node 1 only;
//! node 1 mines it and pushes the block; the time from node 1 storing the block to the last
//! node taking it as its tip is one sample. Prints p50, p99 and max per N.
//!
//! `cargo run --release -p gridledger-bench --bin propagation -- --nodes 4 --nodes 16`

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use clap::Parser;
use ed25519_dalek::SigningKey;
use gridledger::poll::PollConfig;
use gridledger::run::{start, NodeConfig, RunningNode};
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
}

fn tip(n: &RunningNode) -> String {
    n.shared
        .lock()
        .map(|c| c.ledger.tree().tip().to_hex())
        .unwrap_or_default()
}

async fn measure(n: u16, blocks: u32) -> Result<Vec<Duration>, String> {
    let ports: Vec<u16> = (0..n)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
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
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            poll: PollConfig {
                period: Duration::from_secs(60),
                offset: Duration::from_secs(1),
                io_timeout: Duration::from_secs(1),
            },
            // Pull sync is the fallback; this measures the push.
            sync_every: Duration::from_secs(30),
            max_records_per_block: 16,
            mining_jitter: Duration::ZERO,
            admin_token: None,
        };
        let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
        nodes.push(start(config, key).await.map_err(|e| e.to_string())?);
    }
    let model = SignalModel::new(1, Profile::Realistic);
    let mut samples = Vec::new();
    for b in 0..blocks {
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
        samples.push(mined.elapsed());
    }
    for node in nodes {
        node.stop().await;
    }
    samples.sort_unstable();
    Ok(samples)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("propagation: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "propagation: a block from node 1 to every node's tip, {} blocks per run, loopback",
        args.blocks
    );
    println!(
        "{:>6} {:>10} {:>10} {:>10}",
        "nodes", "p50 ms", "p99 ms", "max ms"
    );
    let mut failed = false;
    for &n in &args.nodes {
        match rt.block_on(measure(n, args.blocks)) {
            Ok(s) => {
                let pct =
                    |p: f64| s[((s.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
                println!(
                    "{n:>6} {:>10.2} {:>10.2} {:>10.2}",
                    pct(0.5),
                    pct(0.99),
                    pct(1.0)
                );
            }
            Err(e) => {
                println!("{n:>6} failed: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
