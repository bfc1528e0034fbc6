//! What a run simulates: the network's size and shape, its links, and the faults a seed
//! turns loose.

use std::fmt;
use std::str::FromStr;

/// The faults a run may suffer. The seed decides when, where and how hard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Nodes crash and restart (a crash loses what the node had not committed).
    pub crash: bool,
    /// The network splits in two for a few minutes, sometimes one way only.
    pub partition: bool,
    /// Links lose messages (a few percent).
    pub loss: bool,
    /// Nodes' clocks are off by up to ±5 s.
    pub skew: bool,
    /// A relay stops for some minutes; another answers late.
    pub relay: bool,
    /// A member signs two votes at one height (equivocates).
    pub equivocate: bool,
    /// A member withholds the blocks it mines and releases them late.
    pub withhold: bool,
    /// A member rewrites history: a deep fork of the same records with more blocks.
    pub rewrite: bool,
    /// A member pushes valid blocks whose parents nobody has (early blocks).
    pub spam: bool,
    /// A peer answers pulls with nothing, and late.
    pub liar: bool,
}

impl Faults {
    /// Every fault.
    pub const ALL: Faults = Faults {
        crash: true,
        partition: true,
        loss: true,
        skew: true,
        relay: true,
        equivocate: true,
        withhold: true,
        rewrite: true,
        spam: true,
        liar: true,
    };

    const NAMES: [&'static str; 10] = [
        "crash",
        "partition",
        "loss",
        "skew",
        "relay",
        "equivocate",
        "withhold",
        "rewrite",
        "spam",
        "liar",
    ];

    fn flags(&mut self) -> [&mut bool; 10] {
        [
            &mut self.crash,
            &mut self.partition,
            &mut self.loss,
            &mut self.skew,
            &mut self.relay,
            &mut self.equivocate,
            &mut self.withhold,
            &mut self.rewrite,
            &mut self.spam,
            &mut self.liar,
        ]
    }

    /// A mix the seed picks: each fault on with probability one half.
    #[must_use]
    pub fn mixed(bits: u16) -> Faults {
        let mut f = Faults::default();
        for (i, flag) in f.flags().into_iter().enumerate() {
            *flag = bits & (1 << i) != 0;
        }
        f
    }

    /// True if any hostile member is in play.
    #[must_use]
    pub fn hostile(&self) -> bool {
        self.equivocate || self.withhold || self.rewrite || self.spam || self.liar
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut c = *self;
        let on: Vec<&str> = Faults::NAMES
            .iter()
            .zip(c.flags())
            .filter(|(_, b)| **b)
            .map(|(n, _)| *n)
            .collect();
        if on.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&on.join(","))
        }
    }
}

/// The `--faults` value: `none`, `all`, `mixed` (each seed its own mix) or a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultSpec {
    /// These faults, for every seed.
    Fixed(Faults),
    /// A mix each seed picks.
    Mixed,
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => return Ok(FaultSpec::Fixed(Faults::default())),
            "all" => return Ok(FaultSpec::Fixed(Faults::ALL)),
            "mixed" => return Ok(FaultSpec::Mixed),
            _ => {}
        }
        let mut f = Faults::default();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let i = Faults::NAMES
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| {
                    format!(
                        "unknown fault {name:?}: one of none, all, mixed, or a list of {}",
                        Faults::NAMES.join(", ")
                    )
                })?;
            *f.flags()[i] = true;
        }
        Ok(FaultSpec::Fixed(f))
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultSpec::Fixed(faults) => faults.fmt(f),
            FaultSpec::Mixed => f.write_str("mixed"),
        }
    }
}

/// The peers' graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// A random connected graph, every node of degree `d` (a ring plus random chords).
    Random(usize),
    /// Every node a peer of every other.
    Full,
    /// The wide-area testbed's graph for its scenario seed: a ring through a random order,
    /// then chords until every site has 3 peers, none more than 4 (`graph::random_graph`).
    Testbed(u64),
}

impl FromStr for Topology {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "full" {
            return Ok(Topology::Full);
        }
        if let Some(seed) = s.strip_prefix("testbed:") {
            return seed.parse().map(Topology::Testbed).map_err(|_| {
                format!("topology {s:?}: `testbed:S` with the testbed scenario's seed S")
            });
        }
        let d = s
            .strip_prefix("random:")
            .unwrap_or(s)
            .parse::<usize>()
            .map_err(|_| {
                format!("topology {s:?}: `full`, `random:D` with a degree D, or `testbed:S`")
            })?;
        if d < 2 {
            return Err(format!("topology {s:?}: a degree of at least 2"));
        }
        Ok(Topology::Random(d))
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Random(d) => write!(f, "random:{d}"),
            Topology::Full => f.write_str("full"),
            Topology::Testbed(seed) => write!(f, "testbed:{seed}"),
        }
    }
}

