//! `gridledger`: parses flags, calls the library and turns its results into exit codes; all
//! logic lives in `gridledger::*` (`config`, `demo`, `offline`, `repair`, `run`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gridledger::config::RunArgs;
use gridledger::exit::{fail, on_runtime, quiet_panics, said, store_fail};
use gridledger::export::ExportError;
use tracing_subscriber::EnvFilter;

/// A proof-of-work ledger of substation relay minute records.
///
/// Every flag can also be set by the environment variable shown in its help. Logs go to
/// stderr; RUST_LOG sets the level (default info).
#[derive(Debug, Parser)]
#[command(name = "gridledger", version, about, long_about, after_help = gridledger::book::MANUAL)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a node: polls the relays, mines their records into blocks, exchanges blocks
    /// with the peers, and serves the HTTP API (GET /status, /chain, /blocks, POST /blocks).
    #[command(after_help = gridledger::book::RUN)]
    Run(Box<RunArgs>),
    /// Starts the testbed of the published study, improved: relay-sim on 127.0.0.1:5010 and
    /// N nodes on 127.0.0.1:5004 onwards, each with its own data dir and key under
    /// --data-dir. Ctrl-C stops it all; a second run resumes the same chains.
    #[command(after_help = gridledger::book::DEMO)]
    Demo(gridledger::demo::DemoConfig),
    /// Creates a miner key: an ed25519 secret key, written as 64 hex digits, readable by
    /// its owner only. Prints the public key, which is what an allow-list holds.
    #[command(after_help = gridledger::book::RUN)]
    Keygen {
        /// Where to write the key.
        #[arg(long, env = "GRIDLEDGER_KEY_FILE", default_value = "gridledger.key")]
        out: PathBuf,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Re-verifies a data dir offline and read-only: every block against every rule, the
    /// signatures, the links and the record index. Exits 0 if all is well; 2 with a one-line
    /// reason (the first bad height where known) if the data dir is damaged; 1 on any other
    /// error (no chain there, no permission, in use by a running node).
    #[command(after_help = gridledger::book::OFFLINE)]
    Verify {
        /// The node's data dir.
        #[arg(long, env = "GRIDLEDGER_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Rebuilds a damaged data dir: keeps every main-chain block that still verifies, in
    /// order, up to the first damaged one, then fetches the rest from --from-peer (every
    /// block verified as if it came over the network). The damaged file is kept beside the
    /// new one as chain.redb.damaged-UNIXTIME. Stop the node first.
    #[command(after_help = gridledger::book::OFFLINE)]
    Repair(gridledger::repair::RepairArgs),
    /// Writes the main chain to stdout (or --out): `json` gives whole blocks with their raw
    /// bytes and decoded records (genesis included), `csv` one row per sample.
    #[command(after_help = gridledger::book::OFFLINE)]
    Export(gridledger::offline::ExportArgs),
    /// Streams the node's final blocks into PostgreSQL (the historian): blocks, records and
    /// one row per sample, each exactly once; resumes where it stopped.
    #[command(after_help = gridledger::book::HISTORIAN)]
    Sink(gridledger::sink::SinkArgs),
    /// Copies a data dir into one file, while its node runs (through the node's control
    /// socket) or not: chain, witness, disputes, finality, peers; the key only if asked.
    #[command(after_help = gridledger::book::OFFLINE)]
    Backup(gridledger::backup::BackupArgs),
    /// Brings a data dir back from a backup: checks the whole file first, then verifies the
    /// restored chain as `verify` does. Exits 2 if the backup is damaged.
    #[command(after_help = gridledger::book::OFFLINE)]
    Restore(gridledger::backup::RestoreArgs),
    /// Prints a file an installation needs, as this version has it (unit, config, man...).
    #[command(after_help = gridledger::book::OFFLINE)]
    Print {
        #[arg(value_enum)]
        what: gridledger::print::What,
    },
    /// Certificates for a test consortium (a small CA and node certificates); a
    /// production consortium uses its own PKI.
    #[command(subcommand, after_help = gridledger::book::TLS)]
    Tls(gridledger::tls::cli::TlsCommand),
    /// Test support: mines and stores blocks of simulated records in a loop, printing
    /// `stored HEIGHT ID` after each durable commit.
    #[command(hide = true)]
    DebugAppend(gridledger::offline::AppendArgs),
}

fn main() -> ExitCode {
    gridledger::tls::install_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Run(args) => run(*args),
        Command::Demo(config) => on_runtime(|| async move {
            match gridledger::demo::demo(config, gridledger::run::shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }),
        Command::Keygen { out, force } => keygen(&out, force),
        Command::Print { what } => {
            let text = gridledger::print::text(what, <Cli as clap::CommandFactory>::command());
            let out = text.and_then(|t| std::io::Write::write_all(&mut std::io::stdout(), &t));
            out.map_or_else(fail, |()| ExitCode::SUCCESS)
        }
        Command::Sink(args) => on_runtime(|| async move {
            let said = gridledger::sink::run(args).await.map(|s| println!("{s}"));
            said.map_or_else(fail, |()| ExitCode::SUCCESS)
        }),
        Command::Backup(a) => said(gridledger::backup::backup(&a).map(|d| {
            let line = format!("backup written to {}: {d}", a.out.display());
            (line, a.out.as_os_str() == "-")
        })),
        Command::Restore(a) => said(gridledger::backup::restore(&a).map(|(d, v)| {
            (
                format!("restored {}: {d}\n{v}", a.data_dir.display()),
                false,
            )
        })),
        Command::Verify { data_dir } => {
            quiet_panics();
            match gridledger::offline::verify(&data_dir) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => store_fail(&e),
            }
        }
        Command::Repair(args) => repair(args),
        Command::Export(args) => {
            quiet_panics();
            match gridledger::offline::export_dir(&args.data_dir, args.format, args.out.as_deref())
            {
                Ok(()) => ExitCode::SUCCESS,
                // The reader went away (`| head`): not an error of ours.
                Err(ExportError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    ExitCode::SUCCESS
                }
                Err(ExportError::Store(e)) => store_fail(&e),
                Err(e) => fail(e),
            }
        }
        Command::Tls(command) => match gridledger::tls::cli::run(command) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::DebugAppend(a) => {
            gridledger::offline::debug_append_cmd(&a).map_or_else(fail, |()| ExitCode::SUCCESS)
        }
    }
}

