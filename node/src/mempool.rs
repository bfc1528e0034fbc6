//! The mempool: records read from relays (or returned by a reorg) waiting for a block.
//!
//! Deduplicated by (relay, minute) against itself; the caller checks the chain before
//! adding, and removes what a new block holds.

use std::collections::BTreeMap;

use relay_core::MinuteRecord;

use crate::chain::RecordKey;

/// Pending records, oldest minute first.
#[derive(Debug, Default)]
pub struct Mempool {
    pending: BTreeMap<RecordKey, MinuteRecord>,
}

impl Mempool {
    /// An empty mempool.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a record; false if one for the same relay and minute is already pending.
    pub fn add(&mut self, record: MinuteRecord) -> bool {
        let k = RecordKey::of(&record);
        if self.pending.contains_key(&k) {
            return false;
        }
        self.pending.insert(k, record);
        true
    }

    /// Drops the records with these keys (they are in a block now).
    pub fn remove(&mut self, keys: &[RecordKey]) {
        for k in keys {
            self.pending.remove(k);
        }
    }

    /// True if a record for this key is pending.
    #[must_use]
    pub fn contains(&self, key: &RecordKey) -> bool {
        self.pending.contains_key(key)
    }

    /// Up to `n` pending records, oldest minute first, left in place.
    #[must_use]
    pub fn peek(&self, n: usize) -> Vec<MinuteRecord> {
        self.pending.values().take(n).cloned().collect()
    }

    /// Number of pending records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True if nothing is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}
