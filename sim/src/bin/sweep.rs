//! `sweep`: the simulator across network sizes and link delays, printed as tables and drawn
//! as charts (`bench/results/sim-sweep.md` and its SVGs): stale blocks per 100, block
//! propagation p99, block → final p99 and record → final p99.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

use sim::chart::{svg, Panel};
use sim::config::{Config, FaultSpec, Faults, Topology};
use sim::report::{percentile, Figures};

/// The simulator across sizes and link delays.
#[derive(Debug, Parser)]
#[command(name = "sweep")]
struct Args {
    /// Network sizes (nodes), at `--link-ms`.
    #[arg(long, value_delimiter = ',', default_value = "16,64,256,1000,4000")]
    sizes: Vec<usize>,
    /// Link delays (ms), at `--nodes`.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100,200,300")]
    delays: Vec<u64>,
    /// The network size of the delay sweep.
    #[arg(long, default_value_t = 64)]
    nodes: usize,
    /// The link delay of the size sweep (ms).
    #[arg(long, default_value_t = 50)]
    link_ms: u64,
    /// Members, at most (the rest follow).
    #[arg(long, default_value_t = 64)]
    members: usize,
    /// Peers per node.
    #[arg(long, default_value_t = 8)]
    degree: usize,
    /// Simulated minutes per run (10 of warm-up are left out of the figures).
    #[arg(long, default_value_t = 40)]
    minutes: u32,
    /// The seed of every run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the tables and charts go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |x| x.to_string())
}

fn row(label: &str, f: &Figures, members: usize, wall: f64) -> String {
    format!(
        "| {label} | {members} | {:.2} ({}/{}) | {} / {} | {} / {} | {} / {} | {:.1} | {:.0} |",
        f.stale_per_100(),
        f.stale,
        f.blocks,
        ms(percentile(&f.propagation, 50)),
        ms(percentile(&f.propagation, 99)),
        ms(percentile(&f.finality, 50)),
        ms(percentile(&f.finality, 99)),
        ms(percentile(&f.record_final, 50)),
        ms(percentile(&f.record_final, 99)),
        f.vote_to_block_bytes(),
        wall
    )
}

const HEAD: &str = "| {x} | members | stale /100 (stale/blocks) | propagation p50 / p99 ms | block → final p50 / p99 ms | record → final p50 / p99 ms | votes / block bytes per node | wall s |\n|---|---|---|---|---|---|---|---|";

fn panels(runs: &[Figures]) -> Vec<Panel> {
    let p99 = |v: &Vec<u64>| percentile(v, 99).map(|x| x as f64);
    vec![
        Panel {
            title: "stale blocks per 100".into(),
            values: runs.iter().map(|f| Some(f.stale_per_100())).collect(),
        },
        Panel {
            title: "propagation p99 (ms)".into(),
            values: runs.iter().map(|f| p99(&f.propagation)).collect(),
        },
        Panel {
            title: "block → final p99 (ms)".into(),
            values: runs.iter().map(|f| p99(&f.finality)).collect(),
        },
    ]
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    let base = |nodes: usize, link_ms: u64| Config {
        nodes,
        members: a.members.min(nodes),
        minutes: a.minutes,
        seed: a.seed,
        topology: Topology::Random(a.degree),
        link_ms,
        jitter_ms: link_ms / 5,
        faults: FaultSpec::Fixed(Faults::default()),
        ..Config::default()
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# The simulator's sweep\n\n`cargo run --release -p sim --bin sweep` (seed {}, {} simulated minutes a run, the first 10 left out; random graph of degree {}; links ± a fifth of their delay; 10 relays; members: at most {}, the rest follow). Generated: do not edit.\n",
        a.seed, a.minutes, a.degree, a.members
    );
    let mut failed = false;
    let mut sweep =
        |label: &str, x_name: &str, xs: Vec<(f64, Config)>, md: &mut String| -> Vec<Figures> {
            let _ = writeln!(md, "## {label}\n\n{}", HEAD.replace("{x}", x_name));
            let mut runs = Vec::new();
            for (x, cfg) in xs {
                let members = cfg.members;
                let t = Instant::now();
                let out = sim::run(cfg);
                let wall = t.elapsed().as_secs_f64();
                if let Some(f) = out.failure() {
                    eprint!("{f}");
                    failed = true;
                }
                let line = row(&format!("{x}"), &out.figures, members, wall);
                println!("{label}: {line}");
                let _ = writeln!(md, "{line}");
                runs.push(out.figures);
            }
            md.push('\n');
            runs
        };
    let by_size = sweep(
        &format!("Against the network's size ({} ms links)", a.link_ms),
        "nodes",
        a.sizes
            .iter()
            .map(|n| (*n as f64, base(*n, a.link_ms)))
            .collect(),
        &mut md,
    );
    let by_delay = sweep(
        &format!("Against the link delay ({} nodes)", a.nodes),
        "link ms",
        a.delays
            .iter()
            .map(|d| (*d as f64, base(a.nodes, *d)))
            .collect(),
        &mut md,
    );
    let sizes: Vec<f64> = a.sizes.iter().map(|n| *n as f64).collect();
    let delays: Vec<f64> = a.delays.iter().map(|d| *d as f64).collect();
    let charts = [
        (
            "sim-sweep-nodes.svg",
            svg(
                &format!("Against the network's size ({} ms links)", a.link_ms),
                "nodes",
                &sizes,
                true,
                &panels(&by_size),
            ),
        ),
        (
            "sim-sweep-delay.svg",
            svg(
                &format!("Against the link delay ({} nodes)", a.nodes),
                "link delay (ms)",
                &delays,
                false,
                &panels(&by_delay),
            ),
        ),
    ];
    let _ = writeln!(
        md,
        "![against the size](sim-sweep-nodes.svg)\n\n![against the delay](sim-sweep-delay.svg)"
    );
    let write = |name: &str, text: &str| {
        let path = a.out.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("cannot write {}: {e}", path.display());
            return false;
        }
        println!("wrote {}", path.display());
        true
    };
    let mut ok = write("sim-sweep.md", &md);
    for (name, text) in &charts {
        ok &= write(name, text);
    }
    if failed || !ok {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
