//! Fork choice: every valid block a node knows, as a tree, and the main chain through it.
//!
//! The main chain ends at the block with the most cumulative work; on a tie the block seen
//! first stays. The tree keeps headers' essentials and record keys, not bodies: bodies live
//! in the store.
//!
//! Memory: a node keeps every block of its chain here, a million blocks after two years of
//! one relay, so the layout is compact. Blocks live in arenas indexed by position (`u32`):
//! ids in one `Vec`, the rest in another, record keys in one flat `Vec`, the main chain as
//! positions; a `hashbrown::HashTable` of positions finds a block by id without storing
//! the 32-byte id twice. About 110 bytes per one-record block, against about 370 with a
//! `HashMap<BlockId, Node>`.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use relay_core::{Minute, MinuteRecord, RelayId};

use super::block::{work_of, BlockId, Header, Height, Work};

/// A record's identity on the chain: one record per relay and minute. The one key type of
/// the mempool, the witness, the record index and the API. Ordered by minute, then relay:
/// oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    /// The minute.
    pub minute: Minute,
    /// The relay.
    pub relay: RelayId,
}

impl From<&MinuteRecord> for RecordKey {
    fn from(r: &MinuteRecord) -> Self {
        RecordKey::new(r.relay, r.minute)
    }
}

impl RecordKey {
    /// The key of `relay`'s record for `minute`.
    #[must_use]
    pub fn new(relay: RelayId, minute: Minute) -> Self {
        RecordKey { minute, relay }
    }

    /// The key of a record.
    #[must_use]
    pub fn of(record: &MinuteRecord) -> Self {
        record.into()
    }

    /// Unpacks [`RecordKey::to_u64`].
    #[must_use]
    pub fn from_u64(k: u64) -> Self {
        RecordKey::new(RelayId((k >> 32) as u32), Minute(k as u32))
    }

    /// Packs the key into one `u64` (relay id high, minute low): the store's index key.
    #[must_use]
    pub fn to_u64(self) -> u64 {
        (u64::from(self.relay.0) << 32) | u64::from(self.minute.0)
    }
}

/// A block's essentials, at its position in the arenas.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Cumulative work of the chain ending here.
    work: Work,
    time_ms: u64,
    /// Position of the parent (the genesis block points at itself).
    parent: u32,
    height: Height,
    /// This block's record keys: `keys[keys_start .. keys_start + keys_len]`.
    keys_start: u32,
    keys_len: u32,
    /// The miner's key, as a position in the tree's table of miners (free: it fits in the
    /// node's padding).
    miner: u32,
}

/// `node`'s record keys in the flat `keys` arena (a free function, so that callers can
/// borrow the arena while they change other fields of the tree).
fn node_keys<'a>(keys: &'a [RecordKey], node: &Node) -> &'a [RecordKey] {
    let start = node.keys_start as usize;
    &keys[start..start + node.keys_len as usize]
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
    /// Block ids, by position.
    ids: Vec<BlockId>,
    /// Everything else about a block, by position.
    nodes: Vec<Node>,
    /// Positions, found by id (hashed with a per-process random key).
    index: HashTable<u32>,
    state: RandomState,
    /// Every block's record keys, back to back.
    keys: Vec<RecordKey>,
    /// The main chain: positions by height.
    main: Vec<u32>,
    /// Height of every record on the main chain.
    main_keys: HashMap<RecordKey, Height>,
    /// Every miner key seen, once, and its position.
    miners: Vec<[u8; 32]>,
    miner_index: HashMap<[u8; 32], u32>,
    tie_break: TieBreak,
}

/// How fork choice picks between two chains of equal work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TieBreak {
    /// The one seen first stays (loading a stored chain: the stored main chain stays).
    #[default]
    FirstSeen,
    /// The one whose tip has the lower id (docs/FORMAT.md section 3): every node that has
    /// seen both picks the same at once, without waiting for the next block.
    LowerId,
}

