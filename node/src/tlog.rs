//! The final chain's tlog on disk (`gridledger_chain::tlog`): hashes of whole subtrees of
//! [`SUBTREE_LEVEL`] and above as kept at each finalisation, the rest from the main chain's
//! block ids. A root or an inclusion or consistency proof against a final checkpoint reads
//! a few dozen rows and at most a few hundred ids, however long the chain.

use crate::chain::merkle::Hash;
use crate::chain::tlog::{self, Subtrees};
use crate::chain::BlockId;
use crate::ledger::BlockReader;
use crate::store::kept::SUBTREE_LEVEL;
use crate::store::StoreError;

/// The tlog of a reader's main chain, for subtrees inside its final part.
#[derive(Debug)]
pub struct FinalTlog<'a> {
    reader: &'a BlockReader,
}

impl<'a> FinalTlog<'a> {
    /// The tlog `reader`'s store keeps.
    #[must_use]
    pub fn new(reader: &'a BlockReader) -> Self {
        FinalTlog { reader }
    }

    /// The main chain's ids of heights `from..from + n`.
    fn ids(&self, from: u64, n: u64) -> Result<Vec<BlockId>, StoreError> {
        let mut out = Vec::with_capacity(n as usize);
        let mut at = from;
        if at == 0 && n > 0 {
            out.push(self.reader.genesis_id());
            at = 1;
        }
        let want = from + n;
        if at < want {
            let h = u32::try_from(at).map_err(|_| missing(at))?;
            for (height, id) in self.reader.store().main_ids_from(h, (want - at) as usize)? {
                if u64::from(height) != at {
                    return Err(missing(at));
                }
                out.push(id);
                at += 1;
            }
        }
        if at != want {
            return Err(missing(at));
        }
        Ok(out)
    }
}

fn missing(height: u64) -> StoreError {
    StoreError::Corrupt {
        height: u32::try_from(height).unwrap_or(u32::MAX),
        reason: "the main chain has no block at this height".into(),
    }
}

impl Subtrees for FinalTlog<'_> {
    type Error = StoreError;
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        if level >= SUBTREE_LEVEL {
            if let Some(h) = self.reader.store().subtree(level, index)? {
                return Ok(h);
            }
            // Not kept (a data dir from before; a level above what was kept): its halves.
            let left = self.subtree(level - 1, index * 2)?;
            let right = self.subtree(level - 1, index * 2 + 1)?;
            return Ok(tlog::node(&left, &right));
        }
        let ids = self.ids(index << level, 1u64 << level)?;
        Ok(tlog::root(&ids))
    }
}
