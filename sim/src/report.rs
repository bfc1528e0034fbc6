//! What a run found, printed as people read it.

use std::fmt::Write as _;

use crate::config::Faults;

/// Traffic by kind: (messages, bytes).
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    /// Block pushes.
    pub blocks: (u64, u64),
    /// Vote messages.
    pub votes: (u64, u64),
    /// Pull asks and answers.
    pub pulls: (u64, u64),
}

/// A run's figures.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Events handled.
    pub events: u64,
    /// The main chain's height at the end (a reference honest node's).
    pub height: u32,
    /// Its final height.
    pub final_height: u32,
    /// Blocks honest members mined (after the warm-up, as every figure below).
    pub blocks: usize,
    /// Of those, off the main chain at the end.
    pub stale: usize,
    /// Records honest members read.
    pub records_read: usize,
    /// Block mined → held by every honest node (ms), sorted.
    pub propagation: Vec<u64>,
    /// Block mined → final on every honest member (ms), sorted.
    pub finality: Vec<u64>,
    /// Record's minute closed → final on every honest member (ms), sorted.
    pub record_final: Vec<u64>,
    /// Messages sent.
    pub messages: u64,
    /// Messages lost.
    pub lost: u64,
    /// Traffic by kind.
    pub traffic: Traffic,
    /// Nodes.
    pub nodes: usize,
    /// The peers' graph's diameter, in hops (`None`: not connected).
    pub diameter: Option<usize>,
    /// Pulls honest nodes asked: of any peer, of liars.
    pub pulls: (u64, u64),
    /// Lies caught (a peer claimed more work than ours and gave nothing): by liars, by
    /// honest peers.
    pub lies: (u64, u64),
    /// A main-chain block's bytes, on average.
    pub block_bytes: u64,
    /// Simulated time (ms).
    pub sim_ms: u64,
}

/// The `p`-th percentile (0–100) of sorted `v`.
#[must_use]
pub fn percentile(v: &[u64], p: u64) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let i = ((v.len() as u64 - 1) * p).div_ceil(100);
    v.get(usize::try_from(i).unwrap_or(usize::MAX)).copied()
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x} ms"))
}

impl Figures {
    /// Stale blocks per 100 mined.
    #[must_use]
    pub fn stale_per_100(&self) -> f64 {
        if self.blocks == 0 {
            0.0
        } else {
            self.stale as f64 * 100.0 / self.blocks as f64
        }
    }

    /// Vote bytes a node sends per block of the main chain, over a block's own bytes (the
    /// finality issue's measure: at most 4).
    #[must_use]
    pub fn vote_to_block_bytes(&self) -> f64 {
        let per_node_block = self.nodes as f64 * f64::from(self.height.max(1));
        if self.block_bytes == 0 {
            0.0
        } else {
            self.traffic.votes.1 as f64 / per_node_block / self.block_bytes as f64
        }
    }

    /// The figures, a line each.
    #[must_use]
    pub fn lines(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "graph: diameter {} hops",
            self.diameter
                .map_or_else(|| "- (not connected)".to_owned(), |d| d.to_string())
        );
        let _ = writeln!(
            s,
            "chain: height {}, final {}; {} blocks mined by honest members, {} stale ({:.2} per 100); {} records read",
            self.height,
            self.final_height,
            self.blocks,
            self.stale,
            self.stale_per_100(),
            self.records_read
        );
        let _ = writeln!(
            s,
            "block mined -> held by every honest node: p50 {}, p99 {} ({} blocks)",
            ms(percentile(&self.propagation, 50)),
            ms(percentile(&self.propagation, 99)),
            self.propagation.len()
        );
        let _ = writeln!(
            s,
            "block mined -> final on every honest member: p50 {}, p99 {}",
            ms(percentile(&self.finality, 50)),
            ms(percentile(&self.finality, 99))
        );
        let _ = writeln!(
            s,
            "record readable -> final on every honest member: p50 {}, p99 {}",
            ms(percentile(&self.record_final, 50)),
            ms(percentile(&self.record_final, 99))
        );
        let _ = writeln!(
            s,
            "traffic: {} messages ({} lost); blocks {} B, votes {} B ({:.2} x a block's {} B per node per block), pulls {} B; {} events",
            self.messages,
            self.lost,
            self.traffic.blocks.1,
            self.traffic.votes.1,
            self.vote_to_block_bytes(),
            self.block_bytes,
            self.traffic.pulls.1,
            self.events
        );
        let _ = writeln!(
            s,
            "pulls: {} asked by honest nodes, {} of them of liars; lies caught: {} by liars, {} by honest peers",
            self.pulls.0, self.pulls.1, self.lies.0, self.lies.1
        );
        s
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Its seed.
    pub seed: u64,
    /// The faults in play.
    pub faults: Faults,
    /// The invariant that broke, if one did.
    pub violation: Option<String>,
    /// The trace's last events.
    pub tail: Vec<String>,
    /// The command that replays it.
    pub command: String,
    /// The trace's hash.
    pub hash: String,
    /// Its figures.
    pub figures: Figures,
}

impl Outcome {
    /// What to print when an invariant broke: what, the last events, the replay command.
    #[must_use]
    pub fn failure(&self) -> Option<String> {
        let v = self.violation.as_ref()?;
        let mut s = format!(
            "INVARIANT BROKEN (seed {}, faults {}): {v}\nlast events:\n",
            self.seed, self.faults
        );
        for line in &self.tail {
            let _ = writeln!(s, "  {line}");
        }
        let _ = writeln!(s, "replay: {}", self.command);
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank_above() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(51));
        assert_eq!(percentile(&v, 99), Some(100));
        assert_eq!(percentile(&v, 0), Some(1));
        assert_eq!(percentile(&[], 50), None);
    }
}
