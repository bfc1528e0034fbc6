//! The gridledger node's decisions, without I/O:
//! - what waits for a block ([`mempool`]); what this node read itself, against which peers'
//!   records are checked, and the records on the chain that differ ([`witness`],
//!   [`dispute`]);
//! - whose turn it is to mine a minute ([`policy`]), and what to mine next and when
//!   ([`mining`]);
//! - what each read of a relay means and when to read again ([`poller`]), and what a
//!   relay's signature means for a record ([`relay_sig`]);
//! - what follows a block a peer pushed: to whom it goes on, whether it waits for its parent
//!   ([`orphans`]), when to pull ([`intake`]); which peers already hold which miner's
//!   blocks ([`fanout`]); which peer gets which finality votes ([`votes`]);
//! - how each peer behaves and whom a sync round pulls from ([`health`]), what to ask a peer
//!   for in a pull and what its answers mean ([`pull`]).
//!
//! [`memchain`] holds a chain in memory, as the node's ledger does in its store, for tests,
//! benches and a simulator.
//!
//! The floor between `gridledger-chain` (what a block is, how it is checked and chosen) and
//! the node's runtime (`node/`: sockets, tasks, the store, the API). Nothing here opens a
//! socket, spawns a task, touches a disk or reads a clock: time comes in as `now_ms`
//! arguments, so every decision can be driven by a test, or a simulator, event by event.
#![forbid(unsafe_code)]

/// The log target of one line per record read, per block stored and per block made final,
/// each with the time in Unix ms (`RUST_LOG=info,gridledger::trace=debug`): what a testbed
/// needs to time a record or a block across many nodes.
pub const TRACE: &str = "gridledger::trace";

pub mod dispute;
pub mod fanout;
pub mod finality;
pub mod health;
pub mod intake;
pub mod memchain;
pub mod mempool;
pub mod mining;
pub mod orphans;
pub mod policy;
pub mod poller;
pub mod pull;
pub mod relay_sig;
pub mod verdict;
pub mod votes;
pub mod witness;
