//! Fork choice: every valid block a node knows, as a tree, and the main chain through it.
//!
//! The main chain ends at the block with the most cumulative work; on a tie the block seen
//! first stays. The tree keeps headers' essentials and record keys, not bodies: bodies live
//! in the store.
//!
//! Memory: a long chain does not live here whole. The tree holds a **window**: the main
//! chain from a *base* block up to the tip, and every known branch that forks at or above
//! the base. Below the base the main chain is only on disk; the tree reaches it through a
//! [`Deep`] (the node's store) for queries, and keeps in memory just the set of record keys
//! that it holds (a compressed bitmap, about one bit per relay-minute), so that the rule
//! "a record is on a chain once" is checked without I/O. [`BlockTree::prune`] moves the
//! base up; a branch forking below the base is followed by rebuilding the window lower from
//! disk (the ledger does that). Inside the window blocks live in arenas indexed by position
//! (`u32`): ids in one `Vec`, the rest in another, record keys in one flat `Vec`, the main
//! chain as positions; a `hashbrown::HashTable` of positions finds a block by id without
//! storing the 32-byte id twice.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use roaring::RoaringTreemap;

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

/// The main chain below a tree's window, as kept on disk (the node's store). The chain crate
/// does no I/O itself; a tree without one answers only for its window.
///
/// An implementation reports its own failures (a log line) and answers `None`: every
/// answer here serves a query, never a rule (rules are checked on the window and the
/// in-memory key set alone).
pub trait Deep: Send + Sync + std::fmt::Debug {
    /// The main chain's block at `height`.
    fn main_at(&self, height: Height) -> Option<BlockId>;
    /// A stored block's header and record keys.
    fn block(&self, id: &BlockId) -> Option<(Header, Vec<RecordKey>)>;
    /// Height of the main-chain block holding `key`.
    fn record_height(&self, key: &RecordKey) -> Option<Height>;
    /// The main chain's blocks from `from` up, at most `limit` of them, in order (a
    /// store reads them in one go).
    fn main_range(&self, from: Height, limit: usize) -> Vec<(Height, BlockId)> {
        (from..)
            .take(limit)
            .map_while(|h| self.main_at(h).map(|id| (h, id)))
            .collect()
    }
}

/// Where a tree's window starts: the base block (on the main chain), what the chain below
/// it weighs and holds. See [`BlockTree::rooted`].
#[derive(Debug)]
pub struct Base {
    /// The base block's header.
    pub header: Header,
    /// Its record keys.
    pub keys: Vec<RecordKey>,
    /// Cumulative work of the chain ending at it.
    pub work: Work,
    /// Times of the (up to) ten main-chain blocks below it, nearest first: the median-time
    /// rule of its children looks that far back.
    pub times_below: Vec<u64>,
    /// Record keys of every main-chain block up to and including it.
    pub deep_keys: RoaringTreemap,
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
    /// The main chain from the base up: positions by height minus `base`.
    main: Vec<u32>,
    /// Height of every record of the main chain above the base.
    main_keys: HashMap<RecordKey, Height>,
    /// Height of the window's base block (at position 0).
    base: Height,
    /// Times of the main-chain blocks below the base, nearest first (at most ten).
    times_below: Vec<u64>,
    /// Record keys (packed) of the main chain up to and including the base.
    deep_keys: RoaringTreemap,
    /// The main chain below the base, on disk.
    deep: Option<Arc<dyn Deep>>,
    /// Every miner key seen, once, and its position.
    miners: Vec<[u8; 32]>,
    miner_index: HashMap<[u8; 32], u32>,
    tie_break: TieBreak,
    /// A block every main chain must hold from now on (the latest justified or final
    /// checkpoint's block, [`BlockTree::set_floor`]), by height and id.
    floor: Option<(Height, BlockId)>,
    /// Blocks no main chain may hold ([`BlockTree::exclude`]): each contradicts a final
    /// checkpoint. Few: one per checkpoint a joining node learned.
    excluded: Vec<(Height, BlockId)>,
}

/// How fork choice picks between two chains of equal work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TieBreak {
    /// The one seen first stays (loading a stored chain: the stored main chain stays).
    #[default]
    FirstSeen,
    /// The one whose tip has the lower id (docs/book/src/FORMAT.md section 3): every node that has
    /// seen both picks the same at once, without waiting for the next block.
    LowerId,
}

impl BlockTree {
    /// A tree holding only `genesis`.
    #[must_use]
    pub fn new(genesis: &Header) -> Self {
        Self::rooted(
            Base {
                header: *genesis,
                keys: Vec::new(),
                work: 0,
                times_below: Vec::new(),
                deep_keys: RoaringTreemap::new(),
            },
            None,
        )
    }

