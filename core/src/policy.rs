//! The mining policy: which node mines first each minute, so that the nodes reading the
//! same relays do not all mine at once.
//!
//! Every node that reads a relay would otherwise mine its record the moment it reads it:
//! with n such nodes, n blocks at one height, n − 1 of them stale, and an equal-work tie
//! that only the next block settled. The same holds across relays: every relay's minute
//! closes at the same instant, so the nodes of different substations, each first for its
//! own relay, would still all mine at once, on the same parent. Instead the nodes take
//! turns, in one order per minute that every node computes alike without talking: each
//! miner of the main chain's last [`RECENT_BLOCKS`] blocks below its newest
//! [`SETTLE_BLOCKS`] (the chain says who mines) gets
//! the score SHA-256("gridledger-turn" ‖ minute ‖ miner key), and a node's *turn* for that
//! minute is the number of those miners with a lower score than its own. A node mines a
//! record `turn × slot` after it read it, unless a block has brought the record by then;
//! at its turn it mines every record due, of every relay it reads.
//! The slot is longer than a block takes to reach every node, so each minute's blocks come
//! one slot apart and rarely race; a node whose records an earlier block brought drops them;
//! if a node is down, the next reader of its relays takes over in its own turn. A chain
//! with no blocks yet has no recorded miners: everyone's turn is 0, as before.
//!
//! The cost is latency: the last of n miners mines (n − 1) slots after the minute, so the
//! slot × the miners must stay well under a minute (64 miners × 0.5 s = 32 s).
//!
//! The turn changes no block format and no rule: it is each honest node's own restraint,
//! and a node that ignores it gains nothing but a race its block may lose. Ties that still
//! happen (two nodes both out of turn, a slot too short for a slow link) are settled by
//! fork choice: between equal work, the lower tip id (docs/book/src/FORMAT.md section 3).

use std::time::Duration;

use sha2::{Digest, Sha256};

use gridledger_chain::RecordKey;

/// The newest main-chain blocks left out when learning who mines: two nodes whose tips
/// differ (a race being settled, a block still in flight) still agree on the members, and
/// so on the turns.
pub const SETTLE_BLOCKS: usize = 6;

/// Main-chain blocks looked at to learn who mines: a day of minutes at one block a minute,
/// so that a node down for less than a day keeps its place (its turns cost the others one
/// slot each meanwhile).
pub const RECENT_BLOCKS: usize = 1440;

fn score(key: &RecordKey, miner: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"gridledger-turn");
    h.update(key.minute.0.to_be_bytes());
    h.update(miner);
    h.finalize().into()
}

/// This node's turn for `key`'s minute among `miners` (the chain's recent miners; this node
/// counts whether or not it is among them): 0 is first. The relay plays no part: one order
/// per minute for every relay's records.
#[must_use]
pub fn turn(key: &RecordKey, own: &[u8; 32], miners: &[[u8; 32]]) -> usize {
    let mine = score(key, own);
    miners
        .iter()
        .filter(|m| *m != own)
        .filter(|m| score(key, m) < mine)
        .count()
}

/// When this node may mine the record `key` that it read at `arrived_ms`, in Unix ms.
///
/// A *member* (a key among `members`, the chain's recent miners) mines at arrival + its turn
/// among the members × `slot`: every node computes the members' turns alike from the same
/// chain, and nothing a peer says moves them. A node not yet a member goes after every
/// member's turn, in its turn among the newcomers it knows (`peers`, the keys its peers say
/// they mine with, that are not members), each turn a window of [`newcomer_window`] slots
/// in which its score places it (at least half a slot in): it never races a member, two
/// newcomers that know each other never race, and newcomers that do not (on a wide network
/// most do not: each knows only its peers) spread over the window instead of coming at
/// once. It mines (and so becomes a member) when no member brought the record. A chain with
/// no recorded miners yet has no members: turns among the peers, at once for the first.
#[must_use]
pub fn due_ms(
    key: &RecordKey,
    arrived_ms: u64,
    own: &[u8; 32],
    members: &[[u8; 32]],
    peers: &[[u8; 32]],
    slot: Duration,
) -> u64 {
    let slot_ms = slot.as_millis() as u64;
    let at_turn = |turn: usize| arrived_ms.saturating_add((turn as u64).saturating_mul(slot_ms));
    if members.is_empty() {
        return at_turn(turn(key, own, peers));
    }
    if members.contains(own) {
        return at_turn(turn(key, own, members));
    }
    let newcomers: Vec<[u8; 32]> = peers
        .iter()
        .filter(|p| !members.contains(p))
        .copied()
        .collect();
    let s = score(key, own);
    let spread = u64::from(u16::from_be_bytes([s[0], s[1]]));
    let window = newcomer_window(members.len());
    let window_ms = (window as u64).saturating_mul(slot_ms);
    at_turn(members.len() + turn(key, own, &newcomers).saturating_mul(window))
        .saturating_add(slot_ms / 2)
        .saturating_add((window_ms - slot_ms / 2).saturating_mul(spread) / 65_536)
}

