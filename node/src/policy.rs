//! The mining policy: which node mines first each minute, so that the nodes reading the
//! same relays do not all mine at once.
//!
//! Every node that reads a relay would otherwise mine its record the moment it reads it:
//! with n such nodes, n blocks at one height, n − 1 of them stale, and an equal-work tie
//! that only the next block settled. The same holds across relays: every relay's minute
//! closes at the same instant, so the nodes of different substations, each first for its
//! own relay, would still all mine at once, on the same parent. Instead the nodes take
//! turns, in one order per minute that every node computes alike without talking: each
//! miner in the main chain's last [`RECENT_BLOCKS`] blocks (the chain says who mines) gets
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
//! fork choice: between equal work, the lower tip id (docs/FORMAT.md section 3).

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::chain::RecordKey;

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

/// When this node may mine the record `key` that it read at `arrived_ms`, in Unix ms:
/// arrival + turn × `slot`, the turn taken among `members` (the chain's recent miners)
/// and `peers` (the keys this node's peers say they mine
/// with). A node that is not yet a member waits half a slot more, and up to half a slot
/// beyond that by its score: where the others do not know it, it never races a member of
/// the same turn, two newcomers who do not know each other rarely race each other, and a
/// newcomer joins by mining when the member whose turn it was did not.
#[must_use]
pub fn due_ms(
    key: &RecordKey,
    arrived_ms: u64,
    own: &[u8; 32],
    members: &[[u8; 32]],
    peers: &[[u8; 32]],
    slot: Duration,
) -> u64 {
    let mut known: Vec<[u8; 32]> = members.to_vec();
    known.extend(peers.iter().filter(|p| !members.contains(p)));
    let turn = turn(key, own, &known) as u64;
    let slot_ms = slot.as_millis() as u64;
    let newcomer = !members.is_empty() && !members.contains(own);
    let extra = if newcomer {
        let s = score(key, own);
        let spread = u64::from(u16::from_be_bytes([s[0], s[1]]));
        slot_ms / 2 + (slot_ms / 2).saturating_mul(spread) / 65_536
    } else {
        0
    };
    arrived_ms
        .saturating_add(turn.saturating_mul(slot_ms))
        .saturating_add(extra)
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

    /// A peer's false `miner` key: one that scores before this node delays its turn by
    /// exactly one slot; one that scores after changes nothing.
    #[test]
    fn a_false_peer_key_costs_one_slot_at_most() {
        let slot = Duration::from_secs(2);
        let members: Vec<[u8; 32]> = (1..=4u8).map(|i| [i; 32]).collect();
        let key = (0..1000u32)
            .map(|m| RecordKey::new(RelayId(1), Minute(m)))
            .find(|k| turn(k, &[1; 32], &members) == 0)
            .expect("a minute where node 1 is first");
        let honest = due_ms(&key, 0, &[1; 32], &members, &[], slot);
        assert_eq!(honest, 0);
        let mine = score(&key, &[1; 32]);
        let (before, after): (Vec<[u8; 32]>, Vec<[u8; 32]>) = (100..=255u8)
            .map(|i| [i; 32])
            .partition(|k| score(&key, k) < mine);
        let early = before.first().expect("a key that scores first");
        let late = after.first().expect("a key that scores after");
        assert_eq!(due_ms(&key, 0, &[1; 32], &members, &[*early], slot), 2000);
        assert_eq!(due_ms(&key, 0, &[1; 32], &members, &[*late], slot), 0);
    }

    /// A node the chain does not list yet still gets a turn, and a chain without recorded
    /// miners is everyone's turn 0.
    #[test]
    fn newcomers_and_new_relays() {
        let key = RecordKey::new(RelayId(1), Minute(5));
        let miners: Vec<[u8; 32]> = (1..=3u8).map(|i| [i; 32]).collect();
        let t = turn(&key, &[9; 32], &miners);
        assert!(t <= 3);
        let slot = Duration::from_secs(2);
        // Nobody mined yet: at once.
        assert_eq!(due_ms(&key, 1000, &[9; 32], &[], &[], slot), 1000);
        // Not a member: its turn, then half a slot to a slot more.
        let due = due_ms(&key, 1000, &[9; 32], &miners, &[], slot);
        let base = 1000 + 2000 * t as u64;
        assert!((base + 1000..base + 2000).contains(&due), "{due}");
        // A member: its turn among members and peers.
        let mut members = miners.clone();
        members.push([9; 32]);
        let due = due_ms(&key, 1000, &[9; 32], &members, &[[7; 32]], slot);
        let mut known = members.clone();
        known.push([7; 32]);
        assert_eq!(due, 1000 + 2000 * turn(&key, &[9; 32], &known) as u64);
    }
}
