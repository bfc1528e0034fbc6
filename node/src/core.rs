//! The node's shared state: the ledger, the mempool, what the node read itself (to witness
//! peers' blocks), the relays' and peers' lists, and counters. The API, the intake, the
//! miner and the sync loop all work through [`Core::accept`] and friends under one lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gridledger_core::witness::{OnChain, Persist};
use relay_core::MinuteRecord;

use crate::chain::{Block, Change, RecordKey};
use crate::ledger::{AddError, Added, Incoming, Ledger};
use crate::mempool::Mempool;
use crate::poll::RelayStatus;

pub use crate::trace::TRACE;

pub use crate::dispute::Dispute;

/// Where a block comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// This node mined it.
    Own,
    /// A peer sent it (pushed or pulled).
    Peer,
    /// No block: finality moved the main chain (a floor, an exclusion).
    Finality,
}

pub use crate::metrics::Counters;

/// A block to send on to peers ([`crate::gossip::send_block`]): how, to whom, its bytes, id
/// and miner.
#[derive(Debug)]
pub struct Relay {
    /// How to send it.
    pub sender: crate::gossip::Sender,
    /// To whom.
    pub peers: Vec<String>,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its id.
    pub id: crate::chain::BlockId,
    /// Its miner's key.
    pub miner: [u8; 32],
}

impl Relay {
    /// Sends it, without waiting.
    pub fn send(self) {
        crate::gossip::send_block(
            &self.sender,
            &self.peers,
            self.bytes,
            self.id,
            Some(self.miner),
        );
    }
}

/// Reorgs kept for the explorer (`GET /forks`).
pub const REORGS_KEPT: usize = 32;

/// A switch of the main chain to another branch, as the explorer shows it.
#[derive(Clone, Debug)]
pub struct Reorg {
    /// When this node switched, Unix milliseconds.
    pub at_ms: u64,
    /// The last block both branches share.
    pub fork_height: u32,
    /// Blocks that left the main chain, lowest first.
    pub abandoned: Vec<crate::chain::BlockId>,
    /// Blocks that joined it, lowest first.
    pub adopted: Vec<crate::chain::BlockId>,
}

/// The shared state of a node.
#[derive(Debug)]
pub struct Core {
    /// The chain.
    pub ledger: Ledger,
    /// Records waiting for a block.
    pub mempool: Mempool,
    /// Set when the tip changes, so that a miner working on the old tip stops at once.
    pub tip_changed: Arc<AtomicBool>,
    /// Woken when a peer sends a block whose parent we lack: the sync loop pulls at once
    /// instead of at its next tick.
    pub sync_wanted: Arc<tokio::sync::Notify>,
    /// The relays this node polls.
    pub relays: Vec<Arc<Mutex<RelayStatus>>>,
    /// Peers' base URLs.
    pub peers: Vec<String>,
    /// Where peers added at run time are kept (`DATA_DIR/peers.json`), if anywhere.
    pub peers_file: Option<std::path::PathBuf>,
    /// The bearer token that admits admin calls from other than loopback.
    pub admin_token: Option<String>,
    /// The node's one HTTP client, for every request to a peer.
    pub client: crate::wire::PeerClient,
    /// The node's TLS (certificates, counters), if it has any.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// How each peer behaves, by URL.
    pub peer_health: std::collections::HashMap<String, crate::health::PeerHealth>,
    /// Counters.
    pub counters: Counters,
    /// Latency histograms, observed as the node works.
    pub metrics: crate::metrics::Metrics,
    /// The key this node mines with, if it mines.
    pub miner_key: Option<[u8; 32]>,
    /// How blocks go to the peers.
    pub block_relay: crate::gossip::BlockRelay,
    /// Which peers already hold which miner's blocks when this node sends them.
    pub fanout: crate::fanout::Fanout,
    /// Pushed blocks on their way in: when the latest were taken (said in the answer to a
    /// copy of one), those waiting for their parent, the pulls waiting for a grace
    /// (`gridledger_core::intake`).
    pub intake: gridledger_core::intake::Intake,
    /// The latest long pull from a peer (`/status` `sync`).
    pub sync: Option<crate::wire::SyncView>,
    /// The latest reorgs since the node started, oldest first (at most [`REORGS_KEPT`]).
    pub reorgs: std::collections::VecDeque<Reorg>,
    /// Until the node has caught up with its peers after it started: the peers whose
    /// first pull has not ended yet. `None` once one pull succeeded or every peer's first
    /// one ended (see [`Core::catching_up`]).
    pub first_pulls: Option<std::collections::HashSet<String>>,
    /// Finality, if the network has an allow-list (`crate::finality`).
    pub finality: Option<crate::finality::Finality>,
    /// When a block forking below the final block was last refused (Unix ms; 0: never),
    /// and last logged.
    pub below_final_last_ms: u64,
    below_final_logged_ms: u64,
    /// Votes to send to the peers, with the peer each came from; drained by the gossip task
    /// ([`crate::peers::send_votes`]), woken by `votes_ready`.
    pub outbox: Vec<(crate::chain::finality::Vote, Option<String>)>,
    /// Woken when votes wait in the outbox.
    pub votes_ready: Arc<tokio::sync::Notify>,
    /// What this node read from its relays, and the records on the chain that differ
    /// (`gridledger_core::witness`; every read is also kept in the store as a digest).
    witness: gridledger_core::witness::Witness,
}

