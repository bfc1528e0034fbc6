//! Whether a block goes on to a peer whole or announced by its id first
//! (`--block-relay adaptive`, the default).
//!
//! A whole block crosses a link in one trip, but a node that floods its peers receives each
//! block from up to every peer but one: all copies after the first are bytes for nothing
//! (on the testbed at degree 3–4 they made a node send about 3 × the block per block). An
//! announcement costs a few dozen bytes, and a peer that lacks the block asks for it: two
//! more trips on that hop.
//!
//! Which peer delivers a block first depends on where it was mined: on one graph, blocks of
//! one miner take the same paths. So a node remembers, for each peer and miner, how many of
//! that miner's blocks in a row the peer already held when this node sent them ("known"),
//! and for at least [`CLEAR_MS`] (its answer says since when: [`Arrivals`]): a copy that
//! arrived just after another crossed it on a path about as fast, which jitter may make the
//! faster one next time, so it counts as needed. After [`REDUNDANT_AFTER`] in a row it
//! announces that miner's blocks to that peer instead of sending them; the first
//! announcement the peer answers "want" (the paths changed: it lacked the block) puts it
//! back on whole blocks. A wrong switch costs that block two more trips on that hop, so
//! the rule switches only on a clear and repeated margin, and never over a link whose
//! trips are long ([`LONG_TRIP_MS`]: a satellite hop). A node's own blocks go whole to
//! every peer: nobody has them yet.
//!
//! Nothing here is trusted for more than bytes: a peer that lies about holding blocks only
//! gets announcements (and asks for what it lacks) or whole blocks, as it chooses, and the
//! memory is bounded ([`MAX_REMEMBERED`] pairs, then it starts over, all whole).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Blocks of one miner in a row that a peer already held before its next ones are
/// announced to it instead of sent.
pub const REDUNDANT_AFTER: u8 = 3;

/// Most (peer, miner) pairs remembered; past it the memory starts over.
pub const MAX_REMEMBERED: usize = 4096;

/// How long a peer must have held a block before this node's copy arrived for that copy to
/// count as wasted: about twice the spread that jitter gives two equally long paths on a
/// wide-area network (the testbed's 50 ± 10 ms links spread two 2-hop paths by about 12 ms,
/// one standard deviation). A copy that arrived sooner after the first may be the first
/// next time.
pub const CLEAR_MS: u64 = 25;

/// A send (push or announcement) answered later than this, request to answer, never counts
/// as wasted: an announcement costs two more trips per block, over 0.8 s on such a link (a
/// satellite hop), more than the bytes it saves are worth.
pub const LONG_TRIP_MS: u64 = 400;

/// Blocks whose arrival time [`Arrivals`] keeps.
pub const ARRIVALS_KEPT: usize = 4096;

/// When this node took in its latest blocks, so that its answer to a copy it already holds
/// can say for how long (the `gridledger-held-ms` header, `gridledger::wire::HELD_HEADER` in the node).
#[derive(Debug, Default)]
pub struct Arrivals {
    order: std::collections::VecDeque<gridledger_chain::BlockId>,
    at: HashMap<gridledger_chain::BlockId, u64>,
}

impl Arrivals {
    /// `id` arrived at `now_ms` (the first arrival counts); the oldest past
    /// [`ARRIVALS_KEPT`] is forgotten.
    pub fn note(&mut self, id: gridledger_chain::BlockId, now_ms: u64) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.at.entry(id) {
            e.insert(now_ms);
            self.order.push_back(id);
        }
        while self.order.len() > ARRIVALS_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.at.remove(&old);
            }
        }
    }

    /// Milliseconds since `id` arrived, if it is among the latest.
    #[must_use]
    pub fn held_ms(&self, id: &gridledger_chain::BlockId, now_ms: u64) -> Option<u64> {
        self.at.get(id).map(|t| now_ms.saturating_sub(*t))
    }
}

/// Whether a copy answered "known" after `trip_ms`, held for `held_ms` if the peer said so,
/// was wasted (for [`Fanout::learn`]): a peer that does not say (an older node) is taken at
/// its word; a trip over [`LONG_TRIP_MS`] is never wasted.
#[must_use]
pub fn wasted(known: bool, held_ms: Option<u64>, trip_ms: u64) -> bool {
    known && held_ms.is_none_or(|ms| ms >= CLEAR_MS) && trip_ms <= LONG_TRIP_MS
}

/// Whether an announcement that the peer answered "held" after `trip_ms` counts as a
/// wasted copy (for [`Fanout::learn`]): [`wasted`] for a known block whose holding time
/// the answer does not say.
#[must_use]
pub fn announce_wasted(trip_ms: u64) -> bool {
    wasted(true, None, trip_ms)
}

/// How a node sends a block it mined or took as its best on to its peers
/// (`--block-relay`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Whole to each peer, except the blocks of a miner that the peer kept holding already
    /// when this node sent them: those are announced ([`Fanout`]).
    #[default]
    Adaptive,
    /// Whole to every peer.
    Push,
    /// Announced to every peer; a peer that lacks it asks for it.
    Announce,
}

/// For each (peer URL, miner key): that miner's blocks in a row the peer already held.
type Held = HashMap<(String, [u8; 32]), u8>;

/// What a node remembers of its sends to each peer. Cheap to clone (shared inside).
#[derive(Clone, Debug, Default)]
pub struct Fanout(Arc<Mutex<Held>>);

