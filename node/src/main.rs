//! `gridledger`: parses flags and calls the library; all logic lives in `gridledger::*`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand, ValueEnum};
use gridledger::chain::{assemble, Network};
use gridledger::export::{export, Format};
use gridledger::keys;
use gridledger::ledger::Ledger;
use gridledger::store::StoreError;
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};
use tracing_subscriber::EnvFilter;

/// A proof-of-work ledger of substation relay minute records.
///
/// Every flag can also be set by the environment variable shown in its help. Logs go to
/// stderr; RUST_LOG sets the level (default info).
#[derive(Debug, Parser)]
#[command(name = "gridledger", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates a miner key: an ed25519 secret key, written as 64 hex digits, readable by
    /// its owner only. Prints the public key, which is what an allow-list holds.
    Keygen {
        /// Where to write the key.
        #[arg(long, env = "GRIDLEDGER_KEY_FILE", default_value = "gridledger.key")]
        out: PathBuf,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Re-verifies a data dir offline: every block against every rule, the signatures,
    /// the links and the record index. Exits 0 if all is well; 2 and the first bad height
    /// if the chain is corrupt; 1 on any other error.
    Verify {
        /// The node's data dir.
        #[arg(long, env = "GRIDLEDGER_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Writes the main chain to stdout (or --out): `json` gives whole blocks with their raw
    /// bytes and decoded records (genesis included), `csv` one row per sample.
    Export {
        /// The node's data dir.
        #[arg(long, env = "GRIDLEDGER_DATA_DIR")]
        data_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = FormatArg::Json)]
        format: FormatArg,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Test support: mines and stores blocks of simulated records in a loop, printing
    /// `stored HEIGHT ID` after each durable commit.
    #[command(hide = true)]
    DebugAppend {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "crash-test")]
        network: String,
        #[arg(long, default_value_t = 4)]
        difficulty_bits: u8,
        #[arg(long, default_value_t = 1000)]
        blocks: u32,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Json,
    Csv,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Keygen { out, force } => keygen(&out, force),
        Command::Verify { data_dir } => verify(&data_dir),
        Command::Export {
            data_dir,
            format,
            out,
        } => export_cmd(&data_dir, format, out.as_deref()),
        Command::DebugAppend {
            data_dir,
            network,
            difficulty_bits,
            blocks,
        } => debug_append(&data_dir, &network, difficulty_bits, blocks),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("gridledger: {message}");
    ExitCode::FAILURE
}

fn keygen(out: &std::path::Path, force: bool) -> ExitCode {
    let key = match keys::generate() {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    if let Err(e) = keys::save(&key, out, force) {
        return fail(e);
    }
    println!("{}", hex::encode(key.verifying_key().to_bytes()));
    eprintln!(
        "gridledger: wrote the secret key to {}; the line above is its public key",
        out.display()
    );
    ExitCode::SUCCESS
}

fn verify(dir: &std::path::Path) -> ExitCode {
    match Ledger::open_existing(dir) {
        Ok(ledger) => {
            let s = ledger.summary();
            let net = ledger.network();
            println!(
                "ok: network '{}' ({} bits), height {}, {} records, tip {}",
                net.name, net.bits, s.height, s.records, s.tip
            );
            ExitCode::SUCCESS
        }
        Err(e @ StoreError::Corrupt { .. }) => {
            eprintln!("gridledger: {e}");
            ExitCode::from(2)
        }
        Err(e) => fail(e),
    }
}

fn export_cmd(dir: &std::path::Path, format: FormatArg, out: Option<&std::path::Path>) -> ExitCode {
    let ledger = match Ledger::open_existing(dir) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let format = match format {
        FormatArg::Json => Format::Json,
        FormatArg::Csv => Format::Csv,
    };
    let result = match out {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => export(&ledger, format, &mut std::io::BufWriter::new(f)),
            Err(e) => return fail(format!("cannot create {}: {e}", path.display())),
        },
        None => export(
            &ledger,
            format,
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): not an error of ours.
        Err(gridledger::export::ExportError::Io(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn debug_append(dir: &std::path::Path, network: &str, bits: u8, blocks: u32) -> ExitCode {
    let net = Network::new(network, bits);
    let mut ledger = match Ledger::open(dir, net.clone()) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let key = match keys::generate() {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let model = SignalModel::new(1, Profile::Realistic);
    let cancel = AtomicBool::new(false);
    let mut stdout = std::io::stdout().lock();
    for _ in 0..blocks {
        let parent = match ledger.tip_header() {
            Ok(h) => h,
            Err(e) => return fail(e),
        };
        let minute = Minute(29_000_000 + parent.height);
        let record = model.record(RelayId(1), minute, 6, RecordFlags::CLOCK_SET);
        let now = now_ms();
        let time = now.max(ledger.tree().median_time_past(&parent.id()));
        let Some(block) = assemble(&parent, &[record], &key, time, bits, &cancel) else {
            return fail("mining was cancelled");
        };
        match ledger.add(block, now) {
            Ok(added) => {
                if writeln!(stdout, "stored {} {}", added.height, added.id)
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => return fail(e),
        }
    }
    ExitCode::SUCCESS
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
