//! The chain: block format, proof of work, Merkle tree, validation and fork choice.

pub mod block;
pub mod genesis;
pub mod merkle;
pub mod pow;

pub use block::{Block, BlockId, Header, Height, Work};
pub use genesis::Network;
