//! `sim`: runs a simulated gridledger network from a seed and prints what it found, the
//! trace's hash on its last line. A broken invariant prints the last events and the one
//! command that replays it, and exits with 1.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use sha2::{Digest, Sha256};

use sim::config::{Config, FaultSpec, Topology};

/// A deterministic simulator of a gridledger network: the nodes' real cores, simulated
/// time and links, faults and hostile members from a seed.
#[derive(Debug, Parser)]
#[command(name = "sim", version)]
struct Args {
    /// Nodes.
    #[arg(long, default_value_t = 16)]
    nodes: usize,
    /// Members among them (on the allow-list: they read the relays, mine and vote);
    /// the others follow. Default: every node, up to 64.
    #[arg(long)]
    members: Option<usize>,
    /// Simulated minutes of relay records (3 minutes of settling follow).
    #[arg(long, default_value_t = 60, conflicts_with = "hours")]
    minutes: u32,
    /// Simulated hours of relay records, instead of --minutes.
    #[arg(long)]
    hours: Option<u32>,
    /// The seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seeds to run, from --seed on (each its own run; the last line hashes them all).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Run each seed twice and check the two traces' hashes are equal.
    #[arg(long)]
    twice: bool,
    /// The peers' graph: `random:D` (degree D), `full`, or `testbed:S` (the wide-area
    /// testbed's graph for its scenario seed S: degrees 3 to 4).
    #[arg(long, default_value = "random:4")]
    topology: Topology,
    /// One-way link delay (ms), on average.
    #[arg(long, default_value_t = 50)]
    link_ms: u64,
    /// Each message's delay is the link's ± this (ms), uniformly.
    #[arg(long, default_value_t = 10)]
    jitter_ms: u64,
    /// A node's time to check and store a block before it sends it on (ms).
    #[arg(long, default_value_t = 10)]
    hop_ms: u64,
    /// One node in eight sits behind an uplink this slow (kbit/s).
    #[arg(long)]
    slow_uplink_kbps: Option<u64>,
    /// Cores every node shares, as the wide-area testbed's processes share its machine
    /// (0: each node its own).
    #[arg(long, default_value_t = 0)]
    cores: usize,
    /// With --cores: a block's check and store holds a core this long (µs), at every node.
    #[arg(long, default_value_t = 2_000)]
    block_cpu_us: u64,
    /// With --cores: a vote's signature check holds a core this long (µs).
    #[arg(long, default_value_t = 50)]
    vote_cpu_us: u64,
    /// Relays, each read by every member every minute.
    #[arg(long, default_value_t = 10)]
    relays: u16,
    /// The mining turns' slot (ms); the node's default at a 60 s poll period.
    #[arg(long, default_value_t = 2_000)]
    slot_ms: u64,
    /// How long a tip stands before a member prevotes it (ms).
    #[arg(long, default_value_t = gridledger_core::finality::DEFAULT_SETTLE_MS)]
    settle_ms: u64,
    /// Faults: none, all, mixed (each seed its own mix), or a list of crash, partition,
    /// loss, skew, relay, equivocate, withhold, rewrite, spam, liar.
    #[arg(long, default_value = "none")]
    faults: FaultSpec,
    /// Events of the trace shown when an invariant breaks.
    #[arg(long, default_value_t = 40)]
    tail: usize,
    /// Print one line per seed only.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let base = Config {
        nodes: a.nodes,
        members: a.members.unwrap_or(a.nodes.min(64)),
        minutes: a.hours.map_or(a.minutes, |h| h * 60),
        seed: a.seed,
        topology: a.topology,
        link_ms: a.link_ms,
        jitter_ms: a.jitter_ms,
        hop_ms: a.hop_ms,
        slow_uplink_kbps: a.slow_uplink_kbps,
        cores: a.cores,
        block_cpu_us: a.block_cpu_us,
        vote_cpu_us: a.vote_cpu_us,
        relays: a.relays,
        slot_ms: a.slot_ms,
        settle_ms: a.settle_ms,
        faults: a.faults,
        tail: a.tail,
        ..Config::default()
    };
    let started = Instant::now();
    let mut all = Sha256::new();
    for seed in a.seed..a.seed.saturating_add(a.seeds) {
        let cfg = Config {
            seed,
            ..base.clone()
        };
        let t = Instant::now();
        let out = sim::run(cfg.clone());
        let wall = t.elapsed();
        if let Some(f) = out.failure() {
            eprint!("{f}");
            println!("FAILED seed {seed}: {}", out.violation.unwrap_or_default());
            return ExitCode::FAILURE;
        }
        if a.twice {
            let again = sim::run(cfg);
            if again.hash != out.hash {
                println!(
                    "NOT DETERMINISTIC: seed {seed} gave trace {} then {}\nreplay: {}",
                    out.hash, again.hash, out.command
                );
                return ExitCode::FAILURE;
            }
        }
        all.update(out.hash.as_bytes());
        let f = &out.figures;
        if a.seeds == 1 && !a.quiet {
            println!(
                "{} nodes ({} members), {} simulated minutes, {} links {} ms, faults {}",
                base.nodes, base.members, base.minutes, base.topology, base.link_ms, out.faults
            );
            print!("{}", f.lines());
            println!(
                "wall time {:.1} s for {:.1} simulated hours ({:.0} events/s){}",
                wall.as_secs_f64(),
                f.sim_ms as f64 / 3_600_000.0,
                f.events as f64 / wall.as_secs_f64().max(1e-9),
                if a.twice {
                    "; run twice, same trace"
                } else {
                    ""
                }
            );
            println!("trace {}", out.hash);
            return ExitCode::SUCCESS;
        }
        println!(
            "seed {seed:>5} ok  faults {:<60} height {:>4} final {:>4} stale {:>3}/{:<4} {:>6.2} s  trace {}",
            out.faults.to_string(),
            f.height,
            f.final_height,
            f.stale,
            f.blocks,
            wall.as_secs_f64(),
            &out.hash[..16]
        );
    }
    println!(
        "{} seeds, every invariant held{}, {:.1} s",
        a.seeds,
        if a.twice {
            ", each run twice with the same trace"
        } else {
            ""
        },
        started.elapsed().as_secs_f64()
    );
    println!("trace {}", hex::encode(all.finalize()));
    ExitCode::SUCCESS
}
