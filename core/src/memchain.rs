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
use std::sync::Arc;

use gridledger_chain::merkle::Hash;
use gridledger_chain::{
    Block, BlockId, BlockTree, Change, Header, Height, Network, RecordKey, TieBreak,
};
use relay_core::MinuteRecord;

use crate::finality::{Chain, Keep, Kept};
use crate::mempool::Mempool;
use crate::verdict::Verdict;
use crate::witness::Witness;

/// Blocks in memory and the fork choice over them.
#[derive(Debug)]
pub struct MemChain {
    tree: BlockTree,
    /// Each block as it came, shared with whoever else holds it (a simulator's thousand
    /// nodes hold one copy of each block; a decoded record is kilobytes: only a reorg
    /// decodes them again).
    blocks: HashMap<BlockId, Arc<Block>>,
    /// The latest final block.
    final_block: Option<(Height, BlockId)>,
    /// What finality kept, as a store would keep it across a restart.
    kept: Kept,
}

impl MemChain {
    /// The chain of `net` at its genesis block.
    #[must_use]
    pub fn new(net: &Network) -> Self {
        let genesis = net.genesis().header;
        let mut tree = BlockTree::new(&genesis);
        // As the node's ledger: between equal work, every node that has both tips picks
        // the same one at once (FORMAT.md section 3).
        tree.set_tie_break(TieBreak::LowerId);
        MemChain {
            tree,
            blocks: HashMap::from([(genesis.id(), Arc::new(net.genesis()))]),
            final_block: None,
            kept: Kept::default(),
        }
    }

    /// What finality kept ([`Chain::keep`]), for a [`crate::finality::Finality`] opened
    /// again after a restart.
    #[must_use]
    pub fn kept(&self) -> Kept {
        self.kept.clone()
    }

    /// The latest final block.
    #[must_use]
    pub fn final_block(&self) -> Option<(Height, BlockId)> {
        self.final_block
    }

    /// True if a block whose parent is `prev`, at `height`, forks below the final block or
    /// off a block that contradicts a final checkpoint: nothing below a final block
    /// changes, whatever the work of the other chain.
    fn below_final(&self, prev: &BlockId, height: Height) -> bool {
        if self.tree.is_excluded(prev) {
            return true;
        }
        let Some((final_height, final_id)) = self.final_block else {
            return false;
        };
        height <= final_height || self.tree.chain_contains(prev, &final_id) == Some(false)
    }

    /// The fork choice.
    #[must_use]
    pub fn tree(&self) -> &BlockTree {
        &self.tree
    }

    /// The header of block `id`, if held.
    #[must_use]
    pub fn header(&self, id: &BlockId) -> Option<&Header> {
        self.blocks.get(id).map(|b| &b.header)
    }

    /// Block `id`, if held.
    #[must_use]
    pub fn block(&self, id: &BlockId) -> Option<&Arc<Block>> {
        self.blocks.get(id)
    }

    /// The main chain's tip (every block the tree holds was given here first).
    #[must_use]
    pub fn tip(&self) -> Option<Header> {
        self.header(&self.tree.tip()).copied()
    }

