//! The network's parameters and the genesis block they imply.

use sha2::{Digest, Sha256};

use super::block::{Block, BlockId, Header, SIGNATURE_LEN, VERSION};
use super::merkle;

/// What nodes of one network agree on without talking: the name, the difficulty and the
/// size limits. Two nodes configured alike derive the same genesis block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    /// Network name, e.g. `gridledger-demo`.
    pub name: String,
    /// Leading zero bits every block id needs (fixed: no retargeting).
    pub bits: u8,
    /// Largest block, in bytes.
    pub max_block_bytes: usize,
    /// Most records in one block.
    pub max_records: u32,
    /// Miner keys allowed to mine; `None` allows anyone.
    pub allow_list: Option<Vec<[u8; 32]>>,
    /// The relays that sign their records, and their keys ([`crate::registry`]): a record
    /// of a registered relay must carry its relay's valid signature. Empty: no relay is
    /// registered, and records are taken unsigned.
    pub registry: crate::registry::Registry,
}

impl Network {
    /// A network with the default limits (1 MiB blocks, 4096 records) and no allow-list.
    #[must_use]
    pub fn new(name: &str, bits: u8) -> Self {
        Network {
            name: name.to_owned(),
            bits,
            max_block_bytes: 1 << 20,
            max_records: 4096,
            allow_list: None,
            registry: crate::registry::Registry::default(),
        }
    }

    /// The genesis block: height 0, no records, no proof of work, no signature, and a
    /// previous id that commits to the network name and difficulty.
    #[must_use]
    pub fn genesis(&self) -> Block {
        let mut h = Sha256::new();
        h.update(b"gridledger genesis v1\0");
        h.update(self.name.as_bytes());
        h.update([0u8, self.bits]);
        Block {
            header: Header {
                version: VERSION,
                height: 0,
                prev: BlockId(h.finalize().into()),
                merkle_root: merkle::root::<&[u8]>(&[]),
                time_ms: 0,
                bits: self.bits,
                miner: [0; 32],
                nonce: 0,
            },
            signature: [0; SIGNATURE_LEN],
            records: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_depends_on_name_and_bits_only() {
        let a = Network::new("net", 10).genesis().id();
        assert_eq!(a, Network::new("net", 10).genesis().id());
        assert_ne!(a, Network::new("net2", 10).genesis().id());
        assert_ne!(a, Network::new("net", 11).genesis().id());
        let mut limits = Network::new("net", 10);
        limits.max_records = 1;
        assert_eq!(a, limits.genesis().id());
    }
}
