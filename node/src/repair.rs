//! Recovering a damaged data dir (`gridledger repair`).
//!
//! A node refuses to start on a chain that does not verify. Repair builds a new store beside
//! the damaged one: it copies the main chain's blocks in order, each validated again, up to
//! the first one that cannot be read or does not verify (a panic of the storage engine
//! counts as such), then fetches the rest from peers exactly as a syncing node does (every
//! block validated). Only then does it swap the files; the damaged one stays beside the new
//! one as `chain.redb.damaged-UNIXTIME`, so nothing is ever deleted. Side branches are not
//! salvaged: the peers have whatever of them still matters. What the node keeps beside the
//! chain (its reads of the relays, its votes and final checkpoints, evidence, disputes) is
//! copied, as far as it can be read: peers cannot give it back.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::chain::{Block, BlockId, Height, Network};
use crate::core::{now_ms, Core};
use crate::ledger::{guard, Ledger};
use crate::store::{Store, StoreError, DB_FILE};

/// Main-chain ids read from the damaged store at a time.
const SALVAGE_BATCH: usize = 1024;
/// Rounds of pulling from the peers: the peers may mine while we fetch.
const PULL_ROUNDS: usize = 3;

/// `gridledger repair`'s flags.
#[derive(Debug, clap::Args)]
pub struct RepairArgs {
    /// The node's data dir.
    #[arg(long, env = "GRIDLEDGER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// A peer's base URL to fetch the missing blocks from; repeat for several.
    #[arg(long = "from-peer")]
    pub from_peer: Vec<String>,
    /// The network name, if the damage took the data dir's own stamp with it.
    #[arg(long, requires = "difficulty_bits")]
    pub network: Option<String>,
    /// The network's difficulty, with --network.
    #[arg(long, requires = "network")]
    pub difficulty_bits: Option<u8>,
    /// CA certificate(s) (PEM) for https:// peers [default: the system's roots]
    #[arg(long, env = "GRIDLEDGER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// A certificate (PEM) to present to peers that ask for one (mutual TLS).
    #[arg(long, env = "GRIDLEDGER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, env = "GRIDLEDGER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

impl RepairArgs {
    /// The network the flags name, if they name one.
    #[must_use]
    pub fn network(&self) -> Option<Network> {
        self.network
            .as_ref()
            .zip(self.difficulty_bits)
            .map(|(name, bits)| Network::new(name, bits))
    }

    /// The HTTP client for the peers, with the TLS the flags give.
    pub fn client(&self) -> Result<crate::wire::PeerClient, RepairError> {
        let files = crate::tls::TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
            client_ca: None,
        };
        // Only the client side is used: no server is started.
        let tls = crate::tls::Tls::load(files)?;
        crate::wire::client(Some(tls.client_config()?))
            .map_err(|e| RepairError::Client(e.to_string()))
    }
}

/// Why a repair failed. The damaged data dir is untouched in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepairError {
    /// The new store could not be created or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TLS flags cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The HTTP client cannot be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// The damaged store does not say which network it is for.
    #[error(
        "the data dir's network stamp cannot be read ({0}); give --network and --difficulty-bits"
    )]
    UnknownNetwork(String),
    /// Moving the files into place failed.
    #[error("cannot move {from} to {to}: {source}")]
    Swap {
        /// Source path.
        from: PathBuf,
        /// Destination path.
        to: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a repair did.
#[derive(Clone, Debug)]
pub struct Report {
    /// Blocks kept from the damaged store (heights 1 to this).
    pub salvaged: Height,
    /// Why salvaging stopped there, if it did not reach the stored tip.
    pub damage: Option<String>,
    /// Blocks fetched from peers.
    pub fetched: u32,
    /// Peers that failed, with why.
    pub peer_errors: Vec<(String, String)>,
    /// Height of the repaired chain.
    pub height: Height,
    /// Its tip.
    pub tip: BlockId,
    /// Where the damaged file was kept.
    pub kept: Option<PathBuf>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "repaired: kept {} blocks from the damaged store",
            self.salvaged
        )?;
        if let Some(why) = &self.damage {
            write!(f, " (stopped at height {}: {why})", self.salvaged + 1)?;
        }
        write!(
            f,
            ", fetched {} from peers; height {}, tip {}",
            self.fetched, self.height, self.tip
        )?;
        for (peer, e) in &self.peer_errors {
            write!(f, "\npeer {peer}: {e}")?;
        }
        if let Some(kept) = &self.kept {
            write!(f, "\nthe damaged file is kept as {}", kept.display())?;
        }
        Ok(())
    }
}

/// Repairs the data dir `dir`; `network` is needed only if the damage took the store's
/// network stamp with it. See the module doc.
/// `gridledger repair` as its flags say.
pub async fn repair_as(args: RepairArgs) -> Result<Report, RepairError> {
    let client = args.client()?;
    repair(&args.data_dir, args.network(), &args.from_peer, client).await
}

