//! The node at run time: pollers feed the mempool, the miner turns it into blocks, peers
//! exchange blocks over HTTP, and the API serves it all.
//!
//! - Intake: each relay's poller sends new records; a record already on the chain or
//!   pending is dropped.
//! - Miner: when records are pending, mines them on the tip (on a blocking thread), stores
//!   the block and pushes it to every peer at once. A better block from a peer cancels the
//!   search at once.
//! - Sync: every `sync_every`, and at once when a peer pushes a block whose parent we lack,
//!   asks every peer at once for its tip; a peer with at least as much work is pulled from,
//!   in batches of raw blocks, stepping back until the fork point is found. Peers that are
//!   down or slow only cost their timeout, never block the node or the other peers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use relay_core::MinuteRecord;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info};

use crate::api::router;
use crate::chain::{assemble, Network};
use crate::core::{lock, now_ms, Core, Origin, Shared};
use crate::ledger::Ledger;
use crate::listen::{NodeListener, Remote};
use crate::peers::{send_block, sync_round};
use crate::poll::{poll_relay_observed, PollConfig, RelayAddr, RelayStatus};
use crate::store::StoreError;

pub use gridledger_core::mining::{block_time, MAX_STAMP_AHEAD_MS};

/// How often finality looks at the clock when nothing happens (a prevote's pacing, a
/// stalled quorum).
pub const FINALITY_TICK: Duration = Duration::from_millis(gridledger_core::finality::TICK_MS);

/// How long votes wait to go out together with the next ones of their burst.
pub const VOTE_COALESCE: Duration = Duration::from_millis(10);

/// How often the certificate files are checked for a change (SIGHUP reloads at once).
pub const TLS_WATCH: Duration = Duration::from_secs(1);

/// Everything a node needs to know.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// HTTP address.
    pub listen: SocketAddr,
    /// Where the chain lives.
    pub data_dir: PathBuf,
    /// The network.
    pub network: Network,
    /// Relays to poll.
    pub relays: Vec<RelayAddr>,
    /// Peers' base URLs (`http://host:port`).
    pub peers: Vec<String>,
    /// How to poll.
    pub poll: PollConfig,
    /// How often to compare tips with the peers.
    pub sync_every: Duration,
    /// Most records in a block this node mines.
    pub max_records_per_block: usize,
    /// The bearer token that admits admin calls (adding, removing, resolving peers) from
    /// other than loopback; `None`: loopback only.
    pub admin_token: Option<String>,
    /// The wait per turn before mining a record no block has brought yet
    /// ([`crate::policy`]): the node first in turn for a minute mines at once, the
    /// next one slot later, and so on. Longer than a block takes to reach every node; zero
    /// mines everything at once.
    pub mining_slot: Duration,
    /// How a new best block goes to the peers: whole, or announced by id.
    pub block_relay: BlockRelay,
    /// Certificates: HTTPS serving, the CA of `https://` peers, mutual TLS.
    pub tls: crate::tls::TlsFiles,
    /// Browser origins (`https://dash.example:8443`) whose pages may read this node's API
    /// (GET and HEAD only); empty: none, the default.
    pub cors_origins: Vec<String>,
    /// Finality's settings (on whenever the network has an allow-list).
    pub finality: FinalitySettings,
}

/// Finality's settings ([`crate::finality`]); it is on whenever the network has an
/// allow-list, with no other flag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FinalitySettings {
    /// Votes that make a quorum [default: ⌊2n/3⌋ + 1 of the n members].
    pub quorum: Option<usize>,
    /// The least time between two of this node's prevotes (blocks arriving faster are
    /// finalised together); `None`: [`default_interval`] of the members.
    pub interval: Option<Duration>,
    /// A checkpoint note to take as final at start (verified against the members).
    pub pin: Option<PathBuf>,
}

