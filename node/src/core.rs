//! The node's shared state: the ledger, the mempool, what the node read itself (to witness
//! peers' blocks), the relays' and peers' lists, and counters. The API, the intake, the
//! miner and the sync loop all work through [`Core::accept`] and friends under one lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use relay_core::{Minute, MinuteRecord, RelayId};

use crate::chain::{Block, Change, RecordKey};
use crate::ledger::{AddError, Added, Ledger};
use crate::mempool::Mempool;
use crate::poll::RelayStatus;

/// Records this node read itself, kept to check peers' blocks against (most recent first
/// out when full).
const WITNESS_CAPACITY: usize = 100_000;

/// Where a block comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// This node mined it.
    Own,
    /// A peer sent it (pushed or pulled).
    Peer,
}

/// Counters for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Blocks this node mined and stored.
    pub mined: u64,
    /// Peer blocks stored.
    pub received: u64,
    /// Peer blocks refused (any rule, witness conflicts included).
    pub rejected: u64,
    /// Peer blocks refused because a record differs from what this node read itself.
    pub witness_conflicts: u64,
    /// Reorgs.
    pub reorgs: u64,
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
    /// Counters.
    pub counters: Counters,
    witness: BTreeMap<(Minute, RelayId), MinuteRecord>,
}

/// The core, shared between the API, the poller and the miner.
pub type Shared = Arc<Mutex<Core>>;

/// Locks the core; a panic elsewhere while it was held does not make it unusable (every
/// change to it is one call that either completes or leaves the ledger as it was).
pub(crate) fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Core> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The wall clock in Unix milliseconds (0 before 1970).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Core {
    /// A core over `ledger`, with nothing pending and no peers.
    #[must_use]
    pub fn new(ledger: Ledger) -> Self {
        Core {
            ledger,
            mempool: Mempool::new(),
            tip_changed: Arc::new(AtomicBool::new(false)),
            sync_wanted: Arc::new(tokio::sync::Notify::new()),
            relays: Vec::new(),
            peers: Vec::new(),
            counters: Counters::default(),
            witness: BTreeMap::new(),
        }
    }

    /// A record this node read from a relay: remembered as a witness, and pending unless
    /// the chain holds it already. True if it was new to the mempool.
    pub fn read(&mut self, record: MinuteRecord) -> bool {
        self.witness
            .insert((record.minute, record.relay), record.clone());
        while self.witness.len() > WITNESS_CAPACITY {
            self.witness.pop_first();
        }
        let key = RecordKey {
            relay: record.relay,
            minute: record.minute,
        };
        self.ledger.tree().record_height(&key).is_none() && self.mempool.add(record)
    }

    /// Validates and stores a block, and keeps the mempool in step: the block's records
    /// leave it, a reorg's lost records return to it. A peer's block whose record differs
    /// from what this node read itself for the same relay and minute is refused
    /// ([`AddError::WitnessConflict`]).
    pub fn accept(&mut self, block: Block, now_ms: u64, origin: Origin) -> Result<Added, AddError> {
        let result = self
            .witness_check(&block)
            .and_then(|()| self.ledger.add(block, now_ms));
        let added = match result {
            Ok(added) => added,
            Err(e) => {
                if origin == Origin::Peer && !matches!(e, AddError::Known(_)) {
                    if matches!(
                        e,
                        AddError::Invalid(crate::chain::ValidationError::UnknownParent(_))
                    ) {
                        self.sync_wanted.notify_one();
                    }
                    self.counters.rejected += 1;
                    if matches!(e, AddError::WitnessConflict { .. }) {
                        self.counters.witness_conflicts += 1;
                    }
                }
                return Err(e);
            }
        };
        match origin {
            Origin::Own => self.counters.mined += 1,
            Origin::Peer => self.counters.received += 1,
        }
        if added.change != Change::SideBranch {
            self.tip_changed.store(true, Ordering::SeqCst);
        }
        if matches!(added.change, Change::Reorg { .. }) {
            self.counters.reorgs += 1;
        }
        let keys: Vec<RecordKey> = self.ledger.tree().keys_of(&added.id).to_vec();
        self.mempool.remove(&keys);
        for r in added.returned.clone() {
            self.mempool.add(r);
        }
        Ok(added)
    }

    fn witness_check(&self, block: &Block) -> Result<(), AddError> {
        for bytes in &block.records {
            let Ok(r) = MinuteRecord::decode(bytes) else {
                continue; // validation names the broken record
            };
            if let Some(seen) = self.witness.get(&(r.minute, r.relay)) {
                if *seen != r {
                    return Err(AddError::WitnessConflict {
                        relay: r.relay,
                        minute: r.minute,
                    });
                }
            }
        }
        Ok(())
    }
}
