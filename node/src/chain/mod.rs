//! The chain: block format, proof of work, Merkle tree, validation and fork choice.

pub mod assemble;
pub mod block;
pub mod genesis;
pub mod merkle;
pub mod pow;
pub mod tree;
pub mod validate;
pub mod vectors;

pub use assemble::assemble;
pub use block::{Block, BlockId, Header, Height, Work};
pub use genesis::Network;
pub use tree::{BlockTree, Change, RecordKey};
pub use validate::{Checked, ValidationError};
