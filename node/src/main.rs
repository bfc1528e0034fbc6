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
    /// Runs a node: polls the relays, mines their records into blocks, exchanges blocks
    /// with the peers, and serves the HTTP API (GET /status, /chain, /blocks, POST /blocks).
    Run(RunArgs),
    /// Starts the testbed of the published study, improved: relay-sim on 127.0.0.1:5010 and
    /// N nodes on 127.0.0.1:5004 onwards, each with its own data dir and key under
    /// --data-dir. Ctrl-C stops it all; a second run resumes the same chains.
    Demo {
        /// Number of nodes.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        nodes: u16,
        /// Compress time: a relay minute lasts 2 s, so a block appears every few seconds.
        #[arg(long)]
        fast: bool,
        /// Where the nodes keep their chains and keys.
        #[arg(long, default_value = "demo-data")]
        data_dir: PathBuf,
        /// HTTP port of the first node; the others follow.
        #[arg(long, default_value_t = 5004)]
        base_port: u16,
        /// Modbus TCP port of the relay.
        #[arg(long, default_value_t = 5010)]
        relay_port: u16,
        /// Difficulty of the demo network.
        #[arg(long, default_value_t = 16)]
        difficulty_bits: u8,
    },
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
    /// Re-verifies a data dir offline and read-only: every block against every rule, the
    /// signatures, the links and the record index. Exits 0 if all is well; 2 with a one-line
    /// reason (the first bad height where known) if the data dir is damaged; 1 on any other
    /// error (no chain there, no permission, in use by a running node).
    Verify {
        /// The node's data dir.
        #[arg(long, env = "GRIDLEDGER_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Rebuilds a damaged data dir: keeps every main-chain block that still verifies, in
    /// order, up to the first damaged one, then fetches the rest from --from-peer (every
    /// block verified as if it came over the network). The damaged file is kept beside the
    /// new one as chain.redb.damaged-UNIXTIME. Stop the node first.
    Repair(RepairArgs),
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

/// `gridledger repair`'s settings.
#[derive(Debug, clap::Args)]
struct RepairArgs {
    /// The node's data dir.
    #[arg(long, env = "GRIDLEDGER_DATA_DIR")]
    data_dir: PathBuf,
    /// A peer's base URL to fetch the missing blocks from; repeat for several.
    #[arg(long = "from-peer")]
    from_peer: Vec<String>,
    /// The network name, if the damage took the data dir's own stamp with it.
    #[arg(long, requires = "difficulty_bits")]
    network: Option<String>,
    /// The network's difficulty, with --network.
    #[arg(long, requires = "network")]
    difficulty_bits: Option<u8>,
}

/// `gridledger run`'s settings. Each comes from its flag, else its environment variable,
/// else the `--config` file, else the default shown.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A TOML file with any of the settings below, named as the flags with `_` for `-`
    /// (`listen`, `data_dir`, `network`, `difficulty_bits`, `relays = [..]`, `peers = [..]`,
    /// `poll_secs`, `key_file`, `allow_list`). Flags and env vars override it.
    #[arg(long, env = "GRIDLEDGER_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP address of the API [default: 127.0.0.1:5004]
    #[arg(long, env = "GRIDLEDGER_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Where the chain (and, unless --key-file says otherwise, the miner key) lives
    /// [default: data]
    #[arg(long, env = "GRIDLEDGER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Network name: nodes with the same name and difficulty share a genesis block
    /// [default: gridledger]
    #[arg(long, env = "GRIDLEDGER_NETWORK")]
    network: Option<String>,
    /// Leading zero bits every block id needs [default: 16]
    #[arg(long, env = "GRIDLEDGER_DIFFICULTY_BITS")]
    difficulty_bits: Option<u8>,
    /// A relay to poll, host:port[/unit]; repeat for several.
    #[arg(long = "relay", env = "GRIDLEDGER_RELAYS", value_delimiter = ',')]
    relays: Vec<gridledger::poll::RelayAddr>,
    /// A peer's base URL (http://host:port); repeat for several.
    #[arg(long = "peer", env = "GRIDLEDGER_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// Seconds between polls, aligned to the minute (plus up to 2 s for the relay to close
    /// it) [default: 60]
    #[arg(long, env = "GRIDLEDGER_POLL_SECS")]
    poll_secs: Option<f64>,
    /// The miner key (see `gridledger keygen`) [default: DATA_DIR/miner.key, created if
    /// absent]
    #[arg(long, env = "GRIDLEDGER_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// A file of miner public keys (hex, one per line) allowed to mine [default: anyone]
    #[arg(long, env = "GRIDLEDGER_ALLOW_LIST")]
    allow_list: Option<PathBuf>,
}