fn keygen(out: &std::path::Path, force: bool) -> ExitCode {
    let said = gridledger::keys::keygen(out, force).map(|k| println!("{k}"));
    said.map_or_else(fail, |()| {
        let path = out.display();
        eprintln!("gridledger: wrote the secret key to {path}; the line above is its public key");
        ExitCode::SUCCESS
    })
}

fn repair(args: gridledger::repair::RepairArgs) -> ExitCode {
    quiet_panics();
    on_runtime(|| async move {
        let said = gridledger::repair::repair_as(args)
            .await
            .map(|r| println!("{r}"));
        said.map_or_else(fail, |()| ExitCode::SUCCESS)
    })
}

fn run(args: RunArgs) -> ExitCode {
    let settings = match args.settings() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let sink = settings.sink();
    let (config, key) = match settings.node_config() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let tls_on = config.tls.serves();
    on_runtime(|| async move {
        let data_dir = config.data_dir.clone();
        let node = match gridledger::run::start(config, key).await {
            Ok(n) => n,
            Err(gridledger::run::RunError::Store(e)) if e.is_corruption() => {
                eprintln!("gridledger: {e}");
                eprintln!(
                    "gridledger: the node will not run on a damaged chain. To recover: gridledger repair --data-dir {} --from-peer http://PEER:PORT (keeps every good block below the damage, fetches the rest from a peer, and keeps the damaged file beside it; docs/book/src/operating.md)",
                    data_dir.display()
                );
                return ExitCode::from(2);
            }
            Err(e) => return fail(e),
        };
        let scheme = if tls_on { "https" } else { "http" };
        if let Some(sink) = sink {
            gridledger::sink::beside(&node, sink, scheme);
        }
        eprintln!(
            "gridledger: node on {scheme}://{}/ (dashboard) and /status; Ctrl-C or SIGTERM stops it",
            node.addr
        );
        gridledger::run::shutdown_signal().await;
        eprintln!("gridledger: stopping");
        node.stop().await;
        ExitCode::SUCCESS
    })
}