pub use crate::gossip::BlockRelay;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The data dir could not be opened or does not verify.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The kept peer list (`DATA_DIR/peers.json`) cannot be read.
    #[error("peer list: {0}")]
    Peers(String),
    /// The HTTP address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The certificates cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The HTTP client cannot be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// Finality's settings cannot be used (a quorum out of range, a pinned checkpoint that
    /// does not verify).
    #[error("finality: {0}")]
    Finality(String),
}

pub use gridledger_core::finality::default_interval;

/// Starts finality if the network has an allow-list (its members vote), and says so if it
/// has none: then no history is final.
fn start_finality(core: &mut Core, config: &NodeConfig, key: &SigningKey) -> Result<(), RunError> {
    let Some(keys) = &config.network.allow_list else {
        tracing::warn!("no allow-list: this node's history is NOT final. Anyone may mine, and a chain with more work replaces any part of it; give --allow-list (the members' keys) to make history final once a quorum of members has cosigned it");
        return Ok(());
    };
    let origin = crate::chain::finality::origin(&config.network.name);
    let members = crate::chain::finality::Members::new(&origin, keys, config.finality.quorum)
        .map_err(RunError::Finality)?;
    let own = key.verifying_key().to_bytes();
    let member = members.contains(&own);
    info!(
        members = members.len(),
        quorum = members.quorum(),
        member,
        "finality on: a block cosigned by a quorum of members is final"
    );
    if !member {
        tracing::warn!(
            "this node's key is not on the allow-list: it follows finality but does not vote"
        );
    }
    crate::finality::keep_members(&core.ledger, &members)?;
    let interval = config
        .finality
        .interval
        .unwrap_or_else(|| default_interval(members.len()));
    let genesis = core.ledger.network().genesis().id();
    let f = crate::finality::open(
        crate::finality::FinalityConfig {
            members,
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            genesis,
            settle_ms: gridledger_core::finality::DEFAULT_SETTLE_MS,
        },
        Some(key.clone()),
        &mut core.ledger,
    )?;
    core.finality = Some(f);
    if let Some(path) = &config.finality.pin {
        let note = std::fs::read(path)
            .map_err(|e| RunError::Finality(format!("--pin-checkpoint {}: {e}", path.display())))?;
        core.on_checkpoint(&note, "--pin-checkpoint", now_ms())
            .map_err(|e| RunError::Finality(format!("--pin-checkpoint {}: {e}", path.display())))?;
        if core.halted() {
            return Err(RunError::Finality(format!(
                "--pin-checkpoint {} contradicts this node's final history",
                path.display()
            )));
        }
    }
    Ok(())
}

/// A running node.
#[derive(Debug)]
pub struct RunningNode {
    /// The HTTP address actually bound.
    pub addr: SocketAddr,
    /// The shared core (ledger and mempool).
    pub shared: Shared,
    /// The relays' statuses.
    pub relays: Vec<Arc<Mutex<RelayStatus>>>,
    stop: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The control socket (`gridledger backup` of the running node); closed on stop.
    control: Option<crate::backup::control::Control>,
}

/// How long [`RunningNode::stop`] waits for a pull in flight to let the ledger go: past
/// the peers' connect and request timeout.
const STOP_WAIT: Duration = Duration::from_secs(5);

