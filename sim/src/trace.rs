//! The trace of a run: every event folded into one SHA-256 (two runs of one seed must
//! print the same hash), and the latest events kept to show where an invariant broke.

use std::collections::VecDeque;

use sha2::{Digest, Sha256};

/// The trace.
pub struct Trace {
    hash: Sha256,
    tail: VecDeque<(u64, &'static str, usize, Vec<u8>)>,
    keep: usize,
    events: u64,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Trace({} events)", self.events)
    }
}

impl Trace {
    /// A trace that keeps the latest `keep` events' lines.
    #[must_use]
    pub fn new(keep: usize) -> Self {
        Trace {
            hash: Sha256::new(),
            tail: VecDeque::with_capacity(keep),
            keep,
            events: 0,
        }
    }

    /// An event at `at`: its kind, its node and what it carried, as bytes.
    pub fn event(&mut self, at: u64, kind: &'static str, node: usize, detail: &[u8]) {
        self.events += 1;
        self.hash.update(at.to_be_bytes());
        self.hash.update(kind.as_bytes());
        self.hash.update((node as u64).to_be_bytes());
        self.hash.update((detail.len() as u32).to_be_bytes());
        self.hash.update(detail);
        if self.keep > 0 {
            if self.tail.len() == self.keep {
                self.tail.pop_front();
            }
            self.tail
                .push_back((at, kind, node, detail[..detail.len().min(8)].to_vec()));
        }
    }

    /// Events so far.
    #[must_use]
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The latest events, oldest first.
    #[must_use]
    pub fn tail(&self) -> Vec<String> {
        self.tail
            .iter()
            .map(|(at, kind, node, d)| {
                format!("{at:>14} ms  {kind:<9} node {node:<5} {}", hex::encode(d))
            })
            .collect()
    }

    /// The hash of every event so far.
    #[must_use]
    pub fn hash(&self) -> String {
        hex::encode(self.hash.clone().finalize())
    }
}
