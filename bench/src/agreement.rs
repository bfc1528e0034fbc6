//! agreement: how long from a record being readable to every node holding it on one tip,
//! and how many blocks go stale, as the number of nodes grows (issue 11's goal: p99 < 1 s
//! at 32 nodes on loopback, stale blocks < 2 per 100 mined).
//!
//! One relay-sim with compressed minutes and N nodes in this process, on loopback, each a
//! peer of every other (or of `--degree` random others, a connected graph), all polling the
//! relay. A sampler looks at every node every 10 ms: a record is *readable* when the first
//! node holds it (mempool or chain), and *agreed* when every node's tip is the same block
//! and that chain holds it. After `--warmup` relay minutes (the nodes learn from the chain
//! who mines the relay: the mining policy's turns), `--minutes` minutes are measured. Each
//! size runs with the policy (`--slot-ms`) and, with `--compare`, with a slot of 0 (every
//! node mines every record at once, the race the policy replaces).
//!
//! `cargo run --release -p gridledger-bench --bin agreement -- --nodes 4,16,32 --compare`

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use ed25519_dalek::SigningKey;
use gridledger::chain::{Network, RecordKey};
use gridledger::poll::PollConfig;
use gridledger::run::{start, NodeConfig, RunningNode};

#[derive(Parser)]
#[command(about = "Record readable → every node on one tip holding it; stale blocks")]
struct Args {
    /// Node counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [4u16, 16, 32])]
    nodes: Vec<u16>,
    /// Relay minutes measured per run.
    #[arg(long, default_value_t = 30)]
    minutes: u32,
    /// Relay minutes before measuring (the nodes learn the turns from the chain).
    #[arg(long, default_value_t = 10)]
    warmup: u32,
    /// Length of a relay minute, seconds.
    #[arg(long, default_value_t = 2.0)]
    minute_secs: f64,
    /// The mining policy's slot, ms.
    #[arg(long, default_value_t = 250)]
    slot_ms: u64,
    /// Also run each size with a slot of 0 (everyone mines at once).
    #[arg(long)]
    compare: bool,
    /// Peers per node (a random connected graph); 0: every node a peer of every other.
    #[arg(long, default_value_t = 0)]
    degree: usize,
    /// Difficulty of the network, bits.
    #[arg(long, default_value_t = 12)]
    bits: u8,
}

struct Outcome {
    agree_ms: Vec<f64>,
    unagreed: usize,
    mined: u64,
    height_gain: u64,
    reorgs: u64,
}

fn pct(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() as f64 - 1.0) * q).round() as usize]
}

/// Peers of each node: everyone, or a ring (connected) plus random chords up to `degree`.
fn graph(n: usize, degree: usize, seed: &mut u64) -> Vec<Vec<usize>> {
    let mut rand = move |m: usize| {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % m as u64) as usize
    };
    let mut peers: Vec<HashSet<usize>> = vec![HashSet::new(); n];
    if degree == 0 || degree + 1 >= n {
        for (i, p) in peers.iter_mut().enumerate() {
            p.extend((0..n).filter(|j| *j != i));
        }
    } else {
        for i in 0..n {
            let j = (i + 1) % n;
            peers[i].insert(j);
            peers[j].insert(i);
        }
        for _ in 0..n * 8 {
            let (a, b) = (rand(n), rand(n));
            if a != b && peers[a].len() < degree && peers[b].len() < degree {
                peers[a].insert(b);
                peers[b].insert(a);
            }
        }
    }
    peers.into_iter().map(|p| p.into_iter().collect()).collect()
}

