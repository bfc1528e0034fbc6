//! What this node mines next, and when: the records a block takes, the time stamped on it,
//! and how long the miner waits when there is nothing to mine yet.
//!
//! The runtime's miner asks [`next`] whenever it wakes (a read, a new tip, the wait it was
//! told); it mines the [`Job`] it gets, on the tip's header, and waits the time it is told
//! otherwise. The rules, each with its reason:
//! - nothing while finality met a safety failure (people resolve it first), nor while a
//!   node that just started has not caught up with its peers (a block on the tip it
//!   stopped with would be stale at birth);
//! - oldest minutes first, at most `max_records` a block; a record the main chain holds
//!   already is not mined again;
//! - a record whose minute has not closed by this node's clock plus [`MAX_STAMP_AHEAD_MS`]
//!   waits (its relay's clock runs ahead of ours): a block is stamped no earlier than its
//!   last record's minute closes, and no peer takes a block stamped too far ahead;
//! - a record waits for this node's turn ([`crate::policy::due_ms`]), drawn for the minute
//!   in which it came (a record a relay served late goes with the minute it came in): the miner wakes when
//!   the first waiting record falls due, within [`IDLE_MS`];
//! - the block's time is now, but never before the median time of the last blocks nor
//!   before its last record's minute closed ([`block_time`]): an honest node never builds a
//!   block the rules refuse.

use gridledger_chain::validate::minute_closes_ms;
use gridledger_chain::{BlockTree, Header, RecordKey};
use relay_core::MinuteRecord;

use crate::mempool::Mempool;

/// How far ahead of its own clock a miner may stamp a block, so that it can hold a record
/// whose minute is about to close by this node's clock (a relay clock a little ahead of
/// ours). Well inside the 2 minutes that peers allow
/// (`gridledger_chain::validate::MAX_FUTURE_MS`), so a peer whose clock lags ours by 90 s
/// still takes the block.
pub const MAX_STAMP_AHEAD_MS: u64 = 30_000;

/// How long the miner waits when nothing wakes it.
pub const IDLE_MS: u64 = 500;
/// How long it waits while finality's safety failure stands.
pub const HALTED_MS: u64 = 1_000;
/// How long it waits while the node catches up after its start.
pub const CATCHING_UP_MS: u64 = 50;

/// The time a miner stamps on a block of `records`: now, but never before the median time
/// of the last blocks (rule 5) nor before the last record's minute has closed (rule 9), so
/// that an honest node never builds a block the rules refuse.
#[must_use]
pub fn block_time(now_ms: u64, median_time_past_ms: u64, records: &[MinuteRecord]) -> u64 {
    records
        .iter()
        .map(|r| minute_closes_ms(r.minute))
        .fold(now_ms.max(median_time_past_ms), u64::max)
}

/// How this node mines.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Its miner key.
    pub own: [u8; 32],
    /// The mining slot of the turns (`crate::policy`; zero: no turns, every node at once).
    pub slot: std::time::Duration,
    /// Records a block takes at most.
    pub max_records: usize,
}

/// Where the node stands, as the miner must know it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// Finality met a safety failure.
    pub halted: bool,
    /// The node just started and has not caught up with its peers yet (and the longest
    /// wait for that has not passed).
    pub catching_up: bool,
}

/// A block to mine on the tip.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// Its records, oldest minute first.
    pub records: Vec<MinuteRecord>,
    /// The time to stamp on it.
    pub time_ms: u64,
}

/// What the miner does next: mine `job` if any, else wait `wait_ms` (or until woken).
#[derive(Clone, Debug, PartialEq)]
pub struct Next {
    /// The block to mine now.
    pub job: Option<Job>,
    /// How long to wait before asking again if there is none (or after it).
    pub wait_ms: u64,
}

/// The key a record's turns are drawn for. A record read within a minute of its close is
/// drawn for its own minute, as the others of that minute. One read in the minute after
/// (a relay 5–20 s late is read at the next poll) goes with that minute's records: drawn
/// for its own, its first miner would mine at the same instant as the next minute's first,
/// two blocks at one height (the simulator, one relay 5–20 s late: 54 stale blocks per 100
/// at 16 nodes). One read later still (a backfill after an outage, a relay clock that runs
/// behind ours) keeps its own minute: the records around it are not of one minute.
fn turn_key(r: &MinuteRecord, arrived_ms: u64) -> RecordKey {
    let late = arrived_ms.saturating_sub(minute_closes_ms(r.minute)) / 60_000;
    let minute = if late == 1 {
        r.minute.0.saturating_add(1)
    } else {
        r.minute.0
    };
    RecordKey::new(r.relay, relay_core::Minute(minute))
}

