//! What a node keeps beside the chain: its own reads of the relays (the witness), its
//! finality state and the final checkpoints, the tlog subtrees that make inclusion proofs
//! cheap, and evidence of members' offences. None of it is part of the chain; all of it
//! survives restarts, crashes and `repair` (which keeps this file's tables).
//!
//! Tables:
//! - `witness`: `relay << 32 | minute >> 6` → a chunk of 64 minutes: a 64-bit presence
//!   mask (big-endian, bit i for minute `chunk × 64 + i`), then a 12-byte digest per
//!   present minute in minute order. About 12 bytes a record where a table row per record
//!   would take 40;
//! - `witness_range`: relay → the lowest and highest minute read, so that a block of
//!   minutes this node never read costs no lookup;
//! - `finality`: `own`, `final`, `justified` → their encodings (`crate::finality`);
//! - `checkpoints`: height → the final checkpoint note of that height, as served: the first
//!   final one at or above each multiple of 1024 (the latest is in `finality`);
//! - `tlog`: `level << 48 | index` → the hash of a whole subtree of the final chain's tlog
//!   of `2^level` leaves, for levels [`SUBTREE_LEVEL`] and up;
//! - `evidence`: sequence → a member's offence, as the node keeps it.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Store, StoreError};
use crate::chain::merkle::Hash;
use crate::chain::{Height, RecordKey};

pub(super) const WITNESS: TableDefinition<u64, &[u8]> = TableDefinition::new("witness");
pub(super) const WITNESS_RANGE: TableDefinition<u32, (u32, u32)> =
    TableDefinition::new("witness_range");
pub(super) const FINALITY: TableDefinition<&str, &[u8]> = TableDefinition::new("finality");
pub(super) const CHECKPOINTS: TableDefinition<u32, &[u8]> = TableDefinition::new("checkpoints");
pub(super) const TLOG: TableDefinition<u64, [u8; 32]> = TableDefinition::new("tlog");
pub(super) const EVIDENCE: TableDefinition<u64, &[u8]> = TableDefinition::new("evidence");

/// The lowest tlog level whose subtree hashes are kept (256 leaves): below it a proof reads
/// at most 256 block ids. Finality (in the core) decides what it keeps by it.
pub use gridledger_core::finality::SUBTREE_LEVEL;
/// Bytes of a record's digest in the witness.
pub use gridledger_core::witness::{Digest, DIGEST_LEN};
/// Minutes per witness chunk.
const CHUNK: u32 = 64;

fn chunk_key(key: &RecordKey) -> u64 {
    (u64::from(key.relay.0) << 32) | u64::from(key.minute.0 / CHUNK)
}

/// The digest of `slot` in a chunk, if present.
fn chunk_get(chunk: &[u8], slot: u32) -> Option<Digest> {
    let mask = u64::from_be_bytes(chunk.get(..8)?.try_into().ok()?);
    if mask & (1 << slot) == 0 {
        return None;
    }
    let at = 8 + (mask & ((1u64 << slot) - 1)).count_ones() as usize * DIGEST_LEN;
    chunk.get(at..at + DIGEST_LEN)?.try_into().ok()
}

/// `chunk` with `slot` set to `digest` (a malformed chunk is replaced).
fn chunk_set(chunk: Option<&[u8]>, slot: u32, digest: &Digest) -> Vec<u8> {
    let mut mask = 0u64;
    let mut digests: Vec<Digest> = Vec::new();
    if let Some(c) = chunk {
        if let Some(m) = c
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
        {
            let n = m.count_ones() as usize;
            if c.len() == 8 + n * DIGEST_LEN {
                mask = m;
                digests = c[8..]
                    .chunks_exact(DIGEST_LEN)
                    .filter_map(|d| d.try_into().ok())
                    .collect();
            }
        }
    }
    let at = (mask & ((1u64 << slot) - 1)).count_ones() as usize;
    if mask & (1 << slot) == 0 {
        digests.insert(at, *digest);
        mask |= 1 << slot;
    } else {
        digests[at] = *digest;
    }
    let mut out = Vec::with_capacity(8 + digests.len() * DIGEST_LEN);
    out.extend_from_slice(&mask.to_be_bytes());
    for d in digests {
        out.extend_from_slice(&d);
    }
    out
}

