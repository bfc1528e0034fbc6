//! Testbed nodes: each a real `gridledger run` process with its own data dir, log file and
//! port; killed with SIGKILL and started again as an operator's crash would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// Why a node process could not be started or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Spawning, or its log file.
    #[error("node {index}: {source}")]
    Io {
        /// Which node.
        index: usize,
        /// Why.
        source: std::io::Error,
    },
    /// The process ended while starting.
    #[error("node {index} exited while starting; its log: {log}")]
    Exited {
        /// Which node.
        index: usize,
        /// Its log file.
        log: String,
    },
    /// It did not answer `GET /status` in time.
    #[error("node {index} did not answer on {addr} within {secs} s; its log: {log}")]
    NotUp {
        /// Which node.
        index: usize,
        /// Its API.
        addr: SocketAddr,
        /// How long we waited.
        secs: u64,
        /// Its log file.
        log: String,
    },
}

/// How a node runs: everything but its peers' proxies, which the scenario makes.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Index in the testbed, from 0.
    pub index: usize,
    /// The API address (loopback).
    pub listen: SocketAddr,
    /// Data dir (chain and key).
    pub data_dir: PathBuf,
    /// Relays polled, Modbus TCP.
    pub relays: Vec<SocketAddr>,
    /// Peer base URLs (the proxies in front of the peers).
    pub peers: Vec<String>,
    /// Network name and difficulty.
    pub network: String,
    /// Leading zero bits.
    pub bits: u8,
    /// `--poll-secs`.
    pub poll_secs: f64,
    /// `--mining-slot-secs`.
    pub slot_secs: f64,
    /// `--sync-secs`.
    pub sync_secs: f64,
    /// `--block-relay`: `adaptive`, `push` or `announce`.
    pub block_relay: String,
    /// The network namespace it runs in (`ip netns exec`), if any.
    pub namespace: Option<String>,
    /// `--key-file` and `--allow-list` (finality: the nodes' keys are the members).
    pub key_file: Option<PathBuf>,
    pub allow_list: Option<PathBuf>,
    /// `--finality-interval-secs`, if set.
    pub finality_interval_secs: Option<f64>,
}

/// A running (or killed) node.
#[derive(Debug)]
pub struct Node {
    /// How it runs.
    pub spec: NodeSpec,
    exe: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

/// An HTTP client for the nodes' APIs, with a 5 s timeout (rustls's provider installed
/// first: the node's reqwest is built without a default one).
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    gridledger::tls::install_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
}

/// `n` distinct free loopback ports for nodes' APIs, below the kernel's ephemeral range:
/// ports the kernel hands out for port 0 (the proxies, every client socket) never take
/// them, even while a node is down between a kill and a restart. All are held at once while
/// choosing, so no two nodes get the same one.
pub fn free_ports(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (10_000u16, low.saturating_sub(1).max(10_001));
    let mut held = Vec::with_capacity(n);
    for _ in 0..n.saturating_mul(100).max(1000) {
        if held.len() == n {
            break;
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", fastrand::u16(from..to))) {
            held.push(l);
        }
    }
    if held.len() < n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("not {n} free ports in {from}..{to}"),
        ));
    }
    held.iter().map(std::net::TcpListener::local_addr).collect()
}

impl Node {
    /// Starts `exe run …` for `spec`; its stderr (the log) goes to `DATA_DIR.log`.
    pub fn start(exe: &Path, spec: NodeSpec) -> Result<Self, NodeError> {
        let log = spec.data_dir.with_extension("log");
        let mut node = Self {
            spec,
            exe: exe.to_owned(),
            child: None,
            log,
        };
        node.spawn()?;
        Ok(node)
    }

    fn spawn(&mut self) -> Result<(), NodeError> {
        let index = self.spec.index;
        let io = |source| NodeError::Io { index, source };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io)?;
        let s = &self.spec;
        let mut cmd = match &s.namespace {
            Some(ns) => {
                // `ip` enters the namespace and replaces itself with the node: the child's
                // pid is the node's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        cmd.arg("run")
            .arg("--listen")
            .arg(s.listen.to_string())
            .arg("--data-dir")
            .arg(&s.data_dir)
            .arg("--network")
            .arg(&s.network)
            .arg("--difficulty-bits")
            .arg(s.bits.to_string())
            .arg("--poll-secs")
            .arg(s.poll_secs.to_string())
            .arg("--mining-slot-secs")
            .arg(s.slot_secs.to_string())
            .arg("--sync-secs")
            .arg(s.sync_secs.to_string())
            .arg("--block-relay")
            .arg(&s.block_relay);
        for r in &s.relays {
            cmd.arg("--relay").arg(r.to_string());
        }
        for p in &s.peers {
            cmd.arg("--peer").arg(p);
        }
        if let Some(k) = &s.key_file {
            cmd.arg("--key-file").arg(k);
        }
        if let Some(a) = &s.allow_list {
            cmd.arg("--allow-list").arg(a);
        }
        if let Some(i) = s.finality_interval_secs {
            cmd.arg("--finality-interval-secs").arg(i.to_string());
        }
        cmd.env(
            "RUST_LOG",
            format!("warn,{}=debug", gridledger::core::TRACE),
        )
        .env_remove("GRIDLEDGER_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
        self.child = Some(cmd.spawn().map_err(io)?);
        Ok(())
    }

    /// Waits until the node answers `GET /status`; an error at once if the process ended
    /// (another process answering on its port must not pass for it).
    pub async fn wait_up(
        &mut self,
        client: &reqwest::Client,
        within: Duration,
    ) -> Result<(), NodeError> {
        let began = tokio::time::Instant::now();
        let url = format!("http://{}/status", self.spec.listen);
        while began.elapsed() < within {
            if self.died() {
                return Err(NodeError::Exited {
                    index: self.spec.index,
                    log: self.log.display().to_string(),
                });
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(NodeError::NotUp {
            index: self.spec.index,
            addr: self.spec.listen,
            secs: within.as_secs(),
            log: self.log.display().to_string(),
        })
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again, same data dir, same port.
    pub fn restart(&mut self) -> Result<(), NodeError> {
        self.spawn()
    }

    /// Whether the process runs (or was killed by the testbed: `false`).
    #[must_use]
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether a process the testbed did not kill has ended (a crash, a port in use).
    pub fn died(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Its pid, while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Its log file.
    #[must_use]
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Its API's base URL.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.spec.listen)
    }
}

/// CPU seconds (user + system) and peak RSS in bytes of a running process, from `/proc`.
#[must_use]
pub fn usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    // Clock ticks: 100 per second on Linux.
    Some(((utime + stime) / 100.0, hwm_kb * 1024))
}
