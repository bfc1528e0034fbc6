//! `relay-sim`: parses flags and runs the simulator; all logic is in the library.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use relay_core::signal::Profile;
use relay_sim::{ClientLimits, Config, Simulator};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

/// A simulated substation protection relay on Modbus TCP.
///
/// Serves identity, live measurements (float32) and the last closed minute record on input
/// registers (FC04) and, read-only, holding registers (FC03). The register map, with
/// modpoll and mbpoll command lines, is in docs/book/src/registers.md. Every flag can also be set
/// by the environment variable shown. Logs go to stderr; set RUST_LOG (e.g. debug) for more.
#[derive(Debug, Parser)]
#[command(
    name = "relay-sim",
    version,
    about,
    long_about,
    after_help = "Read: docs/book/src/relay-sim.md (mdbook serve docs/book)"
)]
struct Args {
    /// Address to serve Modbus TCP on.
    #[arg(long, env = "RELAY_SIM_LISTEN", default_value = "127.0.0.1:5010")]
    listen: SocketAddr,

    /// Modbus unit id of the (first) relay.
    #[arg(long, env = "RELAY_SIM_UNIT_ID", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=i64::from(relay_core::MAX_UNIT_ID)))]
    unit_id: u8,

    /// Number of relays, behind consecutive unit ids starting at --unit-id.
    #[arg(long, env = "RELAY_SIM_RELAYS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=i64::from(relay_core::MAX_UNIT_ID)))]
    relays: u8,

    /// Network-wide id of the (first) relay; the others follow.
    #[arg(long, env = "RELAY_SIM_RELAY_ID", default_value_t = 1)]
    relay_id: u32,

    /// Relay name (at most 32 bytes); {unit} is replaced by the unit id.
    #[arg(long, env = "RELAY_SIM_RELAY_NAME", default_value = "Relay {unit}")]
    relay_name: String,

