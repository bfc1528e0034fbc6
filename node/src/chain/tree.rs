//! Fork choice: every valid block a node knows, as a tree, and the main chain through it.
//!
//! The main chain ends at the block with the most cumulative work; on a tie the block seen
//! first stays. The tree keeps headers' essentials and record keys, not bodies: bodies live
//! in the store.

use std::collections::HashMap;

use relay_core::{Minute, RelayId};

use super::block::{work_of, BlockId, Header, Height, Work};

/// A record's identity on the chain: one record per relay and minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    /// The relay.
    pub relay: RelayId,
    /// The minute.
    pub minute: Minute,
}

impl RecordKey {
    /// Packs the key into one `u64` (relay id high, minute low): the store's index key.
    #[must_use]
    pub fn to_u64(self) -> u64 {
        (u64::from(self.relay.0) << 32) | u64::from(self.minute.0)
    }
}

#[derive(Debug)]
struct Node {
    parent: BlockId,
    height: Height,
    time_ms: u64,
    work: Work,
    keys: Box<[RecordKey]>,
}

/// What inserting a block did to the main chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The block extends the main chain: it is the new tip.
    Extended,
    /// The block made another branch the best: the main chain switched.
    Reorg {
        /// Blocks that left the main chain, lowest first.
        abandoned: Vec<BlockId>,
        /// Blocks that joined it, lowest first (the new block last).
        adopted: Vec<BlockId>,
    },
    /// The block is on a branch with no more work than the main chain.
    SideBranch,
}

/// All known valid blocks and the main chain.
#[derive(Debug)]
pub struct BlockTree {
    nodes: HashMap<BlockId, Node>,
    main: Vec<BlockId>,
    main_keys: HashMap<RecordKey, Height>,
}

impl BlockTree {
    /// A tree holding only `genesis`.
    #[must_use]
    pub fn new(genesis: &Header) -> Self {
        let id = genesis.id();
        let mut nodes = HashMap::new();
        nodes.insert(
            id,
            Node {
                parent: genesis.prev,
                height: 0,
                time_ms: genesis.time_ms,
                work: 0,
                keys: Box::default(),
            },
        );
        BlockTree {
            nodes,
            main: vec![id],
            main_keys: HashMap::new(),
        }
    }

    /// The main chain's last block.
    #[must_use]
    pub fn tip(&self) -> BlockId {
        // `main` always holds at least the genesis block.
        self.main[self.main.len() - 1]
    }

    /// The main chain's height.
    #[must_use]
    pub fn height(&self) -> Height {
        (self.main.len() - 1) as Height
    }

    /// Cumulative work of the main chain.
    #[must_use]
    pub fn tip_work(&self) -> Work {
        self.nodes.get(&self.tip()).map_or(0, |n| n.work)
    }

    /// Cumulative work of the chain ending at `id`.
    #[must_use]
    pub fn work(&self, id: &BlockId) -> Option<Work> {
        self.nodes.get(id).map(|n| n.work)
    }

    /// True if the tree holds `id`.
    #[must_use]
    pub fn contains(&self, id: &BlockId) -> bool {
        self.nodes.contains_key(id)
    }

    /// Height of a known block.
    #[must_use]
    pub fn height_of(&self, id: &BlockId) -> Option<Height> {
        self.nodes.get(id).map(|n| n.height)
    }

    /// The main chain's block at `height`.
    #[must_use]
    pub fn main_at(&self, height: Height) -> Option<BlockId> {
        self.main.get(height as usize).copied()
    }

    /// True if `id` is on the main chain.
    #[must_use]
    pub fn is_main(&self, id: &BlockId) -> bool {
        self.nodes
            .get(id)
            .is_some_and(|n| self.main.get(n.height as usize) == Some(id))
    }

    /// Height of the main-chain block holding `key`.
    #[must_use]
    pub fn record_height(&self, key: &RecordKey) -> Option<Height> {
        self.main_keys.get(key).copied()
    }