    /// Block `b` given to the chain: refused if a record differs from this node's reads
    /// (a copy too, as the node's `accept` checks before the fork choice), known, an orphan,
    /// or stored; the mempool loses the records that joined the main chain and gets back
    /// (at `now_ms`, as this node read them where it did) those a reorg took off it.
    pub fn accept(
        &mut self,
        b: &Arc<Block>,
        witness: &Witness,
        mempool: &mut Mempool,
        now_ms: u64,
    ) -> Verdict {
        let id = b.id();
        let known = self.tree.contains(&id);
        // A copy is checked against this node's reads too; with none, it is known at once.
        if known && witness.is_empty() {
            return Verdict::Known;
        }
        let records: Vec<MinuteRecord> = b
            .records
            .iter()
            .filter_map(|r| MinuteRecord::decode(r).ok())
            .collect();
        if witness.check(&records).is_err() {
            return Verdict::Refused;
        }
        if known {
            return Verdict::Known;
        }
        if !self.tree.contains(&b.header.prev) {
            return Verdict::UnknownParent;
        }
        if self.below_final(&b.header.prev, b.header.height) {
            return Verdict::Refused;
        }
        let keys: Vec<RecordKey> = records.iter().map(RecordKey::of).collect();
        if keys
            .iter()
            .any(|k| self.tree.chain_has_record(&b.header.prev, k))
        {
            return Verdict::Refused;
        }
        let change = self.tree.insert_with_id(id, &b.header, keys.clone());
        self.blocks.insert(id, Arc::clone(b));
        match change {
            Change::SideBranch => Verdict::Side,
            Change::Extended => {
                mempool.remove(&keys);
                Verdict::Best
            }
            reorg @ Change::Reorg { .. } => {
                self.switched(&reorg, witness, mempool, now_ms);
                Verdict::Best
            }
        }
    }

    /// Keeps `mempool` in step with a switch of the main chain (a reorg a block brought, or
    /// one finality made: [`crate::finality::Effects::switched`]): the records of the
    /// blocks that left it come back (as this node read them where it did), those of the
    /// blocks that joined it go.
    pub fn switched(&self, change: &Change, witness: &Witness, mempool: &mut Mempool, now_ms: u64) {
        let Change::Reorg { abandoned, adopted } = change else {
            return;
        };
        for r in abandoned.iter().flat_map(|id| self.decoded(id)) {
            mempool.add_at(
                witness.own(&RecordKey::of(&r)).unwrap_or(&r).clone(),
                now_ms,
            );
        }
        for joined in adopted {
            let keys: Vec<RecordKey> = self.decoded(joined).iter().map(RecordKey::of).collect();
            mempool.remove(&keys);
        }
    }

    /// Block `id`'s records, decoded.
    fn decoded(&self, id: &BlockId) -> Vec<MinuteRecord> {
        self.blocks
            .get(id)
            .into_iter()
            .flat_map(|b| &b.records)
            .filter_map(|r| MinuteRecord::decode(r).ok())
            .collect()
    }
}

/// Finality over the chain in memory; what it keeps stays in memory too ([`MemChain::kept`]).
impl Chain for MemChain {
    type Switch = Change;
    type Error = std::convert::Infallible;

    fn tree(&self) -> &BlockTree {
        &self.tree
    }

    fn set_final(&mut self, height: Height, id: BlockId) {
        self.final_block = Some((height, id));
    }

    fn set_floor(&mut self, id: &BlockId) -> Result<Option<Change>, Self::Error> {
        Ok(self
            .tree
            .set_floor(id)
            .filter(|c| matches!(c, Change::Reorg { .. })))
    }

    fn exclude(&mut self, id: &BlockId) -> Result<Option<Change>, Self::Error> {
        Ok(self
            .tree
            .exclude(id)
            .filter(|c| matches!(c, Change::Reorg { .. })))
    }

    fn root_at(&self, size: u64) -> Option<Hash> {
        let mut ids = Vec::new();
        let mut at: Height = 0;
        while (ids.len() as u64) < size {
            let run = self.tree.main_range(at, 4096);
            if run.is_empty() {
                return None;
            }
            for (h, id) in run {
                if ids.len() as u64 >= size {
                    break;
                }
                ids.push(id);
                at = h + 1;
            }
        }
        Some(gridledger_chain::tlog::root(&ids))
    }

    fn keep(&mut self, what: Keep<'_>) -> Result<(), Self::Error> {
        match what {
            Keep::Justified(b) => self.kept.justified = Some(b.to_vec()),
            Keep::Own(b) => self.kept.own = Some(b.to_vec()),
            Keep::Final { state, .. } => self.kept.final_state = Some(state.to_vec()),
            Keep::Evidence(e) => self.kept.evidence.push(e.clone()),
        }
        Ok(())
    }
}
