//! `gridledger`: a proof-of-work ledger of substation relay minute records.
//!
//! The data path, top down: [`poll`] (reading relays) → [`chain`] (what a block is, how it
//! is mined, checked and chosen) → [`mempool`] (records waiting for a block) → [`store`] (redb on disk) →
//! [`ledger`] (store, tree and rules as one consistent whole) → [`export`]. [`keys`] holds
//! the miner's key.
//!
//! At run time: [`run`] starts a node's tasks around one shared [`core`] (ledger, mempool,
//! witness, counters); [`peers`] pushes and pulls blocks; [`api`] serves HTTP and the
//! dashboard.
#![forbid(unsafe_code)]

pub mod api;
pub mod clock;
pub mod config;
pub use gridledger_chain as chain;
pub mod core;
pub mod demo;
pub mod export;
pub mod health;
pub mod keys;
pub mod ledger;
pub mod mempool;
pub mod metrics;
pub mod offline;
pub mod peers;
pub mod poll;
pub mod render;
pub mod repair;
pub mod run;
pub mod store;
pub mod wire;
