//! What this node read itself from its relays (its witness), and the records on the chain
//! that differ from it (disputes).
//!
//! A node that reads a relay vouches for what the relay said: a peer's block whose record
//! for a relay and minute differs from this node's read is refused
//! ([`Witness::check`], then [`Witness::check_kept`] for older reads), and a record already
//! on the main chain that differs (mined before this node read that minute, or brought in by
//! a reorg) opens a [`Dispute`] ([`Witness::against`]), kept until the chain's record agrees
//! again. Finality asks [`Witness::disputed_above`]: a member cosigns only a chain it has
//! witnessed.
//!
//! Memory holds the latest [`READS_KEPT`] reads whole (a dispute shows both records); the
//! runtime keeps every read durably as a [`Digest`] ([`Persist::Read`]), so that a restart,
//! a crash or a repair does not make the node forget what the relay said. Per relay the
//! lowest and highest minute kept durably is known here, so a record outside costs no
//! lookup. Nothing here touches the disk: what to keep and forget comes out as [`Persist`]
//! actions, and kept digests come in as arguments.

use std::collections::{BTreeMap, HashMap};

use gridledger_chain::{BlockId, Height, RecordKey};
use relay_core::{Minute, MinuteRecord, RelayId};
use sha2::Digest as _;

use crate::dispute::Dispute;

/// Records this node read itself kept whole in memory (the oldest minutes go first).
pub const READS_KEPT: usize = 100_000;
/// Disputes kept (the oldest minutes go first when full); the count of those found goes on.
pub const DISPUTES_KEPT: usize = 10_000;

/// Bytes of a read's digest: a 96-bit second preimage stands between a miner and a record
/// that passes for this node's read.
pub const DIGEST_LEN: usize = 12;
/// A read's digest.
pub type Digest = [u8; DIGEST_LEN];

/// The digest the witness keeps of a record: SHA-256 of its canonical bytes without the
/// relay's signature (a witness vouches for values), cut to [`DIGEST_LEN`] bytes. `None`
/// for a record that does not encode (never for a valid one).
#[must_use]
pub fn digest(record: &MinuteRecord) -> Option<Digest> {
    let mut buf = [0u8; MinuteRecord::MAX_UNSIGNED_LEN];
    let bytes = record.encode_unsigned(&mut buf).ok()?;
    let d = sha2::Sha256::digest(bytes);
    d[..DIGEST_LEN].try_into().ok()
}

/// A block's record that differs from this node's read of the same relay and minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("record of relay {} minute {} differs from this node's own read", relay.0, minute.0)]
pub struct Conflict {
    /// The relay.
    pub relay: RelayId,
    /// The minute.
    pub minute: Minute,
}

impl Conflict {
    fn of(r: &MinuteRecord) -> Self {
        Conflict {
            relay: r.relay,
            minute: r.minute,
        }
    }
}

/// What the runtime keeps in, or takes out of, its data dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persist {
    /// A read's digest (before anything else is done with the read).
    Read(RecordKey, Digest),
    /// A dispute found (new, or moved to another block).
    Dispute(RecordKey, Box<Dispute>),
    /// A dispute closed, or past [`DISPUTES_KEPT`].
    Forget(RecordKey),
}

/// A record on the main chain: its block's height and id, and the record.
pub type OnChain = (Height, BlockId, MinuteRecord);

/// This node's reads and disputes.
#[derive(Debug, Default)]
pub struct Witness {
    reads: BTreeMap<RecordKey, MinuteRecord>,
    /// Per relay, the lowest and highest minute kept durably.
    ranges: HashMap<u32, (u32, u32)>,
    disputes: BTreeMap<RecordKey, Dispute>,
}

impl Witness {
    /// The witness a node starts with: the disputes its data dir kept (each one's read is
    /// its witness for that minute again) and, per relay, the range of minutes its data dir
    /// holds reads for.
    #[must_use]
    pub fn new(
        kept: impl IntoIterator<Item = (RecordKey, Dispute)>,
        ranges: impl IntoIterator<Item = (u32, u32, u32)>,
    ) -> Self {
        let mut w = Witness::default();
        for (key, d) in kept {
            w.reads.insert(key, d.read.clone());
            w.disputes.insert(key, d);
        }
        w.ranges = ranges
            .into_iter()
            .map(|(relay, lo, hi)| (relay, (lo, hi)))
            .collect();
        w
    }