/// One run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Nodes.
    pub nodes: usize,
    /// Of those, the members: on the allow-list, they mine, read the relays and vote.
    pub members: usize,
    /// Simulated minutes of relay records (a settling time follows).
    pub minutes: u32,
    /// The seed.
    pub seed: u64,
    /// The peers' graph.
    pub topology: Topology,
    /// One-way delay of a link, on average (ms).
    pub link_ms: u64,
    /// Each message's delay is `link_ms` ± this (ms), uniformly.
    pub jitter_ms: u64,
    /// A node's time to check and store a block before it sends it on (ms); with shared
    /// `cores`, after its `block_cpu_us` on one.
    pub hop_ms: u64,
    /// Uplink of a slow site (kbit/s); one node in eight is one. `None`: no limit.
    pub slow_uplink_kbps: Option<u64>,
    /// Cores every node shares, as the testbed's processes share its machine (`cpu`);
    /// 0: each node has its own, and checking costs `hop_ms` alone.
    pub cores: usize,
    /// With shared cores: a block's check and store at a node holds one for this long (µs),
    /// before `hop_ms`.
    pub block_cpu_us: u64,
    /// With shared cores: each vote's signature check holds one for this long (µs).
    pub vote_cpu_us: u64,
    /// Relays, each read by every member every minute.
    pub relays: u16,
    /// The mining slot of the turns (ms): the node's default at a 60 s poll period is 2 s.
    pub slot_ms: u64,
    /// Records a block takes at most.
    pub max_records: usize,
    /// A node pulls from a random peer this often (ms).
    pub sync_ms: u64,
    /// How long a tip stands before a member prevotes it (ms).
    pub settle_ms: u64,
    /// The faults.
    pub faults: FaultSpec,
    /// Events of the trace printed when an invariant breaks.
    pub tail: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nodes: 16,
            members: 16,
            minutes: 60,
            seed: 1,
            topology: Topology::Random(4),
            link_ms: 50,
            jitter_ms: 10,
            hop_ms: 10,
            slow_uplink_kbps: None,
            cores: 0,
            block_cpu_us: 2_000,
            vote_cpu_us: 50,
            relays: 10,
            slot_ms: 2_000,
            max_records: 64,
            sync_ms: 10_000,
            settle_ms: gridledger_core::finality::DEFAULT_SETTLE_MS,
            faults: FaultSpec::Fixed(Faults::default()),
            tail: 40,
        }
    }
}

impl Config {
    /// The command that runs this configuration again.
    #[must_use]
    pub fn command(&self) -> String {
        let features = if cfg!(feature = "planted-bug") {
            " --features planted-bug"
        } else {
            ""
        };
        let mut c = format!(
            "cargo run --release -p sim{features} -- --nodes {} --members {} --minutes {} --seed {} --topology {} --link-ms {} --jitter-ms {} --hop-ms {} --relays {} --slot-ms {} --settle-ms {} --faults {}",
            self.nodes,
            self.members,
            self.minutes,
            self.seed,
            self.topology,
            self.link_ms,
            self.jitter_ms,
            self.hop_ms,
            self.relays,
            self.slot_ms,
            self.settle_ms,
            self.faults,
        );
        if let Some(k) = self.slow_uplink_kbps {
            c.push_str(&format!(" --slow-uplink-kbps {k}"));
        }
        if self.cores > 0 {
            c.push_str(&format!(
                " --cores {} --block-cpu-us {} --vote-cpu-us {}",
                self.cores, self.block_cpu_us, self.vote_cpu_us
            ));
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_lists_parse_and_print_back() {
        let spec: FaultSpec = "crash,rewrite".parse().expect("parses");
        assert_eq!(spec.to_string(), "crash,rewrite");
        assert_eq!("mixed".parse::<FaultSpec>(), Ok(FaultSpec::Mixed));
        assert!("crash,meteor".parse::<FaultSpec>().is_err());
        assert_eq!(
            "all".parse::<FaultSpec>().map(|s| s.to_string()),
            Ok(Faults::ALL.to_string())
        );
        assert_eq!("random:8".parse::<Topology>(), Ok(Topology::Random(8)));
        assert!("random:1".parse::<Topology>().is_err());
    }
}