impl BlockTree {
    /// A tree holding only `genesis`.
    #[must_use]
    pub fn new(genesis: &Header) -> Self {
        let mut tree = BlockTree {
            ids: Vec::new(),
            nodes: Vec::new(),
            index: HashTable::new(),
            state: RandomState::new(),
            keys: Vec::new(),
            main: Vec::new(),
            main_keys: HashMap::new(),
            miners: Vec::new(),
            miner_index: HashMap::new(),
            tie_break: TieBreak::FirstSeen,
        };
        let at = tree.push(
            genesis.id(),
            Node {
                work: 0,
                time_ms: genesis.time_ms,
                parent: 0,
                height: 0,
                keys_start: 0,
                keys_len: 0,
                miner: 0,
            },
        );
        tree.miner_of(&genesis.miner);
        tree.main.push(at);
        tree
    }

    /// Makes room for `blocks` more blocks holding `records` more records on the main
    /// chain, so that loading a big chain allocates once instead of growing (and briefly
    /// holding old and new tables at once).
    pub fn reserve(&mut self, blocks: usize, records: usize) {
        self.ids.reserve(blocks);
        self.nodes.reserve(blocks);
        self.main.reserve(blocks);
        self.keys.reserve(records);
        self.main_keys.reserve(records);
        let (ids, state) = (&self.ids, &self.state);
        self.index
            .reserve(blocks, |&i| state.hash_one(ids[i as usize]));
    }

    /// Appends a block to the arenas and the index; returns its position.
    fn push(&mut self, id: BlockId, node: Node) -> u32 {
        let at = self.ids.len() as u32;
        self.ids.push(id);
        self.nodes.push(node);
        let hash = self.state.hash_one(id);
        let (ids, state) = (&self.ids, &self.state);
        self.index
            .insert_unique(hash, at, |&i| state.hash_one(ids[i as usize]));
        at
    }

    /// Position of a known block.
    fn find(&self, id: &BlockId) -> Option<u32> {
        self.index
            .find(self.state.hash_one(id), |&i| self.ids[i as usize] == *id)
            .copied()
    }

    fn node(&self, at: u32) -> &Node {
        &self.nodes[at as usize]
    }

    fn keys_at(&self, at: u32) -> &[RecordKey] {
        node_keys(&self.keys, self.node(at))
    }

    fn tip_at(&self) -> u32 {
        // `main` always holds at least the genesis block.
        self.main[self.main.len() - 1]
    }

    fn is_main_at(&self, at: u32) -> bool {
        self.main.get(self.node(at).height as usize) == Some(&at)
    }

    /// The main chain's last block.
    #[must_use]
    pub fn tip(&self) -> BlockId {
        self.ids[self.tip_at() as usize]
    }

    /// The main chain's height.
    #[must_use]
    pub fn height(&self) -> Height {
        (self.main.len() - 1) as Height
    }

    /// Cumulative work of the main chain.
    #[must_use]
    pub fn tip_work(&self) -> Work {
        self.node(self.tip_at()).work
    }

    /// Cumulative work of the chain ending at `id`.
    #[must_use]
    pub fn work(&self, id: &BlockId) -> Option<Work> {
        self.find(id).map(|at| self.node(at).work)
    }

    /// True if the tree holds `id`.
    #[must_use]
    pub fn contains(&self, id: &BlockId) -> bool {
        self.find(id).is_some()
    }

    /// Height of a known block.
    #[must_use]
    pub fn height_of(&self, id: &BlockId) -> Option<Height> {
        self.find(id).map(|at| self.node(at).height)
    }

    /// The main chain's block at `height`.
    #[must_use]
    pub fn main_at(&self, height: Height) -> Option<BlockId> {
        self.main
            .get(height as usize)
            .map(|&at| self.ids[at as usize])
    }

    /// True if `id` is on the main chain.
    #[must_use]
    pub fn is_main(&self, id: &BlockId) -> bool {
        self.find(id).is_some_and(|at| self.is_main_at(at))
    }

    /// A known block's time (Unix ms).
    #[must_use]
    pub fn time_of(&self, id: &BlockId) -> Option<u64> {
        self.find(id).map(|at| self.node(at).time_ms)
    }

    /// How equal-work chains are told apart from now on.
    pub fn set_tie_break(&mut self, tie_break: TieBreak) {
        self.tie_break = tie_break;
    }

