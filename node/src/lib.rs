//! `gridledger`: a proof-of-work ledger of substation relay minute records.
//!
//! The data path, top down: [`poll`] (reading relays) → [`chain`] (the `gridledger-chain`
//! crate: what a block is, how it is mined, checked and chosen) → [`mempool`] (records
//! waiting for a block) → [`store`] (redb on disk) → [`ledger`] (store, tree and rules as one
//! consistent whole) → [`render`] (records as JSON and CSV) and [`export`]. [`keys`] holds
//! the miner's key.
//!
//! At run time: [`config`] turns flags and files into a node's settings; [`run`] starts a
//! node's tasks around one shared [`core`] (ledger, mempool, witness and disputes,
//! counters); [`peers`] pushes and pulls blocks, speaking [`wire`], and keeps each peer's
//! [`health`]; [`api`] serves HTTP and the dashboard; [`metrics`] renders `/metrics`.
//! [`demo`] is the testbed; [`offline`] and [`repair`] are the tools that work on a data dir
//! without a node. [`clock`] is the one wall clock.
//!
//! The decisions that need no I/O ([`mempool`], [`dispute`], [`policy`], [`orphans`],
//! [`health`], [`fanout`], [`relay_sig`]) live in the `gridledger-core` crate, one floor
//! below this one, and are re-exported here at the paths they had; so do a pull's
//! (`gridledger_core::pull`: what to ask a peer for, what its answers mean), which
//! [`peers`] carries out.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod backup;
pub mod blockfile;
pub mod book;
pub mod clock;
pub mod config;
pub use gridledger_chain as chain;
// The decisions without I/O, in their own crate (issue 31); kept at the paths they had.
pub use gridledger_core::{dispute, fanout, health, mempool, orphans, policy, relay_sig};
pub mod core;
pub mod demo;
pub mod exit;
pub mod export;
pub mod finality;
pub mod gossip;
pub mod keys;
pub mod ledger;
pub mod listen;
pub mod metrics;
pub mod offline;
pub mod peers;
pub mod poll;
pub mod print;
pub mod progress;
pub mod render;
pub mod repair;
pub mod run;
pub mod sink;
pub mod store;
pub mod tlog;
pub mod tls;
pub mod trace;
pub mod wire;
