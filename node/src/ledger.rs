//! The ledger: the store, the block tree over it, and the rules, as one consistent whole.
//!
//! Opening a ledger re-verifies every stored block (all rules, signatures on every core;
//! a node's own start-up leaves out the signatures under the verified mark, see
//! [`crate::store::Store::verified_mark`]) and names the first bad height rather than
//! serve a corrupt chain. Adding a block
//! validates it, applies fork choice, commits, and hands back the records of abandoned
//! blocks that the new main chain lacks, so that they go back to the mempool: no record is
//! ever lost to a reorg.

use std::path::Path;

use relay_core::MinuteRecord;
use tracing::warn;

use crate::chain::validate::{self, verify_run_trusting};
use crate::chain::{
    Block, BlockId, BlockTree, Change, Header, Height, Network, RecordKey, ValidationError,
};
use crate::store::{Store, StoreError};

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

    /// The blocks not already refused, with their positions, in order.
    pub fn blocks(&self) -> impl Iterator<Item = (usize, &Block)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, (_, item))| match item {
                Item::Unchecked(b) => Some((i, b)),
                Item::Prechecked(r) => r.as_ref().ok().map(|c| (i, &c.block)),
            })
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

/// Reads stored blocks by id; see [`Ledger::reader`].
#[derive(Clone, Debug)]
pub struct BlockReader {
    store: std::sync::Arc<Store>,
    /// The genesis block and its id, hashed once (not on every read).
    genesis: std::sync::Arc<(Block, BlockId)>,
    max_block_bytes: usize,
    max_records: u32,
}

impl BlockReader {
    /// A stored block (or the genesis block); `None` if no block has that id.
    pub fn block(&self, id: &BlockId) -> Result<Option<Block>, StoreError> {
        if *id == self.genesis.1 {
            return Ok(Some(self.genesis.0.clone()));
        }
        let Some(bytes) = self.store.block_bytes(id)? else {
            return Ok(None);
        };
        Block::from_bytes(&bytes, self.max_block_bytes, self.max_records)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                height: 0,
                reason: format!("block {id}: {e}"),
            })
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
    /// Blocks known, side branches and genesis included.
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
}

impl Ledger {
    /// Opens (creating if needed) the ledger of `net` in `dir` and verifies it.
    pub fn open(dir: &Path, net: Network) -> Result<Self, StoreError> {
        guard(|| {
            Self::load(
                Store::open(dir, &net.name, net.bits, true)?,
                net,
                true,
                &mut |_, _| {},
            )
        })
    }

    /// Opens an existing ledger for the network it was created for, and verifies it.
    pub fn open_existing(dir: &Path) -> Result<Self, StoreError> {
        guard(|| Self::load_stamped(Store::open_existing(dir)?, true, &mut |_, _| {}))
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
        Self::load(store, Network::new(&name, bits), trust_mark, progress)
    }