    /// A tree whose window starts at `base`, a block of the main chain (the genesis block,
    /// or one a store holds with everything below it); `deep` answers for the chain below.
    #[must_use]
    pub fn rooted(base: Base, deep: Option<Arc<dyn Deep>>) -> Self {
        // Run containers: a relay's minutes are consecutive, so its keys below the window
        // are a few runs, not a bitmap of 8 KiB per 65 536 minutes (what inserting them one
        // by one builds). See `prune`.
        let mut deep_keys = base.deep_keys;
        deep_keys.optimize();
        let mut tree = BlockTree {
            ids: Vec::new(),
            nodes: Vec::new(),
            index: HashTable::new(),
            state: RandomState::new(),
            keys: base.keys,
            main: Vec::new(),
            main_keys: HashMap::new(),
            base: base.header.height,
            times_below: base.times_below,
            deep_keys,
            deep,
            miners: Vec::new(),
            miner_index: HashMap::new(),
            tie_break: TieBreak::FirstSeen,
            floor: None,
            excluded: Vec::new(),
        };
        tree.times_below.truncate(10);
        let miner = tree.miner_of(&base.header.miner);
        let at = tree.push(
            base.header.id(),
            Node {
                work: base.work,
                time_ms: base.header.time_ms,
                parent: 0,
                height: base.header.height,
                keys_start: 0,
                keys_len: tree.keys.len() as u32,
                miner,
            },
        );
        tree.main.push(at);
        tree
    }

    /// Height of the window's base: the main chain below it is only on disk.
    #[must_use]
    pub fn base(&self) -> Height {
        self.base
    }

    /// Number of main-chain blocks above the base.
    #[must_use]
    pub fn window(&self) -> Height {
        (self.main.len() - 1) as Height
    }

    /// Times of the main chain's `n` blocks below `height` (which must be in the window or
    /// just above it), nearest first.
    fn times_below_height(&self, height: Height, n: usize) -> Vec<u64> {
        (0..n as Height)
            .map_while(|i| {
                let h = height.checked_sub(i + 1)?;
                if h >= self.base {
                    Some(self.node(self.main[(h - self.base) as usize]).time_ms)
                } else {
                    self.times_below.get((self.base - 1 - h) as usize).copied()
                }
            })
            .collect()
    }

    /// Moves the base up so that `keep` main-chain blocks stay above it, if more than
    /// `2 × keep` are there now (so that the work is done once per `keep` blocks), but not
    /// above where a branch forks that took a block among the last `keep` the tree took in
    /// (a rival chain arriving block by block stays whole). The main chain's blocks that
    /// leave the window keep only their record keys (in the bitmap); branches forking below
    /// the new base are forgotten here (the store keeps them). Returns true if it pruned.
    pub fn prune(&mut self, keep: Height) -> bool {
        let keep = keep.max(1);
        if self.window() <= keep.saturating_mul(2) {
            return false;
        }
        // A branch that grew lately (among the last `keep` blocks taken in) may be a chain
        // still arriving: the base stays at or below where it forks.
        let mut new_base = self.height() - keep;
        let mut seen = vec![false; self.ids.len()];
        for at in (self.ids.len().saturating_sub(keep as usize)..self.ids.len()).rev() {
            let mut cur = at as u32;
            while !seen[cur as usize] && !self.is_main_at(cur) {
                seen[cur as usize] = true;
                cur = self.node(cur).parent;
            }
            if self.is_main_at(cur) && cur as usize != at {
                new_base = new_base.min(self.node(cur).height);
            }
        }
        if new_base <= self.base {
            return false;
        }
        let times_below = self.times_below_height(new_base, 10);
        // The main chain's keys up to the new base go to the bitmap.
        for h in self.base + 1..=new_base {
            let at = self.main[(h - self.base) as usize];
            for key in node_keys(&self.keys, &self.nodes[at as usize]) {
                self.main_keys.remove(key);
                self.deep_keys.insert(key.to_u64());
            }
        }
        // Keys inserted one by one fill array, then bitmap containers: 8 KiB per relay per
        // 65 536 minutes, so memory (and the kept copy the next start reads) grew with the
        // chain's length, 2 MB per million blocks of 15 relays. As runs, a relay that
        // answered every minute costs a few bytes per container. A run container stays
        // one as keys are added.
        self.deep_keys.optimize();
        // Keep the new base and its descendants. A parent always sits before its children.
        let base_at = self.main[(new_base - self.base) as usize];
        let mut moved: Vec<Option<u32>> = vec![None; self.ids.len()];
        let mut ids = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        let mut keys = Vec::new();
        let mut miners = Vec::new();
        let mut miner_index = HashMap::new();
        for at in base_at as usize..self.ids.len() {
            let node = self.nodes[at];
            let parent = if at == base_at as usize {
                Some(0)
            } else if node.height > new_base {
                moved[node.parent as usize]
            } else {
                None
            };
            let Some(parent) = parent else {
                continue;
            };
            let keys_start = keys.len() as u32;
            keys.extend_from_slice(node_keys(&self.keys, &node));
            let miner_key = self.miners[node.miner as usize];
            let miner = *miner_index.entry(miner_key).or_insert_with(|| {
                miners.push(miner_key);
                (miners.len() - 1) as u32
            });
            moved[at] = Some(ids.len() as u32);
            ids.push(self.ids[at]);
            nodes.push(Node {
                parent,
                keys_start,
                miner,
                ..node
            });
        }
        let main: Vec<u32> = self.main[(new_base - self.base) as usize..]
            .iter()
            .filter_map(|&at| moved[at as usize])
            .collect();
        let mut index = HashTable::with_capacity(ids.len());
        for (at, id) in ids.iter().enumerate() {
            let state = &self.state;
            index.insert_unique(state.hash_one(id), at as u32, |&i: &u32| {
                state.hash_one(ids[i as usize])
            });
        }
        self.ids = ids;
        self.nodes = nodes;
        self.keys = keys;
        self.main = main;
        self.index = index;
        self.miners = miners;
        self.miner_index = miner_index;
        self.base = new_base;
        self.times_below = times_below;
        self.main_keys.shrink_to_fit();
        true
    }