    /// The position of `miner` in the table of miners, added if new.
    fn miner_of(&mut self, miner: &[u8; 32]) -> u32 {
        if let Some(&at) = self.miner_index.get(miner) {
            return at;
        }
        let at = self.miners.len() as u32;
        self.miners.push(*miner);
        self.miner_index.insert(*miner, at);
        at
    }

    /// Who mined the main chain's `blocks` blocks below its newest `settle` (genesis, mined
    /// by nobody, aside), each key once, in no particular order. Leaving out the newest
    /// blocks makes nodes whose tips differ by a race or a block in flight see the same set.
    #[must_use]
    pub fn recent_miners(&self, settle: usize, blocks: usize) -> Vec<[u8; 32]> {
        let mut seen: Vec<u32> = Vec::new();
        for &at in self.main.iter().skip(1).rev().skip(settle).take(blocks) {
            let miner = self.node(at).miner;
            if !seen.contains(&miner) {
                seen.push(miner);
            }
        }
        seen.iter().map(|&m| self.miners[m as usize]).collect()
    }

    /// Blocks off the main chain, the latest known first: at most `limit` of them, among
    /// the last `scan` blocks the tree took in (a bounded look, however long the chain).
    /// Each as its id, height and parent's id.
    #[must_use]
    pub fn side_blocks(&self, scan: usize, limit: usize) -> Vec<(BlockId, Height, BlockId)> {
        (0..self.ids.len() as u32)
            .rev()
            .take(scan)
            .filter(|&at| !self.is_main_at(at))
            .take(limit)
            .map(|at| {
                let node = self.node(at);
                (
                    self.ids[at as usize],
                    node.height,
                    self.ids[node.parent as usize],
                )
            })
            .collect()
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
        let mut cur = self.find(id);
        while let Some(at) = cur {
            if len == times.len() {
                break;
            }
            let n = self.node(at);
            times[len] = n.time_ms;
            len += 1;
            cur = (n.height > 0).then_some(n.parent);
        }
        let times = &mut times[..len];
        times.sort_unstable();
        times.get(len / 2).copied().unwrap_or(0)
    }