/// What to mine next on `tip` (the main chain's tip in `tree`), from the records waiting in
/// `mempool`, with the miner keys this node's peers say they mine with (`peer_keys`, for
/// the turns).
#[must_use]
pub fn next(
    settings: &Settings,
    standing: Standing,
    mempool: &Mempool,
    tree: &BlockTree,
    tip: &Header,
    peer_keys: &[[u8; 32]],
    now_ms: u64,
) -> Next {
    let wait = |wait_ms| Next { job: None, wait_ms };
    if standing.halted {
        return wait(HALTED_MS);
    }
    if standing.catching_up {
        return wait(CATCHING_UP_MS);
    }
    let pending: Vec<(MinuteRecord, u64)> = mempool
        .peek_timed(settings.max_records.max(1))
        .into_iter()
        .filter(|(r, _)| {
            tree.record_height(&RecordKey::of(r)).is_none()
                && minute_closes_ms(r.minute) <= now_ms.saturating_add(MAX_STAMP_AHEAD_MS)
        })
        .collect();
    // Who mined lately, looked up only when there is something to mine and turns to take.
    let members = if settings.slot.is_zero() || pending.is_empty() {
        Vec::new()
    } else {
        tree.recent_miners(crate::policy::SETTLE_BLOCKS, crate::policy::RECENT_BLOCKS)
    };
    let mut next_due: Option<u64> = None;
    let records: Vec<MinuteRecord> = pending
        .into_iter()
        .filter_map(|(r, arrived)| {
            let key = turn_key(&r, arrived);
            let due = crate::policy::due_ms(
                &key,
                arrived,
                &settings.own,
                &members,
                peer_keys,
                settings.slot,
            );
            if due <= now_ms {
                Some(r)
            } else {
                next_due = Some(next_due.map_or(due, |d| d.min(due)));
                None
            }
        })
        .collect();
    let wait_ms = next_due.map_or(IDLE_MS, |due| due.saturating_sub(now_ms).clamp(1, IDLE_MS));
    if records.is_empty() {
        return Next { job: None, wait_ms };
    }
    let time_ms = block_time(now_ms, tree.median_time_past(&tip.id()), &records);
    Next {
        job: Some(Job { records, time_ms }),
        wait_ms,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use ed25519_dalek::SigningKey;
    use gridledger_chain::{assemble, Network};
    use relay_core::signal::{Profile, SignalModel};
    use relay_core::{Minute, RecordFlags, RelayId};

    use super::*;

    const M: u32 = 29_943_000;

    fn record(relay: u32, minute: u32) -> MinuteRecord {
        SignalModel::new(1, Profile::Realistic).record(
            RelayId(relay),
            Minute(minute),
            6,
            RecordFlags::CLOCK_SET,
        )
    }

    fn settings(slot_ms: u64, max_records: usize) -> Settings {
        Settings {
            own: SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes(),
            slot: Duration::from_millis(slot_ms),
            max_records,
        }
    }

    /// A chain whose one block holds relay 1's record for minute `M`.
    fn chain() -> (BlockTree, Header) {
        let net = Network::new("mining-test", 0);
        let genesis = net.genesis().header;
        let mut tree = BlockTree::new(&genesis);
        let r = record(1, M);
        let time = minute_closes_ms(Minute(M));
        let b = assemble(
            &genesis,
            std::slice::from_ref(&r),
            &SigningKey::from_bytes(&[7; 32]),
            time,
            0,
            &AtomicBool::new(false),
        )
        .expect("bits 0 mines");
        tree.insert(&b.header, vec![RecordKey::of(&r)]);
        (tree, b.header)
    }

    /// [`next`] for a node that may mine, on `tree`'s tip.
    fn ask(
        s: &Settings,
        pool: &Mempool,
        (tree, tip): (&BlockTree, &Header),
        peers: &[[u8; 32]],
        now: u64,
    ) -> Next {
        next(s, Standing::default(), pool, tree, tip, peers, now)
    }

    /// A node halted by finality, or catching up after its start, mines nothing and asks
    /// again soon; an empty mempool waits idle.
    /// A record read on time is drawn for its own minute; one read in the minute after, with
    /// the records of that minute; one read later still, or early, for its own.
    #[test]
    fn a_late_record_takes_its_turn_with_the_minute_it_came_in() {
        let r = record(3, M);
        let on_time = minute_closes_ms(Minute(M)) + 2_000;
        assert_eq!(turn_key(&r, on_time), RecordKey::new(RelayId(3), Minute(M)));
        let late = minute_closes_ms(Minute(M + 1)) + 2_000;
        assert_eq!(
            turn_key(&r, late),
            RecordKey::new(RelayId(3), Minute(M + 1))
        );
        assert_eq!(turn_key(&r, 0), RecordKey::new(RelayId(3), Minute(M)));
        // Read much later (a backfill, a relay clock behind ours): its own minute.
        let backfill = minute_closes_ms(Minute(M + 5));
        assert_eq!(
            turn_key(&r, backfill),
            RecordKey::new(RelayId(3), Minute(M))
        );
    }

    #[test]
    fn nothing_is_mined_while_halted_or_catching_up() {
        let (tree, tip) = chain();
        let mut pool = Mempool::new();
        pool.add_at(record(2, M), 0);
        let now = minute_closes_ms(Minute(M)) + 5_000;
        let s = settings(0, 10);
        for (standing, wait) in [
            (
                Standing {
                    halted: true,
                    catching_up: true,
                },
                HALTED_MS,
            ),
            (
                Standing {
                    halted: false,
                    catching_up: true,
                },
                CATCHING_UP_MS,
            ),
        ] {
            let n = next(&s, standing, &pool, &tree, &tip, &[], now);
            assert_eq!((n.job, n.wait_ms), (None, wait), "{standing:?}");
        }
        let n = ask(&s, &Mempool::new(), (&tree, &tip), &[], now);
        assert_eq!((n.job, n.wait_ms), (None, IDLE_MS));
        assert!(ask(&s, &pool, (&tree, &tip), &[], now).job.is_some());
    }

    /// Oldest minutes first, at most `max_records`; a record the chain holds is not mined
    /// again; one whose minute closes beyond the stamp-ahead margin waits; the block's time
    /// is not before its last record's minute closed.
    #[test]
    fn a_job_takes_the_oldest_closed_records_not_on_the_chain() {
        let (tree, tip) = chain();
        let now = minute_closes_ms(Minute(M + 3)) + 1_000;
        let mut pool = Mempool::new();
        for r in [
            record(1, M),     // on the chain
            record(3, M + 2), // closes before now
            record(2, M + 1),
            record(4, M + 3),
            record(5, M + 4), // closes 59 s after now, beyond the 30 s margin: waits
        ] {
            pool.add_at(r, 0);
        }
        let n = ask(&settings(0, 10), &pool, (&tree, &tip), &[], now);
        let job = n.job.expect("records to mine");
        let keys: Vec<(u32, u32)> = job
            .records
            .iter()
            .map(|r| (r.relay.0, r.minute.0))
            .collect();
        assert_eq!(keys, vec![(2, M + 1), (3, M + 2), (4, M + 3)]);
        assert_eq!(job.time_ms, now, "now: every record's minute has closed");

        // The stamp-ahead margin: 20 s before relay 5's minute closes, it is taken, and the
        // block is stamped at that close, not now.
        let early = minute_closes_ms(Minute(M + 4)) - 20_000;
        let n = ask(&settings(0, 10), &pool, (&tree, &tip), &[], early);
        let job = n.job.expect("records to mine");
        assert_eq!(job.records.last().map(|r| r.relay.0), Some(5));
        assert_eq!(job.time_ms, minute_closes_ms(Minute(M + 4)));

        let n = ask(&settings(0, 2), &pool, (&tree, &tip), &[], now);
        assert_eq!(
            n.job.map(|j| j.records.len()),
            Some(1),
            "2 peeked, 1 on the chain"
        );
    }

    /// With turns, a record that is another node's turn first waits: the miner is told to
    /// wake when it falls due (at most `IDLE_MS` away), and mines it then.
    #[test]
    fn a_record_waits_for_this_nodes_turn() {
        let (tree, tip) = chain();
        let s = settings(2_000, 10);
        // Eight peers; a record whose turn, by the policy, is not this node's first.
        let peers: Vec<[u8; 32]> = (1..=8u8).map(|k| [k; 32]).collect();
        // Read on time: 2 s after its minute closed (turns are drawn for the minute a
        // record came in).
        let arrived = minute_closes_ms(Minute(M + 9)) + 2_000;
        let members =
            tree.recent_miners(crate::policy::SETTLE_BLOCKS, crate::policy::RECENT_BLOCKS);
        let (r, due) = (0..200)
            .map(|i| record(2 + i, M + 9))
            .map(|r| {
                let due = crate::policy::due_ms(
                    &RecordKey::of(&r),
                    arrived,
                    &s.own,
                    &members,
                    &peers,
                    s.slot,
                );
                (r, due)
            })
            .find(|(_, due)| *due > arrived)
            .expect("some record is not this node's first turn");
        let mut pool = Mempool::new();
        pool.add_at(r, arrived);
        let n = ask(&s, &pool, (&tree, &tip), &peers, arrived);
        assert_eq!(n.job, None, "not its turn yet");
        assert_eq!(n.wait_ms, (due - arrived).clamp(1, IDLE_MS));
        let n = ask(&s, &pool, (&tree, &tip), &peers, due - 1);
        assert_eq!((n.job, n.wait_ms), (None, 1), "woken just before");
        assert!(ask(&s, &pool, (&tree, &tip), &peers, due).job.is_some());
    }
}
