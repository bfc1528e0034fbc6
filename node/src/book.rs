//! Where to read on: the book's chapter for each command, which the commands' `--help`
//! ends with (`mdbook serve docs/book`, or the Markdown under `docs/book/src`).
//! `node/tests/book.rs` checks that each chapter and heading exists.

/// `gridledger --help`.
pub const MANUAL: &str = "The manual: docs/book/src/introduction.md (mdbook serve docs/book)";
/// `gridledger run` and `keygen`.
pub const RUN: &str = "Read: docs/book/src/consortium.md (flags, config file, finality, TLS)";
/// `gridledger demo`.
pub const DEMO: &str = "Read: docs/book/src/getting-started.md";
/// `gridledger verify`, `export`, `repair`.
pub const OFFLINE: &str = "Read: docs/book/src/operating.md (exit codes, repair)";
/// `gridledger tls` and its subcommands.
pub const TLS: &str = "Read: docs/book/src/consortium.md#tls";
/// `gridledger sink`.
pub const HISTORIAN: &str = "Read: docs/book/src/historian.md (schema, queries, Grafana)";