    /// Median time of the (up to) 11 blocks ending at `id`, the rule's lower bound for a
    /// child's time.
    #[must_use]
    pub fn median_time_past(&self, id: &BlockId) -> u64 {
        let mut times = [0u64; 11];
        let mut len = 0;
        let mut cur = *id;
        while len < times.len() {
            let Some(n) = self.nodes.get(&cur) else { break };
            times[len] = n.time_ms;
            len += 1;
            if n.height == 0 {
                break;
            }
            cur = n.parent;
        }
        let times = &mut times[..len];
        times.sort_unstable();
        times.get(len / 2).copied().unwrap_or(0)
    }

    /// True if the chain ending at `tip` already holds `key`.
    #[must_use]
    pub fn chain_has_record(&self, tip: &BlockId, key: &RecordKey) -> bool {
        // Walk the side branch down to the main chain, then ask the main chain's index.
        let mut cur = *tip;
        loop {
            let Some(n) = self.nodes.get(&cur) else {
                return false;
            };
            if self.main.get(n.height as usize) == Some(&cur) {
                return self.main_keys.get(key).is_some_and(|&h| h <= n.height);
            }
            if n.keys.contains(key) {
                return true;
            }
            cur = n.parent;
        }
    }

    /// Adds a block whose parent is in the tree and that passed validation, and applies
    /// fork choice. Inserting a known block changes nothing and reports a side branch.
    ///
    /// # Panics
    /// Never for a validated block: the parent's presence is a precondition checked by
    /// validation ([`super::validate`]); an unknown parent is ignored as a side branch.
    pub fn insert(&mut self, header: &Header, keys: Vec<RecordKey>) -> Change {
        self.insert_with_id(header.id(), header, keys)
    }

    /// [`Self::insert`] for a caller that has already hashed the header: `id` must be
    /// `header.id()`.
    pub fn insert_with_id(&mut self, id: BlockId, header: &Header, keys: Vec<RecordKey>) -> Change {
        if self.nodes.contains_key(&id) {
            return Change::SideBranch;
        }
        let Some(parent) = self.nodes.get(&header.prev) else {
            return Change::SideBranch;
        };
        let work = parent.work + work_of(header.bits);
        self.nodes.insert(
            id,
            Node {
                parent: header.prev,
                height: header.height,
                time_ms: header.time_ms,
                work,
                keys: keys.into_boxed_slice(),
            },
        );
        if work <= self.tip_work() {
            return Change::SideBranch;
        }
        if header.prev == self.tip() {
            self.push_main(id);
            return Change::Extended;
        }
        // A reorg: collect the new branch down to the main chain.
        let mut adopted = vec![id];
        let mut cur = header.prev;
        while !self.is_main(&cur) {
            adopted.push(cur);
            cur = self.nodes[&cur].parent;
        }
        adopted.reverse();
        let fork = self.nodes[&cur].height;
        let abandoned: Vec<BlockId> = self.main.drain(fork as usize + 1..).collect();
        for gone in &abandoned {
            for key in &self.nodes[gone].keys {
                self.main_keys.remove(key);
            }
        }
        for &new in &adopted {
            self.push_main(new);
        }
        Change::Reorg { abandoned, adopted }
    }

    fn push_main(&mut self, id: BlockId) {
        let height = self.main.len() as Height;
        for key in &self.nodes[&id].keys {
            self.main_keys.insert(*key, height);
        }
        self.main.push(id);
    }

    /// Record keys of a known block.
    #[must_use]
    pub fn keys_of(&self, id: &BlockId) -> &[RecordKey] {
        self.nodes.get(id).map_or(&[], |n| &n.keys)
    }

    /// Number of records on the main chain (each key is there once).
    #[must_use]
    pub fn main_records(&self) -> usize {
        self.main_keys.len()
    }

    /// Number of known blocks, genesis included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never true: the genesis block is always there.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}
