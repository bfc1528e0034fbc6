//! The links between peers: delay, jitter, loss, slow uplinks and partitions. Like TCP, a
//! link never reorders: a message never overtakes one sent before it on the same link.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::topology::Peers;

/// A split of the network for a while: messages from one side to the other are lost
/// (both ways, or only from side A to side B).
#[derive(Clone, Debug)]
pub struct Partition {
    /// From (ms).
    pub from_ms: u64,
    /// Until (ms).
    pub until_ms: u64,
    /// Each node's side: true for side A.
    pub side_a: Vec<bool>,
    /// Only A → B is cut.
    pub one_way: bool,
}

impl Partition {
    fn cuts(&self, now: u64, a: usize, b: usize) -> bool {
        now >= self.from_ms
            && now < self.until_ms
            && self.side_a[a] != self.side_a[b]
            && (!self.one_way || self.side_a[a])
    }
}

/// Every link.
#[derive(Debug)]
pub struct Links {
    peers: Peers,
    /// One-way delay of each node's link to each of its peers (ms), on average.
    delay: Vec<Vec<u64>>,
    /// When the last message on each link arrives.
    last: Vec<Vec<u64>>,
    /// When each node's uplink is free again.
    uplink_free: Vec<u64>,
    /// Each node's uplink (bytes per ms), if limited.
    uplink: Vec<Option<u64>>,
    jitter_ms: u64,
    /// Chance of losing a message, in parts per million.
    loss_ppm: u32,
    partitions: Vec<Partition>,
    /// Messages and bytes sent, and lost.
    pub sent: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Messages lost (loss or partition).
    pub lost: u64,
}

impl Links {
    /// Links over `peers`, each `link_ms` one way, every message ± `jitter_ms` (uniform), as
    /// the wide-area testbed's emulator delays them.
    #[must_use]
    pub fn new(peers: Peers, link_ms: u64, jitter_ms: u64) -> Self {
        let delay = peers.iter().map(|p| vec![link_ms; p.len()]).collect();
        let last = peers.iter().map(|p| vec![0; p.len()]).collect();
        let n = peers.len();
        Links {
            peers,
            delay,
            last,
            uplink_free: vec![0; n],
            uplink: vec![None; n],
            jitter_ms,
            loss_ppm: 0,
            partitions: Vec::new(),
            sent: 0,
            bytes: 0,
            lost: 0,
        }
    }

    /// The peers.
    #[must_use]
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Limits `node`'s uplink to `kbps`.
    pub fn slow_uplink(&mut self, node: usize, kbps: u64) {
        self.uplink[node] = Some((kbps / 8).max(1));
    }

    /// Loses each message with chance `ppm` per million.
    pub fn set_loss(&mut self, ppm: u32) {
        self.loss_ppm = ppm;
    }

    /// Adds a partition.
    pub fn partition(&mut self, p: Partition) {
        self.partitions.push(p);
    }

    /// When the last partition heals (0: none).
    #[must_use]
    pub fn healed_ms(&self) -> u64 {
        self.partitions
            .iter()
            .map(|p| p.until_ms)
            .max()
            .unwrap_or(0)
    }

    /// A message of `bytes` from `a` to its `i`-th peer at `now`: when it arrives, or `None`
    /// if it is lost.
    pub fn send(
        &mut self,
        now: u64,
        a: usize,
        i: usize,
        bytes: usize,
        rng: &mut ChaCha8Rng,
    ) -> Option<u64> {
        let b = self.peers[a][i];
        self.sent += 1;
        self.bytes += bytes as u64;
        let lost = self.partitions.iter().any(|p| p.cuts(now, a, b))
            || (self.loss_ppm > 0 && rng.random_range(0..1_000_000) < self.loss_ppm);
        if lost {
            self.lost += 1;
            return None;
        }
        let mut leaves = now;
        if let Some(rate) = self.uplink[a] {
            let free = self.uplink_free[a].max(now) + (bytes as u64).div_ceil(rate);
            self.uplink_free[a] = free;
            leaves = free;
        }
        let delay = if self.jitter_ms > 0 {
            let d = self.delay[a][i];
            rng.random_range(d.saturating_sub(self.jitter_ms)..=d + self.jitter_ms)
        } else {
            self.delay[a][i]
        };
        let at = (leaves + delay.max(1)).max(self.last[a][i]);
        self.last[a][i] = at;
        Some(at)
    }

    /// The index of `b` among `a`'s peers.
    #[must_use]
    pub fn index(&self, a: usize, b: usize) -> Option<usize> {
        self.peers[a].binary_search(&b).ok()
    }
}