    /// A record this node read from a relay: remembered whole, and its digest to keep
    /// durably (the runtime keeps it before anything else is done with the read).
    pub fn read(&mut self, record: MinuteRecord) -> Option<Persist> {
        let key = RecordKey::of(&record);
        let kept = digest(&record).map(|d| {
            let r = self
                .ranges
                .entry(key.relay.0)
                .or_insert((key.minute.0, key.minute.0));
            r.0 = r.0.min(key.minute.0);
            r.1 = r.1.max(key.minute.0);
            Persist::Read(key, d)
        });
        self.reads.insert(key, record);
        while self.reads.len() > READS_KEPT {
            self.reads.pop_first();
        }
        kept
    }

    /// Whether this node has read nothing (a node joining by sync): every record passes
    /// unchecked, and a block need not be decoded for the check.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.ranges.is_empty()
    }

    /// Whether this node's read of `key` is held whole (in memory).
    #[must_use]
    pub fn holds(&self, key: &RecordKey) -> bool {
        self.reads.contains_key(key)
    }

    /// This node's read of `key`, if held whole.
    #[must_use]
    pub fn own(&self, key: &RecordKey) -> Option<&MinuteRecord> {
        self.reads.get(key)
    }

    /// Compares the main chain's record for `key` (`found`: none there) with this node's
    /// read, if held: opens a dispute where they differ (or its block changed), closes one
    /// where they no longer do. What to keep or forget durably.
    pub fn against(&mut self, key: RecordKey, found: Option<OnChain>, now_ms: u64) -> Vec<Persist> {
        let Some(read) = self.reads.get(&key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match found {
            Some((height, id, on_chain)) if !on_chain.same_reading(read) => {
                if self.disputes.get(&key).is_none_or(|d| d.block != id) {
                    tracing::warn!(
                        relay = key.relay.0,
                        minute = %key.minute,
                        height,
                        block = %id,
                        "DISPUTE: the chain's record differs from what this node read from the relay"
                    );
                    let dispute = Dispute {
                        height,
                        block: id,
                        on_chain,
                        read: read.clone(),
                        found_ms: now_ms,
                    };
                    out.push(Persist::Dispute(key, Box::new(dispute.clone())));
                    self.disputes.insert(key, dispute);
                    while self.disputes.len() > DISPUTES_KEPT {
                        if let Some((old, _)) = self.disputes.pop_first() {
                            out.push(Persist::Forget(old));
                        }
                    }
                }
            }
            _ => {
                if self.disputes.remove(&key).is_some() {
                    out.push(Persist::Forget(key));
                }
            }
        }
        out
    }

    /// A block's records against this node's reads held whole: the first that differs, or
    /// the positions (in `records`) of those whose reads only the data dir may hold (ask
    /// the store for their digests, then [`Witness::check_kept`]). Nothing read yet (a node
    /// joining by sync): nothing to compare.
    pub fn check(&self, records: &[MinuteRecord]) -> Result<Vec<usize>, Conflict> {
        let mut ask = Vec::new();
        if self.is_empty() {
            return Ok(ask);
        }
        for (i, r) in records.iter().enumerate() {
            let key = RecordKey::of(r);
            match self.reads.get(&key) {
                Some(seen) if !seen.same_reading(r) => return Err(Conflict::of(r)),
                Some(_) => {}
                None => {
                    if self
                        .ranges
                        .get(&key.relay.0)
                        .is_some_and(|(lo, hi)| (*lo..=*hi).contains(&key.minute.0))
                    {
                        ask.push(i);
                    }
                }
            }
        }
        Ok(ask)
    }

    /// The records [`Witness::check`] asked about against the digests the data dir keeps
    /// of this node's reads (`None`: no read of that minute).
    pub fn check_kept<'a>(
        records: impl IntoIterator<Item = &'a MinuteRecord>,
        kept: impl IntoIterator<Item = Option<Digest>>,
    ) -> Result<(), Conflict> {
        for (r, d) in records.into_iter().zip(kept) {
            if let Some(d) = d {
                if digest(r) != Some(d) {
                    return Err(Conflict::of(r));
                }
            }
        }
        Ok(())
    }

    /// Whether a dispute is open above `height` (a member cosigns a chain only where it
    /// agrees with every read of this node).
    #[must_use]
    pub fn disputed_above(&self, height: Height) -> bool {
        self.disputes.values().any(|d| d.height > height)
    }

    /// Open disputes, oldest minute first.
    pub fn disputes(&self) -> impl DoubleEndedIterator<Item = &Dispute> + ExactSizeIterator {
        self.disputes.values()
    }

    /// The keys of the open disputes.
    #[must_use]
    pub fn disputed_keys(&self) -> Vec<RecordKey> {
        self.disputes.keys().copied().collect()
    }

    /// Whether the chain's record for `key` is disputed by this node's read.
    #[must_use]
    pub fn is_disputed(&self, key: &RecordKey) -> bool {
        self.disputes.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use relay_core::signal::{Profile, SignalModel};
    use relay_core::{RecordFlags, RecordSignature};

    use super::*;

    fn record(relay: u32, minute: u32, seed: u64) -> MinuteRecord {
        SignalModel::new(seed, Profile::Realistic).record(
            RelayId(relay),
            Minute(minute),
            6,
            RecordFlags::CLOCK_SET,
        )
    }

    /// A block's record that differs from a read held whole is a conflict; the same reading
    /// (whatever its relay signature says) passes; a minute not read passes unasked.
    #[test]
    fn a_record_that_differs_from_a_read_is_a_conflict() {
        let mut w = Witness::default();
        assert_eq!(w.check(&[record(1, 10, 1)]), Ok(vec![]), "nothing read yet");
        let read = record(1, 10, 1);
        let kept = w.read(read.clone());
        assert!(
            matches!(kept, Some(Persist::Read(k, d)) if k == RecordKey::of(&read) && Some(d) == digest(&read))
        );
        let forged = record(1, 10, 2);
        assert!(!forged.same_reading(&read), "two seeds, two readings");
        assert_eq!(
            w.check(&[record(1, 11, 3), forged]),
            Err(Conflict {
                relay: RelayId(1),
                minute: Minute(10)
            })
        );
        let mut signed = read.clone();
        signed.signature = Some(RecordSignature([5; 64]));
        assert_eq!(
            w.check(&[signed]),
            Ok(vec![]),
            "values are what a witness vouches for"
        );
        assert_eq!(w.check(&[record(2, 10, 9)]), Ok(vec![]), "another relay");
    }

    /// After a restart only digests are left: a record inside a relay's kept range is
    /// asked for, and its digest decides; outside the range nothing is asked.
    #[test]
    fn older_reads_are_checked_by_their_kept_digests() {
        let read = record(3, 500, 1);
        let w = Witness::new([], [(3, 100, 900)]);
        let forged = record(3, 500, 2);
        let outside = record(3, 901, 2);
        let asked = w.check(&[outside, forged.clone(), read.clone()]);
        assert_eq!(asked, Ok(vec![1, 2]), "inside the range only");
        let kept = digest(&read);
        assert_eq!(
            Witness::check_kept([&forged], [kept]),
            Err(Conflict {
                relay: RelayId(3),
                minute: Minute(500)
            })
        );
        assert_eq!(Witness::check_kept([&read], [kept]), Ok(()));
        assert_eq!(Witness::check_kept([&forged], [None]), Ok(()), "not read");
    }

    /// A differing record on the main chain opens a dispute (kept durably, once per
    /// block); the chain agreeing again closes it; a restart finds it open with its read.
    #[test]
    fn a_dispute_opens_and_closes_with_the_chain() {
        let mut w = Witness::default();
        let read = record(1, 10, 1);
        let key = RecordKey::of(&read);
        w.read(read.clone());
        let forged = record(1, 10, 2);
        let at = |h: u32, b: u8, r: &MinuteRecord| Some((h, BlockId([b; 32]), r.clone()));
        let out = w.against(key, at(7, 1, &forged), 1_000);
        let [Persist::Dispute(k, d)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!((*k, d.height, d.found_ms), (key, 7, 1_000));
        assert!(w.is_disputed(&key) && w.disputed_above(6) && !w.disputed_above(7));
        assert!(
            w.against(key, at(7, 1, &forged), 2_000).is_empty(),
            "once per block"
        );
        assert_eq!(
            w.against(key, at(8, 2, &forged), 3_000).len(),
            1,
            "another block"
        );

        let restarted = Witness::new([(key, (**d).clone())], []);
        assert!(restarted.is_disputed(&key));
        assert_eq!(
            restarted.own(&key),
            Some(&read),
            "its read is the witness again"
        );

        assert_eq!(
            w.against(key, at(8, 3, &read), 4_000),
            vec![Persist::Forget(key)]
        );
        assert_eq!(w.disputes().len(), 0);
        assert!(w.against(key, None, 5_000).is_empty());
        assert!(
            Witness::default()
                .against(key, at(1, 1, &forged), 0)
                .is_empty(),
            "no read, no dispute"
        );
    }
}
