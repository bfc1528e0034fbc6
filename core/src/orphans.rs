//! Blocks pushed before their parent: kept a moment, placed when the parent comes.
//!
//! A miner that mines two blocks in a row pushes both at once, and a node relays each block
//! the moment it takes it: the child can reach a peer, or be validated there, before its
//! parent. Refused for its unknown parent, it used to wait for a pull: a poll of every peer
//! and a fetch, two round trips later (on the testbed, about 4 % of the blocks nodes took
//! from pushes went that way, and a block that a node pulled was not relayed, so the nodes
//! behind it waited too). Now such a block is kept here, keyed by its parent, and placed
//! (and relayed) as soon as the parent is taken. For a block two above the tip (the child of
//! one on its way, most likely) a pull is asked for only if the parent has not come within
//! [`GRACE`]; for any other (a branch this node has not seen, as after a healed partition)
//! at once, as before.
//!
//! Only a block that passed every rule that needs no chain (work, Merkle root, records,
//! signature) is kept, so a peer cannot fill this with junk for free; the pool is bounded
//! ([`MAX_KEPT`] blocks, each at most the network's block size; the oldest goes first) and
//! a block is forgotten after [`KEPT_FOR_MS`]. A peer that fills it with valid blocks of its
//! own only pushes out others' early children, which then come by the pull, as before.

use std::collections::VecDeque;

use gridledger_chain::BlockId;

/// Most blocks kept at once.
pub const MAX_KEPT: usize = 64;

/// How long a block waits for its parent before it is forgotten (a pull brings it then).
pub const KEPT_FOR_MS: u64 = 30_000;

/// How long a kept block waits for its parent before the node asks its peers (a pull): a
/// parent on its way arrives within a few milliseconds of its child; one the node will
/// never be sent (a branch it has not seen) needs the pull.
pub const GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// A block waiting for its parent.
#[derive(Clone, Debug)]
pub struct Orphan {
    /// Its id.
    pub id: BlockId,
    /// Its bytes, as pushed.
    pub bytes: bytes::Bytes,
    /// The key of the peer that pushed it, if it said.
    pub sender: Option<[u8; 32]>,
    /// When it arrived (Unix ms).
    pub at_ms: u64,
    parent: BlockId,
}

/// The blocks waiting for their parent, oldest first.
#[derive(Debug, Default)]
pub struct Orphans(VecDeque<Orphan>);

impl Orphans {
    /// Keeps `bytes` (block `id`, child of `parent`) until `parent` is taken; a block
    /// already kept is not kept twice. Forgets blocks past [`KEPT_FOR_MS`], then the oldest
    /// past [`MAX_KEPT`].
    pub fn keep(
        &mut self,
        id: BlockId,
        parent: BlockId,
        bytes: bytes::Bytes,
        sender: Option<[u8; 32]>,
        now_ms: u64,
    ) {
        self.expire(now_ms);
        if self.holds(&id) {
            return;
        }
        self.0.push_back(Orphan {
            id,
            bytes,
            sender,
            at_ms: now_ms,
            parent,
        });
        while self.0.len() > MAX_KEPT {
            self.0.pop_front();
        }
    }

    /// Takes out the blocks waiting for `parent`, oldest first.
    pub fn children_of(&mut self, parent: &BlockId, now_ms: u64) -> Vec<Orphan> {
        self.expire(now_ms);
        let (children, rest): (VecDeque<Orphan>, VecDeque<Orphan>) =
            self.0.drain(..).partition(|o| o.parent == *parent);
        self.0 = rest;
        children.into()
    }

    /// Whether block `id` is waiting here.
    #[must_use]
    pub fn holds(&self, id: &BlockId) -> bool {
        self.0.iter().any(|o| o.id == *id)
    }

    /// Blocks waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn expire(&mut self, now_ms: u64) {
        while self
            .0
            .front()
            .is_some_and(|o| now_ms.saturating_sub(o.at_ms) > KEPT_FOR_MS)
        {
            self.0.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u32) -> BlockId {
        let mut b = [0; 32];
        b[..4].copy_from_slice(&i.to_le_bytes());
        BlockId(b)
    }

    /// Blocks come out by their parent, oldest first, once each; the others stay.
    #[test]
    fn children_come_out_by_their_parent() {
        let mut o = Orphans::default();
        o.keep(id(2), id(1), bytes::Bytes::from_static(b"a"), None, 10);
        o.keep(id(3), id(9), bytes::Bytes::from_static(b"b"), None, 11);
        o.keep(
            id(4),
            id(1),
            bytes::Bytes::from_static(b"c"),
            Some([7; 32]),
            12,
        );
        o.keep(id(2), id(1), bytes::Bytes::from_static(b"a"), None, 13);
        assert_eq!(o.len(), 3, "a block kept twice is kept once");
        let c = o.children_of(&id(1), 20);
        assert_eq!(
            c.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![id(2), id(4)]
        );
        assert_eq!(c[1].sender, Some([7; 32]));
        assert!(o.children_of(&id(1), 21).is_empty(), "taken once");
        assert!(o.holds(&id(3)) && !o.holds(&id(2)));
    }

    /// The pool keeps at most `MAX_KEPT` blocks (the oldest go first) and none past
    /// `KEPT_FOR_MS`.
    #[test]
    fn the_pool_is_bounded_in_count_and_time() {
        let mut o = Orphans::default();
        for i in 0..(MAX_KEPT as u32 + 5) {
            o.keep(id(i + 100), id(i), bytes::Bytes::new(), None, 1_000);
        }
        assert_eq!(o.len(), MAX_KEPT);
        assert!(!o.holds(&id(100)) && o.holds(&id(MAX_KEPT as u32 + 104)));
        assert!(o.children_of(&id(0), 1_000).is_empty(), "the oldest went");
        o.keep(
            id(1),
            id(0),
            bytes::Bytes::new(),
            None,
            1_000 + KEPT_FOR_MS + 1,
        );
        assert_eq!(o.len(), 1, "the others expired");
        assert!(o
            .children_of(&id(0), 1_000 + 2 * KEPT_FOR_MS + 2)
            .is_empty());
    }
}
