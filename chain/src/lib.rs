//! gridledger's chain: block format, proof of work, Merkle tree, validation rules, genesis,
//! the block tree with its fork choice, and finality (members' votes on tlog checkpoints of
//! the chain, as C2SP signed notes), as `docs/book/src/FORMAT.md` specifies them.
//!
//! Pure computation: no async runtime, no network, no database. The node (`node/`), the
//! benches and any light client or outside verifier build on it; the node adds the store,
//! the peers and the API around it.

pub mod assemble;
pub mod block;
pub mod finality;
pub mod genesis;
pub mod merkle;
pub mod note;
pub mod pow;
pub mod registry;
pub mod signature;
pub mod tlog;
pub mod tree;
pub mod validate;
pub mod vectors;

pub use assemble::assemble;
pub use block::{Block, BlockId, Header, Height, Work};
pub use genesis::Network;
pub use registry::Registry;
pub use tree::{BlockTree, Change, RecordKey, TieBreak};
pub use validate::{Checked, ValidationError};