/// Slots in a newcomer's window: one per two members, at least one. A newcomer knows only
/// the newcomers among its peers; the others it cannot rank against, so it spreads by its
/// score over a window as wide as there may be newcomers it does not know. On the 64-node
/// testbed, a window of one slot let five newcomers mine at one instant (issue 11).
#[must_use]
pub fn newcomer_window(members: usize) -> usize {
    (members / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_core::{Minute, RelayId};

    /// Every node computes the same order: the turns of n miners are 0..n, each once, for
    /// every minute; over many minutes each miner is first about as often as the others.
    #[test]
    fn turns_are_a_permutation_and_fair() {
        let miners: Vec<[u8; 32]> = (1..=8u8).map(|i| [i; 32]).collect();
        let mut first = [0usize; 8];
        for m in 0..8000u32 {
            let key = RecordKey::new(RelayId(3), Minute(m));
            let mut turns: Vec<usize> = miners.iter().map(|k| turn(&key, k, &miners)).collect();
            if let Some(i) = turns.iter().position(|t| *t == 0) {
                first[i] += 1;
            }
            turns.sort_unstable();
            assert_eq!(turns, (0..8).collect::<Vec<_>>(), "minute {m}");
        }
        for f in first {
            assert!(
                (800..1200).contains(&f),
                "first {f} times of 8000: {first:?}"
            );
        }
    }

    /// One order per minute, whatever the relay: the records of every relay that closes
    /// at that minute go to the same first miner, in one block, instead of a block per relay
    /// racing the others.
    #[test]
    fn one_order_per_minute_across_relays() {
        let miners: Vec<[u8; 32]> = (1..=16u8).map(|i| [i; 32]).collect();
        for m in 0..100u32 {
            for k in &miners {
                let first = turn(&RecordKey::new(RelayId(1), Minute(m)), k, &miners);
                for relay in 2..20 {
                    assert_eq!(
                        turn(&RecordKey::new(RelayId(relay), Minute(m)), k, &miners),
                        first
                    );
                }
            }
        }
    }

    /// A peer's false `miner` key moves no member's turn; a newcomer's, by one window
    /// at most.
    #[test]
    fn a_false_peer_key_costs_a_newcomer_one_slot_at_most() {
        let slot = Duration::from_secs(2);
        let members: Vec<[u8; 32]> = (1..=4u8).map(|i| [i; 32]).collect();
        let key = RecordKey::new(RelayId(1), Minute(7));
        let mine = score(&key, &[1; 32]);
        let (before, after): (Vec<[u8; 32]>, Vec<[u8; 32]>) = (100..=255u8)
            .map(|i| [i; 32])
            .partition(|k| score(&key, k) < mine);
        let early = *before.first().expect("a key that scores first");
        let late = *after.first().expect("a key that scores after");
        // A member: no peer key changes anything.
        let honest = due_ms(&key, 0, &[1; 32], &members, &[], slot);
        assert_eq!(honest, 2000 * turn(&key, &[1; 32], &members) as u64);
        assert_eq!(
            due_ms(&key, 0, &[1; 32], &members, &[early, late], slot),
            honest
        );
        // A newcomer: one slot later for a false key that scores before it, none after.
        let newcomer = [50; 32];
        let (before, after): (Vec<[u8; 32]>, Vec<[u8; 32]>) = (100..=255u8)
            .map(|i| [i; 32])
            .partition(|k| score(&key, k) < score(&key, &newcomer));
        let alone = due_ms(&key, 0, &newcomer, &members, &[], slot);
        let window = newcomer_window(members.len()) as u64;
        assert_eq!(
            due_ms(&key, 0, &newcomer, &members, &before[..1], slot),
            alone + 2000 * window
        );
        assert_eq!(
            due_ms(&key, 0, &newcomer, &members, &after[..1], slot),
            alone
        );
    }

    /// A node the chain does not list yet still gets a turn, and a chain without recorded
    /// miners is everyone's turn 0.
    #[test]
    fn newcomers_and_new_relays() {
        let key = RecordKey::new(RelayId(1), Minute(5));
        let miners: Vec<[u8; 32]> = (1..=3u8).map(|i| [i; 32]).collect();
        let slot = Duration::from_secs(2);
        // Nobody mined yet: at once (no peers known), or in turn among the peers.
        assert_eq!(due_ms(&key, 1000, &[9; 32], &[], &[], slot), 1000);
        let peers = [[7; 32], [8; 32]];
        assert_eq!(
            due_ms(&key, 1000, &[9; 32], &[], &peers, slot),
            1000 + 2000 * turn(&key, &[9; 32], &peers) as u64
        );
        // Not a member: after the three members' turns, then half a slot to a slot more
        // (a window of one slot for three members), never at a member's time.
        let due = due_ms(&key, 1000, &[9; 32], &miners, &[], slot);
        assert!((7000 + 1000..7000 + 2000).contains(&due), "{due}");
        for m in &miners {
            assert!(due_ms(&key, 1000, m, &miners, &[], slot) < 7000);
        }
        // Forty members: newcomers that do not know each other spread over twenty slots,
        // each at least half a slot after the last member's turn.
        let many: Vec<[u8; 32]> = (1..=40u8).map(|i| [i; 32]).collect();
        let dues: Vec<u64> = (100..=139u8)
            .map(|i| due_ms(&key, 0, &[i; 32], &many, &[], slot))
            .collect();
        assert!(
            dues.iter()
                .all(|d| (81_000..40 * 2000 + 20 * 2000).contains(d)),
            "{dues:?}"
        );
        let mut sorted = dues.clone();
        sorted.sort_unstable();
        let spread = sorted.last().copied().unwrap_or(0) - sorted.first().copied().unwrap_or(0);
        assert!(
            spread >= 15 * 2000,
            "forty newcomers across fifteen slots or more: {sorted:?}"
        );
        // A member: its turn among the members alone.
        let mut members = miners.clone();
        members.push([9; 32]);
        let due = due_ms(&key, 1000, &[9; 32], &members, &[[7; 32]], slot);
        assert_eq!(due, 1000 + 2000 * turn(&key, &[9; 32], &members) as u64);
    }
}
