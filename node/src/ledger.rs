//! The ledger: the store, the block tree over it, and the rules, as one consistent whole.
//!
//! The tree holds a window of the chain in memory (the last [`KEEP`] to `2 × KEEP` main-chain
//! blocks and the branches above them); below it the chain is read from the store. Opening a
//! ledger read-only (`verify`, `export`) re-verifies every stored block (all rules,
//! signatures on every core, the record index against the blocks) and names the first bad
//! height rather than serve a corrupt chain. A node's own start-up checks only the window
//! again, signatures under the verified mark aside (see
//! [`crate::store::Store::verified_mark`]): what is below was verified before it was stored,
//! and a start costs the same at a thousand blocks as at ten million. Adding a block
//! validates it, applies fork choice, commits, and hands back the records of abandoned
//! blocks that the new main chain lacks, so that they go back to the mempool: no record is
//! ever lost to a reorg.

use std::path::Path;

use relay_core::MinuteRecord;
use tracing::warn;

use roaring::RoaringTreemap;

use crate::chain::tree::Base;
use crate::chain::validate::{self, verify_run_trusting};
use crate::chain::{
    Block, BlockId, BlockTree, Change, Header, Height, Network, RecordKey, ValidationError, Work,
};
use crate::store::{Store, StoreError};

/// Main-chain blocks the tree keeps in memory: between this and twice this (about three to
/// six days at one block a minute). Below, the chain is on disk (see
/// [`crate::chain::tree`]).
pub const KEEP: Height = 4096;
/// The smallest window: the median-time rule looks eleven blocks back.
const MIN_KEEP: Height = 12;
/// The deepest fork below the tip a node follows: a branch forking further down (about half
/// a year at one block a minute) is refused as having an unknown parent, logged.
pub const MAX_DEEPEN: Height = 1 << 18;

/// Blocks whose signatures are checked together when a ledger opens.
const VERIFY_BATCH: usize = 4096;
/// Most bytes of blocks verified in one batch at open.
const VERIFY_BATCH_BYTES: usize = 4 << 20;

/// Blocks on their way into the ledger ([`Ledger::add_incoming`]): either as they came, to
/// be checked there rule by rule, cheapest first (a block with an unknown parent costs a
/// hash, not a signature check), or with the rules that need no chain (work, Merkle root,
/// records, signatures in batches) already run on every core, for a sync that fetched the
/// blocks itself.
#[derive(Debug)]
pub struct Incoming {
    items: Vec<(BlockId, Item)>,
    spent: std::time::Duration,
}

#[derive(Debug)]
enum Item {
    Unchecked(Block),
    Prechecked(Result<validate::Checked, ValidationError>),
}

impl Incoming {
    /// Blocks to be checked in full when added.
    #[must_use]
    pub fn unchecked(blocks: Vec<Block>) -> Self {
        Incoming {
            items: blocks
                .into_iter()
                .map(|b| (b.id(), Item::Unchecked(b)))
                .collect(),
            spent: std::time::Duration::ZERO,
        }
    }

    /// Checks the rules of `blocks` that need no chain on `threads` threads, their
    /// signatures in batches ([`validate::precheck`]). Needs no ledger: a syncing node runs
    /// it outside its lock.
    #[must_use]
    pub fn prechecked(blocks: Vec<Block>, net: &Network, threads: usize) -> Self {
        let started = std::time::Instant::now();
        let ids: Vec<BlockId> = blocks.iter().map(Block::id).collect();
        let results = validate::precheck(blocks, net, threads, 0);
        Incoming {
            items: ids
                .into_iter()
                .zip(results.into_iter().map(Item::Prechecked))
                .collect(),
            spent: started.elapsed(),
        }
    }

    /// The blocks not already refused, with their positions, in order, and their records
    /// if the precheck decoded them.
    pub fn blocks(&self) -> impl Iterator<Item = (usize, &Block, Option<&[MinuteRecord]>)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, (_, item))| match item {
                Item::Unchecked(b) => Some((i, b, None)),
                Item::Prechecked(r) => r
                    .as_ref()
                    .ok()
                    .map(|c| (i, &c.block, Some(c.records.as_slice()))),
            })
    }

    /// Adds `later`'s blocks after these: batches fetched one after the other, committed
    /// as one.
    pub fn append(&mut self, later: Incoming) {
        self.items.extend(later.items);
        self.spent += later.spent;
    }

    /// Keeps the first `n` blocks.
    pub fn truncate(&mut self, n: usize) {
        self.items.truncate(n);
    }
}

/// Runs `f`, turning a panic inside it (the storage engine on a damaged file: redb checks
/// much, not everything) into [`StoreError::EnginePanic`], so that a damaged data dir is an
/// error with a reason, never a crash. What `f` built is dropped with the panic.
pub fn guard<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Err(StoreError::EnginePanic(what))
    })
}

/// A block validated and placed in the tree, waiting for its commit: its position in the
/// results, the block, its id, what it changed, how long it took to validate.
type Staged = (usize, Block, BlockId, Change, std::time::Duration);

/// Why a block was not added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// It breaks a rule.
    #[error("invalid block: {0}")]
    Invalid(#[from] ValidationError),
    /// It is already in the ledger.
    #[error("block {0} is already known")]
    Known(BlockId),
    /// The store failed; the block is not stored.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Its chain forks below this node's latest final block: a rewrite of final history,
    /// refused whatever its work.
    #[error("forks below the final block at height {final_height}: final history is not rewritten, whatever the work")]
    BelowFinal {
        /// The block's height.
        height: Height,
        /// The final block's height.
        final_height: Height,
    },
    /// Its chain holds a block that contradicts a final checkpoint this node learned.
    #[error("its chain contradicts a final checkpoint")]
    ContradictsFinal,
    /// A record differs from what this node read itself from the relay for that minute:
    /// a lying node or a tampered path.
    #[error("witness conflict: the record of relay {relay} at {minute} differs from what this node read from the relay")]
    WitnessConflict {
        /// The relay.
        relay: relay_core::RelayId,
        /// The minute.
        minute: relay_core::Minute,
    },
}

