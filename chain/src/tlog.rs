//! The chain as a transparency log: an RFC 6962 Merkle tree whose leaves are the block ids
//! of heights `0 … size − 1`, so that a checkpoint (`docs/book/src/FORMAT.md` section 11) is a
//! standard tlog checkpoint, a block's inclusion in a final chain is a standard inclusion
//! proof, and a later checkpoint extending an earlier one is a standard consistency proof.
//!
//! - leaf hash: `SHA-256(0x00 || block id)` (the 32 id bytes are the leaf data);
//! - node hash and the split are those of [`crate::merkle`] (the same RFC 6962 tree that
//!   a block's records form).
//!
//! A [`Frontier`] is the tree's right edge (one hash per set bit of the size): appending a
//! leaf and taking the root cost a few hashes, so a node keeps the root of its final chain
//! without holding its ids. Proofs need hashes of whole subtrees; a [`Subtrees`] source
//! answers them (the node's store keeps the big ones and reads block ids for the rest).

use crate::block::BlockId;
use crate::merkle::{self, Hash};

/// The leaf hash of block id `id`.
#[must_use]
pub fn leaf(id: &BlockId) -> Hash {
    merkle::leaf_hash(&id.0)
}

/// The node hash of two subtrees.
#[must_use]
pub fn node(left: &Hash, right: &Hash) -> Hash {
    merkle::node_hash(left, right)
}

/// The root of the empty tree: `SHA-256()`.
#[must_use]
pub fn empty_root() -> Hash {
    merkle::root::<&[u8]>(&[])
}

/// The right edge of a tree of `size` leaves: the roots of its perfect subtrees, largest
/// (leftmost) first, one per set bit of `size`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A frontier from its parts; `None` unless there is one hash per set bit of `size`.
    #[must_use]
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<Self> {
        (hashes.len() == size.count_ones() as usize).then_some(Frontier { size, hashes })
    }

    /// Leaves in the tree.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtrees' roots, largest first.
    #[must_use]
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf given by its leaf hash.
    pub fn push_hash(&mut self, h: Hash) {
        self.push_hash_with(h, |_, _, _| {});
    }

    /// [`Self::push_hash`], calling `done(level, index, hash)` for each whole subtree of
    /// `2^level` leaves (level 1 and up) that the leaf completes: what a store keeps to
    /// answer proofs without reading every leaf.
    pub fn push_hash_with(&mut self, mut h: Hash, mut done: impl FnMut(u32, u64, &Hash)) {
        // Every trailing set bit of the size is a perfect subtree the new leaf completes.
        let mut size = self.size;
        let mut level = 0;
        while size & 1 == 1 {
            if let Some(left) = self.hashes.pop() {
                h = node(&left, &h);
            }
            size >>= 1;
            level += 1;
            done(level, self.size >> level, &h);
        }
        self.hashes.push(h);
        self.size += 1;
    }

    /// [`Self::push`] with [`Self::push_hash_with`]'s callback.
    pub fn push_with(&mut self, id: &BlockId, done: impl FnMut(u32, u64, &Hash)) {
        self.push_hash_with(leaf(id), done);
    }

    /// Appends block `id` as the next leaf.
    pub fn push(&mut self, id: &BlockId) {
        self.push_hash(leaf(id));
    }

    /// The root hash (RFC 6962 `MTH`) of the tree.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |right, left| node(left, &right))
    }
}

/// The root of a tree over `ids`.
#[must_use]
pub fn root(ids: &[BlockId]) -> Hash {
    let mut f = Frontier::new();
    for id in ids {
        f.push(id);
    }
    f.root()
}

/// Hashes of a tree's leaves and perfect subtrees, as a store or a slice holds them.
pub trait Subtrees {
    /// Why a hash could not be had.
    type Error;
    /// The hash of the perfect subtree of `2^level` leaves starting at leaf
    /// `index << level` (level 0: a leaf hash). The subtree is whole inside the tree the
    /// proof is about.
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Every leaf in memory: for tests and small trees.
impl Subtrees for [BlockId] {
    type Error = std::convert::Infallible;
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        let lo = (index << level) as usize;
        let hi = lo + (1usize << level);
        Ok(merkle_of(&self[lo..hi]))
    }
}

