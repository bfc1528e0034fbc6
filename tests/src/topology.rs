//! Random connected peer graphs and lines: the simulator's (`sim::graph`), so that the
//! simulator runs the very graph a testbed scenario runs on.

pub use sim::graph::{diameter, line, neighbours, random_graph, Edges};