    /// True if the chain ending at `tip` already holds `key`.
    #[must_use]
    pub fn chain_has_record(&self, tip: &BlockId, key: &RecordKey) -> bool {
        // Walk the side branch down to the main chain, then ask the main chain's index.
        let Some(mut at) = self.find(tip) else {
            return false;
        };
        loop {
            let n = self.node(at);
            if self.is_main_at(at) {
                return self.main_keys.get(key).is_some_and(|&h| h <= n.height);
            }
            if self.keys_at(at).contains(key) {
                return true;
            }
            at = n.parent;
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
        if self.find(&id).is_some() {
            return Change::SideBranch;
        }
        let Some(parent) = self.find(&header.prev) else {
            return Change::SideBranch;
        };
        let work = self.node(parent).work + work_of(header.bits);
        let keys_start = self.keys.len() as u32;
        let keys_len = keys.len() as u32;
        self.keys.extend_from_slice(&keys);
        let miner = self.miner_of(&header.miner);
        let at = self.push(
            id,
            Node {
                work,
                time_ms: header.time_ms,
                parent,
                height: header.height,
                keys_start,
                keys_len,
                miner,
            },
        );
        let tip_work = self.tip_work();
        let wins_tie = self.tie_break == TieBreak::LowerId && id < self.tip();
        if work < tip_work || (work == tip_work && !wins_tie) {
            return Change::SideBranch;
        }
        if parent == self.tip_at() {
            self.push_main(at);
            return Change::Extended;
        }
        // A reorg: collect the new branch down to the main chain.
        let mut adopted = vec![at];
        let mut cur = parent;
        while !self.is_main_at(cur) {
            adopted.push(cur);
            cur = self.node(cur).parent;
        }
        adopted.reverse();
        let fork = self.node(cur).height;
        let abandoned: Vec<u32> = self.main.drain(fork as usize + 1..).collect();
        for &gone in &abandoned {
            for key in node_keys(&self.keys, &self.nodes[gone as usize]) {
                self.main_keys.remove(key);
            }
        }
        for &new in &adopted {
            self.push_main(new);
        }
        let ids = |v: &[u32]| v.iter().map(|&at| self.ids[at as usize]).collect();
        Change::Reorg {
            abandoned: ids(&abandoned),
            adopted: ids(&adopted),
        }
    }

    fn push_main(&mut self, at: u32) {
        let height = self.main.len() as Height;
        for key in node_keys(&self.keys, &self.nodes[at as usize]) {
            self.main_keys.insert(*key, height);
        }
        self.main.push(at);
    }

    /// Record keys of a known block.
    #[must_use]
    pub fn keys_of(&self, id: &BlockId) -> &[RecordKey] {
        self.find(id).map_or(&[], |at| self.keys_at(at))
    }

    /// Number of records on the main chain (each key is there once).
    #[must_use]
    pub fn main_records(&self) -> usize {
        self.main_keys.len()
    }

    /// Number of known blocks, genesis included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Never true: the genesis block is always there.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::VERSION;

    /// A naive model of the tree: every block with its parent, work and keys; the tip is
    /// the first block seen with the most work.
    /// id, parent, cumulative work, time, height, keys.
    type ModelBlock = (BlockId, Option<usize>, Work, u64, Height, Vec<RecordKey>);

    struct Model {
        blocks: Vec<ModelBlock>,
        tip: usize,
    }

    impl Model {
        fn chain(&self, mut at: usize) -> Vec<usize> {
            let mut out = vec![at];
            while let Some(p) = self.blocks[at].1 {
                out.push(p);
                at = p;
            }
            out.reverse();
            out
        }
    }

    fn header(prev: BlockId, height: Height, bits: u8, time_ms: u64, nonce: u64) -> Header {
        Header {
            version: VERSION,
            height,
            prev,
            merkle_root: [0; 32],
            time_ms,
            bits,
            miner: [0; 32],
            nonce,
        }
    }

    /// Who mined lately: the last `blocks` main-chain blocks only, below the newest `settle`.
    #[test]
    fn recent_miners() {
        let genesis = header(BlockId([9; 32]), 0, 0, 0, 0);
        let mut tree = BlockTree::new(&genesis);
        let mut prev = genesis.id();
        for (i, (miner, relay)) in [(1u8, 1u32), (2, 1), (1, 2), (3, 2), (3, 1)]
            .iter()
            .enumerate()
        {
            let mut h = header(prev, i as Height + 1, 1, i as u64 * 1000, 0);
            h.miner = [*miner; 32];
            let key = RecordKey {
                relay: RelayId(*relay),
                minute: Minute(i as u32),
            };
            tree.insert(&h, vec![key]);
            prev = h.id();
        }
        let mut all = tree.recent_miners(0, 100);
        all.sort_unstable();
        assert_eq!(all, vec![[1; 32], [2; 32], [3; 32]]);
        let mut last3 = tree.recent_miners(0, 3);
        last3.sort_unstable();
        assert_eq!(last3, vec![[1; 32], [3; 32]]);
        assert_eq!(tree.recent_miners(0, 1), vec![[3; 32]]);
        // Below the newest two: blocks 1 to 3, mined by 1, 2 and 1.
        let mut settled = tree.recent_miners(2, 100);
        settled.sort_unstable();
        assert_eq!(settled, vec![[1; 32], [2; 32]]);
        assert_eq!(tree.recent_miners(5, 100), Vec::<[u8; 32]>::new());
    }

    /// Random trees of 3 000 blocks (so the index grows and rehashes many times) agree
    /// with the naive model on the tip, the main chain, every record's height, work,
    /// median times, and which chains hold which records.
    #[test]
    fn the_compact_tree_agrees_with_a_naive_model() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..4 {
            let genesis = header(BlockId([round; 32]), 0, 0, 0, 0);
            let mut tree = BlockTree::new(&genesis);
            // Odd rounds: equal work goes to the lower tip id.
            let lower = round % 2 == 1;
            if lower {
                tree.set_tie_break(TieBreak::LowerId);
            }
            let mut model = Model {
                blocks: vec![(genesis.id(), None, 0, 0, 0, Vec::new())],
                tip: 0,
            };
            let mut next_minute = 0u32;
            let mut reorgs = 0usize;
            for i in 0..3000u64 {
                // Mostly extend near the tip, sometimes fork from anywhere.
                let parent = if rand(10) < 8 {
                    let chain = model.chain(model.tip);
                    chain[chain.len().saturating_sub(1 + rand(3) as usize)]
                } else {
                    rand(model.blocks.len() as u64) as usize
                };
                let (pid, _, pwork, ptime, pheight, _) = model.blocks[parent].clone();
                let bits = 1 + rand(3) as u8;
                let keys: Vec<RecordKey> = (0..rand(4))
                    .map(|_| {
                        next_minute += 1;
                        RecordKey {
                            relay: RelayId(rand(3) as u32),
                            minute: Minute(next_minute),
                        }
                    })
                    .collect();
                let h = header(pid, pheight + 1, bits, ptime + rand(5000), i);
                let id = h.id();
                let work = pwork + work_of(bits);
                let before = tree.tip();
                let change = tree.insert(&h, keys.clone());
                reorgs += usize::from(matches!(change, Change::Reorg { .. }));
                model
                    .blocks
                    .push((id, Some(parent), work, h.time_ms, h.height, keys));
                let at = model.blocks.len() - 1;
                let (tip_id, tip_work) = (model.blocks[model.tip].0, model.blocks[model.tip].2);
                if work > tip_work || (lower && work == tip_work && id < tip_id) {
                    let extended = parent == model.tip;
                    model.tip = at;
                    assert_eq!(
                        matches!(change, Change::Extended),
                        extended,
                        "round {round} block {i}: {change:?}"
                    );
                } else {
                    assert_eq!(change, Change::SideBranch);
                    assert_eq!(tree.tip(), before);
                }
                // Inserting it again changes nothing.
                assert_eq!(tree.insert(&h, Vec::new()), Change::SideBranch);
            }
            assert!(reorgs > 20, "round {round}: only {reorgs} reorgs");
            let main = model.chain(model.tip);
            assert_eq!(tree.tip(), model.blocks[model.tip].0);
            assert_eq!(tree.height() as usize, main.len() - 1);
            assert_eq!(tree.tip_work(), model.blocks[model.tip].2);
            assert_eq!(tree.len(), model.blocks.len());
            let mut on_main = std::collections::HashSet::new();
            for (h, &at) in main.iter().enumerate() {
                let (id, _, _, _, _, keys) = &model.blocks[at];
                assert_eq!(tree.main_at(h as Height), Some(*id));
                assert!(tree.is_main(id));
                for k in keys {
                    assert_eq!(tree.record_height(k), Some(h as Height));
                    on_main.insert(*k);
                }
            }
            assert_eq!(tree.main_records(), on_main.len());
            for (at, (id, _, work, _, height, keys)) in model.blocks.iter().enumerate() {
                assert!(tree.contains(id));
                assert_eq!(tree.work(id), Some(*work));
                assert_eq!(tree.height_of(id), Some(*height));
                assert_eq!(tree.keys_of(id), keys.as_slice());
                assert_eq!(tree.is_main(id), main.contains(&at));
                let chain = model.chain(at);
                let mut times: Vec<u64> = chain
                    .iter()
                    .rev()
                    .take(11)
                    .map(|&b| model.blocks[b].3)
                    .collect();
                times.sort_unstable();
                assert_eq!(tree.median_time_past(id), times[times.len() / 2]);
                if at % 97 == 0 {
                    let held: std::collections::HashSet<RecordKey> = chain
                        .iter()
                        .flat_map(|&b| model.blocks[b].5.clone())
                        .collect();
                    for probe in (1..=next_minute).step_by(7) {
                        for relay in 0..3 {
                            let k = RecordKey {
                                relay: RelayId(relay),
                                minute: Minute(probe),
                            };
                            assert_eq!(tree.chain_has_record(id, &k), held.contains(&k));
                        }
                    }
                }
            }
            assert!(!tree.contains(&BlockId([0xee; 32])));
            assert_eq!(tree.keys_of(&BlockId([0xee; 32])), &[] as &[RecordKey]);
        }
    }
}