/// The `--config` file of `gridledger run`: the same settings as the flags.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile {
    listen: Option<std::net::SocketAddr>,
    data_dir: Option<PathBuf>,
    network: Option<String>,
    difficulty_bits: Option<u8>,
    #[serde(default)]
    relays: Vec<String>,
    #[serde(default)]
    peers: Vec<String>,
    poll_secs: Option<f64>,
    key_file: Option<PathBuf>,
    allow_list: Option<PathBuf>,
}

/// `gridledger run`'s settings once flags, env vars, the file and defaults are merged.
#[derive(Debug)]
struct RunSettings {
    listen: std::net::SocketAddr,
    data_dir: PathBuf,
    network: String,
    difficulty_bits: u8,
    relays: Vec<gridledger::poll::RelayAddr>,
    peers: Vec<String>,
    poll_secs: f64,
    key_file: PathBuf,
    allow_list: Option<PathBuf>,
}

impl RunArgs {
    fn settings(self) -> Result<RunSettings, String> {
        let file = match &self.config {
            None => RunFile::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read --config {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("--config {}: {e}", path.display()))?
            }
        };
        let relays = if self.relays.is_empty() {
            file.relays
                .iter()
                .map(|r| r.parse().map_err(|e| format!("--config relays: {e}")))
                .collect::<Result<_, _>>()?
        } else {
            self.relays
        };
        let peers = if self.peers.is_empty() {
            file.peers
        } else {
            self.peers
        };
        if let Some(bad) = peers
            .iter()
            .find(|p| !(p.starts_with("http://") || p.starts_with("https://")))
        {
            return Err(format!(
                "peer '{bad}' is not a base URL like http://127.0.0.1:5005"
            ));
        }
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        Ok(RunSettings {
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 5004))),
            key_file: self
                .key_file
                .or(file.key_file)
                .unwrap_or_else(|| data_dir.join("miner.key")),
            data_dir,
            network: self
                .network
                .or(file.network)
                .unwrap_or_else(|| "gridledger".to_owned()),
            difficulty_bits: self.difficulty_bits.or(file.difficulty_bits).unwrap_or(16),
            relays,
            peers,
            poll_secs: self.poll_secs.or(file.poll_secs).unwrap_or(60.0),
            allow_list: self.allow_list.or(file.allow_list),
        })
    }
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
        Command::Run(args) => run(args),
        Command::Demo {
            nodes,
            fast,
            data_dir,
            base_port,
            relay_port,
            difficulty_bits,
        } => demo(
            nodes,
            fast,
            &data_dir,
            base_port,
            relay_port,
            difficulty_bits,
        ),
        Command::Keygen { out, force } => keygen(&out, force),
        Command::Verify { data_dir } => verify(&data_dir),
        Command::Repair(args) => repair(args),
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