    /// The record keys of the main chain up to and including the base, as stored by a node
    /// so that the next start need not rebuild them.
    #[must_use]
    pub fn deep_keys(&self) -> &RoaringTreemap {
        &self.deep_keys
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
        let height = self.node(at).height;
        height >= self.base && self.main.get((height - self.base) as usize) == Some(&at)
    }

    /// The main chain's last block.
    #[must_use]
    pub fn tip(&self) -> BlockId {
        self.ids[self.tip_at() as usize]
    }

    /// The main chain's height.
    #[must_use]
    pub fn height(&self) -> Height {
        self.base + (self.main.len() - 1) as Height
    }

    /// Cumulative work of the main chain.
    #[must_use]
    pub fn tip_work(&self) -> Work {
        self.node(self.tip_at()).work
    }

    /// Cumulative work of the chain ending at `id`, a block of the window.
    #[must_use]
    pub fn work(&self, id: &BlockId) -> Option<Work> {
        self.find(id).map(|at| self.node(at).work)
    }

    /// A main-chain block below the window: its header and keys, from disk.
    fn deep_main(&self, id: &BlockId) -> Option<(Header, Vec<RecordKey>)> {
        let deep = self.deep.as_ref()?;
        let (header, keys) = deep.block(id)?;
        (header.height < self.base && deep.main_at(header.height) == Some(*id))
            .then_some((header, keys))
    }

    /// True if `id` is a block of the window or of the main chain below it.
    #[must_use]
    pub fn contains(&self, id: &BlockId) -> bool {
        self.find(id).is_some() || self.deep_main(id).is_some()
    }

    /// True if `id` is a block of the window: one a child can be validated against.
    #[must_use]
    pub fn in_window(&self, id: &BlockId) -> bool {
        self.find(id).is_some()
    }

    /// Height of a block of the window (the only ones a child can be placed on).
    #[must_use]
    pub fn window_height_of(&self, id: &BlockId) -> Option<Height> {
        self.find(id).map(|at| self.node(at).height)
    }

    /// Height of a known block (of the window, or of the main chain below it).
    #[must_use]
    pub fn height_of(&self, id: &BlockId) -> Option<Height> {
        self.window_height_of(id)
            .or_else(|| self.deep_main(id).map(|(h, _)| h.height))
    }

    /// The main chain's block at `height`.
    #[must_use]
    pub fn main_at(&self, height: Height) -> Option<BlockId> {
        if height < self.base {
            return self.deep.as_ref()?.main_at(height);
        }
        self.main
            .get((height - self.base) as usize)
            .map(|&at| self.ids[at as usize])
    }

    /// The main chain's blocks from `from` up, at most `limit` of them, in order: what a
    /// peer's pull or a listing asks (below the window, read from disk in one go).
    #[must_use]
    pub fn main_range(&self, from: Height, limit: usize) -> Vec<(Height, BlockId)> {
        let mut out = Vec::new();
        if from < self.base {
            let deep = (self.base - from) as usize;
            if let Some(d) = &self.deep {
                out = d.main_range(from, deep.min(limit));
            }
            if out.len() < deep.min(limit) {
                return out;
            }
        }
        let start = from.max(self.base);
        out.extend(
            (start..)
                .take(limit - out.len())
                .map_while(|h| self.main_at(h).map(|id| (h, id))),
        );
        out
    }

    /// True if `id` is on the main chain.
    #[must_use]
    pub fn is_main(&self, id: &BlockId) -> bool {
        match self.find(id) {
            Some(at) => self.is_main_at(at),
            None => self.deep_main(id).is_some(),
        }
    }

