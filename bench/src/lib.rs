//! What the bench binaries share.

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
