//! gridledger's testbed: real `gridledger run` processes on emulated wide-area links.
//!
//! - [`link`]: the userspace TCP link emulator (delay, jitter, bandwidth, cut, black hole),
//!   because this kernel has no `netem`;
//! - [`topology`]: random connected peer graphs of a given degree, and lines;
//! - [`node`]: a node process (started, SIGKILLed, restarted) and its CPU and memory;
//! - [`trace`]: what the nodes logged (`gridledger::trace`) and the final chain;
//! - [`scenario`]: one scenario end to end, and its [`scenario::Report`].
//!
//! Every address is loopback: each node listens on its own port, and each peer link is a
//! proxy on its own port, so that every directed link can be shaped alone. The `wan`
//! binary runs issue 11's scenarios; `tests/wan.rs` a small one in `cargo test`.

pub mod link;
pub mod node;
pub mod scenario;
pub mod topology;
pub mod trace;
