//! The log target of the lines a testbed times a record or a block by.

/// The log target of one line per record read, per block stored and per block made final,
/// each with the time in Unix ms (`RUST_LOG=info,gridledger::trace=debug`): what a testbed
/// needs to time a record or a block across many nodes (`gridledger-testbed` reads it).
pub use gridledger_core::TRACE;
