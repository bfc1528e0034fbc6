//! A deterministic simulator of a gridledger network (issue 32): the nodes' real cores
//! (`gridledger-core`) in one thread, with simulated time, links, relays, clocks, crashes
//! and hostile members, every choice drawn from one seed, so that a run replays bit for
//! bit and prints the hash of its trace.
//!
//! - [`config`]: what a run simulates; [`topology`]: who talks to whom; [`link`]: delay,
//!   loss, slow uplinks, partitions; [`queue`]: simulated time;
//! - [`world`]: the nodes and what they do with each event, the invariants checked after
//!   every event and at the end;
//! - [`trace`]: the hash of every event, and the last events; [`report`]: the figures;
//!   [`chart`]: the sweep's charts (the `sweep` binary).
#![forbid(unsafe_code)]

pub mod chart;
pub mod config;
pub mod cpu;
pub mod graph;
pub mod link;
pub mod queue;
pub mod report;
pub mod topology;
pub mod trace;
pub mod world;

use config::Config;
use report::Outcome;

/// Runs one configuration to its end.
#[must_use]
pub fn run(cfg: Config) -> Outcome {
    world::World::new(cfg).run()
}
