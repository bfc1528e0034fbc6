//! A node's chain held in memory, for tests, benches and a simulator: the fork choice
//! (`gridledger-chain`'s [`BlockTree`]) over blocks kept in a map, checked against the
//! node's [`Witness`] and kept in step with its [`Mempool`], as the node's ledger and core do
//! with blocks in its store.
//!
//! What it leaves out, on purpose: the rules that need only a block's bytes (proof of work,
//! signature, records, Merkle root: `gridledger_chain::validate`, which the runtime runs
//! before this), the store's durability, and the reads of the store's older witness digests.
//! A block given here is taken as having passed those.

use std::collections::HashMap;

use gridledger_chain::{Block, BlockId, BlockTree, Change, Header, Network, RecordKey};
use relay_core::MinuteRecord;

use crate::mempool::Mempool;
use crate::verdict::Verdict;
use crate::witness::Witness;

/// Blocks in memory and the fork choice over them.
#[derive(Debug)]
pub struct MemChain {
    tree: BlockTree,
    headers: HashMap<BlockId, Header>,
    /// Each block's records as it carries them (a decoded record is kilobytes: only a
    /// reorg decodes them again).
    records: HashMap<BlockId, Vec<Vec<u8>>>,
}

impl MemChain {
    /// The chain of `net` at its genesis block.
    #[must_use]
    pub fn new(net: &Network) -> Self {
        let genesis = net.genesis().header;
        MemChain {
            tree: BlockTree::new(&genesis),
            headers: HashMap::from([(genesis.id(), genesis)]),
            records: HashMap::new(),
        }
    }

    /// The fork choice.
    #[must_use]
    pub fn tree(&self) -> &BlockTree {
        &self.tree
    }

    /// The header of block `id`, if held.
    #[must_use]
    pub fn header(&self, id: &BlockId) -> Option<&Header> {
        self.headers.get(id)
    }

    /// The main chain's tip (every block the tree holds was given here first).
    #[must_use]
    pub fn tip(&self) -> Option<Header> {
        self.headers.get(&self.tree.tip()).copied()
    }

    /// Block `b` given to the chain: refused if a record differs from this node's reads
    /// (a copy too, as the node's `accept` checks before the fork choice), known, an orphan,
    /// or stored; the mempool loses the records that joined the main chain and gets back
    /// (at `now_ms`, as this node read them where it did) those a reorg took off it.
    pub fn accept(
        &mut self,
        b: &Block,
        witness: &Witness,
        mempool: &mut Mempool,
        now_ms: u64,
    ) -> Verdict {
        let records: Vec<MinuteRecord> = b
            .records
            .iter()
            .filter_map(|r| MinuteRecord::decode(r).ok())
            .collect();
        if witness.check(&records).is_err() {
            return Verdict::Refused;
        }
        let id = b.id();
        if self.tree.contains(&id) {
            return Verdict::Known;
        }
        if !self.tree.contains(&b.header.prev) {
            return Verdict::UnknownParent;
        }
        let keys: Vec<RecordKey> = records.iter().map(RecordKey::of).collect();
        if keys
            .iter()
            .any(|k| self.tree.chain_has_record(&b.header.prev, k))
        {
            return Verdict::Refused;
        }
        let change = self.tree.insert_with_id(id, &b.header, keys.clone());
        self.headers.insert(id, b.header);
        self.records.insert(id, b.records.clone());
        match change {
            Change::SideBranch => Verdict::Side,
            Change::Extended => {
                mempool.remove(&keys);
                Verdict::Best
            }
            Change::Reorg { abandoned, adopted } => {
                for r in abandoned.iter().flat_map(|id| self.decoded(id)) {
                    mempool.add_at(
                        witness.own(&RecordKey::of(&r)).unwrap_or(&r).clone(),
                        now_ms,
                    );
                }
                for joined in &adopted {
                    let keys: Vec<RecordKey> =
                        self.decoded(joined).iter().map(RecordKey::of).collect();
                    mempool.remove(&keys);
                }
                Verdict::Best
            }
        }
    }

    /// Block `id`'s records, decoded.
    fn decoded(&self, id: &BlockId) -> Vec<MinuteRecord> {
        self.records
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|r| MinuteRecord::decode(r).ok())
            .collect()
    }
}
