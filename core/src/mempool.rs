//! The mempool: records read from relays (or returned by a reorg) waiting for a block.
//!
//! Deduplicated by (relay, minute) against itself; the caller checks the chain before
//! adding, and removes what a new block holds.

use std::collections::BTreeMap;

use relay_core::MinuteRecord;

use gridledger_chain::RecordKey;

/// Pending records, oldest minute first, each with when it arrived (Unix ms).
#[derive(Debug, Default)]
pub struct Mempool {
    pending: BTreeMap<RecordKey, (MinuteRecord, u64)>,
}

impl Mempool {
    /// An empty mempool.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a record that arrived at `at_ms`; false if one for the same relay and minute is
    /// already pending.
    pub fn add_at(&mut self, record: MinuteRecord, at_ms: u64) -> bool {
        let k = RecordKey::of(&record);
        if self.pending.contains_key(&k) {
            return false;
        }
        self.pending.insert(k, (record, at_ms));
        true
    }

    /// Drops the records with these keys (they are in a block now); returns when each
    /// dropped one had arrived.
    pub fn remove(&mut self, keys: &[RecordKey]) -> Vec<u64> {
        keys.iter()
            .filter_map(|k| self.pending.remove(k).map(|(_, at)| at))
            .collect()
    }

    /// True if a record for this key is pending.
    #[must_use]
    pub fn contains(&self, key: &RecordKey) -> bool {
        self.pending.contains_key(key)
    }

    /// Up to `n` pending records, oldest minute first, left in place.
    #[must_use]
    pub fn peek(&self, n: usize) -> Vec<MinuteRecord> {
        self.pending
            .values()
            .take(n)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Up to `n` pending records with when each arrived, oldest minute first.
    #[must_use]
    pub fn peek_timed(&self, n: usize) -> Vec<(MinuteRecord, u64)> {
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
