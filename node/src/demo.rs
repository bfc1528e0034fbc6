//! `gridledger demo`: the study's testbed, improved. relay-sim on 127.0.0.1:5010 and N nodes
//! on 127.0.0.1:5004 onwards, each with its own data dir and miner key, all peers of each
//! other. A second run resumes the same chains.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use relay_core::RelayId;

use crate::chain::Network;
use crate::config::poll_config;
use crate::ledger::Ledger;
use crate::poll::RelayAddr;
use crate::run::{start, NodeConfig, RunningNode};

/// The demo's settings: the flags of `gridledger demo`.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoConfig {
    /// Number of nodes.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// Compress time: a relay minute lasts 2 s, so a block appears every few seconds.
    #[arg(long)]
    pub fast: bool,
    /// Where the nodes keep their chains and keys.
    #[arg(long, default_value = "demo-data")]
    pub data_dir: PathBuf,
    /// HTTP port of the first node; the others follow.
    #[arg(long, default_value_t = 5004)]
    pub base_port: u16,
    /// Modbus TCP port of the relay.
    #[arg(long, default_value_t = 5010)]
    pub relay_port: u16,
    /// Difficulty of the demo network.
    #[arg(long, default_value_t = 16)]
    pub difficulty_bits: u8,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The node ports run past 65535.
    #[error("--base-port {base_port} with {nodes} nodes: the ports must be 1-65535")]
    Ports {
        /// First port.
        base_port: u16,
        /// Nodes.
        nodes: u16,
    },
    /// relay-sim could not start.
    #[error("relay: {0}")]
    Relay(relay_sim::SimError),
    /// A node's key could not be read or made.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// The relay's key file cannot be used.
    #[error("relay key: {0}")]
    RelayKeys(relay_sim::keys::KeyFileError),
    /// The demo's relay registry does not parse.
    #[error("{0}: {1}")]
    Registry(std::path::PathBuf, crate::chain::registry::RegistryError),
    /// A file of the demo's data dir cannot be used.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A node could not start.
    #[error("node {index}: {error}")]
    Node {
        /// Which node, from 1.
        index: usize,
        /// Why.
        error: crate::run::RunError,
    },
}

/// The demo network's relay registry, kept in `dir/relay-registry`: made once, the relay's
/// keys registered from the relay's current minute, so that a demo data dir from before
/// relays signed keeps its unsigned history valid.
fn demo_registry(
    dir: &std::path::Path,
    keys: &relay_sim::keys::RelayKeys,
    relay_now_ms: u64,
) -> Result<crate::chain::Registry, DemoError> {
    let path = dir.join("relay-registry");
    let io = |source| DemoError::Io {
        path: path.clone(),
        source,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let from = relay_core::Minute::containing(relay_now_ms / 1000);
            let text: String = keys
                .registry()
                .lines()
                .map(|l| format!("{l} {from}\n"))
                .collect();
            std::fs::write(&path, &text).map_err(io)?;
            text
        }
        Err(e) => return Err(io(e)),
    };
    crate::chain::Registry::parse(&text).map_err(|e| DemoError::Registry(path.clone(), e))
}