async fn run(args: &Args, n: u16, slot: Duration) -> Result<Outcome, String> {
    let sim = relay_sim::Simulator::bind(relay_sim::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        relay_id: 1,
        minute_secs: args.minute_secs,
        ..relay_sim::Config::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let relay = sim.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sim.run(async move {
        let _ = stop_rx.await;
    }));
    let dirs: Vec<tempfile::TempDir> = (0..n)
        .map(|_| tempfile::tempdir().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let period = Duration::from_secs_f64(args.minute_secs / 4.0);
    let mut nodes: Vec<RunningNode> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let config = NodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.path().to_owned(),
            network: Network::new("agreement", args.bits),
            relays: vec![format!("{relay}/1").parse().map_err(|e| format!("{e}"))?],
            peers: Vec::new(),
            poll: PollConfig {
                period,
                offset: Duration::from_millis(10),
                io_timeout: Duration::from_millis(500),
            },
            sync_every: Duration::from_secs(1),
            max_records_per_block: 64,
            mining_slot: slot,
            block_relay: Default::default(),
            tls: Default::default(),
            cors_origins: Vec::new(),
            finality: Default::default(),
            admin_token: None,
        };
        let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
        nodes.push(start(config, key).await.map_err(|e| e.to_string())?);
    }
    let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ u64::from(n);
    let peers = graph(nodes.len(), args.degree, &mut seed);
    for (i, node) in nodes.iter().enumerate() {
        let urls: Vec<String> = peers[i]
            .iter()
            .map(|&j| format!("http://{}", nodes[j].addr))
            .collect();
        if let Ok(mut core) = node.shared.lock() {
            core.peers = urls;
        }
    }

    let minute = Duration::from_secs_f64(args.minute_secs);
    tokio::time::sleep(minute * args.warmup).await;
    let base = snapshot_counts(&nodes);
    // key -> (readable at, agreed at)
    let mut seen: BTreeMap<RecordKey, (Instant, Option<Instant>)> = BTreeMap::new();
    let started = Instant::now();
    let measure = minute * args.minutes;
    let mut first_round = true;
    let mut excluded: HashSet<RecordKey> = HashSet::new();
    while started.elapsed() < measure + Duration::from_secs(5) {
        let now = Instant::now();
        let mut tips = HashSet::new();
        let mut held_by_all: Option<HashSet<RecordKey>> = None;
        for node in &nodes {
            let Ok(core) = node.shared.lock() else {
                continue;
            };
            let tree = core.ledger.tree();
            tips.insert(tree.tip());
            // The records of this node's last blocks and its mempool.
            let mut mine: HashSet<RecordKey> = HashSet::new();
            let h = tree.height();
            for at in h.saturating_sub(20)..=h {
                if let Some(id) = tree.main_at(at) {
                    mine.extend(tree.keys_of(&id).iter().copied());
                }
            }
            for (r, _) in core.mempool.peek_timed(1000) {
                let k = RecordKey::of(&r);
                if started.elapsed() < measure {
                    seen.entry(k).or_insert((now, None));
                }
            }
            for k in &mine {
                if started.elapsed() < measure {
                    seen.entry(*k).or_insert((now, None));
                }
            }
            held_by_all = Some(match held_by_all {
                None => mine,
                Some(all) => all.intersection(&mine).copied().collect(),
            });
        }
        if tips.len() == 1 {
            for k in held_by_all.unwrap_or_default() {
                if let Some(e) = seen.get_mut(&k) {
                    e.1.get_or_insert(now);
                }
            }
        }
        if first_round {
            // Records already there when measuring began: their readable time is unknown.
            excluded.extend(seen.keys().copied());
            first_round = false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let end = snapshot_counts(&nodes);
    for node in nodes {
        node.stop().await;
    }
    let _ = stop_tx.send(());
    let measured = || {
        seen.iter()
            .filter(|(k, _)| !excluded.contains(k))
            .map(|(_, v)| v)
    };
    let agree_ms: Vec<f64> = measured()
        .filter_map(|(r, a)| a.map(|a| (a - *r).as_secs_f64() * 1000.0))
        .collect();
    let unagreed = measured().filter(|(_, a)| a.is_none()).count();
    Ok(Outcome {
        agree_ms,
        unagreed,
        mined: end.0 - base.0,
        height_gain: end.1.saturating_sub(base.1),
        reorgs: end.2 - base.2,
    })
}

/// Blocks mined (all nodes), the highest main chain, reorgs (all nodes).
fn snapshot_counts(nodes: &[RunningNode]) -> (u64, u64, u64) {
    let (mut mined, mut height, mut reorgs) = (0, 0, 0);
    for node in nodes {
        if let Ok(core) = node.shared.lock() {
            mined += core.counters.mined;
            reorgs += core.counters.reorgs;
            height = height.max(u64::from(core.ledger.tree().height()));
        }
    }
    (mined, height, reorgs)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let Some(rt) = gridledger_bench::runtime("agreement") else {
        return std::process::ExitCode::FAILURE;
    };
    println!(
        "agreement: relay minute {} s, {} warm-up + {} measured minutes, {} bits, {}",
        args.minute_secs,
        args.warmup,
        args.minutes,
        args.bits,
        if args.degree == 0 {
            "full mesh".to_owned()
        } else {
            format!("degree {}", args.degree)
        }
    );
    println!(
        "{:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>7} {:>12} {:>7}",
        "nodes",
        "slot ms",
        "records",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "mined",
        "height",
        "stale/100",
        "reorgs"
    );
    let mut failed = false;
    for &n in &args.nodes {
        let mut slots = vec![Duration::from_millis(args.slot_ms)];
        if args.compare {
            slots.push(Duration::ZERO);
        }
        for slot in slots {
            match rt.block_on(run(&args, n, slot)) {
                Ok(o) => {
                    let stale = o.mined.saturating_sub(o.height_gain);
                    println!(
                        "{n:>5} {:>8} {:>8} {:>8.0} {:>8.0} {:>8.0} {:>9.0} {:>7} {:>7} {:>12.1} {:>7}{}",
                        slot.as_millis(),
                        o.agree_ms.len(),
                        pct(&o.agree_ms, 0.5),
                        pct(&o.agree_ms, 0.9),
                        pct(&o.agree_ms, 0.99),
                        pct(&o.agree_ms, 1.0),
                        o.mined,
                        o.height_gain,
                        100.0 * stale as f64 / o.mined.max(1) as f64,
                        o.reorgs,
                        if o.unagreed > 0 {
                            format!("  ({} records never agreed)", o.unagreed)
                        } else {
                            String::new()
                        }
                    );
                }
                Err(e) => {
                    eprintln!("agreement: {n} nodes: {e}");
                    failed = true;
                }
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