/// What adding a block did.
#[derive(Clone, Debug)]
pub struct Added {
    /// The block's id.
    pub id: BlockId,
    /// Its height.
    pub height: Height,
    /// What happened to the main chain.
    pub change: Change,
    /// Records of blocks that left the main chain and that the new main chain lacks: they
    /// belong in the mempool again.
    pub returned: Vec<MinuteRecord>,
    /// How long validation took (every rule, the signature included).
    pub validate: std::time::Duration,
    /// How long the durable commit took.
    pub commit: std::time::Duration,
}

/// The packed record keys of `relay`'s minutes `from..=to`: one range of a table keyed by
/// them.
fn key_range(
    relay: relay_core::RelayId,
    from: relay_core::Minute,
    to: relay_core::Minute,
) -> (u64, u64) {
    (
        RecordKey::new(relay, from).to_u64(),
        RecordKey::new(relay, to).to_u64(),
    )
}

/// Reads stored blocks by id; see [`Ledger::reader`].
#[derive(Clone, Debug)]
pub struct BlockReader {
    store: std::sync::Arc<Store>,
    /// The genesis block and its id, hashed once (not on every read).
    genesis: std::sync::Arc<(Block, BlockId)>,
    max_block_bytes: usize,
    max_records: u32,
    /// The network's relay registry: which readings are signed by their relay.
    registry: std::sync::Arc<crate::chain::Registry>,
}

impl BlockReader {
    /// The network's relay registry.
    #[must_use]
    pub fn registry(&self) -> &crate::chain::Registry {
        &self.registry
    }

    /// The store it reads.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A handle to the store it reads, for work that outlives a request (a backup).
    #[must_use]
    pub fn store_handle(&self) -> std::sync::Arc<Store> {
        std::sync::Arc::clone(&self.store)
    }

    /// The genesis block's id.
    #[must_use]
    pub fn genesis_id(&self) -> BlockId {
        self.genesis.1
    }

    /// The main chain's records of `relay` for minutes `from..=to`, as `(minute, height,
    /// block id)` in minute order, from the store (one snapshot: what the ledger committed).
    pub fn main_records(
        &self,
        relay: relay_core::RelayId,
        from: relay_core::Minute,
        to: relay_core::Minute,
    ) -> Result<Vec<(u32, Height, BlockId)>, StoreError> {
        let (lo, hi) = key_range(relay, from, to);
        Ok(self
            .store
            .main_records_in(lo, hi)?
            .into_iter()
            .map(|(k, h, id)| (RecordKey::from_u64(k).minute.0, h, id))
            .collect())
    }

    /// The minutes `from..=to` of `relay` that this node disputes (it read otherwise from
    /// the relay than the chain holds), as the data dir keeps them, in order. A kept
    /// dispute that does not decode is not open (the node ignores it at start too).
    pub fn disputed_minutes(
        &self,
        relay: relay_core::RelayId,
        from: relay_core::Minute,
        to: relay_core::Minute,
    ) -> Result<Vec<u32>, StoreError> {
        let (lo, hi) = key_range(relay, from, to);
        Ok(self
            .store
            .disputes_in(lo, hi)?
            .into_iter()
            .filter(|(_, bytes)| crate::dispute::Dispute::from_bytes(bytes).is_some())
            .map(|(k, _)| RecordKey::from_u64(k).minute.0)
            .collect())
    }

    /// A stored block (or the genesis block); `None` if no block has that id.
    pub fn block(&self, id: &BlockId) -> Result<Option<Block>, StoreError> {
        if *id == self.genesis.1 {
            return Ok(Some(self.genesis.0.clone()));
        }
        let Some(bytes) = self.block_bytes(id)? else {
            return Ok(None);
        };
        Block::from_bytes(&bytes, self.max_block_bytes, self.max_records)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                height: 0,
                reason: format!("block {id}: {e}"),
            })
    }

    /// The records of stored block `id`'s `bytes` (from [`Self::blocks_bytes`]), as
    /// slices of them; bytes that are no block are corruption, named by the block.
    pub fn record_slices<'a>(
        &self,
        id: &BlockId,
        bytes: &'a [u8],
    ) -> Result<Vec<&'a [u8]>, StoreError> {
        Block::record_slices(bytes, self.max_records).map_err(|e| StoreError::Corrupt {
            height: 0,
            reason: format!("block {id}: {e}"),
        })
    }

    /// [`Self::block_bytes`] for several blocks, in one store transaction.
    pub fn blocks_bytes(&self, ids: &[BlockId]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut out = self.store.blocks_bytes(ids)?;
        self.put_genesis(&mut out, ids.iter());
        Ok(out)
    }

    /// [`Self::blocks_bytes`] of main-chain blocks with their heights (a chain's range, a
    /// relay's minutes): read by height, see [`Store::main_blocks_bytes`].
    pub fn main_blocks_bytes(
        &self,
        at: &[(Height, BlockId)],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut out = self.store.main_blocks_bytes(at)?;
        self.put_genesis(&mut out, at.iter().map(|(_, id)| id));
        Ok(out)
    }

    /// The genesis block is not stored: its bytes where `ids` asks for it.
    fn put_genesis<'a>(&self, out: &mut [Option<Vec<u8>>], ids: impl Iterator<Item = &'a BlockId>) {
        for (got, id) in out.iter_mut().zip(ids) {
            if *id == self.genesis.1 {
                *got = Some(self.genesis.0.to_bytes());
            }
        }
    }

    /// A stored block's bytes as stored (checked against their entry's length and CRC),
    /// without decoding them: what a raw block list sends. Every stored block passed every
    /// rule before it was stored, and the receiver checks every rule again.
    pub fn block_bytes(&self, id: &BlockId) -> Result<Option<Vec<u8>>, StoreError> {
        if *id == self.genesis.1 {
            return Ok(Some(self.genesis.0.to_bytes()));
        }
        self.store.block_bytes(id)
    }
}

/// Figures of a verified ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Main-chain height.
    pub height: Height,
    /// The tip.
    pub tip: BlockId,
    /// Records on the main chain.
    pub records: usize,
    /// Blocks known: the main chain's (genesis included) and those of the branches the
    /// tree holds (forking within its window; a branch forking below it is kept on disk,
    /// not counted).
    pub blocks: usize,
}

