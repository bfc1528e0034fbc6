//! `gridledger`: a proof-of-work ledger of substation relay minute records.
//!
//! The data path, top down: [`chain`] (what a block is, how it is mined, checked and
//! chosen).
#![forbid(unsafe_code)]

pub mod chain;
