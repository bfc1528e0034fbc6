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
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod blockfile;
pub mod clock;
pub mod config;
pub use gridledger_chain as chain;
pub mod core;
pub mod demo;
pub mod dispute;
pub mod export;
pub mod fanout;
pub mod finality;
pub mod gossip;
pub mod health;
pub mod keys;
pub mod ledger;
pub mod listen;
pub mod mempool;
pub mod metrics;
pub mod offline;
pub mod orphans;
pub mod peers;
pub mod policy;
pub mod poll;
pub mod progress;
pub mod relay_sig;
pub mod render;
pub mod repair;
pub mod run;
pub mod store;
pub mod tlog;
pub mod tls;
pub mod trace;
pub mod wire;
