//! wan: issue 11's wide-area scenarios, each on its own fresh testbed, one table row each.
//!
//! `cargo run --release -p gridledger-testbed --bin wan` (all five, about half an hour), or
//! `--only steady --nodes 4,16` for a part. The nodes are `testbed-gridledger` processes
//! (the `gridledger` binary, built beside this one). As root, each node runs in a network
//! namespace of its own (the whole run is re-executed inside a hub namespace, see
//! `gridledger_testbed::netns`); `--loopback` keeps every node on a loopback port.

use std::time::Duration;

use clap::Parser;
use gridledger_testbed::scenario::{self, Disturbance, Report, Scenario};

#[derive(Parser)]
#[command(about = "gridledger on emulated wide-area links: five scenarios, one table")]
struct Args {
    /// Scenarios: steady, satellite, partition, churn, slow.
    #[arg(long, value_delimiter = ',', default_values_t = ["steady".to_owned(), "satellite".to_owned(), "partition".to_owned(), "churn".to_owned(), "slow".to_owned()])]
    only: Vec<String>,
    /// Node counts of the steady state.
    #[arg(long, value_delimiter = ',', default_values_t = [4usize, 16, 32, 64])]
    nodes: Vec<usize>,
    /// Nodes in the other scenarios.
    #[arg(long, default_value_t = 16)]
    sites: usize,
    /// Measured seconds per scenario (churn: at least 300).
    #[arg(long, default_value_t = 120)]
    secs: u64,
    /// Seconds per relay minute.
    #[arg(long, default_value_t = 60.0)]
    minute_secs: f64,
    /// The mining slot, seconds.
    #[arg(long, default_value_t = 0.5)]
    slot_secs: f64,
    /// Seconds between pulls.
    #[arg(long, default_value_t = 5.0)]
    sync_secs: f64,
    /// Relay minutes run before measuring (the nodes learn the turns from the chain).
    #[arg(long, default_value_t = 4.0)]
    warmup_minutes: f64,
    /// Block relay modes to run each scenario with: adaptive, push, announce.
    #[arg(long, value_delimiter = ',', default_values_t = ["adaptive".to_owned()])]
    block_relay: Vec<String>,
    /// Keep each scenario's data dirs and node logs under this directory.
    #[arg(long)]
    keep: Option<std::path::PathBuf>,
    /// Every node on a loopback port, even where network namespaces are possible.
    #[arg(long)]
    loopback: bool,
    /// Finality: `on` (the nodes' keys are the allow-list; members cosign checkpoints),
    /// `off` (no allow-list), or `on,off` for both, side by side.
    #[arg(long, value_delimiter = ',', default_values_t = ["on".to_owned()])]
    finality: Vec<String>,
    /// The nodes' `--finality-interval-secs` (their default if absent).
    #[arg(long)]
    finality_interval_secs: Option<f64>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if !args.loopback {
        // As root: run again inside a hub namespace of our own, each node in its own
        // namespace; every namespace is deleted when that run ends.
        if let Some(ended) = gridledger_testbed::netns::enter_hub(std::env::args_os().skip(1)) {
            return match ended {
                Ok(status) if status.success() => std::process::ExitCode::SUCCESS,
                Ok(status) => std::process::ExitCode::from(
                    u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
                ),
                Err(e) => {
                    eprintln!("wan: {e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
    }
    println!(
        "{}",
        if gridledger_testbed::netns::hub().is_some() {
            "nodes: each in its own network namespace (10.77.0.0/16), links through the emulator in the hub namespace"
        } else {
            "nodes: each on its own loopback port, links through the emulator"
        }
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wan: no runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(run(args))
}

async fn run(args: Args) -> std::process::ExitCode {
    let exe = scenario::node_exe();
    if !exe.exists() {
        eprintln!(
            "wan: {} is missing: build it with `cargo build --release -p gridledger-testbed`",
            exe.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    let ms = Duration::from_millis;
    let base = |name: &str, nodes: usize| {
        let mut s = Scenario::steady(name, nodes, ms(50), ms(10));
        s.minute_secs = args.minute_secs;
        s.slot_secs = args.slot_secs;
        s.sync_secs = args.sync_secs;
        s.poll_secs = (args.minute_secs / 4.0).clamp(0.5, 60.0);
        s.warmup = Duration::from_secs_f64(args.minute_secs * args.warmup_minutes);
        s.measure = Duration::from_secs(args.secs);
        s.drain = Duration::from_secs_f64(args.minute_secs * 2.0).max(Duration::from_secs(60));
        s.finality_interval_secs = args.finality_interval_secs;
        s
    };
    let mut plan = Vec::new();
    for name in &args.only {
        match name.as_str() {
            "steady" => {
                for &n in &args.nodes {
                    plan.push(base("(a) steady, 50±10 ms", n));
                }
            }
            "satellite" => {
                let mut s = base("(b) one site on a 600 ms satellite link", args.sites);
                s.disturbance = Disturbance::Satellite {
                    site: 0,
                    one_way: ms(300),
                };
                plan.push(s);
            }
            "partition" => {
                let mut s = base("(c) cut in two for 60 s, healed", args.sites);
                s.measure = s.measure.max(Duration::from_secs(100));
                s.disturbance = Disturbance::Partition {
                    after: Duration::from_secs(20),
                    lasting: Duration::from_secs(60),
                };
                plan.push(s);
            }
            "churn" => {
                let mut s = base("(d) churn: a quarter SIGKILLed, restarted", args.sites);
                s.measure = s.measure.max(Duration::from_secs(300));
                s.disturbance = Disturbance::Churn {
                    fraction: 0.25,
                    down: Duration::from_secs(10),
                };
                plan.push(s);
            }
            "slow" => {
                let mut s = base("(e) one site's line at 64 kbit/s", args.sites);
                s.disturbance = Disturbance::SlowLine {
                    site: 0,
                    bits_per_sec: 64_000,
                };
                plan.push(s);
            }
            other => {
                eprintln!("wan: unknown scenario {other}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    // Each scenario once per finality setting.
    let fin = &args.finality;
    let plan: Vec<Scenario> = plan
        .into_iter()
        .flat_map(|s| {
            fin.iter().map(move |f| {
                let mut s = s.clone();
                s.finality = f != "off";
                if fin.len() > 1 {
                    s.name = format!("{} [finality {f}]", s.name);
                }
                s
            })
        })
        .collect();
    // Each scenario once per relay mode.
    let modes = &args.block_relay;
    let plan: Vec<Scenario> = plan
        .into_iter()
        .flat_map(|s| {
            modes.iter().map(move |mode| {
                let mut s = s.clone();
                if modes.len() > 1 {
                    s.name = format!("{} [{mode}]", s.name);
                }
                s.block_relay = mode.clone();
                s
            })
        })
        .collect();
    println!("{}", Report::header());
    let mut failed = false;
    for s in plan {
        let dir = match &args.keep {
            Some(keep) => std::fs::create_dir_all(keep).and_then(|()| {
                tempfile::Builder::new()
                    .prefix("scenario-")
                    .disable_cleanup(true)
                    .tempdir_in(keep)
            }),
            None => tempfile::tempdir(),
        };
        let dir = match dir {
            Ok(d) => d,
            Err(e) => {
                eprintln!("wan: no temp dir: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        if args.keep.is_some() {
            eprintln!("wan: {} in {}", s.name, dir.path().display());
        }
        // Ctrl-C or SIGTERM drops the scenario: every node process is killed with it.
        let outcome = tokio::select! {
            r = scenario::run(&s, &exe, dir.path()) => r,
            () = gridledger::run::shutdown_signal() => {
                eprintln!("wan: stopped; the nodes are killed");
                return std::process::ExitCode::FAILURE;
            }
        };
        match outcome {
            Ok(r) => {
                failed |= r.lost > 0 || r.duplicated > 0 || !r.converged;
                println!("{}", r.row());
            }
            Err(e) => {
                failed = true;
                println!("| {} | {} | failed: {e} |", s.name, s.nodes);
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