/// A verified chain on disk with its in-memory tree.
#[derive(Debug)]
pub struct Ledger {
    net: Network,
    store: std::sync::Arc<Store>,
    tree: BlockTree,
    /// Reads blocks from `store`; shared with API answers (see [`Ledger::reader`]).
    reader: BlockReader,
    poisoned: bool,
    /// Main-chain blocks kept in memory ([`Ledger::set_window`]).
    keep: Height,
    /// The latest final block (`crate::finality`): a block whose chain lacks it is refused.
    final_block: Option<(Height, BlockId)>,
    /// The tree's floor and excluded blocks, to set again when the window is rebuilt.
    floor: Option<BlockId>,
    excluded: Vec<BlockId>,
}

fn corrupt(height: Height, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        height,
        reason: reason.into(),
    }
}

/// A count and a sum of mixed `(key, height)` rows: equal for two sets of rows, in any
/// order, when they are equal (and, for a changed, missing or extra row, different but for
/// a 2⁻⁶⁴ chance), so that the record index is checked against the blocks without holding
/// either in memory.
#[derive(Debug, Default, PartialEq, Eq)]
struct IndexSum {
    rows: u64,
    sum: u64,
}

impl IndexSum {
    fn add(&mut self, key: u64, height: Height) {
        // splitmix64's finaliser over key and height.
        let mut z = key ^ (u64::from(height).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        self.rows += 1;
        self.sum = self.sum.wrapping_add(z);
    }
}

/// The stored side-branch blocks with their heights; in a data dir from before the table
/// of them existed, found by reading every block once (and the table written, if the store
/// may be written).
fn side_blocks(store: &Store, reader: &BlockReader) -> Result<Vec<(BlockId, Height)>, StoreError> {
    if let Some(side) = store.side_ids()? {
        return Ok(side);
    }
    let mut side = Vec::new();
    for id in store.all_ids()? {
        let Ok(Some(block)) = reader.block(&id) else {
            warn!(block = %id, "ignoring an unreadable block");
            continue;
        };
        let height = block.header.height;
        if store.main_at(height)? != Some(id) {
            side.push((id, height));
        }
    }
    if store.writable() {
        store.fill_side(&side)?;
    }
    Ok(side)
}

/// The keys of a stored block's records (a stored block passed validation: every record
/// decodes).
fn record_keys(block: &Block) -> impl Iterator<Item = RecordKey> + '_ {
    block
        .records
        .iter()
        .filter_map(|r| MinuteRecord::decode(r).ok())
        .map(|r| RecordKey::of(&r))
}

impl crate::chain::tree::Deep for BlockReader {
    fn main_at(&self, height: Height) -> Option<BlockId> {
        if height == 0 {
            return Some(self.genesis.1);
        }
        self.store
            .main_at(height)
            .inspect_err(|e| warn!("reading the main chain at {height}: {e}"))
            .ok()
            .flatten()
    }

    fn block(&self, id: &BlockId) -> Option<(Header, Vec<RecordKey>)> {
        let block = self
            .block(id)
            .inspect_err(|e| warn!("reading block {id}: {e}"))
            .ok()
            .flatten()?;
        let keys = record_keys(&block).collect();
        Some((block.header, keys))
    }

    fn main_range(&self, from: Height, limit: usize) -> Vec<(Height, BlockId)> {
        let mut out = Vec::new();
        if from == 0 && limit > 0 {
            out.push((0, self.genesis.1));
        }
        let from = from.max(1);
        match self.store.main_ids_from(from, limit - out.len()) {
            Ok(ids) => out.extend(
                ids.into_iter()
                    .zip(from..)
                    .take_while(|((h, _), want)| h == want)
                    .map(|(row, _)| row),
            ),
            Err(e) => warn!("reading the main chain from {from}: {e}"),
        }
        out
    }

    fn record_height(&self, key: &RecordKey) -> Option<Height> {
        self.store
            .record_height(key.to_u64())
            .inspect_err(|e| warn!("reading the record index: {e}"))
            .ok()
            .flatten()
    }
}

impl Ledger {
    /// Opens (creating if needed) the ledger of `net` in `dir` and verifies it.
    pub fn open(dir: &Path, net: Network) -> Result<Self, StoreError> {
        Self::open_with_window(dir, net, KEEP)
    }

    /// [`Ledger::open`] keeping `keep` to `2 × keep` main-chain blocks in memory (see
    /// [`Ledger::set_window`]); a start checks those again, not the chain below.
    pub fn open_with_window(dir: &Path, net: Network, keep: Height) -> Result<Self, StoreError> {
        guard(|| {
            let store = Store::open(dir, &net.name, net.bits, true)?;
            // The registry this node checks relay signatures with, kept for `verify`,
            // `export` and `repair`, which are not given it: once the chain has loaded
            // under it (a start that fails leaves the kept one as it was). A change is said:
            // every node of a network must run with the same registry, or they disagree on
            // blocks.
            let text = net.registry.to_text();
            let before = store.relay_registry()?;
            let ledger = Self::load(store, net, true, &mut |_, _| {}, keep)?;
            if before.as_deref() != Some(text.as_str()) {
                if let Some(before) = before {
                    warn!(
                        entries_before = before.lines().count(),
                        entries_now = ledger.network().registry.len(),
                        "the relay registry differs from the one this data dir last ran with: every node of the network must be given the same one (docs/book/src/FORMAT.md section 12.4)"
                    );
                }
                ledger.store().set_relay_registry(&text)?;
            }
            Ok(ledger)
        })
    }

    /// Opens an existing ledger for the network it was created for, and verifies it.
    pub fn open_existing(dir: &Path) -> Result<Self, StoreError> {
        guard(|| {
            let store = Store::open_existing(dir)?;
            Self::load_stamped(store, true, &mut |_, _| {})
        })
    }