/// The longest a started node's miner waits for its first pulls ([`Core::catching_up`]):
/// a peer that holds a pull open (a black hole, a slow link) does not stop it mining.
pub const CATCH_UP_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// The core, shared between the API, the poller and the miner.
pub type Shared = Arc<Mutex<Core>>;

/// Locks the core; a panic elsewhere while it was held does not make it unusable (every
/// change to it is one call that either completes or leaves the ledger as it was).
pub(crate) fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Core> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub use crate::clock::now_ms;

impl Core {
    /// A core over `ledger`, with nothing pending and no peers; the disputes the data dir
    /// keeps are open again.
    #[must_use]
    pub fn new(ledger: Ledger) -> Self {
        let mut disputes = Vec::new();
        match ledger.kept_disputes() {
            Ok(kept) => {
                for (key, bytes) in kept {
                    match Dispute::from_bytes(&bytes) {
                        Some(d) => disputes.push((key, d)),
                        None => {
                            tracing::warn!(relay = key.relay.0, minute = %key.minute, "a kept dispute does not decode; ignored")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("cannot read the kept disputes: {e}"),
        }
        let counters = Counters {
            witness_disputes: disputes.len() as u64,
            ..Counters::default()
        };
        let ranges = ledger.store().witness_ranges().unwrap_or_else(|e| {
            tracing::warn!("cannot read the witness's ranges: {e}");
            Vec::new()
        });
        let witness = gridledger_core::witness::Witness::new(disputes, ranges);
        Core {
            ledger,
            mempool: Mempool::new(),
            tip_changed: Arc::new(AtomicBool::new(false)),
            sync_wanted: Arc::new(tokio::sync::Notify::new()),
            relays: Vec::new(),
            peers: Vec::new(),
            peers_file: None,
            admin_token: None,
            client: crate::wire::client(None).unwrap_or_default(),
            tls: None,
            peer_health: std::collections::HashMap::new(),
            counters,
            metrics: crate::metrics::Metrics::default(),
            reorgs: std::collections::VecDeque::new(),
            miner_key: None,
            block_relay: crate::gossip::BlockRelay::default(),
            fanout: crate::fanout::Fanout::default(),
            intake: gridledger_core::intake::Intake::default(),
            sync: None,
            first_pulls: None,
            finality: None,
            below_final_last_ms: 0,
            below_final_logged_ms: 0,
            outbox: Vec::new(),
            votes_ready: Arc::new(tokio::sync::Notify::new()),
            witness,
        }
    }

    /// A node that just started holds the chain it stopped with, which its peers may have
    /// left behind while it was away (a restart, a crash): a block it mined on that old tip
    /// would be stale at birth. Until one pull from a peer has succeeded (that peer's chain
    /// is in, if it had more work) or every peer's first pull has ended, the miner waits
    /// ([`crate::run`], at most [`CATCH_UP_MAX`]). A node without peers never waits.
    #[must_use]
    pub fn catching_up(&self) -> bool {
        self.first_pulls.is_some()
    }

    /// The end of a pull from `peer`: `ok` if it succeeded (see [`Core::catching_up`]).
    pub fn pull_ended(&mut self, peer: &str, ok: bool) {
        let Some(left) = &mut self.first_pulls else {
            return;
        };
        left.remove(peer);
        if ok || left.is_empty() {
            self.first_pulls = None;
        }
    }

    /// A peer that says it mines with `key` pushed or announced a block at `now_ms` that
    /// this node held (see [`crate::health::pushed`]).
    pub fn peer_pushed(&mut self, key: &[u8; 32], now_ms: u64) {
        crate::health::pushed(&mut self.peer_health, key, now_ms);
    }

    /// What [`crate::gossip::send_block`] needs.
    #[must_use]
    pub fn sender(&self) -> crate::gossip::Sender {
        crate::gossip::Sender {
            client: self.client.clone(),
            own: self.miner_key,
            how: self.block_relay,
            fanout: self.fanout.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// The health record of `peer`, created on first use.
    pub fn peer_health(&mut self, peer: &str) -> &mut crate::health::PeerHealth {
        self.peer_health
            .entry(peer.to_owned())
            .or_insert_with(|| crate::health::PeerHealth::new(peer, None))
    }

    /// Open disputes, oldest minute first.
    pub fn disputes(&self) -> impl DoubleEndedIterator<Item = &Dispute> + ExactSizeIterator {
        self.witness.disputes()
    }

    /// True if the chain's record for `key` is disputed by this node's own read.
    #[must_use]
    pub fn is_disputed(&self, key: &RecordKey) -> bool {
        self.witness.is_disputed(key)
    }

    /// The main chain's record for `key`, with its block's height and id.
    fn on_chain(&self, key: &RecordKey) -> Option<OnChain> {
        let height = self.ledger.tree().record_height(key)?;
        let id = self.ledger.tree().main_at(height)?;
        let block = self.ledger.block(&id).ok().flatten()?;
        let record = block
            .records
            .iter()
            .filter_map(|b| MinuteRecord::decode(b).ok())
            .find(|r| RecordKey::of(r) == *key)?;
        Some((height, id, record))
    }

    /// Compares the main chain's record for `key` with this node's read, if both exist:
    /// opens a dispute when they differ, closes one when they no longer do.
    fn witness_main(&mut self, key: RecordKey) {
        if self.witness.holds(&key) {
            let found = self.on_chain(&key);
            self.witness_against(key, found);
        }
    }

    /// [`Core::witness_main`] with the main chain's record already in hand.
    fn witness_against(&mut self, key: RecordKey, found: Option<OnChain>) {
        let keep = self.witness.against(key, found, now_ms());
        self.persist(keep);
    }

    /// Keeps in the data dir, or takes out, what the witness asked: a read's digest, a
    /// dispute found (counted), a dispute closed.
    fn persist(&mut self, keep: impl IntoIterator<Item = Persist>) {
        for p in keep {
            let done = match p {
                Persist::Read(key, d) => self.ledger.store().put_witness(&key, &d),
                Persist::Dispute(key, dispute) => {
                    self.counters.witness_disputes += 1;
                    // Kept in the data dir: a restart does not forget it.
                    match dispute.to_bytes() {
                        Some(bytes) => self.ledger.keep_dispute(key, &bytes),
                        None => Ok(()),
                    }
                }
                Persist::Forget(key) => self.ledger.forget_dispute(key),
            };
            if let Err(e) = done {
                tracing::error!("cannot keep the witness's state in the data dir: {e}");
            }
        }
    }

    /// A record this node read from a relay: remembered as a witness, and pending unless
    /// the chain holds it already. True if it was new to the mempool.
    ///
    /// If the main chain already holds a record for that relay and minute (mined before this
    /// read) and it differs, that is a [`Dispute`]: counted, logged, listed, and the record
    /// is not taken as already on the chain.
    pub fn read(&mut self, record: MinuteRecord) -> bool {
        let key = RecordKey::of(&record);
        // Kept durably first: a restart, a crash or a repair does not make this node forget
        // what the relay said (and so accept a rewrite of it).
        let keep = self.witness.read(record.clone());
        self.persist(keep);
        if self.ledger.tree().record_height(&key).is_some() {
            self.witness_main(key);
            return false;
        }
        let new = self.mempool.add_at(record, now_ms());
        if new {
            tracing::debug!(target: TRACE, at_ms = now_ms(), relay = key.relay.0, minute = key.minute.0, "read");
        }
        new
    }

    /// Validates and stores a block, and keeps the mempool in step: the block's records
    /// leave it, a reorg's lost records return to it. A peer's block whose record differs
    /// from what this node read itself for the same relay and minute is refused
    /// ([`AddError::WitnessConflict`]).
    pub fn accept(&mut self, block: Block, now_ms: u64, origin: Origin) -> Result<Added, AddError> {
        // A batch of one: one result, always.
        self.accept_batch(vec![block], now_ms, origin)
            .pop()
            .unwrap_or(Err(AddError::Store(crate::store::StoreError::Poisoned)))
    }

    /// [`Self::accept`] for a batch pulled from a peer: every block checked against this
    /// node's reads, validated in order, and stored in one durable transaction
    /// ([`Ledger::add_batch`]). The first block refused (other than one already known)
    /// ends the batch; the results go up to it.
    pub fn accept_batch(
        &mut self,
        blocks: Vec<Block>,
        now_ms: u64,
        origin: Origin,
    ) -> Vec<Result<Added, AddError>> {
        self.accept_incoming(Incoming::unchecked(blocks), now_ms, origin)
    }

    /// [`Self::accept_batch`] for [`Incoming`] blocks, perhaps prechecked outside the lock
    /// ([`Incoming::prechecked`]).
    pub fn accept_incoming(
        &mut self,
        mut pre: Incoming,
        now_ms: u64,
        origin: Origin,
    ) -> Vec<Result<Added, AddError>> {
        // The witness check first: the batch stops at the first conflicting block.
        let mut refused = None;
        // Finality first (nothing below a final block changes, whatever this node read),
        // then the witness check.
        let conflict = pre.blocks().find_map(|(i, b, records)| {
            let refused = self
                .ledger
                .finality_refusal(&b.id(), &b.header)
                .map_or_else(|| self.witness_check(b, records), Err);
            refused.err().map(|e| (i, e))
        });
        if let Some((at, e)) = conflict {
            pre.truncate(at);
            refused = Some(e);
        }
        let mut results = self.ledger.add_incoming(pre, now_ms);
        let stopped = results
            .last()
            .is_some_and(|r| matches!(r, Err(e) if !matches!(e, AddError::Known(_))));
        if let (Some(e), false) = (refused, stopped) {
            results.push(Err(e));
        }
        for r in &results {
            match r {
                Ok(added) => self.after_add(added, origin),
                Err(e) => self.on_refused(e, origin),
            }
        }
        if results.iter().any(Result::is_ok) {
            self.finality_advance(now_ms);
        }
        results
    }

    /// A block a peer (`sender`, by its own account) pushed, as `bytes`: validated and
    /// stored ([`Core::accept`]), then what follows of it ([`gridledger_core::intake`]):
    /// the result for the pusher, since when a known block was held, and what the runtime
    /// carries out (relays, a pull, a wake for a grace).
    pub fn on_push(
        &mut self,
        bytes: bytes::Bytes,
        sender: Option<[u8; 32]>,
        now_ms: u64,
    ) -> (Result<Added, AddError>, Option<u64>, Intake) {
        use gridledger_core::intake::{Peers, Pushed};
        let net = self.ledger.network();
        let block = match Block::from_bytes(&bytes, net.max_block_bytes, net.max_records) {
            Ok(b) => b,
            Err(e) => {
                self.counters.rejected += 1;
                return (Err(AddError::Invalid(e.into())), None, Intake::default());
            }
        };
        let pushed = Pushed {
            id: block.id(),
            parent: block.header.prev,
            height: block.header.height,
            miner: block.header.miner,
            sender,
            bytes,
        };
        let mut result = self.accept(block, now_ms, Origin::Peer);
        let verdict = verdict_of(&result);
        let net = self.ledger.network();
        let height = self.ledger.tree().height();
        let peers = Peers {
            urls: &self.peers,
            health: &mut self.peer_health,
        };
        let arrived = self
            .intake
            .pushed(pushed, verdict, height, peers, net, now_ms);
        if let Some(e) = arrived.refused {
            result = Err(AddError::Invalid(e));
        }
        let out = self.carry_out(arrived.actions.into(), now_ms);
        (result, arrived.held_ms, out)
    }

    /// Blocks stored by a pull: their arrival noted, and the pushed blocks that waited for
    /// them placed ([`gridledger_core::intake::Intake::stored`]).
    pub fn after_pull(&mut self, stored: &[crate::chain::BlockId], now_ms: u64) -> Intake {
        let mut todo = std::collections::VecDeque::new();
        for id in stored {
            todo.extend(self.intake.stored(*id, now_ms));
        }
        self.carry_out(todo, now_ms)
    }

    /// The clock reached `now_ms` (a wake the intake asked for).
    pub fn intake_timer(&mut self, now_ms: u64) -> Intake {
        let actions = self.intake.timer(now_ms);
        self.carry_out(actions.into(), now_ms)
    }

    /// Carries out the intake's actions that need the ledger (a block that waited for its
    /// parent: validated and stored, its verdict handed back), and gathers the rest for the
    /// runtime.
    fn carry_out(
        &mut self,
        mut todo: std::collections::VecDeque<gridledger_core::intake::Action>,
        now_ms: u64,
    ) -> Intake {
        use gridledger_core::intake::{Action, Peers};
        let mut out = Intake::default();
        while let Some(action) = todo.pop_front() {
            match action {
                Action::Relay {
                    id,
                    miner,
                    bytes,
                    to,
                } => out.relays.push(Relay {
                    sender: self.sender(),
                    peers: to,
                    bytes: bytes.to_vec(),
                    id,
                    miner,
                }),
                Action::Pull => out.pull = true,
                Action::WakeAt(at) => out.wake_at.push(at),
                Action::Place(orphan) => {
                    let net = self.ledger.network();
                    let Ok(block) =
                        Block::from_bytes(&orphan.bytes, net.max_block_bytes, net.max_records)
                    else {
                        continue;
                    };
                    let miner = block.header.miner;
                    let result = self.accept(block, now_ms, Origin::Peer);
                    match &result {
                        Ok(added) => {
                            tracing::debug!(block = %added.id, waited_ms = now_ms.saturating_sub(orphan.at_ms), "placed a block that came before its parent");
                        }
                        Err(e) => {
                            tracing::debug!(block = %orphan.id, "a block that came before its parent: {e}");
                        }
                    }
                    let verdict = verdict_of(&result);
                    let peers = Peers {
                        urls: &self.peers,
                        health: &mut self.peer_health,
                    };
                    todo.extend(self.intake.placed(orphan, miner, verdict, peers, now_ms));
                }
            }
        }
        out
    }

    /// Counts a refused block. (A block whose parent is unknown asks for a sync where it
    /// came from: a pull steps back; a push is kept a moment first, `crate::orphans`.)
    fn on_refused(&mut self, e: &AddError, origin: Origin) {
        if origin == Origin::Peer && !matches!(e, AddError::Known(_)) {
            self.counters.rejected += 1;
            if matches!(e, AddError::WitnessConflict { .. }) {
                self.counters.witness_conflicts += 1;
            }
            if let AddError::BelowFinal {
                height,
                final_height,
            } = e
            {
                let now = now_ms();
                // One line a minute at most: a rewrite arrives as thousands of blocks.
                if now.saturating_sub(self.below_final_logged_ms) >= 60_000 {
                    self.below_final_logged_ms = now;
                    tracing::warn!(height, final_height, "REFUSED a chain that forks below the final block: someone tries to rewrite final history (counted in gridledger_blocks_below_final_total)");
                }
                self.below_final_last_ms = now;
                if let Some(f) = self.finality.as_mut() {
                    f.refused_below_final();
                }
            }
        }
    }

    /// Keeps the node in step with a stored block: counters, metrics, the mempool, the
    /// witness of blocks a reorg brought in, disputes a reorg closed.
    fn after_add(&mut self, added: &Added, origin: Origin) {
        tracing::debug!(
            target: TRACE,
            at_ms = now_ms(),
            height = added.height,
            block = %added.id,
            origin = match origin {
                Origin::Own => "own",
                Origin::Peer => "peer",
                Origin::Finality => "finality",
            },
            change = match &added.change {
                Change::Extended => "extended",
                Change::Reorg { .. } => "reorg",
                Change::SideBranch => "side",
            },
            abandoned = match &added.change {
                Change::Reorg { abandoned, .. } => abandoned.len(),
                _ => 0,
            },
            "block"
        );
        self.intake.note(added.id, now_ms());
        self.metrics
            .validate_seconds
            .observe(added.validate.as_secs_f64());
        self.metrics
            .commit_seconds
            .observe(added.commit.as_secs_f64());
        match origin {
            Origin::Own => self.counters.mined += 1,
            Origin::Peer => self.counters.received += 1,
            Origin::Finality => {}
        }
        if added.change != Change::SideBranch {
            self.tip_changed.store(true, Ordering::SeqCst);
        }
        if let Change::Reorg { abandoned, adopted } = &added.change {
            self.counters.reorgs += 1;
            if self.reorgs.len() >= REORGS_KEPT {
                self.reorgs.pop_front();
            }
            let tree = self.ledger.tree();
            self.reorgs.push_back(Reorg {
                at_ms: now_ms(),
                fork_height: adopted
                    .first()
                    .and_then(|id| tree.height_of(id))
                    .unwrap_or(0)
                    .saturating_sub(1),
                abandoned: abandoned.clone(),
                adopted: adopted.clone(),
            });
        }
        let now = now_ms();
        if origin == Origin::Peer {
            if let Some(t) = self.ledger.tree().time_of(&added.id) {
                self.metrics
                    .propagation_seconds
                    .observe(now.saturating_sub(t) as f64 / 1000.0);
            }
        }
        // Records that joined the main chain leave the mempool: the new block's, and on a
        // reorg every adopted block's. A side block's records stay: the main chain lacks
        // them, and they must still be mined onto it.
        let joined: Vec<crate::chain::BlockId> = match &added.change {
            Change::Extended => vec![added.id],
            Change::Reorg { adopted, .. } => adopted.clone(),
            Change::SideBranch => Vec::new(),
        };
        for id in &joined {
            let keys: Vec<RecordKey> = self.ledger.tree().keys_of(id).to_vec();
            for arrived in self.mempool.remove(&keys) {
                self.metrics
                    .record_to_tip_seconds
                    .observe(now.saturating_sub(arrived) as f64 / 1000.0);
            }
        }
        for r in added.returned.clone() {
            // Back to the mempool, but as this node read it, if it did: a record that left
            // the main chain may be one that this node disputes.
            let own = self.witness.own(&RecordKey::of(&r)).cloned();
            self.mempool.add_at(own.unwrap_or(r), now_ms());
        }
        // Blocks a reorg brought onto the main chain were stored earlier, perhaps before this
        // node read their minutes: their records against this node's reads, each block read
        // once. (The new block itself passed `witness_check` above.)
        if let Change::Reorg { adopted, .. } = &added.change {
            for id in adopted.iter().filter(|id| **id != added.id) {
                let tree = self.ledger.tree();
                if !tree.keys_of(id).iter().any(|k| self.witness.holds(k)) {
                    continue;
                }
                let height = tree.height_of(id).unwrap_or(0);
                let Ok(Some(block)) = self.ledger.block(id) else {
                    continue;
                };
                for r in block
                    .records
                    .iter()
                    .filter_map(|b| MinuteRecord::decode(b).ok())
                {
                    let key = RecordKey::of(&r);
                    if self.witness.holds(&key) {
                        self.witness_against(key, Some((height, *id, r)));
                    }
                }
            }
        }
        // Disputed records that a reorg took off the main chain are disputes no more.
        if matches!(added.change, Change::Reorg { .. }) {
            for key in self.witness.disputed_keys() {
                self.witness_main(key);
            }
        }
    }

    /// A block's records against this node's reads: those held whole, then the digests the
    /// store keeps of older ones.
    fn witness_check(
        &self,
        block: &Block,
        decoded: Option<&[MinuteRecord]>,
    ) -> Result<(), AddError> {
        // Nothing read yet (a node joining by sync): nothing to compare, nothing to decode.
        if self.witness.is_empty() {
            return Ok(());
        }
        let owned: Vec<MinuteRecord>;
        let records = match decoded {
            Some(r) => r,
            None => {
                // Validation names a broken record.
                owned = block
                    .records
                    .iter()
                    .filter_map(|b| MinuteRecord::decode(b).ok())
                    .collect();
                &owned
            }
        };
        let conflict = |c: gridledger_core::witness::Conflict| AddError::WitnessConflict {
            relay: c.relay,
            minute: c.minute,
        };
        let ask = self.witness.check(records).map_err(conflict)?;
        if ask.is_empty() {
            return Ok(());
        }
        let asked: Vec<&MinuteRecord> = ask.iter().filter_map(|i| records.get(*i)).collect();
        let keys: Vec<RecordKey> = asked.iter().map(|r| RecordKey::of(r)).collect();
        let kept = self
            .ledger
            .store()
            .witness_digests(&keys)
            .map_err(AddError::Store)?;
        gridledger_core::witness::Witness::check_kept(asked, kept).map_err(conflict)
    }

    /// True if every record of the main chain above the final block agrees with this node's
    /// reads: no open dispute there (a member prevotes only then).
    fn witnessed_above_final(&self) -> bool {
        let final_height = self.ledger.final_block().map_or(0, |(h, _)| h);
        !self.witness.disputed_above(final_height)
    }

    /// Carries out what finality asked: switches of the main chain into the mempool, votes
    /// into the outbox.
    pub fn finality_effects(&mut self, fx: crate::finality::Effects) {
        for added in &fx.switched {
            self.after_add(added, Origin::Finality);
        }
        if !fx.send.is_empty() {
            self.outbox.extend(fx.send);
            self.votes_ready.notify_one();
        }
    }

    /// Moves finality on after the chain or the clock changed (see
    /// [`crate::finality::Finality::advance`]).
    pub fn finality_advance(&mut self, now_ms: u64) {
        let witnessed = self.witnessed_above_final();
        let Some(f) = self.finality.as_mut() else {
            return;
        };
        let fx = f.advance(&mut self.ledger, witnessed, now_ms);
        self.finality_effects(fx);
    }

    /// Votes from a peer (`from`, its URL if known).
    pub fn on_votes(
        &mut self,
        votes: Vec<crate::chain::finality::Vote>,
        from: Option<&str>,
        now_ms: u64,
    ) {
        let witnessed = self.witnessed_above_final();
        let Some(f) = self.finality.as_mut() else {
            return;
        };
        let fx = f.on_votes(&mut self.ledger, votes, from, witnessed, now_ms);
        self.finality_effects(fx);
    }

    /// A final checkpoint note a peer (`from`) serves.
    pub fn on_checkpoint(
        &mut self,
        note: &[u8],
        from: &str,
        now_ms: u64,
    ) -> Result<(), crate::chain::finality::FinalityError> {
        let Some(f) = self.finality.as_mut() else {
            return Ok(());
        };
        let fx = f.on_checkpoint(&mut self.ledger, note, from, now_ms)?;
        self.finality_effects(fx);
        self.finality_advance(now_ms);
        Ok(())
    }

    /// This node's finality as `/tip` and its tag name it
    /// ([`crate::wire::tip_tag_with`]): its final checkpoint's size and its justified epoch;
    /// (0, 0) without finality.
    #[must_use]
    pub fn finality_tag(&self) -> (u64, u64) {
        self.finality.as_ref().map_or((0, 0), |f| {
            (f.final_checkpoint().checkpoint.size, f.justified().0.epoch)
        })
    }

    /// True if this node must not mine: finality met a safety failure.
    #[must_use]
    pub fn halted(&self) -> bool {
        self.finality
            .as_ref()
            .is_some_and(|f| f.safety_failure().is_some())
    }

    /// The peer URL of the peer that says it mines with `key`.
    #[must_use]
    pub fn peer_of(&self, key: &[u8; 32]) -> Option<String> {
        self.peer_health
            .values()
            .find(|h| h.miner.as_ref() == Some(key))
            .map(|h| h.url.clone())
    }
}

/// What the runtime carries out after a push, a pull or a wake
/// ([`gridledger_core::intake::Action`]s the core left to it).
#[derive(Debug, Default)]
pub struct Intake {
    /// Blocks to send on.
    pub relays: Vec<Relay>,
    /// Ask the peers for blocks now.
    pub pull: bool,
    /// Call [`Core::intake_timer`] at these times (Unix ms).
    pub wake_at: Vec<u64>,
}

/// What the chain said of a block, as the intake reads it.
fn verdict_of(result: &Result<Added, AddError>) -> gridledger_core::intake::Verdict {
    use gridledger_core::intake::Verdict;
    match result {
        Ok(added) if added.change == Change::SideBranch => Verdict::Side,
        Ok(_) => Verdict::Best,
        Err(AddError::Known(_)) => Verdict::Known,
        Err(AddError::Invalid(crate::chain::ValidationError::UnknownParent(_))) => {
            Verdict::UnknownParent
        }
        Err(_) => Verdict::Refused,
    }
}