/// Exit code and one-line message for a store error: 2 for a damaged data dir, 1 otherwise.
fn store_fail(e: &StoreError) -> ExitCode {
    eprintln!("gridledger: {e}");
    if e.is_corruption() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// The offline tools report a panic inside the storage engine as one line of their own
/// (see `ledger::guard`), not as a Rust backtrace.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

fn verify(dir: &std::path::Path) -> ExitCode {
    quiet_panics();
    match Ledger::open_read_only(dir) {
        Ok(ledger) => {
            let s = ledger.summary();
            let net = ledger.network();
            println!(
                "ok: network '{}' ({} bits), height {}, {} records, tip {}",
                net.name, net.bits, s.height, s.records, s.tip
            );
            ExitCode::SUCCESS
        }
        Err(e) => store_fail(&e),
    }
}

fn export_cmd(dir: &std::path::Path, format: FormatArg, out: Option<&std::path::Path>) -> ExitCode {
    quiet_panics();
    let ledger = match Ledger::open_read_only(dir) {
        Ok(l) => l,
        Err(e) => return store_fail(&e),
    };
    let format = match format {
        FormatArg::Json => Format::Json,
        FormatArg::Csv => Format::Csv,
    };
    let result = gridledger::ledger::guard(|| {
        Ok(match out {
            Some(path) => match std::fs::File::create(path) {
                Ok(f) => export(&ledger, format, &mut std::io::BufWriter::new(f)),
                Err(e) => Err(gridledger::export::ExportError::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot create {}: {e}", path.display()),
                ))),
            },
            None => export(
                &ledger,
                format,
                &mut std::io::BufWriter::new(std::io::stdout().lock()),
            ),
        })
    })
    .unwrap_or_else(|e| Err(e.into()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): not an error of ours.
        Err(gridledger::export::ExportError::Io(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(gridledger::export::ExportError::Store(e)) => store_fail(&e),
        Err(e) => fail(e),
    }
}

fn repair(args: RepairArgs) -> ExitCode {
    quiet_panics();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let network = args
        .network
        .zip(args.difficulty_bits)
        .map(|(name, bits)| Network::new(&name, bits));
    match rt.block_on(gridledger::repair::repair(
        &args.data_dir,
        network,
        &args.from_peer,
    )) {
        Ok(report) => {
            println!("{report}");
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

/// The miner key at `path`, created (owner-readable only) if it does not exist yet.
fn key_or_new(path: &std::path::Path) -> Result<ed25519_dalek::SigningKey, String> {
    if path.exists() {
        return keys::load(path).map_err(|e| e.to_string());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let key = keys::generate().map_err(|e| e.to_string())?;
    keys::save(&key, path, false).map_err(|e| e.to_string())?;
    eprintln!(
        "gridledger: created miner key {} (public key {})",
        path.display(),
        hex::encode(key.verifying_key().to_bytes())
    );
    Ok(key)
}

fn allow_list(path: &std::path::Path) -> Result<Vec<[u8; 32]>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("allow-list {}: {e}", path.display()))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut k = [0u8; 32];
        hex::decode_to_slice(line, &mut k).map_err(|_| {
            format!(
                "allow-list {} line {}: not a public key (64 hex digits)",
                path.display(),
                n + 1
            )
        })?;
        keys.push(k);
    }
    Ok(keys)
}

fn poll_config(period: std::time::Duration) -> gridledger::poll::PollConfig {
    gridledger::poll::PollConfig {
        period,
        // Give the relay a moment to close its minute; a tenth of the period, at most 2 s.
        offset: (period / 10).min(std::time::Duration::from_secs(2)),
        io_timeout: std::time::Duration::from_secs(2)
            .min(period.max(std::time::Duration::from_millis(200))),
    }
}

/// Ctrl-C or SIGTERM (systemd, docker stop): either stops the node cleanly.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn run(args: RunArgs) -> ExitCode {
    let args = match args.settings() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let key = match key_or_new(&args.key_file) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let mut network = Network::new(&args.network, args.difficulty_bits);
    if let Some(path) = &args.allow_list {
        match allow_list(path) {
            Ok(keys) => network.allow_list = Some(keys),
            Err(e) => return fail(e),
        }
    }
    if !(args.poll_secs >= 0.1 && args.poll_secs.is_finite()) {
        return fail(format!(
            "--poll-secs {} is not allowed: use a number of seconds >= 0.1",
            args.poll_secs
        ));
    }
    let period = std::time::Duration::from_secs_f64(args.poll_secs);
    let config = gridledger::run::NodeConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        network,
        relays: args.relays,
        peers: args
            .peers
            .iter()
            .map(|p| p.trim_end_matches('/').to_owned())
            .collect(),
        poll: poll_config(period),
        sync_every: (period / 10).clamp(
            std::time::Duration::from_millis(500),
            std::time::Duration::from_secs(5),
        ),
        max_records_per_block: 256,
        mining_jitter: (period / 20).min(std::time::Duration::from_secs(3)),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    rt.block_on(async move {
        let data_dir = config.data_dir.clone();
        let node = match gridledger::run::start(config, key).await {
            Ok(n) => n,
            Err(gridledger::run::RunError::Store(e)) if e.is_corruption() => {
                eprintln!("gridledger: {e}");
                eprintln!(
                    "gridledger: the node will not run on a damaged chain. To recover: gridledger repair --data-dir {} --from-peer http://PEER:PORT (keeps every good block below the damage, fetches the rest from a peer, and keeps the damaged file beside it)",
                    data_dir.display()
                );
                return ExitCode::from(2);
            }
            Err(e) => return fail(e),
        };
        eprintln!(
            "gridledger: node on http://{}/ (dashboard) and /status; Ctrl-C or SIGTERM stops it",
            node.addr
        );
        shutdown_signal().await;
        eprintln!("gridledger: stopping");
        node.stop().await;
        ExitCode::SUCCESS
    })
}

fn demo(
    nodes: u16,
    fast: bool,
    dir: &std::path::Path,
    base_port: u16,
    relay_port: u16,
    bits: u8,
) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    rt.block_on(async move {
        let minute_secs = if fast { 2.0 } else { 60.0 };
        // Compressed time starts far enough behind UTC that it never passes it (a record of a
        // minute that has not closed is refused); on a second --fast run, the relay goes on
        // after the last minute of its own already on the chain, so that records keep coming.
        let sim = relay_sim::Config::default();
        let start_time = if fast {
            resume_after(&dir.join("node1"), RelayId(sim.relay_id), minute_secs)
        } else {
            None
        };
        let relay = match relay_sim::Simulator::bind(relay_sim::Config {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], relay_port)),
            minute_secs,
            start_time,
            ..sim
        })
        .await
        {
            Ok(s) => s,
            Err(e) => return fail(format!("relay: {e}")),
        };
        let relay_addr = relay.local_addr();
        let relay_task = tokio::spawn(relay.run(std::future::pending()));
        let period = std::time::Duration::from_secs_f64(if fast { 0.5 } else { 60.0 });
        let Some(ports) = (base_port > 0)
            .then(|| (0..nodes).map(|i| base_port.checked_add(i)).collect::<Option<Vec<u16>>>())
            .flatten()
        else {
            return fail(format!(
                "--base-port {base_port} with {nodes} nodes: the ports must be 1-65535"
            ));
        };
        let mut running = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let node_dir = dir.join(format!("node{}", i + 1));
            let key = match key_or_new(&node_dir.join("miner.key")) {
                Ok(k) => k,
                Err(e) => return fail(e),
            };
            let config = gridledger::run::NodeConfig {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], *port)),
                data_dir: node_dir,
                network: Network::new("gridledger-demo", bits),
                relays: vec![gridledger::poll::RelayAddr { host: relay_addr.to_string(), unit: 1 }],
                peers: ports.iter().filter(|p| *p != port).map(|p| format!("http://127.0.0.1:{p}")).collect(),
                poll: poll_config(period),
                sync_every: std::time::Duration::from_millis(if fast { 500 } else { 5000 }),
                max_records_per_block: 256,
                mining_jitter: std::time::Duration::from_millis(if fast { 300 } else { 3000 }),
            };
            match gridledger::run::start(config, key).await {
                Ok(n) => running.push(n),
                Err(e) => return fail(format!("node {}: {e}", i + 1)),
            }
        }
        println!("gridledger demo: relay-sim on {relay_addr} (a minute every {minute_secs} s), {nodes} nodes:");
        for n in &running {
            println!(
                "  http://{}/ (dashboard)   http://{}/status   http://{}/chain",
                n.addr, n.addr, n.addr
            );
        }
        println!("data in {}; Ctrl-C stops everything, and a second run resumes the same chains.", dir.display());
        shutdown_signal().await;
        println!("gridledger demo: stopping");
        for n in running {
            n.stop().await;
        }
        relay_task.abort();
        ExitCode::SUCCESS
    })
}