impl Fanout {
    /// Whether the next block of `miner` goes to `peer` as an announcement.
    #[must_use]
    pub fn announce_to(&self, peer: &str, miner: &[u8; 32]) -> bool {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&(peer.to_owned(), *miner))
            .is_some_and(|n| *n >= REDUNDANT_AFTER)
    }

    /// Whether a block goes to `peer` announced by its id (`true`) or whole, under `mode`.
    /// `miner` is the block's miner when this node relays it; `None`: this node mined it,
    /// so every peer lacks it and gets it whole, adaptive or not.
    #[must_use]
    pub fn announces(&self, mode: Mode, peer: &str, miner: Option<&[u8; 32]>) -> bool {
        match (mode, miner) {
            (Mode::Push, _) | (Mode::Adaptive, None) => false,
            (Mode::Announce, _) => true,
            (Mode::Adaptive, Some(m)) => self.announce_to(peer, m),
        }
    }

    /// Learns how a block of `miner` sent to `peer` (whole or announced) was answered:
    /// `held` if the peer already had it (see [`wasted`]).
    pub fn learn(&self, peer: &str, miner: &[u8; 32], held: bool) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (peer.to_owned(), *miner);
        if !held {
            map.remove(&key);
            return;
        }
        if map.len() >= MAX_REMEMBERED && !map.contains_key(&key) {
            map.clear();
        }
        let n = map.entry(key).or_insert(0);
        *n = n.saturating_add(1).min(REDUNDANT_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Push sends whole, announce announces, adaptive sends this node's own blocks whole
    /// and a relayed block as the peer's record says; an announcement answered "held"
    /// counts as wasted only over a short trip.
    #[test]
    fn the_mode_decides_whole_or_announced() {
        let f = Fanout::default();
        let m = [7; 32];
        for _ in 0..REDUNDANT_AFTER {
            f.learn("p", &m, true);
        }
        assert!(!f.announces(Mode::Push, "p", Some(&m)));
        assert!(f.announces(Mode::Announce, "p", None));
        assert!(f.announces(Mode::Announce, "q", Some(&m)));
        assert!(
            !f.announces(Mode::Adaptive, "p", None),
            "own blocks go whole"
        );
        assert!(f.announces(Mode::Adaptive, "p", Some(&m)));
        assert!(!f.announces(Mode::Adaptive, "q", Some(&m)), "q held none");
        assert!(announce_wasted(LONG_TRIP_MS));
        assert!(!announce_wasted(LONG_TRIP_MS + 1));
    }

    /// Whole blocks until a peer held `REDUNDANT_AFTER` of one miner's in a row; then
    /// announcements until it lacks one; each miner and each peer on its own.
    #[test]
    fn a_peer_that_keeps_holding_a_miners_blocks_gets_announcements() {
        let f = Fanout::default();
        let (a, b) = ([1; 32], [2; 32]);
        for _ in 0..REDUNDANT_AFTER - 1 {
            f.learn("p", &a, true);
            assert!(!f.announce_to("p", &a));
        }
        f.learn("p", &a, false);
        for _ in 0..REDUNDANT_AFTER - 1 {
            f.learn("p", &a, true);
        }
        assert!(!f.announce_to("p", &a), "a miss starts the count over");
        f.learn("p", &a, true);
        assert!(f.announce_to("p", &a));
        assert!(!f.announce_to("p", &b), "another miner");
        assert!(!f.announce_to("q", &a), "another peer");
        f.learn("p", &a, true);
        assert!(f.announce_to("p", &a));
        f.learn("p", &a, false);
        assert!(!f.announce_to("p", &a), "the peer lacked one: whole again");
    }

    /// A copy counts as wasted only if the peer held the block for `CLEAR_MS` or more (or
    /// does not say) and the trip was not a long one; arrival times are kept for the latest
    /// `ARRIVALS_KEPT` blocks only.
    #[test]
    fn a_copy_that_crossed_another_is_not_wasted() {
        assert!(wasted(true, None, 60));
        assert!(wasted(true, Some(CLEAR_MS), 60));
        assert!(!wasted(true, Some(CLEAR_MS - 1), 60));
        assert!(!wasted(false, None, 60));
        assert!(wasted(true, Some(500), LONG_TRIP_MS));
        assert!(
            !wasted(true, Some(500), LONG_TRIP_MS + 1),
            "a satellite hop"
        );
        let mut a = Arrivals::default();
        let id = |i: u32| {
            let mut b = [0; 32];
            b[..4].copy_from_slice(&i.to_le_bytes());
            gridledger_chain::BlockId(b)
        };
        a.note(id(0), 1_000);
        a.note(id(0), 5_000);
        assert_eq!(
            a.held_ms(&id(0), 1_030),
            Some(30),
            "the first arrival counts"
        );
        assert_eq!(a.held_ms(&id(1), 1_030), None);
        for i in 1..=ARRIVALS_KEPT as u32 {
            a.note(id(i), 2_000);
        }
        assert_eq!(a.held_ms(&id(0), 2_010), None, "the oldest is forgotten");
        assert_eq!(a.held_ms(&id(1), 2_010), Some(10));
        assert_eq!((a.order.len(), a.at.len()), (ARRIVALS_KEPT, ARRIVALS_KEPT));
    }

    /// Past `MAX_REMEMBERED` pairs (a peer sending blocks of ever new miners) the memory
    /// starts over rather than grow.
    #[test]
    fn the_memory_is_bounded() {
        let f = Fanout::default();
        for i in 0..(MAX_REMEMBERED as u32 + 10) {
            let mut miner = [0; 32];
            miner[..4].copy_from_slice(&i.to_le_bytes());
            for _ in 0..REDUNDANT_AFTER {
                f.learn("p", &miner, true);
            }
        }
        let len = f.0.lock().map(|m| m.len()).unwrap_or(usize::MAX);
        assert!(len <= MAX_REMEMBERED, "{len} pairs");
        assert!(len >= 10, "{len} pairs");
    }
}
