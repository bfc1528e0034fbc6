//! What the bench binaries share.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use gridledger::ledger::Ledger;
use gridledger_chain::assemble;
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

/// A multi-threaded tokio runtime, or `None` after saying why on stderr (`name: error`).
#[must_use]
pub fn runtime(name: &str) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("{name}: {e}");
            None
        }
    }
}

/// A node on loopback (port 0) over `dir`, with no relays and no mining of its own: what
/// the benches run as a chain to serve, sync or query. Callers change what they measure
/// with struct-update syntax.
#[must_use]
pub fn node_config(
    dir: &std::path::Path,
    network: gridledger_chain::Network,
    peers: Vec<String>,
) -> gridledger::run::NodeConfig {
    use std::time::Duration;
    gridledger::run::NodeConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.to_owned(),
        network,
        relays: Vec::new(),
        peers,
        poll: gridledger::poll::PollConfig {
            period: Duration::from_secs(60),
            offset: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
        },
        sync_every: Duration::from_secs(5),
        max_records_per_block: 256,
        mining_slot: Duration::ZERO,
        block_relay: Default::default(),
        tls: Default::default(),
        cors_origins: Vec::new(),
        finality: Default::default(),
        admin_token: None,
    }
}

/// A running node's main-chain height (0 if its lock is poisoned).
#[must_use]
pub fn height(node: &gridledger::run::RunningNode) -> u32 {
    node.shared
        .lock()
        .map(|c| c.ledger.tree().height())
        .unwrap_or(0)
}

/// Posts `block` raw to the node at `base` (`POST /blocks`, as a peer pushes it); an error
/// if it is not taken.
pub async fn post_block(
    client: &reqwest::Client,
    base: &str,
    block: &gridledger_chain::Block,
) -> Result<(), String> {
    let r = client
        .post(format!("{base}/blocks"))
        .header("content-type", "application/octet-stream")
        .body(block.to_bytes())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("a block was refused: {}", r.status()));
    }
    Ok(())
}

/// Minute of the first record of the chains [`build_to`] builds.
pub const FIRST_MINUTE: u32 = 26_000_000;

/// Extends the chain (one key, `per_block` relays' records a block, low difficulty,
/// real signatures, committed 1 000 blocks a batch) in `dir` to `target` blocks; returns the raw bytes of the blocks added.
pub fn build_to(
    dir: &Path,
    network: &gridledger_chain::Network,
    target: u32,
    per_block: u32,
) -> Result<u64, String> {
    let mut ledger = Ledger::open(dir, network.clone()).map_err(|e| e.to_string())?;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let model = SignalModel::new(1, Profile::Realistic);
    let cancel = AtomicBool::new(false);
    let mut parent = ledger.tip_header().map_err(|e| e.to_string())?;
    let mut raw = 0u64;
    let t = Instant::now();
    while parent.height < target {
        let mut batch = Vec::with_capacity(1000);
        while batch.len() < 1000 && parent.height < target {
            let minute = Minute(FIRST_MINUTE + parent.height);
            let records: Vec<_> = (1..=per_block)
                .map(|r| model.record(RelayId(r), minute, 6, RecordFlags::CLOCK_SET))
                .collect();
            // Stamped when its records' minute has closed (rule 9), as a miner does.
            let time = gridledger::run::block_time(parent.time_ms + 1000, 0, &records);
            let block =
                assemble(&parent, &records, &key, time, 0, &cancel).ok_or("assembly failed")?;
            raw += block.to_bytes().len() as u64;
            parent = block.header;
            batch.push(block);
        }
        for r in ledger.add_batch(batch, u64::MAX / 2) {
            r.map_err(|e| e.to_string())?;
        }
    }
    eprintln!(
        "  (built to {target} blocks in {:.0} s)",
        t.elapsed().as_secs_f64()
    );
    Ok(raw)
}

/// `n` blocks on `parent`, made as [`build_to`] makes them (same key, next minutes).
pub fn next_blocks(
    mut parent: gridledger_chain::Header,
    n: u32,
    per_block: u32,
) -> Result<Vec<gridledger_chain::Block>, String> {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let model = SignalModel::new(1, Profile::Realistic);
    let cancel = AtomicBool::new(false);
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let minute = Minute(FIRST_MINUTE + parent.height);
        let records: Vec<_> = (1..=per_block)
            .map(|r| model.record(RelayId(r), minute, 6, RecordFlags::CLOCK_SET))
            .collect();
        let time = gridledger::run::block_time(parent.time_ms + 1000, 0, &records);
        let block = assemble(&parent, &records, &key, time, 0, &cancel).ok_or("assembly failed")?;
        parent = block.header;
        out.push(block);
    }
    Ok(out)
}