fn merkle_of(ids: &[BlockId]) -> Hash {
    root(ids)
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[lo .. hi))` for `lo < hi`, where `lo` is a multiple of the largest power of two
/// not above `hi − lo` (every range RFC 6962's recursions meet is): the range is cut into
/// perfect subtrees left to right, each asked of `src`.
fn range_hash<S: Subtrees + ?Sized>(src: &S, lo: u64, hi: u64) -> Result<Hash, S::Error> {
    let mut parts = Vec::new();
    let mut at = lo;
    while at < hi {
        // The largest aligned perfect subtree starting at `at` that fits.
        let mut level = 63 - (hi - at).leading_zeros();
        while at & ((1u64 << level) - 1) != 0 {
            level -= 1;
        }
        parts.push(src.subtree(level, at >> level)?);
        at += 1u64 << level;
    }
    let mut it = parts.iter().rev();
    let Some(last) = it.next() else {
        return Ok(empty_root());
    };
    Ok(it.fold(*last, |right, left| node(left, &right)))
}

/// The root of the first `size` leaves of `src`'s tree.
pub fn root_of<S: Subtrees + ?Sized>(src: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(src, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 6962
/// `PATH`), leaf side first; `None` if `index >= size`.
pub fn inclusion_proof<S: Subtrees + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Option<Vec<Hash>>, S::Error> {
    if index >= size {
        return Ok(None);
    }
    // Walk down from the whole tree, noting each sibling; the path lists them leaf first.
    let mut path = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            path.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(range_hash(src, lo, lo + k)?);
            lo += k;
        }
    }
    path.reverse();
    Ok(Some(path))
}

/// Checks that block `id` is leaf `index` of the tree of `size` leaves with root `root`
/// (RFC 9162 section 2.1.3.2).
#[must_use]
pub fn verify_inclusion(id: &BlockId, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    merkle::verify(&id.0, index, size, path, root)
}

/// The consistency proof from the tree of the first `old` leaves to the tree of the first
/// `new` leaves (RFC 6962 `PROOF(m, D[n])`); `None` unless `0 < old <= new`.
pub fn consistency_proof<S: Subtrees + ?Sized>(
    src: &S,
    old: u64,
    new: u64,
) -> Result<Option<Vec<Hash>>, S::Error> {
    if old == 0 || old > new {
        return Ok(None);
    }
    let mut proof = Vec::new();
    subproof(src, old, 0, new, true, &mut proof)?;
    Ok(Some(proof))
}

/// RFC 6962 `SUBPROOF(m, D[lo .. hi), b)`.
fn subproof<S: Subtrees + ?Sized>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(range_hash(src, lo, hi)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, lo, lo + k, whole, out)?;
        out.push(range_hash(src, lo + k, hi)?);
    } else {
        subproof(src, m - k, lo + k, hi, false, out)?;
        out.push(range_hash(src, lo, lo + k)?);
    }
    Ok(())
}

/// Checks a consistency proof from (`old`, `old_root`) to (`new`, `new_root`) (RFC 9162
/// section 2.1.4.2).
#[must_use]
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    // If old is a power of two, the old root is the first node of the path.
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node(c, &fr);
            sr = node(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *old_root && sr == *new_root && sn == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<BlockId> {
        (0..n)
            .map(|i| {
                let mut b = [0u8; 32];
                b[..8].copy_from_slice(&(i as u64 * 7919).to_be_bytes());
                BlockId(b)
            })
            .collect()
    }

    /// RFC 6962's definition, written as plainly as it reads, to check the others against.
    fn mth(ids: &[BlockId]) -> Hash {
        match ids.len() {
            0 => empty_root(),
            1 => leaf(&ids[0]),
            n => {
                let k = split(n as u64) as usize;
                node(&mth(&ids[..k]), &mth(&ids[k..]))
            }
        }
    }

    #[test]
    fn the_frontier_and_the_subtrees_give_rfc_6962_roots() {
        let all = ids(70);
        let mut f = Frontier::new();
        assert_eq!(f.root(), empty_root());
        for n in 1..=all.len() {
            f.push(&all[n - 1]);
            let want = mth(&all[..n]);
            assert_eq!(f.root(), want, "frontier, n={n}");
            assert_eq!(
                root_of(&all[..], n as u64).ok(),
                Some(want),
                "subtrees, n={n}"
            );
            assert_eq!(f.hashes().len(), n.count_ones() as usize);
            let back = Frontier::from_parts(f.size(), f.hashes().to_vec());
            assert_eq!(back.as_ref(), Some(&f));
        }
        assert!(Frontier::from_parts(3, vec![[0; 32]]).is_none());
    }

    #[test]
    fn the_frontier_names_each_subtree_it_completes() {
        let all = ids(37);
        let mut f = Frontier::new();
        let mut done = Vec::new();
        for id in &all {
            f.push_with(id, |level, index, hash| done.push((level, index, *hash)));
        }
        // 18 pairs, 9 fours, 4 eights, 2 sixteens, 1 thirty-two.
        assert_eq!(done.len(), 18 + 9 + 4 + 2 + 1);
        for (level, index, hash) in done {
            assert_eq!(
                Ok(hash),
                all[..].subtree(level, index),
                "level {level} index {index}"
            );
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_no_wrong_one_does() {
        let all = ids(40);
        for n in 1..=all.len() as u64 {
            let r = mth(&all[..n as usize]);
            for i in 0..n {
                let path = inclusion_proof(&all[..], i, n)
                    .ok()
                    .flatten()
                    .expect("in range");
                // The same path as the record tree's, leaf for leaf.
                let leaves: Vec<[u8; 32]> = all[..n as usize].iter().map(|b| b.0).collect();
                assert_eq!(Some(&path), merkle::proof(&leaves, i as usize).as_ref());
                assert!(verify_inclusion(&all[i as usize], i, n, &path, &r));
                let other = &all[((i + 1) % n) as usize];
                if n > 1 {
                    assert!(!verify_inclusion(other, i, n, &path, &r));
                }
                assert!(!verify_inclusion(&all[i as usize], n, n, &path, &r));
            }
            assert!(inclusion_proof(&all[..], n, n).ok().flatten().is_none());
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_forked_tree_fails() {
        let all = ids(36);
        let mut forked = all.clone();
        forked[5].0[31] ^= 1;
        for new in 1..=all.len() as u64 {
            let new_root = mth(&all[..new as usize]);
            for old in 1..=new {
                let old_root = mth(&all[..old as usize]);
                let proof = consistency_proof(&all[..], old, new)
                    .ok()
                    .flatten()
                    .expect("in range");
                assert!(
                    verify_consistency(old, new, &old_root, &new_root, &proof),
                    "old={old} new={new}"
                );
                // A history that differs at leaf 5 is not extended by this tree.
                if old > 5 {
                    let fork_root = mth(&forked[..old as usize]);
                    assert!(!verify_consistency(old, new, &fork_root, &new_root, &proof));
                }
            }
        }
        assert!(consistency_proof(&all[..], 0, 3).ok().flatten().is_none());
        assert!(consistency_proof(&all[..], 4, 3).ok().flatten().is_none());
    }
}
