//! Node memory with many records on the chain (DESIGN.md: < 200 MB RSS with 1 000 000).
//!
//! ```sh
//! cargo run --release -p gridledger-bench --bin memory            # --records 1000000
//! ```
//!
//! Builds a data dir holding `--records` minute records (`--per-block` relays' records per
//! block), then starts a fresh process that runs a node on it: the node opens the store,
//! re-verifies the whole chain, builds its tree and record index and serves its API. The
//! child prints its resident memory (VmRSS) once it is up and serving, and its peak (VmHWM).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use clap::Parser;
use gridledger::ledger::Ledger;
use gridledger::run::start;
use gridledger_chain::{assemble, Network};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

#[derive(Debug, Parser)]
struct Args {
    /// Records on the chain.
    #[arg(long, default_value_t = 1_000_000)]
    records: u32,
    /// Records per block (one per relay).
    #[arg(long, default_value_t = 100)]
    per_block: u32,
    /// Build the data dir here and keep it (default: a temporary dir); if it already holds
    /// a chain, measure that chain without building.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Internal: open this data dir as a node and report memory.
    #[arg(long, hide = true)]
    child: Option<PathBuf>,
}

const NETWORK: &str = "memory-bench";

fn network() -> Network {
    Network::new(NETWORK, 0)
}

fn proc_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .map(|l| l[field.len()..].trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

fn build(dir: &Path, records: u32, per_block: u32) -> Result<(), String> {
    let mut ledger = Ledger::open(dir, network()).map_err(|e| e.to_string())?;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let model = SignalModel::new(1, Profile::Realistic);
    let cancel = AtomicBool::new(false);
    let mut parent = network().genesis().header;
    let first_minute = 29_000_000u32;
    let blocks = records.div_ceil(per_block);
    let t = Instant::now();
    let mut made = 0u32;
    for b in 0..blocks {
        let n = per_block.min(records - made);
        let batch: Vec<_> = (0..n)
            .map(|r| {
                model.record(
                    RelayId(r + 1),
                    Minute(first_minute + b),
                    6,
                    RecordFlags::CLOCK_SET,
                )
            })
            .collect();
        // Stamped when its records' minute has closed (rule 9), as a miner does.
        let time = gridledger::run::block_time(parent.time_ms + 1000, 0, &batch);
        let block = assemble(&parent, &batch, &key, time, 0, &cancel).ok_or("assembly failed")?;
        parent = block.header;
        ledger
            .add(block, u64::MAX / 2)
            .map_err(|e| format!("block {b}: {e}"))?;
        made += n;
    }
    println!(
        "built {made} records in {blocks} blocks in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn child(dir: &Path) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let t = Instant::now();
        let node = start(
            gridledger_bench::node_config(dir, network(), Vec::new()),
            ed25519_dalek::SigningKey::from_bytes(&[8; 32]),
        )
        .await
        .map_err(|e| e.to_string())?;
        let opened = t.elapsed();
        let (height, records) = {
            let core = node.shared.lock().map_err(|e| e.to_string())?;
            let s = core.ledger.summary();
            (s.height, s.records)
        };
        // Serve one request, so the API's memory counts too.
        let status = tokio::net::TcpStream::connect(node.addr).await.is_ok();
        println!(
            "node up on {records} records (height {height}) in {:.1} s (open, verification under the verified mark without signatures), API {}",
            opened.as_secs_f64(),
            if status { "listening" } else { "NOT listening" }
        );
        println!(
            "  resident memory (VmRSS): {}   peak (VmHWM): {}",
            proc_status("VmRSS:"),
            proc_status("VmHWM:")
        );
        node.stop().await;
        Ok(())
    })
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match &args.child {
        Some(dir) => child(dir),
        None => (|| {
            let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            let dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| tmp.path().to_owned());
            if dir.join(gridledger::store::DB_FILE).exists() {
                println!("measuring the chain already in {}", dir.display());
            } else {
                build(&dir, args.records, args.per_block.max(1))?;
            }
            let me = std::env::current_exe().map_err(|e| e.to_string())?;
            let status = Command::new(me)
                .arg("--child")
                .arg(&dir)
                .status()
                .map_err(|e| e.to_string())?;
            if status.success() {
                println!("goal: < 200 MB resident with 1 000 000 records (DESIGN.md)");
                Ok(())
            } else {
                Err(format!("the node process failed: {status}"))
            }
        })(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memory: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