    /// Loads the stored chain into a tree, verifying it. With `trust_mark` (a node opening
    /// its own data dir), the signatures of the blocks under the verified mark are not
    /// checked again (every other rule is): they were checked before those blocks were
    /// stored, and the mark was written in the same transaction. Without it (`verify`,
    /// `export`), everything is.
    fn load(
        store: Store,
        net: Network,
        trust_mark: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, StoreError> {
        let genesis = net.genesis();
        let mut tree = BlockTree::new(&genesis.header);
        let corrupt = |height: Height, reason: String| StoreError::Corrupt { height, reason };
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let (main_len, records_len) = store.lens()?;
        tree.reserve(
            usize::try_from(main_len).unwrap_or(0),
            usize::try_from(records_len).unwrap_or(0),
        );
        // The mark counts only if the stored main chain still holds its block at its
        // height: the blocks below are then exactly the verified ones (each links to the
        // next by hash, and each block's bytes must hash to its stored id).
        let trusted_to: Height = match store.verified_mark()? {
            Some((h, id)) if trust_mark => {
                let at = store.main_ids_from(h, 1)?;
                if at.first() == Some(&(h, id)) {
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
        let mut main_records = 0usize;
        // Main-chain ids are read VERIFY_BATCH at a time, not all at once.
        let mut pending: std::collections::VecDeque<(Height, BlockId)> =
            std::collections::VecDeque::new();
        let mut next: Height = 1;
        loop {
            if pending.is_empty() {
                pending.extend(store.main_ids_from(next, VERIFY_BATCH)?);
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
                    return Err(corrupt(next, "missing from the main chain".into()));
                }
                let bytes = store
                    .block_bytes(&id)?
                    .ok_or_else(|| corrupt(height, format!("block {id} is missing")))?;
                bytes_in_batch += bytes.len();
                let block = Block::from_bytes(&bytes, net.max_block_bytes, net.max_records)
                    .map_err(|e| corrupt(height, e.to_string()))?;
                if block.id() != id {
                    return Err(corrupt(
                        height,
                        format!(
                            "block bytes hash to {}, not to the stored id {id}",
                            block.id()
                        ),
                    ));
                }
                blocks.push(block);
                batch.push((height, id));
                next += 1;
            }
            main_records +=
                verify_run_trusting(blocks, &net, &mut tree, u64::MAX, threads, trusted_to)
                    .map_err(|(i, e)| corrupt(batch[i].0, e.to_string()))?;
            if let Some((height, id)) = batch.last() {
                if tree.tip() != *id {
                    return Err(corrupt(*height, "does not extend the chain".into()));
                }
                progress(u64::from(*height), main_len);
            }
        }

        // The record index must say exactly what the blocks say.
        // Streamed: a million rows need not sit in memory at once.
        let indexed_count = store.for_each_record(|k, h| {
            if tree.record_height(&RecordKey::from_u64(k)) == Some(h) {
                Ok(())
            } else {
                Err(corrupt(
                    h,
                    "the record index disagrees with the block".into(),
                ))
            }
        })?;
        if indexed_count != main_records {
            let index = store.record_index()?;
            let indexed: std::collections::HashSet<u64> = index.iter().map(|(k, _)| *k).collect();
            let first_missing = (1..=tree.height()).find(|&h| {
                tree.main_at(h).is_some_and(|id| {
                    tree.keys_of(&id)
                        .iter()
                        .any(|k| !indexed.contains(&k.to_u64()))
                })
            });
            return Err(corrupt(
                first_missing.unwrap_or(0),
                "a record is missing from the record index".into(),
            ));
        }

        // Side branches: keep the valid ones, drop the rest with a warning.
        let mut side: Vec<Block> = Vec::new();
        for id in store.all_ids()? {
            if tree.contains(&id) {
                continue;
            }
            match store
                .block_bytes(&id)?
                .map(|b| Block::from_bytes(&b, net.max_block_bytes, net.max_records))
            {
                Some(Ok(block)) if block.id() == id => side.push(block),
                _ => warn!(block = %id, "ignoring an unreadable side-branch block"),
            }
        }
        side.sort_by_key(|b| b.header.height);
        for block in side {
            let id = block.id();
            match validate::check(block, &net, &tree, u64::MAX) {
                Ok(c) => {
                    let change = tree.insert(&c.block.header, c.keys());
                    if change != Change::SideBranch {
                        return Err(corrupt(
                            c.block.header.height,
                            "a stored side branch has more work than the stored main chain".into(),
                        ));
                    }
                }
                Err(e) => warn!(block = %id, "ignoring an invalid side-branch block: {e}"),
            }
        }
        // From now on an equal-work rival with a lower tip id wins (docs/FORMAT.md
        // section 3); the stored chain itself was chosen when its blocks arrived.
        tree.set_tie_break(crate::chain::TieBreak::LowerId);
        let store = std::sync::Arc::new(store);
        let reader = BlockReader {
            store: std::sync::Arc::clone(&store),
            genesis: std::sync::Arc::new((genesis.clone(), genesis.id())),
            max_block_bytes: net.max_block_bytes,
            max_records: net.max_records,
        };
        Ok(Ledger {
            net,
            store,
            tree,
            reader,
            poisoned: false,
        })
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
        // Staged: (position in the results, block, id, change, validation time).
        let mut staged = Vec::with_capacity(incoming.items.len());
        let mut results: Vec<Option<Result<Added, AddError>>> =
            Vec::with_capacity(incoming.items.len());
        for (id, item) in incoming.items {
            if self.tree.contains(&id) {
                results.push(Some(Err(AddError::Known(id))));
                continue;
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
        if !staged.is_empty() {
            let started = std::time::Instant::now();
            let items: Vec<(&Block, &BlockId, &Change)> =
                staged.iter().map(|(_, b, id, c, _)| (b, id, c)).collect();
            if let Err(e) = self.store.commit_batch(&items, &self.tree) {
                self.poisoned = true;
                let first = staged[0].0;
                results.truncate(first);
                results.push(Some(Err(e.into())));
                return results.into_iter().flatten().collect();
            }
            let commit = started.elapsed() / staged.len() as u32;
            for (at, block, id, change, validate) in staged {
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
        }
        results.into_iter().flatten().collect()
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
                        if self.tree.record_height(&key).is_none() {
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