impl RunningNode {
    /// Stops every task and closes the HTTP server; the ledger is closed when the last
    /// handle to it goes. Pulls run on tasks of their own that end by their timeouts: this
    /// waits for them, up to [`STOP_WAIT`], so that the data dir can be opened again at
    /// once (redb refuses a database still open).
    pub async fn stop(mut self) {
        drop(self.control.take());
        self.stop.notify_waiters();
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        let began = tokio::time::Instant::now();
        while Arc::strong_count(&self.shared) > 1 && began.elapsed() < STOP_WAIT {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Opens the ledger, binds the API and starts every task.
pub async fn start(config: NodeConfig, key: SigningKey) -> Result<RunningNode, RunError> {
    let ledger = Ledger::open(&config.data_dir, config.network.clone())?;
    let mut core = Core::new(ledger);
    core.miner_key = Some(key.verifying_key().to_bytes());
    start_finality(&mut core, &config, &key)?;
    // The configured peers, then those added at run time before a restart.
    let peers_file = config.data_dir.join(crate::peers::PEERS_FILE);
    core.peers = config.peers.clone();
    core.block_relay = config.block_relay;
    for p in crate::peers::load_peers(&peers_file).map_err(RunError::Peers)? {
        if !core.peers.contains(&p) {
            core.peers.push(p);
        }
    }
    core.peers_file = Some(peers_file);
    if !core.peers.is_empty() {
        core.first_pulls = Some(core.peers.iter().cloned().collect());
    }
    core.admin_token = config.admin_token.clone();
    let tls = crate::tls::Tls::load(config.tls.clone())?;
    core.client = crate::wire::client(Some(tls.client_config()?))
        .map_err(|e| RunError::Client(e.to_string()))?;
    let serves_tls = config.tls.serves();
    core.tls = Some(Arc::clone(&tls));
    for peer in &core.peers {
        if crate::peers::plain_remote(peer) {
            tracing::warn!(%peer, "peer over plain HTTP to another host: the blocks and answers exchanged with it cross the network unprotected; use https:// and --tls-ca");
        }
    }
    if !serves_tls && !config.listen.ip().is_loopback() {
        tracing::warn!(listen = %config.listen, "serving plain HTTP on a non-loopback address: anyone on the path can read and alter what this node says; give --tls-cert and --tls-key");
    }
    let cancel = Arc::clone(&core.tip_changed);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| RunError::Bind(config.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| RunError::Bind(config.listen, e))?;
    let stop = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    if serves_tls || config.tls.ca.is_some() {
        tasks.push(tokio::spawn(Arc::clone(&tls).watch(TLS_WATCH)));
    }
    let wake = Arc::new(Notify::new());
    let client = core.client.clone();

    // Pollers and intake.
    let (tx, mut rx) = mpsc::channel::<MinuteRecord>(1024);
    let mut relays = Vec::new();
    let registry = std::sync::Arc::new(core.ledger.network().registry.clone());
    for relay in &config.relays {
        let status = Arc::new(Mutex::new(RelayStatus {
            relay: relay.to_string(),
            ..RelayStatus::default()
        }));
        relays.push(Arc::clone(&status));
        tasks.push(tokio::spawn(poll_relay_observed(
            relay.clone(),
            config.poll,
            tx.clone(),
            status,
            core.metrics.clone(),
            std::sync::Arc::clone(&registry),
        )));
    }
    drop(tx);
    core.relays = relays.clone();
    let control =
        crate::backup::control::serve(&config.data_dir, core.ledger.reader().store_handle());
    let shared: Shared = Arc::new(Mutex::new(core));

    // HTTP API.
    let app = crate::api::cors::allow(router(Arc::clone(&shared)), &config.cors_origins);
    let stopped = Arc::clone(&stop);
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(
            NodeListener::new(listener, Some(tls)),
            app.into_make_service_with_connect_info::<Remote>(),
        )
        .with_graceful_shutdown(async move { stopped.notified().await })
        .await;
    }));

    {
        let shared = Arc::clone(&shared);
        let wake = Arc::clone(&wake);
        tasks.push(tokio::spawn(async move {
            while let Some(record) = rx.recv().await {
                if lock(&shared).read(record) {
                    wake.notify_one();
                }
            }
        }));
    }

