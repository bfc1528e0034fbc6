//! The Merkle tree over a block's records, exactly as RFC 6962 (Certificate Transparency)
//! defines it, so that an inclusion proof for one record is a few hashes and any CT-style
//! verifier can check it.
//!
//! - leaf hash: `SHA-256(0x00 || record bytes)`
//! - node hash: `SHA-256(0x01 || left || right)`
//! - a tree of n > 1 leaves splits at k, the largest power of two below n.

use sha2::{Digest, Sha256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// The hash of one leaf.
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

pub(crate) fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn root_of_hashes(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root_of_hashes(&leaves[..k]), &root_of_hashes(&leaves[k..]))
        }
    }
}

/// The Merkle tree hash of `records` (of no records: SHA-256 of the empty string).
#[must_use]
pub fn root<T: AsRef<[u8]>>(records: &[T]) -> Hash {
    let leaves: Vec<Hash> = records.iter().map(|r| leaf_hash(r.as_ref())).collect();
    root_of_hashes(&leaves)
}

/// The audit path of leaf `index` (RFC 6962 §2.1.1), leaf side first; `None` if out of range.
#[must_use]
pub fn proof<T: AsRef<[u8]>>(records: &[T], index: usize) -> Option<Vec<Hash>> {
    if index >= records.len() {
        return None;
    }
    let leaves: Vec<Hash> = records.iter().map(|r| leaf_hash(r.as_ref())).collect();
    let mut path = Vec::new();
    path_of(&leaves, index, &mut path);
    Some(path)
}

fn path_of(leaves: &[Hash], m: usize, path: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path_of(&leaves[..k], m, path);
        path.push(root_of_hashes(&leaves[k..]));
    } else {
        path_of(&leaves[k..], m - k, path);
        path.push(root_of_hashes(&leaves[..k]));
    }
}

/// Checks that `record` is leaf `index` of a tree of `size` leaves with root `root`
/// (RFC 9162 §2.1.3.2).
#[must_use]
pub fn verify(record: &[u8], index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf_hash(record);
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_proof_verifies_and_no_wrong_one_does() {
        for n in 1..=33usize {
            let records: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; i % 5 + 1]).collect();
            let root = root(&records);
            for i in 0..n {
                let path = proof(&records, i).expect("in range");
                assert!(path.len() <= 6);
                assert!(
                    verify(&records[i], i as u64, n as u64, &path, &root),
                    "n={n} i={i}"
                );
                // Wrong index, wrong record, wrong size: rejected.
                let other = (i + 1) % n;
                if other != i && records[other] != records[i] {
                    assert!(!verify(&records[other], i as u64, n as u64, &path, &root));
                }
                assert!(!verify(&records[i], n as u64, n as u64, &path, &root));
            }
            assert!(proof(&records, n).is_none());
        }
    }

    #[test]
    fn leaf_and_node_hashes_are_domain_separated() {
        // A two-leaf root is not the leaf hash of the two leaf hashes concatenated.
        let a = [1u8];
        let b = [2u8];
        let r = root(&[a, b]);
        let mut concat = leaf_hash(&a).to_vec();
        concat.extend_from_slice(&leaf_hash(&b));
        assert_ne!(r, leaf_hash(&concat));
        assert_eq!(r, node_hash(&leaf_hash(&a), &leaf_hash(&b)));
    }

    #[test]
    fn matches_rfc6962_empty_and_single() {
        // SHA-256 of the empty string.
        assert_eq!(
            hex::encode(root::<&[u8]>(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Leaf hash of the empty string: SHA-256(0x00), a value published with RFC 6962's
        // test data.
        assert_eq!(
            hex::encode(root(&[b""])),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}

/// A record's inclusion proof: where it sits in its block and the audit path to the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// Position of the record in the block body.
    pub index: u64,
    /// Number of records in the block.
    pub size: u64,
    /// RFC 6962 audit path, leaf side first.
    pub path: Vec<Hash>,
}

impl InclusionProof {
    /// The proof for record `index` of `records`.
    #[must_use]
    pub fn new<T: AsRef<[u8]>>(records: &[T], index: usize) -> Option<Self> {
        Some(InclusionProof {
            index: index as u64,
            size: records.len() as u64,
            path: proof(records, index)?,
        })
    }

    /// True if `record` is in the block with this `header`, at this proof's position. With
    /// a header known to be on the chain (its id at its height), this shows the record is on
    /// the chain, without the rest of the block.
    #[must_use]
    pub fn verify(&self, record: &[u8], header: &super::block::Header) -> bool {
        verify(
            record,
            self.index,
            self.size,
            &self.path,
            &header.merkle_root,
        )
    }
}