    /// Substation name (at most 64 bytes).
    #[arg(
        long,
        env = "RELAY_SIM_SUBSTATION",
        default_value = "Bogotá Electrical Substation - U.D."
    )]
    substation: String,

    /// Signal profile: `paper` is uniform in the study's ranges, `realistic` is physically
    /// consistent along a daily load curve.
    #[arg(long, env = "RELAY_SIM_PROFILE", value_enum, default_value_t = ProfileArg::Realistic)]
    profile: ProfileArg,

    /// Seed of the signal model: the same seed gives the same records.
    #[arg(long, env = "RELAY_SIM_SEED", default_value_t = 1)]
    seed: u64,

    /// Relay seconds between samples: 10, 12, 15, 20, 30 or 60.
    #[arg(long, env = "RELAY_SIM_SAMPLE_SECS", default_value_t = 10)]
    sample_secs: u16,

    /// Wall seconds per relay minute; below 60 compresses time (2 = a record every 2 s).
    #[arg(long, env = "RELAY_SIM_MINUTE_SECS", default_value_t = 60.0)]
    minute_secs: f64,

    /// Relay clock at start, in Unix seconds (default: the system clock; with compressed
    /// time, far enough before it to run compressed for a day without passing it). The
    /// clock never runs ahead of the system clock unless --clock-may-run-ahead.
    #[arg(long, env = "RELAY_SIM_START_TIME")]
    start_time: Option<u64>,

    /// Let a compressed clock run ahead of UTC: a relay with a wrong clock, whose records
    /// nodes hold back until their minute has closed (for tests of that case).
    #[arg(long, env = "RELAY_SIM_CLOCK_MAY_RUN_AHEAD")]
    clock_may_run_ahead: bool,

    /// Client connections served at once; more are closed at once.
    #[arg(long, env = "RELAY_SIM_MAX_CLIENTS", default_value_t = 256)]
    max_clients: usize,

    /// Close a connection that sends nothing for this many seconds (0: never).
    #[arg(long, env = "RELAY_SIM_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    idle_timeout_secs: u64,

    /// A request must arrive whole within this many milliseconds of its first byte, or the
    /// connection is closed (0: no limit).
    #[arg(long, env = "RELAY_SIM_REQUEST_DEADLINE_MS", default_value_t = 5000)]
    request_deadline_ms: u64,

    /// Threads serving Modbus. One serves about 100 000 reads/s with the lowest latency;
    /// more only help with far more clients than cores.
    #[arg(long, env = "RELAY_SIM_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,

    /// Play a foreign device: serve the live values in this device profile's register
    /// layout (see docs/book/src/profiles.md) instead of the gridledger map, on every unit
    #[arg(long, env = "RELAY_SIM_LAYOUT")]
    layout: Option<std::path::PathBuf>,

    /// Serve IEC 61850 MMS on this address as well (ISO on TCP; port 102 is the standard
    /// one and needs privileges): the same measurements as an IED with MMXU1, XCBR1 and
    /// PTRC1 per relay (docs/book/src/iec61850.md).
    #[arg(long, env = "RELAY_SIM_IEC61850")]
    iec61850: Option<SocketAddr>,

    /// Write the ICD (SCL) file describing the IEC 61850 model to FILE ('-' for stdout)
    /// and exit.
    #[arg(long, value_name = "FILE")]
    write_icd: Option<std::path::PathBuf>,

    /// The relays' Ed25519 signing keys, `RELAY_ID SECRET_KEY_HEX` a line: each relay with
    /// a key serves its public key (identity registers 56..71) and signs every record it
    /// closes (signature block 320..352; docs/book/src/registers.md). Created, owner-readable only,
    /// with a fresh key for every relay served if the file does not exist [default: the
    /// relays do not sign]
    #[arg(long, env = "RELAY_SIM_KEY_FILE", value_name = "FILE")]
    key_file: Option<std::path::PathBuf>,

    /// Print the relay registry lines (`RELAY_ID PUBLIC_KEY_HEX`) of --key-file's keys, for
    /// the nodes' --relay-registry, and exit.
    #[arg(long, requires = "key_file")]
    print_registry: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProfileArg {
    Paper,
    Realistic,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let threads = args.threads;
    let layout = match &args.layout {
        None => None,
        Some(path) => match device_profile::Profile::load(path) {
            Ok(p) => Some(std::sync::Arc::new(p)),
            Err(e) => {
                error!("--layout: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let keys = match &args.key_file {
        None => relay_sim::keys::RelayKeys::default(),
        Some(path) => {
            let relays = (0..u32::from(args.relays))
                .map(|k| relay_core::RelayId(args.relay_id.wrapping_add(k)));
            match relay_sim::keys::RelayKeys::load_or_create(path, relays) {
                Ok(k) => k,
                Err(e) => {
                    error!("--key-file: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    if args.print_registry {
        print!("{}", keys.registry());
        return ExitCode::SUCCESS;
    }
    let config = Config {
        listen: args.listen,
        unit_id: args.unit_id,
        relays: args.relays,
        relay_id: args.relay_id,
        relay_name: args.relay_name,
        substation: args.substation,
        profile: match args.profile {
            ProfileArg::Paper => Profile::Paper,
            ProfileArg::Realistic => Profile::Realistic,
        },
        seed: args.seed,
        sample_secs: args.sample_secs,
        minute_secs: args.minute_secs,
        start_time: args.start_time,
        clock_may_run_ahead: args.clock_may_run_ahead,
        limits: ClientLimits {
            max_clients: args.max_clients,
            idle_timeout: (args.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(args.idle_timeout_secs)),
            request_deadline: (args.request_deadline_ms > 0)
                .then(|| Duration::from_millis(args.request_deadline_ms)),
        },
        layout,
        iec61850: args.iec61850,
        keys,
    };
    if let Some(path) = &args.write_icd {
        return write_icd(&config, path);
    }
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(threads))
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let layout = config
            .layout
            .as_ref()
            .map_or_else(String::new, |p| format!(", playing {} ({})", p.name, p.maker));
        let summary = format!(
            "units {}..={}, relay ids from {}, profile {:?}, seed {}, {} s samples, {} s per minute{layout}",
            config.unit_id,
            u16::from(config.unit_id) + u16::from(config.relays) - 1,
            config.relay_id,
            config.profile,
            config.seed,
            config.sample_secs,
            config.minute_secs
        );
        let sim = match Simulator::bind(config).await {
            Ok(sim) => sim,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        info!("relay-sim serving Modbus TCP on {} ({summary})", sim.local_addr());
        if let Some(addr) = sim.mms_addr() {
            info!(
                "relay-sim serving IEC 61850 MMS on {addr} (IED {}, logical devices {}LD0..)",
                relay_sim::icd::IED_NAME,
                relay_sim::icd::IED_NAME
            );
        }
        let shutdown = async {
            stop_signal().await;
            info!("shutting down");
        };
        match sim.run(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// `--write-icd`: the model's ICD, without serving anything.
fn write_icd(config: &Config, path: &std::path::Path) -> ExitCode {
    if let Err(e) = config.validate() {
        error!("{e}");
        return ExitCode::from(2);
    }
    let bank = config.bank();
    let port = config.iec61850.map_or(102, |a| a.port());
    let text = relay_sim::mms::icd_of(&bank, &config.substation, port);
    let written = if path.as_os_str() == "-" {
        use std::io::Write;
        std::io::stdout().write_all(text.as_bytes())
    } else {
        std::fs::write(path, text)
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("--write-icd {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM; never if no handler can be set.
async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