/// Runs the demo until `shutdown` completes, printing where everything is.
pub async fn demo(config: DemoConfig, shutdown: impl Future<Output = ()>) -> Result<(), DemoError> {
    let DemoConfig {
        nodes,
        fast,
        data_dir: dir,
        base_port,
        relay_port,
        difficulty_bits: bits,
    } = config;
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
    // The relay signs its records with its own key (DATA_DIR/relay.key), and the network's
    // relay registry (DATA_DIR/relay-registry) names that key.
    std::fs::create_dir_all(&dir).map_err(|source| DemoError::Io {
        path: dir.clone(),
        source,
    })?;
    let relay_keys =
        relay_sim::keys::RelayKeys::load_or_create(&dir.join("relay.key"), [RelayId(sim.relay_id)])
            .map_err(DemoError::RelayKeys)?;
    let relay = relay_sim::Simulator::bind(relay_sim::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], relay_port)),
        minute_secs,
        start_time,
        keys: relay_keys.clone(),
        ..sim
    })
    .await
    .map_err(DemoError::Relay)?;
    let registry = demo_registry(&dir, &relay_keys, relay.clock().now_ms())?;
    let relay_addr = relay.local_addr();
    let relay_task = tokio::spawn(relay.run(std::future::pending()));
    let period = Duration::from_secs_f64(if fast { 0.5 } else { 60.0 });
    let ports = (base_port > 0)
        .then(|| {
            (0..nodes)
                .map(|i| base_port.checked_add(i))
                .collect::<Option<Vec<u16>>>()
        })
        .flatten()
        .ok_or(DemoError::Ports { base_port, nodes })?;
    // The nodes' keys first: they are the network's allow-list, its members, so that
    // history is final once a quorum of them cosigned it.
    let mut keys = Vec::new();
    for i in 0..ports.len() {
        keys.push(crate::keys::load_or_create(
            &dir.join(format!("node{}", i + 1)).join("miner.key"),
        )?);
    }
    let mut network = Network::new("gridledger-demo", bits);
    network.allow_list = Some(keys.iter().map(|k| k.verifying_key().to_bytes()).collect());
    network.registry = registry;
    let mut running: Vec<RunningNode> = Vec::new();
    for ((i, port), key) in ports.iter().enumerate().zip(keys) {
        let node_dir = dir.join(format!("node{}", i + 1));
        let config = NodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], *port)),
            data_dir: node_dir,
            network: network.clone(),
            relays: vec![RelayAddr {
                host: relay_addr.to_string(),
                unit: 1,
            }],
            peers: ports
                .iter()
                .filter(|p| *p != port)
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            poll: poll_config(period),
            sync_every: Duration::from_millis(if fast { 500 } else { 5000 }),
            max_records_per_block: 256,
            mining_slot: Duration::from_millis(if fast { 250 } else { 2000 }),
            block_relay: Default::default(),
            tls: Default::default(),
            cors_origins: Vec::new(),
            finality: Default::default(),
            admin_token: None,
        };
        match start(config, key).await {
            Ok(n) => running.push(n),
            Err(error) => {
                for n in running {
                    n.stop().await;
                }
                relay_task.abort();
                return Err(DemoError::Node {
                    index: i + 1,
                    error,
                });
            }
        }
    }
    println!(
        "gridledger demo: relay-sim on {relay_addr} (a minute every {minute_secs} s), {nodes} nodes:"
    );
    for n in &running {
        println!(
            "  http://{}/ (dashboard)   http://{}/status   http://{}/chain",
            n.addr, n.addr, n.addr
        );
    }
    println!(
        "data in {}; Ctrl-C stops everything, and a second run resumes the same chains.",
        dir.display()
    );
    shutdown.await;
    println!("gridledger demo: stopping");
    for n in running {
        n.stop().await;
    }
    relay_task.abort();
    Ok(())
}

/// Where a resumed `demo --fast` starts its relay clock: Unix seconds just after the last
/// minute of relay `relay` on the chain at `dir`, if that is later than relay-sim's default
/// start (which is far enough behind UTC to run compressed for a day). Only that relay's
/// records count, and only minutes that have closed by this host's clock (no honest relay
/// produces others): a hostile record of another relay, or of a future minute, must not
/// move the demo's clock.
#[must_use]
pub fn resume_after(dir: &Path, relay: RelayId, minute_secs: f64) -> Option<u64> {
    let ledger = Ledger::open_existing(dir).ok()?;
    let tree = ledger.tree();
    let now_ms = crate::core::now_ms();
    let last = (1..=tree.height())
        .filter_map(|h| tree.main_at(h))
        .flat_map(|id| {
            tree.keys_of(&id)
                .iter()
                .filter(|k| {
                    k.relay == relay && crate::chain::validate::minute_closes_ms(k.minute) <= now_ms
                })
                .map(|k| k.minute.0)
                .collect::<Vec<_>>()
        })
        .max()?;
    let after = (u64::from(last) + 1) * 60;
    let default = now_ms.saturating_sub(relay_sim::clock::headroom_ms(minute_secs)) / 1000;
    (after > default).then_some(after)
}