pub async fn repair(
    dir: &Path,
    network: Option<Network>,
    peers: &[String],
    client: crate::wire::PeerClient,
) -> Result<Report, RepairError> {
    let stamp = now_ms() / 1000;
    let new_dir = dir.join(format!(".repair-{stamp}"));
    let result = rebuild(dir, &new_dir, network, peers, client).await;
    let (mut report, ledger) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&new_dir);
            return Err(e);
        }
    };
    drop(ledger);

    // Swap: the damaged files go aside (the database first: without it the data dir holds
    // no chain, never a rebuilt index over a damaged block file), the rebuilt ones into
    // place (the block file first, for the same reason).
    for name in [DB_FILE, crate::blockfile::FILE] {
        let live = dir.join(name);
        if live.exists() {
            let kept = dir.join(format!("{name}.damaged-{stamp}"));
            std::fs::rename(&live, &kept).map_err(|source| RepairError::Swap {
                from: live.clone(),
                to: kept.clone(),
                source,
            })?;
            if name == DB_FILE {
                report.kept = Some(kept);
            }
        }
    }
    for name in [crate::blockfile::FILE, DB_FILE] {
        let (rebuilt, live) = (new_dir.join(name), dir.join(name));
        std::fs::rename(&rebuilt, &live).map_err(|source| RepairError::Swap {
            from: rebuilt,
            to: live,
            source,
        })?;
    }
    let _ = std::fs::remove_dir_all(&new_dir);
    Ok(report)
}

async fn rebuild(
    dir: &Path,
    new_dir: &Path,
    network: Option<Network>,
    peers: &[String],
    client: crate::wire::PeerClient,
) -> Result<(Report, Arc<Mutex<Core>>), RepairError> {
    let old = guard(|| Store::open_read_only(dir));
    let net = match network {
        Some(n) => n,
        None => {
            let found = old
                .as_ref()
                .map_err(ToString::to_string)
                .and_then(|s| guard(|| s.network()).map_err(|e| e.to_string()))
                .and_then(|n| n.ok_or_else(|| "no stamp".to_owned()));
            match found {
                Ok((name, bits)) => Network::new(&name, bits),
                Err(e) => return Err(RepairError::UnknownNetwork(e)),
            }
        }
    };
    // The relay registry the node ran with (docs/book/src/FORMAT.md section 12), if the damaged
    // store still holds it: blocks fetched again are checked against it, and the new store
    // keeps it.
    let mut net = net;
    if let Some(registry) = old
        .as_ref()
        .ok()
        .and_then(|s| guard(|| s.relay_registry()).ok().flatten())
        .and_then(|text| crate::chain::Registry::parse(&text).ok())
    {
        net.registry = registry;
    }
    let mut ledger = Ledger::open(new_dir, net.clone())?;
    let (salvaged, damage) = match &old {
        Ok(old) => salvage(old, &net, &mut ledger),
        Err(e) => (0, Some(e.to_string())),
    };
    // What the node read and voted, its final checkpoints and evidence: not part of the
    // chain, never fetched from peers, so copied (what of it can still be read).
    if let Ok(old) = &old {
        match guard(|| ledger.store().copy_kept_from(old)) {
            Ok(skipped) => {
                for s in skipped {
                    tracing::warn!("repair: a kept table could not be read and is not copied: {s}");
                }
            }
            Err(e) => tracing::warn!("repair: the kept tables could not be copied: {e}"),
        }
    }
    drop(old);

    let shared = Arc::new(Mutex::new(Core::new(ledger)));
    crate::core::lock(&shared).client = client.clone();
    let mut fetched = 0;
    let mut peer_errors = Vec::new();
    for peer in peers {
        let peer = peer.trim_end_matches('/');
        for _ in 0..PULL_ROUNDS {
            match crate::peers::pull(&client, peer, &shared).await {
                Ok(0) => break,
                Ok(n) => fetched += n,
                Err(e) => {
                    peer_errors.push((peer.to_owned(), e.to_string()));
                    break;
                }
            }
        }
    }
    let summary = crate::core::lock(&shared).ledger.summary();
    Ok((
        Report {
            salvaged,
            damage,
            fetched,
            peer_errors,
            height: summary.height,
            tip: summary.tip,
            kept: None,
        },
        shared,
    ))
}

/// Copies the damaged store's main chain into `ledger`, block by block, until the first
/// block that cannot be read or does not verify. Returns the height reached and, if it
/// stopped short, why.
fn salvage(old: &Store, net: &Network, ledger: &mut Ledger) -> (Height, Option<String>) {
    let mut next: Height = 1;
    loop {
        let ids = match guard(|| old.main_ids_from(next, SALVAGE_BATCH)) {
            Ok(ids) => ids,
            Err(e) => return (next - 1, Some(e.to_string())),
        };
        if ids.is_empty() {
            return (next - 1, None);
        }
        for (height, id) in ids {
            if height != next {
                return (next - 1, Some("missing from the main chain".into()));
            }
            let bytes = match guard(|| old.block_bytes(&id)) {
                Ok(Some(b)) => b,
                Ok(None) => return (next - 1, Some(format!("block {id} is missing"))),
                Err(e) => return (next - 1, Some(e.to_string())),
            };
            let block = match Block::from_bytes(&bytes, net.max_block_bytes, net.max_records) {
                Ok(b) if b.id() == id => b,
                Ok(b) => {
                    return (
                        next - 1,
                        Some(format!("block bytes hash to {}, not to {id}", b.id())),
                    )
                }
                Err(e) => return (next - 1, Some(e.to_string())),
            };
            if let Err(e) = ledger.add(block, now_ms()) {
                return (next - 1, Some(e.to_string()));
            }
            next += 1;
        }
    }
}