    // Miner.
    {
        let shared = Arc::clone(&shared);
        let (cancel, wake) = (Arc::clone(&cancel), Arc::clone(&wake));
        let bits = config.network.bits;
        let settings = gridledger_core::mining::Settings {
            own: key.verifying_key().to_bytes(),
            slot: config.mining_slot,
            max_records: config.max_records_per_block,
        };
        let started = std::time::Instant::now();
        tasks.push(tokio::spawn(async move {
            let mut wait = Duration::from_millis(gridledger_core::mining::IDLE_MS);
            loop {
                let _ = tokio::time::timeout(wait, wake.notified()).await;
                // What to mine, and when, is the core's (`gridledger_core::mining`).
                let job = {
                    let core = lock(&shared);
                    let standing = gridledger_core::mining::Standing {
                        halted: core.halted(),
                        catching_up: core.catching_up()
                            && started.elapsed() < crate::core::CATCH_UP_MAX,
                    };
                    let peer_keys: Vec<[u8; 32]> =
                        core.peer_health.values().filter_map(|h| h.miner).collect();
                    match core.ledger.tip_header() {
                        Ok(tip) => {
                            let next = gridledger_core::mining::next(
                                &settings,
                                standing,
                                &core.mempool,
                                core.ledger.tree(),
                                &tip,
                                &peer_keys,
                                now_ms(),
                            );
                            wait = Duration::from_millis(next.wait_ms);
                            next.job.map(|j| (tip, j.records, j.time_ms))
                        }
                        Err(e) => {
                            debug!("no tip to mine on: {e}");
                            wait = Duration::from_millis(gridledger_core::mining::IDLE_MS);
                            None
                        }
                    }
                };
                let Some((parent, records, time)) = job else {
                    continue;
                };
                cancel.store(false, Ordering::SeqCst);
                let (k, c) = (key.clone(), Arc::clone(&cancel));
                let mined = tokio::task::spawn_blocking(move || {
                    assemble(&parent, &records, &k, time, bits, &c)
                })
                .await
                .ok()
                .flatten();
                let Some(block) = mined else {
                    debug!("mining cancelled: a better tip arrived");
                    continue;
                };
                let bytes = block.to_bytes();
                // The durable commit runs off the async workers.
                let accepted = {
                    let shared = Arc::clone(&shared);
                    tokio::task::spawn_blocking(move || {
                        lock(&shared).accept(block, now_ms(), Origin::Own)
                    })
                    .await
                };
                let Ok(accepted) = accepted else {
                    continue;
                };
                match accepted {
                    Ok(added) => {
                        info!(height = added.height, block = %added.id, "mined a block");
                        let (peers, sender) = {
                            let core = lock(&shared);
                            (core.peers.clone(), core.sender())
                        };
                        send_block(&sender, &peers, bytes, added.id, None);
                    }
                    Err(e) => debug!("own block not added: {e}"),
                }
            }
        }));
    }

    // Finality's votes: sent as soon as they wait, and finality moved on with the clock.
    if lock(&shared).finality.is_some() {
        let shared = Arc::clone(&shared);
        let client = client.clone();
        let ready = Arc::clone(&lock(&shared).votes_ready);
        tasks.push(tokio::spawn(async move {
            loop {
                if tokio::time::timeout(FINALITY_TICK, ready.notified())
                    .await
                    .is_ok()
                {
                    // Votes come in bursts (a round's, from several peers): one request per
                    // peer for the burst, not one per vote.
                    tokio::time::sleep(VOTE_COALESCE).await;
                }
                let batch = {
                    let mut core = lock(&shared);
                    core.finality_advance(now_ms());
                    crate::peers::take_votes(&mut core)
                };
                if let Some(batch) = batch {
                    crate::peers::send_votes(&client, batch);
                }
            }
        }));
    }

    // Sync with peers: pull what they have and we lack; cancel mining on a better tip.
    {
        let shared = Arc::clone(&shared);
        let client = client.clone();
        let every = config.sync_every;
        let wanted = Arc::clone(&lock(&shared).sync_wanted);
        tasks.push(tokio::spawn(async move {
            loop {
                // Each peer on its own task: a slow or lying one never holds up the others.
                // The first round at once: a node that just started catches up before it
                // mines (Core::catching_up).
                sync_round(&client, &shared, every);
                let _ = tokio::time::timeout(every, wanted.notified()).await;
            }
        }));
    }

    info!(%addr, tls = serves_tls, relays = config.relays.len(), peers = config.peers.len(), "node running");
    Ok(RunningNode {
        addr,
        shared,
        relays,
        stop,
        tasks,
        control,
    })
}

/// Ctrl-C or SIGTERM (systemd, docker stop): either stops the node cleanly.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
