//! `sync-bench`: how fast a fresh node joins a peer that holds a chain.
//!
//! Builds a chain of `--blocks` one-record blocks in a data dir (not timed), starts a node
//! on it, then a fresh node whose only peer it is, and times the fresh node from start to
//! holding the whole chain, over loopback HTTP (raw block lists, validation of every block
//! with its signature, durable commits).
//!
//! `cargo run --release -p gridledger-bench --bin sync-bench -- --blocks 20000`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use gridledger::poll::PollConfig;
use gridledger::run::{start, NodeConfig};
use gridledger_chain::Network;

/// Sync speed of a fresh node.
#[derive(Debug, Parser)]
#[command(name = "sync-bench", about)]
struct Args {
    /// Blocks in the chain to join.
    #[arg(long, default_value_t = 20_000)]
    blocks: u32,
}

const NET: &str = "sync-bench";
const BITS: u8 = 4;

fn config(dir: &std::path::Path, peers: Vec<String>) -> NodeConfig {
    NodeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.to_owned(),
        network: Network::new(NET, BITS),
        relays: Vec::new(),
        peers,
        poll: PollConfig {
            period: Duration::from_secs(60),
            offset: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
        },
        sync_every: Duration::from_millis(100),
        max_records_per_block: 16,
        mining_slot: Duration::ZERO,
        block_relay: Default::default(),
        admin_token: None,
        tls: Default::default(),
        cors_origins: Vec::new(),
    }
}

async fn run(blocks: u32) -> Result<(), String> {
    let a = tempfile::tempdir().map_err(|e| e.to_string())?;
    let b = tempfile::tempdir().map_err(|e| e.to_string())?;
    let built = Instant::now();
    gridledger::offline::debug_append(a.path(), NET, BITS, blocks, &mut std::io::sink())
        .map_err(|e| e.to_string())?;
    println!(
        "built {blocks} one-record blocks in {:.1} s (not timed below)",
        built.elapsed().as_secs_f64()
    );
    let source = start(
        config(a.path(), Vec::new()),
        gridledger::keys::generate().map_err(|e| e.to_string())?,
    )
    .await
    .map_err(|e| e.to_string())?;
    let peer = format!("http://{}", source.addr);
    let began = Instant::now();
    let fresh = start(
        config(b.path(), vec![peer]),
        gridledger::keys::generate().map_err(|e| e.to_string())?,
    )
    .await
    .map_err(|e| e.to_string())?;
    let height = |n: &gridledger::run::RunningNode| {
        n.shared
            .lock()
            .map(|c| c.ledger.tree().height())
            .unwrap_or(0)
    };
    let deadline = began + Duration::from_secs(1800);
    while height(&fresh) < blocks {
        if Instant::now() > deadline {
            return Err(format!(
                "synced {} of {blocks} in 30 minutes",
                height(&fresh)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "synced {blocks} blocks in {secs:.2} s: {:.0} blocks/s",
        f64::from(blocks) / secs
    );
    fresh.stop().await;
    source.stop().await;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let Some(rt) = gridledger_bench::runtime("sync-bench") else {
        return std::process::ExitCode::FAILURE;
    };
    match rt.block_on(run(args.blocks)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sync-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