/// A finalisation to keep in one transaction ([`Store::put_final`]).
#[derive(Debug)]
pub struct Finalised<'a> {
    /// The node's final state, encoded.
    pub state: &'a [u8],
    /// The final checkpoint's height and its note, if it is one to keep for good (see
    /// `crate::finality::KEEP_EVERY`); the latest is in `state` anyway.
    pub checkpoint: Option<(Height, &'a [u8])>,
    /// Whole subtrees the final chain's tlog gained: (level, index, hash).
    pub subtrees: &'a [(u32, u64, Hash)],
}

impl Store {
    /// Copies what `old` keeps beside the chain (witness, finality, checkpoints, tlog
    /// subtrees, evidence, disputes) into this store, in one transaction: `repair` builds a
    /// new store and must not make the node forget what it read or voted. A table of `old`
    /// that cannot be read is skipped, with its error in the answer.
    pub fn copy_kept_from(&self, old: &Store) -> Result<Vec<String>, StoreError> {
        let mut skipped = Vec::new();
        let txn = self.begin_write()?;
        {
            let r = old.db.begin_read().map_err(|e| old.err(e))?;
            macro_rules! copy {
                ($def:expr) => {{
                    let copied: Result<(), String> = (|| {
                        let src = match r.open_table($def) {
                            Ok(t) => t,
                            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                            Err(e) => return Err(e.to_string()),
                        };
                        let mut dst = txn.open_table($def).map_err(|e| e.to_string())?;
                        for row in src.iter().map_err(|e| e.to_string())? {
                            let (k, v) = row.map_err(|e| e.to_string())?;
                            dst.insert(k.value(), v.value())
                                .map_err(|e| e.to_string())?;
                        }
                        Ok(())
                    })();
                    if let Err(e) = copied {
                        skipped.push(format!("{}: {e}", $def));
                    }
                }};
            }
            copy!(WITNESS);
            copy!(WITNESS_RANGE);
            copy!(FINALITY);
            copy!(CHECKPOINTS);
            copy!(TLOG);
            copy!(EVIDENCE);
            copy!(super::DISPUTES);
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(skipped)
    }

    /// Keeps this node's read of `key` as its digest, durably (replacing an earlier one).
    pub fn put_witness(&self, key: &RecordKey, digest: &Digest) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(WITNESS).map_err(|e| self.err(e))?;
            let ck = chunk_key(key);
            let old = t
                .get(ck)
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_vec());
            let new = chunk_set(old.as_deref(), key.minute.0 % CHUNK, digest);
            t.insert(ck, new.as_slice()).map_err(|e| self.err(e))?;
            let mut r = txn.open_table(WITNESS_RANGE).map_err(|e| self.err(e))?;
            let m = key.minute.0;
            let range = match r.get(key.relay.0).map_err(|e| self.err(e))? {
                Some(v) => {
                    let (lo, hi) = v.value();
                    (lo.min(m), hi.max(m))
                }
                None => (m, m),
            };
            r.insert(key.relay.0, range).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// [`Self::put_witness`] for many reads in one transaction (a bench filling the witness
    /// of a long chain; a tool importing reads).
    pub fn put_witness_many(&self, reads: &[(RecordKey, Digest)]) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(WITNESS).map_err(|e| self.err(e))?;
            let mut r = txn.open_table(WITNESS_RANGE).map_err(|e| self.err(e))?;
            let mut ranges: std::collections::HashMap<u32, (u32, u32)> =
                std::collections::HashMap::new();
            let mut i = 0;
            while i < reads.len() {
                let ck = chunk_key(&reads[i].0);
                let mut chunk = t
                    .get(ck)
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().to_vec());
                while i < reads.len() && chunk_key(&reads[i].0) == ck {
                    let (key, d) = &reads[i];
                    chunk = Some(chunk_set(chunk.as_deref(), key.minute.0 % CHUNK, d));
                    let e = ranges
                        .entry(key.relay.0)
                        .or_insert((key.minute.0, key.minute.0));
                    e.0 = e.0.min(key.minute.0);
                    e.1 = e.1.max(key.minute.0);
                    i += 1;
                }
                if let Some(c) = chunk {
                    t.insert(ck, c.as_slice()).map_err(|e| self.err(e))?;
                }
            }
            for (relay, (lo, hi)) in ranges {
                let old = r.get(relay).map_err(|e| self.err(e))?.map(|v| v.value());
                let range = old.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi)));
                r.insert(relay, range).map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// The digests this node kept of `keys`, in order, in one read transaction.
    pub fn witness_digests(&self, keys: &[RecordKey]) -> Result<Vec<Option<Digest>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let Some(t) = self.optional(txn.open_table(WITNESS))? else {
            return Ok(vec![None; keys.len()]);
        };
        let mut out = Vec::with_capacity(keys.len());
        let mut last: Option<(u64, Option<Vec<u8>>)> = None;
        for key in keys {
            let ck = chunk_key(key);
            if last.as_ref().is_none_or(|(k, _)| *k != ck) {
                let chunk = t
                    .get(ck)
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().to_vec());
                last = Some((ck, chunk));
            }
            let got = last
                .as_ref()
                .and_then(|(_, c)| c.as_deref())
                .and_then(|c| chunk_get(c, key.minute.0 % CHUNK));
            out.push(got);
        }
        Ok(out)
    }

    /// Each relay this node read: the lowest and highest minute it kept.
    pub fn witness_ranges(&self) -> Result<Vec<(u32, u32, u32)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let Some(t) = self.optional(txn.open_table(WITNESS_RANGE))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let (lo, hi) = v.value();
            out.push((k.value(), lo, hi));
        }
        Ok(out)
    }

    /// Bytes the witness tables hold (keys, values, pages): `scale`'s witness figure.
    pub fn witness_bytes(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let Some(t) = self.optional(txn.open_table(WITNESS))? else {
            return Ok(0);
        };
        let s = t.stats().map_err(|e| self.err(e))?;
        Ok(s.stored_bytes() + s.metadata_bytes() + s.fragmented_bytes())
    }

    /// A finality value (`own`, `final`, `justified`).
    pub fn finality(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let Some(t) = self.optional(txn.open_table(FINALITY))? else {
            return Ok(None);
        };
        let got = t.get(key).map_err(|e| self.err(e))?;
        Ok(got.map(|v| v.value().to_vec()))
    }

    /// Keeps a finality value, durably, before the caller acts on it (a vote is kept before
    /// it is sent).
    pub fn put_finality(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(FINALITY).map_err(|e| self.err(e))?;
            t.insert(key, value).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Keeps a finalisation in one durable transaction: the node's final state, the
    /// checkpoint note of its height, and the tlog subtrees it completed.
    pub fn put_final(&self, f: &Finalised<'_>) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(FINALITY).map_err(|e| self.err(e))?;
            t.insert("final", f.state).map_err(|e| self.err(e))?;
            if let Some((height, note)) = f.checkpoint {
                let mut c = txn.open_table(CHECKPOINTS).map_err(|e| self.err(e))?;
                c.insert(height, note).map_err(|e| self.err(e))?;
            }
            let mut tl = txn.open_table(TLOG).map_err(|e| self.err(e))?;
            for (level, index, hash) in f.subtrees {
                tl.insert((u64::from(*level) << 48) | index, hash)
                    .map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// The final checkpoint note kept for `height`, if that height was final.
    pub fn checkpoint(&self, height: Height) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let Some(t) = self.optional(txn.open_table(CHECKPOINTS))? else {
            return Ok(None);
        };
        let got = t.get(height).map_err(|e| self.err(e))?;
        Ok(got.map(|v| v.value().to_vec()))
    }

    /// The heights of kept final checkpoints from `from` up, at most `limit`.
    pub fn checkpoint_heights(
        &self,
        from: Height,
        limit: usize,
    ) -> Result<Vec<Height>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let Some(t) = self.optional(txn.open_table(CHECKPOINTS))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in t.range(from..).map_err(|e| self.err(e))?.take(limit) {
            out.push(row.map_err(|e| self.err(e))?.0.value());
        }
        Ok(out)
    }

    /// A kept tlog subtree hash.
    pub fn subtree(&self, level: u32, index: u64) -> Result<Option<Hash>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let Some(t) = self.optional(txn.open_table(TLOG))? else {
            return Ok(None);
        };
        let got = t
            .get((u64::from(level) << 48) | index)
            .map_err(|e| self.err(e))?;
        Ok(got.map(|v| v.value()))
    }

    /// Keeps evidence of an offence; returns its sequence number.
    pub fn put_evidence(&self, bytes: &[u8]) -> Result<u64, StoreError> {
        let txn = self.begin_write()?;
        let seq;
        {
            let mut t = txn.open_table(EVIDENCE).map_err(|e| self.err(e))?;
            seq = t.len().map_err(|e| self.err(e))?;
            t.insert(seq, bytes).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(seq)
    }

    /// Every kept evidence, oldest first.
    pub fn evidence(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let Some(t) = self.optional(txn.open_table(EVIDENCE))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            out.push(row.map_err(|e| self.err(e))?.1.value().to_vec());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_core::{Minute, RelayId};

    #[test]
    fn chunks_keep_digests_by_minute() {
        let mut chunk: Option<Vec<u8>> = None;
        for slot in [5u32, 0, 63, 17, 5] {
            let d = [slot as u8 + 1; DIGEST_LEN];
            chunk = Some(chunk_set(chunk.as_deref(), slot, &d));
        }
        let c = chunk.expect("set");
        assert_eq!(c.len(), 8 + 4 * DIGEST_LEN);
        for slot in [0u32, 5, 17, 63] {
            assert_eq!(chunk_get(&c, slot), Some([slot as u8 + 1; DIGEST_LEN]));
        }
        assert_eq!(chunk_get(&c, 6), None);
        // A damaged chunk reads as nothing and is replaced on the next write.
        assert_eq!(chunk_get(&c[..10], 63), None);
        let fresh = chunk_set(Some(&c[..10]), 1, &[9; DIGEST_LEN]);
        assert_eq!(chunk_get(&fresh, 1), Some([9; DIGEST_LEN]));
        assert_eq!(chunk_get(&fresh, 5), None);
    }

    #[test]
    fn the_witness_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = |relay: u32, minute: u32| RecordKey::new(RelayId(relay), Minute(minute));
        {
            let store = Store::open(dir.path(), "net", 8, true).expect("open");
            for m in 100..300u32 {
                store
                    .put_witness(&key(7, m), &[(m % 251) as u8; DIGEST_LEN])
                    .expect("put");
            }
            store
                .put_witness(&key(9, 5), &[1; DIGEST_LEN])
                .expect("put");
        }
        let store = Store::open(dir.path(), "net", 8, true).expect("reopen");
        let got = store
            .witness_digests(&[key(7, 100), key(7, 299), key(7, 300), key(9, 5), key(8, 5)])
            .expect("read");
        assert_eq!(
            got,
            vec![
                Some([100; DIGEST_LEN]),
                Some([(299 % 251) as u8; DIGEST_LEN]),
                None,
                Some([1; DIGEST_LEN]),
                None
            ]
        );
        let mut ranges = store.witness_ranges().expect("ranges");
        ranges.sort_unstable();
        assert_eq!(ranges, vec![(7, 100, 299), (9, 5, 5)]);
    }
}