/// Where a resumed `demo --fast` starts its relay clock: Unix seconds just after the last
/// minute of relay `relay` on the chain at `dir`, if that is later than relay-sim's default
/// start (which is far enough behind UTC to run compressed for a day). Only that relay's
/// records count, and only those no honest relay could not have produced (a minute that has
/// not closed yet by this host's clock): a hostile record of another relay, or of a far
/// future minute, must not move the demo's clock.
fn resume_after(
    dir: &std::path::Path,
    relay: relay_core::RelayId,
    minute_secs: f64,
) -> Option<u64> {
    let ledger = Ledger::open_existing(dir).ok()?;
    let tree = ledger.tree();
    let now_ms = now_ms();
    let last = (1..=tree.height())
        .filter_map(|h| tree.main_at(h))
        .flat_map(|id| {
            tree.keys_of(&id)
                .iter()
                .filter(|k| {
                    k.relay == relay
                        && gridledger::chain::validate::minute_closes_ms(k.minute) <= now_ms
                })
                .map(|k| k.minute.0)
                .collect::<Vec<_>>()
        })
        .max()?;
    let after = (u64::from(last) + 1) * 60;
    let default = now_ms.saturating_sub(relay_sim::clock::headroom_ms(minute_secs)) / 1000;
    (after > default).then_some(after)
}
