//! gridledger's testbed: real `gridledger run` processes on emulated wide-area links.
//!
//! - [`link`]: the userspace TCP link emulator (delay, jitter, bandwidth, cut, black hole),
//!   because this kernel has no `netem`;
//! - [`topology`]: random connected peer graphs of a given degree, and lines;
//! - [`node`]: a node process (started, SIGKILLed, restarted) and its CPU and memory;
//! - [`trace`]: what the nodes logged (`gridledger::trace`) and the final chain;
//! - [`scenario`]: one scenario end to end, and its [`scenario::Report`];
//! - [`netns`]: each node in a network namespace of its own where the machine allows.
//!
//! Each peer link is a proxy of its own, so that every directed link can be shaped alone.
//! Where the machine allows (root, `ip netns`), each node runs in a network namespace of
//! its own with its own address, linked to the harness's hub namespace by a veth pair;
//! otherwise every node listens on its own loopback port. The `wan` binary runs issue 11's
//! scenarios; `tests/wan.rs` a small one in `cargo test`.

pub mod link;
pub mod netns;
pub mod node;
pub mod scenario;
pub mod topology;
pub mod trace;