    /// Opens an existing ledger read-only and verifies it: the data dir's files are not
    /// changed (`verify`, `export`). [`Ledger::add`] fails with [`StoreError::ReadOnly`].
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        Self::open_read_only_with(dir, &mut |_, _| {})
    }

    /// [`Ledger::open_read_only`], calling `progress(verified, total)` as the main chain's
    /// blocks are verified (after each batch).
    pub fn open_read_only_with(
        dir: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, StoreError> {
        guard(|| Self::load_stamped(Store::open_read_only(dir)?, false, progress))
    }

    fn load_stamped(
        store: Store,
        trust_mark: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, StoreError> {
        let (name, bits) = store.network()?.ok_or_else(|| StoreError::Corrupt {
            height: 0,
            reason: "the data dir carries no network stamp".into(),
        })?;
        let mut net = Network::new(&name, bits);
        if let Some(text) = store.relay_registry()? {
            net.registry =
                crate::chain::Registry::parse(&text).map_err(|e| StoreError::Corrupt {
                    height: 0,
                    reason: format!("the kept relay registry does not parse: {e}"),
                })?;
        }
        Self::load(store, net, trust_mark, progress, KEEP)
    }

    /// Loads the stored chain into a tree, verifying it. With `trust_mark` (a node opening
    /// its own data dir) and a valid verified mark, only the window (the last [`KEEP`]
    /// blocks and the branches above them) is read and checked again, signatures under the
    /// mark aside; the chain below was verified when it was stored, in the same
    /// transactions that moved the mark, and the record keys below the window come from
    /// the record index. Without it (`verify`, `export`, a data dir without a mark), every
    /// block is checked, every rule, and the record index is checked against the blocks;
    /// the tree is pruned as it goes, so memory stays that of the window.
    fn load(
        store: Store,
        net: Network,
        trust_mark: bool,
        progress: &mut dyn FnMut(u64, u64),
        keep: Height,
    ) -> Result<Self, StoreError> {
        let keep = keep.max(MIN_KEEP);
        let genesis = net.genesis();
        let store = std::sync::Arc::new(store);
        let reader = BlockReader {
            store: std::sync::Arc::clone(&store),
            genesis: std::sync::Arc::new((genesis.clone(), genesis.id())),
            max_block_bytes: net.max_block_bytes,
            max_records: net.max_records,
            registry: std::sync::Arc::new(net.registry.clone()),
        };
        let side = side_blocks(&store, &reader)?;
        // The mark counts only if the stored main chain still holds its block at its
        // height: the blocks below are then exactly the verified ones (each links to the
        // next by hash, and each block's bytes must hash to its stored id).
        let trusted_to: Height = match store.verified_mark()? {
            Some((h, id)) if trust_mark => {
                if store.main_at(h)? == Some(id) {
                    h
                } else {
                    warn!(
                        height = h,
                        "the verified mark is not on the stored main chain; verifying every block"
                    );
                    0
                }
            }
            _ => 0,
        };
        let mut ledger = Ledger {
            tree: BlockTree::new(&genesis.header),
            net,
            store,
            reader,
            poisoned: false,
            keep,
            final_block: None,
            floor: None,
            excluded: Vec::new(),
        };
        if trusted_to > 0 {
            // The keys below the window: as kept at the last prune if they still fit (their
            // block still on the main chain, not too far below the mark), else from the
            // whole record index (and kept for the next start).
            let kept = match ledger.store.deep_keys()? {
                Some((h, id, bytes))
                    if h <= trusted_to
                        && trusted_to - h <= 3 * keep
                        && (ledger.store.main_at(h)? == Some(id)
                            || (h == 0 && id == ledger.reader.genesis.1)) =>
                {
                    RoaringTreemap::deserialize_from(bytes.as_slice())
                        .ok()
                        .map(|d| (h, d, bytes.len()))
                }
                _ => None,
            };
            let mut placed = false;
            if let Some((base, deep, kept_len)) = kept {
                ledger.tree = ledger.window(base, deep, trusted_to, progress, None)?;
                // The record index says what the window's blocks say, and holds nothing
                // else; kept keys that disagree are a stale cache, not the chain: read again.
                match ledger.check_window_index() {
                    Ok(()) => {
                        placed = true;
                        // Kept by an older node as bitmaps (the tree holds them as runs):
                        // kept again, so that the next start reads the small form.
                        if kept_len > ledger.tree.deep_keys().serialized_size() {
                            ledger.keep_deep_keys();
                        }
                    }
                    Err(e) => warn!(
                        "the record keys kept below the window disagree with the record index \
                         ({e}); reading them from the index"
                    ),
                }
            }
            if !placed {
                let base = trusted_to.saturating_sub(keep);
                let mut deep = RoaringTreemap::new();
                ledger.store.for_each_record(|k, h| {
                    if h <= base {
                        deep.insert(k);
                    }
                    Ok(())
                })?;
                ledger.tree = ledger.window(base, deep, trusted_to, progress, None)?;
                ledger.check_window_index()?;
                ledger.keep_deep_keys();
            }
        } else {
            let mut sum = IndexSum::default();
            ledger.tree = ledger.window(0, RoaringTreemap::new(), 0, progress, Some(&mut sum))?;
            // The record index must say exactly what the blocks say: same count, same
            // sum of (key, height) mixes. Streamed: millions of rows need not sit in memory.
            let mut index = IndexSum::default();
            ledger.store.for_each_record(|k, h| {
                index.add(k, h);
                Ok(())
            })?;
            if index != sum {
                return Err(ledger.first_unindexed());
            }
            // And the id index finds every main-chain block, at its height.
            ledger.store.check_ids()?;
        }
        ledger.load_side(side)?;
        // From now on an equal-work rival with a lower tip id wins (docs/book/src/FORMAT.md
        // section 3); the stored chain itself was chosen when its blocks arrived.
        ledger.tree.set_tie_break(crate::chain::TieBreak::LowerId);
        Ok(ledger)
    }

    /// Checks the record index against the window: every main-chain record above the base
    /// at its block's height, and as many rows as the chain holds records.
    fn check_window_index(&self) -> Result<(), StoreError> {
        let tree = &self.tree;
        let mut keys = Vec::new();
        let mut heights = Vec::new();
        for (h, id) in tree.main_range(tree.base() + 1, tree.window() as usize) {
            for k in tree.keys_of(&id).iter() {
                keys.push(k.to_u64());
                heights.push(h);
            }
        }
        let found = self.store.records_at(&keys)?;
        if let Some(i) = (0..keys.len()).find(|&i| found[i] != Some(heights[i])) {
            return Err(corrupt(
                heights[i],
                if found[i].is_none() {
                    "a record is missing from the record index"
                } else {
                    "the record index disagrees with the block"
                },
            ));
        }
        if self.store.records_len()? != tree.main_records() as u64 {
            return Err(corrupt(
                tree.base(),
                "the record index holds other records than the chain (`gridledger verify` \
                 names the height)",
            ));
        }
        Ok(())
    }

    /// Keeps the tree's record keys below its window in the store, for the next start. A
    /// failure costs only that start's time (it reads the whole index instead): logged.
    fn keep_deep_keys(&self) {
        if !self.store.writable() {
            return;
        }
        let base = self.tree.base();
        let Some(id) = self.tree.main_at(base) else {
            return;
        };
        let mut bytes = Vec::new();
        if let Err(e) = self.tree.deep_keys().serialize_into(&mut bytes) {
            warn!("cannot serialise the record keys below the window: {e}");
            return;
        }
        if let Err(e) = self.store.put_deep_keys(base, &id, &bytes) {
            warn!("cannot keep the record keys below the window: {e}");
        }
    }

    /// Moves the window up if it has grown past twice [`KEEP`] (see [`BlockTree::prune`]),
    /// keeping the keys below it for the next start.
    fn prune(&mut self) {
        if self.tree.prune(self.keep) {
            self.keep_deep_keys();
        }
    }

    /// The first main-chain height whose records the index does not hold at that height
    /// (the slow search after a quick check failed), as the error to report.
    fn first_unindexed(&self) -> StoreError {
        for h in 1..=self.tree.height() {
            let Some(id) = self.tree.main_at(h) else {
                return corrupt(h, "missing from the main chain");
            };
            let keys = self.tree.keys_of(&id);
            for k in keys.iter() {
                match self.store.record_height(k.to_u64()) {
                    Ok(Some(at)) if at == h => {}
                    Ok(Some(_)) => return corrupt(h, "the record index disagrees with the block"),
                    Ok(None) => return corrupt(h, "a record is missing from the record index"),
                    Err(e) => return e,
                }
            }
        }
        corrupt(0, "the record index holds a record no block holds")
    }

    /// A tree whose window starts at the main chain's block at `base`, whose record keys
    /// and those below are `deep`, holding every stored main-chain block above it (checked
    /// again: every rule, signatures above `trusted_to`). With `sum`, every main-chain
    /// record is added to it and the window is pruned as it grows (a full verification).
    fn window(
        &self,
        base: Height,
        deep: RoaringTreemap,
        trusted_to: Height,
        progress: &mut dyn FnMut(u64, u64),
        mut sum: Option<&mut IndexSum>,
    ) -> Result<BlockTree, StoreError> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let net = &self.net;
        let main_block = |h: Height| -> Result<Block, StoreError> {
            if h == 0 {
                return Ok(self.reader.genesis.0.clone());
            }
            let id = self
                .store
                .main_at(h)?
                .ok_or_else(|| corrupt(h, "missing from the main chain"))?;
            self.stored_block(h, &id).map(|(block, _)| block)
        };
        let base_block = main_block(base)?;
        let times_below = (base.saturating_sub(10)..base)
            .rev()
            .map(|h| main_block(h).map(|b| b.header.time_ms))
            .collect::<Result<Vec<u64>, StoreError>>()?;
        let keys = record_keys(&base_block).collect();
        let deep_source: std::sync::Arc<dyn crate::chain::tree::Deep> =
            std::sync::Arc::new(self.reader.clone());
        let mut tree = BlockTree::rooted(
            Base {
                header: base_block.header,
                keys,
                work: Work::from(base) * crate::chain::block::work_of(net.bits),
                times_below,
                deep_keys: deep,
            },
            Some(deep_source),
        );
        let (main_len, _) = self.store.lens()?;
        // Main-chain ids are read VERIFY_BATCH at a time, not all at once.
        let mut pending: std::collections::VecDeque<(Height, BlockId)> =
            std::collections::VecDeque::new();
        let mut next: Height = base + 1;
        loop {
            if pending.is_empty() {
                pending.extend(self.store.main_ids_from(next, VERIFY_BATCH)?);
                if pending.is_empty() {
                    break;
                }
            }
            // A batch ends at VERIFY_BATCH blocks or VERIFY_BATCH_BYTES of blocks, so that
            // big blocks do not hold hundreds of MB of decoded records at once.
            let mut batch = Vec::new();
            let mut blocks = Vec::new();
            let mut bytes_in_batch = 0usize;
            while blocks.len() < VERIFY_BATCH && bytes_in_batch < VERIFY_BATCH_BYTES {
                let Some((height, id)) = pending.pop_front() else {
                    break;
                };
                if height != next {
                    return Err(corrupt(next, "missing from the main chain"));
                }
                let (block, len) = self.stored_block(height, &id)?;
                bytes_in_batch += len;
                blocks.push(block);
                batch.push((height, id));
                next += 1;
            }
            verify_run_trusting(blocks, net, &mut tree, u64::MAX, threads, trusted_to)
                .map_err(|(i, e)| corrupt(batch[i].0, e.to_string()))?;
            if let Some((height, id)) = batch.last() {
                if tree.tip() != *id {
                    return Err(corrupt(*height, "does not extend the chain"));
                }
                progress(u64::from(*height), main_len);
            }
            if let Some(sum) = sum.as_deref_mut() {
                for (height, id) in &batch {
                    for k in tree.keys_of(id).iter() {
                        sum.add(k.to_u64(), *height);
                    }
                }
                tree.prune(self.keep);
            }
        }
        Ok(tree)
    }

    /// The stored block `id`, at `height` of the main chain, and its length in bytes: read,
    /// decoded and hashed back to `id`, or the corruption named at `height`.
    fn stored_block(&self, height: Height, id: &BlockId) -> Result<(Block, usize), StoreError> {
        let net = &self.net;
        // A damaged entry of the block file is the chain's corruption at this height (what
        // `verify` names), like a block that does not parse or hash to its id.
        let bytes = match self
            .store
            .main_blocks_bytes(&[(height, *id)])
            .map(|mut got| got.pop().flatten())
        {
            Err(StoreError::BlockFile(e))
                if !matches!(e, crate::blockfile::BlockFileError::Io { .. }) =>
            {
                return Err(corrupt(height, e.to_string()))
            }
            got => got?,
        }
        .ok_or_else(|| corrupt(height, format!("block {id} is missing")))?;
        let block = Block::from_bytes(&bytes, net.max_block_bytes, net.max_records)
            .map_err(|e| corrupt(height, e.to_string()))?;
        if block.id() != *id {
            return Err(corrupt(
                height,
                format!(
                    "block bytes hash to {}, not to the stored id {id}",
                    block.id()
                ),
            ));
        }
        Ok((block, bytes.len()))
    }

    /// Puts the stored side branches above the window's base back into the tree: the valid
    /// ones; the rest are dropped with a warning.
    fn load_side(&mut self, side: Vec<(BlockId, Height)>) -> Result<(), StoreError> {
        let net = &self.net;
        let mut blocks: Vec<Block> = Vec::new();
        for (id, height) in side {
            if height <= self.tree.base() || self.tree.in_window(&id) {
                continue;
            }
            match self
                .store
                .block_bytes(&id)?
                .map(|b| Block::from_bytes(&b, net.max_block_bytes, net.max_records))
            {
                Some(Ok(block)) if block.id() == id => blocks.push(block),
                _ => warn!(block = %id, "ignoring an unreadable side-branch block"),
            }
        }
        blocks.sort_by_key(|b| b.header.height);
        for block in blocks {
            let id = block.id();
            match validate::check(block, net, &self.tree, u64::MAX) {
                Ok(c) => {
                    let change = self.tree.insert(&c.block.header, c.keys());
                    if change != Change::SideBranch {
                        return Err(corrupt(
                            c.block.header.height,
                            "a stored side branch has more work than the stored main chain",
                        ));
                    }
                }
                Err(e) => warn!(block = %id, "ignoring an invalid side-branch block: {e}"),
            }
        }
        Ok(())
    }

    /// Where the stored chain ending at `prev` (a block not in the window) meets the main
    /// chain below the window, as that block's height, following stored blocks down at most
    /// [`MAX_DEEPEN`] steps (one read each); `None` if `prev` is not stored or the walk meets
    /// the window first.
    fn fork_point(&self, prev: &BlockId) -> Result<Option<Height>, StoreError> {
        let mut cur = *prev;
        for _ in 0..MAX_DEEPEN {
            if self.tree.in_window(&cur) {
                return Ok(None);
            }
            let Some(block) = self.reader.block(&cur)? else {
                return Ok(None);
            };
            let height = block.header.height;
            if self.tree.main_at(height) == Some(cur) {
                return Ok(Some(height));
            }
            cur = block.header.prev;
        }
        Ok(None)
    }

    /// Rebuilds the window from disk with the main chain's block at `at` (below the window:
    /// where a branch forks, see [`Self::fork_point`]) as its base, so that the branch can
    /// be placed and fork choice can follow it. At most [`MAX_DEEPEN`] blocks below the
    /// tip. Returns true if it rebuilt.
    fn deepen(&mut self, at: Height) -> Result<bool, StoreError> {
        if at >= self.tree.base() {
            return Ok(false);
        }
        let depth = self.tree.height() - at;
        if depth > MAX_DEEPEN {
            warn!(
                height = at,
                depth, "a branch forks deeper below the tip than this node follows ({MAX_DEEPEN})"
            );
            return Ok(false);
        }
        let mut deep = self.tree.deep_keys().clone();
        for h in at + 1..=self.tree.base() {
            let block = self
                .block_at(h)?
                .ok_or_else(|| corrupt(h, "missing from the main chain"))?;
            for key in record_keys(&block) {
                deep.remove(key.to_u64());
            }
        }
        let side = self.store.side_ids()?.unwrap_or_default();
        let tip = self.tree.height();
        tracing::info!(
            base = at,
            old_base = self.tree.base(),
            "a branch forks below the window: reading the chain from there"
        );
        self.tree = self.window(at, deep, tip, &mut |_, _| {}, None)?;
        self.load_side(side)?;
        self.tree.set_tie_break(crate::chain::TieBreak::LowerId);
        // The rebuilt tree holds the same main chain: floor and exclusions hold as before.
        if let Some(f) = self.floor {
            self.tree.set_floor(&f);
        }
        for e in self.excluded.clone() {
            self.tree.exclude(&e);
        }
        Ok(true)
    }

    /// Why a block with `header` must be refused for finality's sake, if it must: its
    /// chain forks below the final block, or holds a block that contradicts a final
    /// checkpoint. A block at or below the final height is one (the final chain's are
    /// known, and refused as such before this).
    fn refuse_final(&self, header: &Header) -> Option<AddError> {
        if self.tree.in_window(&header.prev) && self.tree.is_excluded(&header.prev) {
            return Some(AddError::ContradictsFinal);
        }
        let (final_height, final_id) = self.final_block?;
        let below = AddError::BelowFinal {
            height: header.height,
            final_height,
        };
        if header.height <= final_height {
            return Some(below);
        }
        // A stored parent outside the window forks below its base; with the final block
        // at or above the base, below the final block. (An unknown parent is validation's
        // to report: a pull steps back on it. With the final block below the base, the
        // fork point decides: `add_incoming`.)
        if !self.tree.in_window(&header.prev) {
            if final_height < self.tree.base() {
                return None;
            }
            let stored = self.tree.contains(&header.prev)
                || matches!(self.reader.block_bytes(&header.prev), Ok(Some(_)));
            return stored.then_some(below);
        }
        match self.tree.chain_contains(&header.prev, &final_id) {
            Some(false) => Some(below),
            // An unknown parent is validation's to report.
            _ => None,
        }
    }

    /// [`AddError::BelowFinal`] or [`AddError::ContradictsFinal`] if `block` (not yet
    /// known here) must be refused for finality's sake: what a node checks before anything
    /// else (its own reads included), since nothing below a final block can change.
    #[must_use]
    pub fn finality_refusal(&self, id: &BlockId, header: &Header) -> Option<AddError> {
        if self.tree.in_window(id) {
            return None;
        }
        let e = self.refuse_final(header)?;
        // A final-chain block offered again is known, not a rewrite.
        (!self.tree.contains(id)).then_some(e)
    }

    /// Makes `final_id` (a main-chain block at `height`) final: from now on a block whose
    /// chain lacks it is refused ([`AddError::BelowFinal`]).
    pub fn set_final(&mut self, height: Height, final_id: BlockId) {
        self.final_block = Some((height, final_id));
    }

    /// The latest final block.
    #[must_use]
    pub fn final_block(&self) -> Option<(Height, BlockId)> {
        self.final_block
    }

    /// Makes `id` the tree's floor ([`BlockTree::set_floor`]) and keeps the switch of the
    /// main chain it makes, if any, as a reorg that no block brought: what it did, for the
    /// node to keep its mempool in step (`None`: no switch, or `id` unknown).
    pub fn set_floor(&mut self, id: &BlockId) -> Result<Option<Added>, StoreError> {
        let change = self.tree.set_floor(id);
        if change.is_some() {
            self.floor = Some(*id);
        }
        self.keep_switch(change)
    }

    /// Excludes `id` from every main chain ([`BlockTree::exclude`]): a block that
    /// contradicts a final checkpoint. As [`Self::set_floor`].
    pub fn exclude(&mut self, id: &BlockId) -> Result<Option<Added>, StoreError> {
        let change = self.tree.exclude(id);
        if change.is_some() && !self.excluded.contains(id) {
            self.excluded.push(*id);
        }
        self.keep_switch(change)
    }

    fn keep_switch(&mut self, change: Option<Change>) -> Result<Option<Added>, StoreError> {
        let Some(change @ Change::Reorg { .. }) = change else {
            return Ok(None);
        };
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        let started = std::time::Instant::now();
        if let Err(e) = self.store.commit_reorg(&change, &self.tree) {
            self.poisoned = true;
            return Err(e);
        }
        let returned = self.returned(&change)?;
        Ok(Some(Added {
            id: self.tree.tip(),
            height: self.tree.height(),
            change,
            returned,
            validate: std::time::Duration::ZERO,
            commit: started.elapsed(),
        }))
    }

    /// The store, for what a node keeps beside the chain ([`crate::store`]'s `kept`).
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Sets how many main-chain blocks the tree keeps in memory (between `keep` and twice
    /// that; [`KEEP`] by default), pruning now if it holds more.
    pub fn set_window(&mut self, keep: Height) {
        self.keep = keep.max(MIN_KEEP);
        self.prune();
    }

    /// Validates `block` against the rules and the clock `now_ms`, applies fork choice and
    /// stores it durably.
    pub fn add(&mut self, block: Block, now_ms: u64) -> Result<Added, AddError> {
        // A batch of one: one result, always.
        self.add_batch(vec![block], now_ms)
            .pop()
            .unwrap_or(Err(AddError::Store(StoreError::Poisoned)))
    }

    /// Validates and stores `blocks` in order, in one durable transaction: the batch form of
    /// [`Self::add`], for a sync that pulls hundreds of blocks at once. Each block is
    /// validated on the tree as the ones before it left it; the first block that fails
    /// (other than one already known) ends the batch, and the blocks before it are stored.
    /// Returns one result per block up to and including the first failure.
    pub fn add_batch(&mut self, blocks: Vec<Block>, now_ms: u64) -> Vec<Result<Added, AddError>> {
        self.add_incoming(Incoming::unchecked(blocks), now_ms)
    }

    /// [`Self::add_batch`] for [`Incoming`] blocks: those prechecked beforehand (on every
    /// core, without the node's lock) have only the rules that need the chain run here.
    pub fn add_incoming(
        &mut self,
        incoming: Incoming,
        now_ms: u64,
    ) -> Vec<Result<Added, AddError>> {
        if self.poisoned {
            return vec![Err(StoreError::Poisoned.into())];
        }
        let per_block = incoming.spent / incoming.items.len().max(1) as u32;
        let mut staged: Vec<Staged> = Vec::with_capacity(incoming.items.len());
        let mut results: Vec<Option<Result<Added, AddError>>> =
            Vec::with_capacity(incoming.items.len());
        for (id, item) in incoming.items {
            let header = match &item {
                Item::Unchecked(block) => Some(&block.header),
                Item::Prechecked(Ok(checked)) => Some(&checked.block.header),
                Item::Prechecked(Err(_)) => None,
            };
            // Known: in the window, or (only a block below the base can be) on the main
            // chain below it, which costs a read.
            let below = header.is_none_or(|h| h.height <= self.tree.base());
            if self.tree.in_window(&id) || (below && self.tree.contains(&id)) {
                results.push(Some(Err(AddError::Known(id))));
                continue;
            }
            // Finality first: a rewrite of final history is refused before it costs a read
            // (a branch from the genesis block would otherwise rebuild the window from there).
            if let Some(e) = header.and_then(|h| self.refuse_final(h)) {
                results.push(Some(Err(e)));
                break;
            }
            // Only a prechecked block (work, signature, allow-list: a sync's) may make the
            // window deeper: a block as it came (gossip) costs nothing to forge, and its
            // unknown parent makes the node sync from its sender anyway.
            let prechecked = matches!(item, Item::Prechecked(Ok(_)));
            let prev = header.map(|h| h.prev).filter(|_| prechecked);
            if let Some(prev) = prev.filter(|p| !self.tree.in_window(p)) {
                // A parent below the window (on the main chain, or on a stored branch the
                // tree forgot): the blocks staged so far are committed first, since
                // rebuilding the window reads the chain from disk. An unknown parent is
                // left to validation to report.
                let fork = match self.fork_point(&prev) {
                    Ok(fork) => fork,
                    Err(e) => {
                        results.push(Some(Err(e.into())));
                        break;
                    }
                };
                if let Some(fork) = fork {
                    if let Some((final_height, _)) = self.final_block.filter(|(h, _)| fork < *h) {
                        results.push(Some(Err(AddError::BelowFinal {
                            height: header.map_or(0, |h| h.height),
                            final_height,
                        })));
                        break;
                    }
                    if !self.commit_staged(&mut staged, &mut results) {
                        return results.into_iter().flatten().collect();
                    }
                    if let Err(e) = self.deepen(fork) {
                        results.push(Some(Err(e.into())));
                        break;
                    }
                }
            }
            let started = std::time::Instant::now();
            let checked = match item {
                Item::Unchecked(block) => validate::check(block, &self.net, &self.tree, now_ms),
                Item::Prechecked(result) => result.and_then(|checked| {
                    validate::check_placed(&checked, &self.net, &self.tree, now_ms)?;
                    Ok(checked)
                }),
            };
            match checked {
                Ok(checked) => {
                    let validate = per_block + started.elapsed();
                    let change = self.tree.insert(&checked.block.header, checked.keys());
                    staged.push((results.len(), checked.block, id, change, validate));
                    results.push(None);
                }
                Err(e) => {
                    results.push(Some(Err(e.into())));
                    break;
                }
            }
        }
        if self.commit_staged(&mut staged, &mut results) {
            self.prune();
        }
        results.into_iter().flatten().collect()
    }

    /// Commits the blocks `add_incoming` staged and fills in their results; false if the
    /// commit failed (the ledger is then poisoned, and `results` ends with the error).
    fn commit_staged(
        &mut self,
        staged: &mut Vec<Staged>,
        results: &mut Vec<Option<Result<Added, AddError>>>,
    ) -> bool {
        if staged.is_empty() {
            return true;
        }
        let started = std::time::Instant::now();
        let items: Vec<(&Block, &BlockId, &Change)> =
            staged.iter().map(|(_, b, id, c, _)| (b, id, c)).collect();
        if let Err(e) = self.store.commit_batch(&items, &self.tree) {
            self.poisoned = true;
            let first = staged[0].0;
            results.truncate(first);
            results.push(Some(Err(e.into())));
            staged.clear();
            return false;
        }
        let commit = started.elapsed() / staged.len() as u32;
        for (at, block, id, change, validate) in staged.drain(..) {
            let returned = match self.returned(&change) {
                Ok(r) => r,
                Err(e) => {
                    results[at] = Some(Err(e.into()));
                    continue;
                }
            };
            results[at] = Some(Ok(Added {
                id,
                height: block.header.height,
                change,
                returned,
                validate,
                commit,
            }));
        }
        true
    }

    /// Records of blocks a reorg took off the main chain that the new main chain lacks.
    fn returned(&self, change: &Change) -> Result<Vec<MinuteRecord>, StoreError> {
        let mut returned = Vec::new();
        if let Change::Reorg { abandoned, .. } = change {
            for gone in abandoned {
                let Some(block) = self.block(gone)? else {
                    continue;
                };
                for bytes in &block.records {
                    if let Ok(r) = MinuteRecord::decode(bytes) {
                        let key = crate::chain::RecordKey::of(&r);
                        if !self.tree.has_record(&key) {
                            returned.push(r);
                        }
                    }
                }
            }
        }
        Ok(returned)
    }

    /// A stored block (or the genesis block).
    pub fn block(&self, id: &BlockId) -> Result<Option<Block>, StoreError> {
        self.reader.block(id).map_err(|e| match e {
            StoreError::Corrupt { reason, .. } => StoreError::Corrupt {
                height: self.tree.height_of(id).unwrap_or(0),
                reason,
            },
            e => e,
        })
    }

    /// A handle that reads stored blocks without the ledger: blocks never change once
    /// stored, and the store serves reads beside a write (each read is its own snapshot),
    /// so an API answer can look up ids under the node's lock and read the blocks after
    /// releasing it.
    #[must_use]
    pub fn reader(&self) -> BlockReader {
        self.reader.clone()
    }

    /// The main chain's block at `height`.
    pub fn block_at(&self, height: Height) -> Result<Option<Block>, StoreError> {
        match self.tree.main_at(height) {
            Some(id) => self.block(&id),
            None => Ok(None),
        }
    }

    /// The tip's header.
    pub fn tip_header(&self) -> Result<Header, StoreError> {
        let tip = self.tree.tip();
        self.block(&tip)?
            .map(|b| b.header)
            .ok_or_else(|| StoreError::Corrupt {
                height: self.tree.height(),
                reason: format!("tip {tip} is missing"),
            })
    }

    /// Keeps an open dispute about `key` (opaque bytes: see `core::Dispute`).
    pub fn keep_dispute(&self, key: RecordKey, bytes: &[u8]) -> Result<(), StoreError> {
        self.store.put_dispute(key.to_u64(), bytes)
    }

    /// Forgets the dispute about `key`.
    pub fn forget_dispute(&self, key: RecordKey) -> Result<(), StoreError> {
        self.store.delete_dispute(key.to_u64())
    }

    /// Every kept dispute.
    pub fn kept_disputes(&self) -> Result<Vec<(RecordKey, Vec<u8>)>, StoreError> {
        Ok(self
            .store
            .disputes()?
            .into_iter()
            .map(|(k, v)| (RecordKey::from_u64(k), v))
            .collect())
    }

    /// The block tree.
    #[must_use]
    pub fn tree(&self) -> &BlockTree {
        &self.tree
    }

    /// The network.
    #[must_use]
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// Figures of the main chain.
    #[must_use]
    pub fn summary(&self) -> Summary {
        // O(1): `/status` calls this on every request, under the node's lock.
        let records = self.tree.main_records();
        Summary {
            height: self.tree.height(),
            tip: self.tree.tip(),
            records,
            blocks: self.tree.len(),
        }
    }
}