    /// A known block's time (Unix ms).
    #[must_use]
    pub fn time_of(&self, id: &BlockId) -> Option<u64> {
        match self.find(id) {
            Some(at) => Some(self.node(at).time_ms),
            None => self.deep_main(id).map(|(h, _)| h.time_ms),
        }
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
        // The base counts unless it is the genesis block.
        let from = usize::from(self.base == 0);
        for &at in self.main.iter().skip(from).rev().skip(settle).take(blocks) {
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

    /// Height of the main-chain block holding `key` (below the window: from disk).
    #[must_use]
    pub fn record_height(&self, key: &RecordKey) -> Option<Height> {
        if let Some(&h) = self.main_keys.get(key) {
            return Some(h);
        }
        if !self.deep_keys.contains(key.to_u64()) {
            return None;
        }
        // The base's own keys are in the arena.
        if self.keys_at(self.main[0]).contains(key) {
            return Some(self.base);
        }
        self.deep.as_ref()?.record_height(key)
    }

    /// Height of the main-chain block holding `key` if that block is above the base: memory
    /// only (a caller that can read the chain below itself asks the store for the rest).
    #[must_use]
    pub fn window_record_height(&self, key: &RecordKey) -> Option<Height> {
        self.main_keys.get(key).copied()
    }

    /// True if the main chain holds `key`. Memory only: no I/O, ever.
    #[must_use]
    pub fn has_record(&self, key: &RecordKey) -> bool {
        self.main_keys.contains_key(key) || self.deep_keys.contains(key.to_u64())
    }

    /// Median time of the (up to) 11 blocks ending at `id`, the rule's lower bound for a
    /// child's time.
    #[must_use]
    pub fn median_time_past(&self, id: &BlockId) -> u64 {
        let mut times = [0u64; 11];
        let mut len = 0;
        let mut cur = self.find(id);
        let mut reached_base = false;
        while let Some(at) = cur {
            if len == times.len() {
                break;
            }
            let n = self.node(at);
            times[len] = n.time_ms;
            len += 1;
            reached_base = n.height == self.base;
            cur = (n.height > self.base).then_some(n.parent);
        }
        // Below the base: the times kept when the window moved up.
        if reached_base {
            for &t in &self.times_below {
                if len == times.len() {
                    break;
                }
                times[len] = t;
                len += 1;
            }
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
                // Below or at the base (every window block is at or above it) or on the
                // window's main chain no higher than here.
                return self.deep_keys.contains(key.to_u64())
                    || self.main_keys.get(key).is_some_and(|&h| h <= n.height);
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
        if work < tip_work || (work == tip_work && !wins_tie) || !self.above_floor(at) {
            return Change::SideBranch;
        }
        if parent == self.tip_at() {
            self.push_main(at);
            return Change::Extended;
        }
        self.switch_main(at)
    }

    /// Makes the chain ending at `at` (a block off the main chain) the main chain.
    fn switch_main(&mut self, at: u32) -> Change {
        // Collect the new branch down to the main chain.
        let mut adopted = vec![at];
        let mut cur = self.node(at).parent;
        while !self.is_main_at(cur) {
            adopted.push(cur);
            cur = self.node(cur).parent;
        }
        adopted.reverse();
        let fork = self.node(cur).height;
        let abandoned: Vec<u32> = self.main.drain((fork - self.base) as usize + 1..).collect();
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

    /// True if the chain ending at the window's block `at` holds the block `anc` at height
    /// `anc_height`. An ancestor below the base is asked of the main chain (every window
    /// block's chain runs through the base, which is on it).
    fn descends(&self, at: u32, anc_height: Height, anc: &BlockId) -> bool {
        if anc_height < self.base {
            // The floor is on the main chain: no need to ask the disk.
            return self.floor == Some((anc_height, *anc))
                || self.main_at(anc_height) == Some(*anc);
        }
        let mut cur = at;
        loop {
            let n = self.node(cur);
            if n.height < anc_height {
                return false;
            }
            if n.height == anc_height {
                return self.ids[cur as usize] == *anc;
            }
            if self.is_main_at(cur) {
                // Below a main-chain block the chain is the main chain.
                return self
                    .main
                    .get((anc_height - self.base) as usize)
                    .is_some_and(|&a| self.ids[a as usize] == *anc);
            }
            cur = n.parent;
        }
    }

    /// True if the chain ending at `tip` (a block of the window) holds `ancestor` (a block
    /// of the window or of the main chain below it); `None` if either is unknown.
    #[must_use]
    pub fn chain_contains(&self, tip: &BlockId, ancestor: &BlockId) -> Option<bool> {
        let at = self.find(tip)?;
        let height = self.height_of(ancestor)?;
        Some(self.descends(at, height, ancestor))
    }

    /// The floor ([`Self::set_floor`]), as its height and id.
    #[must_use]
    pub fn floor(&self) -> Option<(Height, BlockId)> {
        self.floor
    }

    /// Makes `id` a block that every main chain holds from now on: a finality checkpoint's
    /// block, which no work may reorganise away. Blocks whose chain lacks it stay off the
    /// main chain whatever their work. If the main chain lacks it now, the main chain
    /// becomes the best chain that holds it (the most work, ties as [`TieBreak`] says), and
    /// that switch is returned. `None` (and nothing changes) if `id` is unknown.
    pub fn set_floor(&mut self, id: &BlockId) -> Option<Change> {
        let height = self.height_of(id)?;
        if self.is_main(id) {
            self.floor = Some((height, *id));
            return Some(Change::SideBranch);
        }
        // Off the main chain, so in the window: its best descendant becomes the tip.
        let before = self.floor;
        self.floor = Some((height, *id));
        let Some(best) = self.best_allowed() else {
            self.floor = before;
            return None;
        };
        Some(self.switch_to(best))
    }

    /// True if the block at `at` may be on the main chain: its chain holds the floor and
    /// no excluded block.
    fn above_floor(&self, at: u32) -> bool {
        let floor = match self.floor {
            None => true,
            Some((h, id)) => self.descends(at, h, &id),
        };
        floor
            && !self
                .excluded
                .iter()
                .any(|(h, id)| self.descends(at, *h, id))
    }

    /// Makes `id` a block that no main chain may hold (it contradicts a final checkpoint a
    /// node learned before it had the final chain's blocks). If the main chain holds it, the
    /// main chain becomes the best chain without it, and that switch is returned. `None`
    /// (and nothing changes) if `id` is not a block of the window.
    pub fn exclude(&mut self, id: &BlockId) -> Option<Change> {
        let height = self.window_height_of(id)?;
        if !self.excluded.contains(&(height, *id)) {
            self.excluded.push((height, *id));
        }
        if !self.is_main(id) {
            return Some(Change::SideBranch);
        }
        self.best_allowed().map(|at| self.switch_to(at))
    }

    /// True if the chain ending at `id` (a window block) holds an excluded block.
    #[must_use]
    pub fn is_excluded(&self, id: &BlockId) -> bool {
        self.find(id)
            .is_some_and(|at| self.excluded.iter().any(|(h, e)| self.descends(at, *h, e)))
    }

    /// The window's best block that may be on the main chain (see [`Self::above_floor`]).
    fn best_allowed(&self) -> Option<u32> {
        let mut best: Option<u32> = None;
        for at in 0..self.ids.len() as u32 {
            if !self.above_floor(at) {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => {
                    let (w, bw) = (self.node(at).work, self.node(b).work);
                    w > bw
                        || (w == bw
                            && self.tie_break == TieBreak::LowerId
                            && self.ids[at as usize] < self.ids[b as usize])
                }
            };
            if better {
                best = Some(at);
            }
        }
        best
    }

    /// Makes the chain ending at `at` the main chain: a switch, or cutting the main chain
    /// back to `at` if it is on it.
    fn switch_to(&mut self, at: u32) -> Change {
        if self.is_main_at(at) {
            let keep = (self.node(at).height - self.base) as usize + 1;
            let abandoned: Vec<u32> = self.main.drain(keep..).collect();
            for &gone in &abandoned {
                for key in node_keys(&self.keys, &self.nodes[gone as usize]) {
                    self.main_keys.remove(key);
                }
            }
            return Change::Reorg {
                abandoned: abandoned.iter().map(|&a| self.ids[a as usize]).collect(),
                adopted: Vec::new(),
            };
        }
        self.switch_main(at)
    }

    /// The parent of a block of the window (the base's is below the window: `None`).
    #[must_use]
    pub fn parent_of(&self, id: &BlockId) -> Option<BlockId> {
        let at = self.find(id)?;
        (at != 0).then(|| self.ids[self.node(at).parent as usize])
    }

    fn push_main(&mut self, at: u32) {
        let height = self.base + self.main.len() as Height;
        for key in node_keys(&self.keys, &self.nodes[at as usize]) {
            self.main_keys.insert(*key, height);
        }
        self.main.push(at);
    }

    /// Record keys of a known block (of the window, or of the main chain below it).
    #[must_use]
    pub fn keys_of(&self, id: &BlockId) -> Cow<'_, [RecordKey]> {
        match self.find(id) {
            Some(at) => Cow::Borrowed(self.keys_at(at)),
            None => Cow::Owned(self.deep_main(id).map(|(_, k)| k).unwrap_or_default()),
        }
    }

    /// Number of records on the main chain (each key is there once).
    #[must_use]
    pub fn main_records(&self) -> usize {
        self.main_keys.len() + usize::try_from(self.deep_keys.len()).unwrap_or(usize::MAX)
    }

    /// Number of known blocks: those of the window and the main chain below it, genesis
    /// included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len() + self.base as usize
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

    /// A floor holds the main chain whatever the work of a chain without it, and a floor on
    /// a side branch makes the best chain through it the main chain.
    #[test]
    fn a_floor_outweighs_work() {
        let genesis = header(BlockId([3; 32]), 0, 0, 0, 0);
        let mut tree = BlockTree::new(&genesis);
        tree.set_tie_break(TieBreak::LowerId);
        let mut main = vec![genesis];
        for h in 1..=5 {
            let b = header(main[h - 1].id(), h as Height, 1, h as u64, 0);
            tree.insert(&b, Vec::new());
            main.push(b);
        }
        assert_eq!(tree.set_floor(&main[3].id()), Some(Change::SideBranch));
        assert_eq!(tree.floor(), Some((3, main[3].id())));
        // A rival from height 2, far heavier: kept, never the main chain.
        let mut prev = main[2].id();
        for h in 3..=12 {
            let b = header(prev, h, 1, 50 + u64::from(h), 9);
            assert_eq!(
                tree.insert(&b, Vec::new()),
                Change::SideBranch,
                "height {h}"
            );
            prev = b.id();
        }
        assert_eq!(tree.tip(), main[5].id());
        assert_eq!(tree.chain_contains(&prev, &main[3].id()), Some(false));
        assert_eq!(
            tree.chain_contains(&main[5].id(), &main[3].id()),
            Some(true)
        );
        // A branch above the floor competes by work as before.
        let b4 = header(main[3].id(), 4, 1, 90, 7);
        let b5 = header(b4.id(), 5, 1, 91, 7);
        let b6 = header(b5.id(), 6, 1, 92, 7);
        tree.insert(&b4, Vec::new());
        tree.insert(&b5, Vec::new()); // equal work: the lower id is the tip
        assert_ne!(tree.insert(&b6, Vec::new()), Change::SideBranch);
        assert_eq!(tree.tip(), b6.id());
        // A floor on the (old) side branch at height 5: the main chain goes back there.
        let changed = tree.set_floor(&main[5].id()).expect("known");
        assert_eq!(
            changed,
            Change::Reorg {
                abandoned: vec![b4.id(), b5.id(), b6.id()],
                adopted: vec![main[4].id(), main[5].id()],
            }
        );
        assert_eq!(tree.tip(), main[5].id());
        // b6 outweighs main[5] but lacks the floor.
        let b7 = header(b6.id(), 7, 1, 93, 7);
        assert_eq!(tree.insert(&b7, Vec::new()), Change::SideBranch);
        assert_eq!(tree.set_floor(&BlockId([0xee; 32])), None);
    }

    /// An excluded block leaves the main chain with its descendants, and no chain through
    /// it comes back, however heavy.
    #[test]
    fn an_excluded_block_and_its_descendants_never_make_the_main_chain() {
        let genesis = header(BlockId([4; 32]), 0, 0, 0, 0);
        let mut tree = BlockTree::new(&genesis);
        let mut main = vec![genesis];
        for h in 1..=6 {
            let b = header(main[h - 1].id(), h as Height, 1, h as u64, 0);
            tree.insert(&b, Vec::new());
            main.push(b);
        }
        let side = header(main[2].id(), 3, 1, 70, 5);
        tree.insert(&side, Vec::new());
        // Excluding height 4 cuts the main chain back to height 3 (the best chain left).
        let change = tree.exclude(&main[4].id()).expect("in the window");
        assert_eq!(
            change,
            Change::Reorg {
                abandoned: vec![main[4].id(), main[5].id(), main[6].id()],
                adopted: Vec::new(),
            }
        );
        assert_eq!(tree.tip(), main[3].id());
        assert!(tree.is_excluded(&main[6].id()));
        assert!(!tree.is_excluded(&main[3].id()));
        let b7 = header(main[6].id(), 7, 1, 80, 0);
        assert_eq!(tree.insert(&b7, Vec::new()), Change::SideBranch);
        // Another block at height 4 takes its place.
        let other = header(main[3].id(), 4, 1, 90, 3);
        assert_eq!(tree.insert(&other, Vec::new()), Change::Extended);
        assert_eq!(tree.parent_of(&other.id()), Some(main[3].id()));
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

    /// The main chain below a pruned tree's window, from the model's main chain.
    #[derive(Debug, Default)]
    struct ModelDeep {
        /// id, header, keys, by position in the model.
        blocks: Vec<(BlockId, Header, Vec<RecordKey>)>,
        /// Main chain ids by height.
        main: Vec<BlockId>,
        /// Record heights on the main chain.
        records: HashMap<RecordKey, Height>,
    }

    #[derive(Debug, Default)]
    struct SharedDeep(std::sync::Mutex<ModelDeep>);

    impl Deep for SharedDeep {
        fn main_at(&self, height: Height) -> Option<BlockId> {
            self.0.lock().ok()?.main.get(height as usize).copied()
        }
        fn block(&self, id: &BlockId) -> Option<(Header, Vec<RecordKey>)> {
            let deep = self.0.lock().ok()?;
            let (_, h, k) = deep.blocks.iter().find(|(i, _, _)| i == id)?;
            Some((*h, k.clone()))
        }
        fn record_height(&self, key: &RecordKey) -> Option<Height> {
            self.0.lock().ok()?.records.get(key).copied()
        }
    }

    /// A branch that took a block lately holds the base at its fork; once it is dormant
    /// (the tree took `keep` blocks since), pruning forgets it.
    #[test]
    fn pruning_keeps_a_growing_branch_and_forgets_a_dormant_one() {
        let genesis = header(BlockId([7; 32]), 0, 0, 0, 0);
        let mut tree = BlockTree::new(&genesis);
        let mut main = vec![genesis];
        for h in 1..=30 {
            let b = header(main[h - 1].id(), h as Height, 1, h as u64, 0);
            assert_eq!(tree.insert(&b, Vec::new()), Change::Extended);
            main.push(b);
        }
        // A branch from height 5, two blocks long.
        let s1 = header(main[5].id(), 6, 1, 100, 1);
        let s2 = header(s1.id(), 7, 1, 101, 1);
        tree.insert(&s1, Vec::new());
        tree.insert(&s2, Vec::new());
        // Window 30 > 2 × 10, but the branch is among the last 10 blocks taken in: the
        // base moves only up to its fork.
        assert!(tree.prune(10));
        assert_eq!(tree.base(), 5);
        assert!(tree.in_window(&s2.id()));
        assert!(!tree.prune(10));
        // Ten more main blocks: the branch is dormant; the base moves to 40 - 10.
        for h in 31..=40 {
            let b = header(main[h - 1].id(), h as Height, 1, h as u64, 0);
            tree.insert(&b, Vec::new());
            main.push(b);
        }
        assert!(tree.prune(10));
        assert_eq!((tree.base(), tree.window()), (30, 10));
        assert!(!tree.in_window(&s2.id()) && !tree.contains(&s2.id()));
        // The median-time rule still looks ten blocks below the base.
        assert_eq!(tree.median_time_past(&main[31].id()), 26);
    }

    /// The keys below the window cost what their runs cost, not a bit per minute: two
    /// relays with 6 000 consecutive minutes each stay a few dozen bytes once pruned (as
    /// bitmap containers, inserted one by one, 16 KiB, growing with the chain), and so do
    /// the keys a tree is rooted on. Every key is still there.
    #[test]
    fn keys_below_the_window_are_kept_as_runs() {
        let key = |relay: u32, minute: u32| RecordKey {
            relay: RelayId(relay),
            minute: Minute(minute),
        };
        let genesis = header(BlockId([5; 32]), 0, 0, 0, 0);
        let mut tree = BlockTree::new(&genesis);
        let mut prev = genesis.id();
        let n = 6_000u32;
        for m in 0..n {
            let b = header(prev, Height::from(m) + 1, 1, u64::from(m), 0);
            tree.insert(&b, vec![key(1, m), key(2, m)]);
            prev = b.id();
            tree.prune(100);
        }
        let deep = tree.deep_keys();
        assert!(
            deep.len() > 2 * 5_000,
            "{} keys below the window",
            deep.len()
        );
        let below = u32::try_from(deep.len() / 2).unwrap_or(0);
        assert!((0..below)
            .all(|m| deep.contains(key(1, m).to_u64()) && deep.contains(key(2, m).to_u64())));
        assert!(
            deep.serialized_size() < 200,
            "{} bytes for two runs",
            deep.serialized_size()
        );
        // Rooted on keys built one by one (as a start that reads the record index does).
        let mut built = RoaringTreemap::new();
        for m in 0..n {
            built.insert(key(3, m).to_u64());
        }
        assert!(
            built.serialized_size() > 8_000,
            "a bitmap container to begin with"
        );
        let rooted = BlockTree::rooted(
            Base {
                header: genesis,
                keys: Vec::new(),
                work: 0,
                times_below: Vec::new(),
                deep_keys: built,
            },
            None,
        );
        assert_eq!(rooted.deep_keys().len(), u64::from(n));
        assert!(rooted.deep_keys().serialized_size() < 100);
    }

    /// Random trees of 3 000 blocks (so the index grows and rehashes many times) agree
    /// with the naive model on the tip, the main chain, every record's height, work,
    /// median times, and which chains hold which records.
    #[test]
    fn the_compact_tree_agrees_with_a_naive_model() {
        agree_with_model(None);
    }

    /// The same with the window pruned to 50 to 100 main-chain blocks every step (branches
    /// grow only from the window, as in a node; deeper ones the ledger handles by
    /// rebuilding the window): queries below the window go to the deep chain, rules use the
    /// bitmap, and the answers are the model's.
    #[test]
    fn a_pruned_tree_agrees_with_a_naive_model() {
        agree_with_model(Some(50));
    }

    fn agree_with_model(keep: Option<Height>) {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..4 {
            let genesis = header(BlockId([round; 32]), 0, 0, 0, 0);
            let shared = Arc::new(SharedDeep::default());
            if let Ok(mut deep) = shared.0.lock() {
                deep.blocks.push((genesis.id(), genesis, Vec::new()));
            }
            let mut tree = BlockTree::new(&genesis);
            if keep.is_some() {
                let mut base = BlockTree::new(&genesis);
                std::mem::swap(&mut base, &mut tree);
                tree = BlockTree::rooted(
                    Base {
                        header: genesis,
                        keys: Vec::new(),
                        work: 0,
                        times_below: Vec::new(),
                        deep_keys: RoaringTreemap::new(),
                    },
                    Some(Arc::clone(&shared) as Arc<dyn Deep>),
                );
            }
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
                    // Anywhere in the window (the whole tree when not pruned).
                    loop {
                        let p = rand(model.blocks.len() as u64) as usize;
                        if tree.in_window(&model.blocks[p].0) {
                            break p;
                        }
                    }
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
                if let Some(keep) = keep {
                    // What a store would hold: every block, the main chain, its records.
                    let mut deep = shared.0.lock().expect("the model deep chain");
                    deep.blocks.push((id, h, model.blocks[at].5.clone()));
                    let main = model.chain(model.tip);
                    deep.main = main.iter().map(|&b| model.blocks[b].0).collect();
                    deep.records = main
                        .iter()
                        .enumerate()
                        .flat_map(|(height, &b)| {
                            model.blocks[b]
                                .5
                                .iter()
                                .map(move |k| (*k, height as Height))
                        })
                        .collect();
                    drop(deep);
                    let before = (tree.tip(), tree.height(), tree.main_records());
                    if tree.prune(keep) {
                        assert!(tree.window() >= keep);
                        assert_eq!((tree.tip(), tree.height(), tree.main_records()), before);
                    }
                }
            }
            assert!(reorgs > 20, "round {round}: only {reorgs} reorgs");
            if keep.is_some() {
                assert!(tree.base() > 400, "round {round}: base {}", tree.base());
            }
            let main = model.chain(model.tip);
            assert_eq!(tree.tip(), model.blocks[model.tip].0);
            assert_eq!(tree.height() as usize, main.len() - 1);
            assert_eq!(tree.tip_work(), model.blocks[model.tip].2);
            if keep.is_none() {
                assert_eq!(tree.len(), model.blocks.len());
            }
            let ids: Vec<(Height, BlockId)> = main
                .iter()
                .enumerate()
                .map(|(h, &at)| (h as Height, model.blocks[at].0))
                .collect();
            assert_eq!(tree.main_range(0, usize::MAX), ids);
            for from in [
                0,
                1,
                tree.base().saturating_sub(3),
                tree.base(),
                tree.height(),
            ] {
                let want: Vec<_> = ids.iter().skip(from as usize).take(7).copied().collect();
                assert_eq!(tree.main_range(from, 7), want, "from {from}");
            }
            assert_eq!(tree.main_range(tree.height() + 1, 5), Vec::new());
            let mut on_main = std::collections::HashSet::new();
            for (h, &at) in main.iter().enumerate() {
                let (id, _, _, _, _, keys) = &model.blocks[at];
                assert_eq!(tree.main_at(h as Height), Some(*id));
                assert!(tree.is_main(id));
                for k in keys {
                    assert_eq!(tree.record_height(k), Some(h as Height));
                    assert!(tree.has_record(k));
                    on_main.insert(*k);
                }
            }
            assert_eq!(tree.main_records(), on_main.len());
            for (at, (id, _, work, _, height, keys)) in model.blocks.iter().enumerate() {
                let on_main = main.contains(&at);
                if !tree.in_window(id) {
                    // Below the window: main-chain blocks from the deep chain, the rest
                    // forgotten.
                    assert!(keep.is_some() && (!on_main || *height < tree.base()));
                    assert_eq!(tree.contains(id), on_main);
                    assert_eq!(tree.is_main(id), on_main);
                    if on_main {
                        assert_eq!(tree.height_of(id), Some(*height));
                        assert_eq!(tree.keys_of(id), keys.as_slice());
                    }
                    continue;
                }
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
