//! Builders shared by the node's tests: keys, records and blocks on demand.

#![allow(dead_code)]

use std::sync::atomic::AtomicBool;

use ed25519_dalek::SigningKey;
use gridledger::chain::{assemble, Block, Header, Network};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, MinuteRecord, RecordFlags, RelayId};

/// A fixed key, so that test runs are repeatable.
pub fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// The record of `relay` for `minute` (realistic profile, seed 1).
pub fn record(relay: u32, minute: u32) -> MinuteRecord {
    SignalModel::new(1, Profile::Realistic).record(
        RelayId(relay),
        Minute(29_925_000 + minute),
        6,
        RecordFlags::CLOCK_SET,
    )
}

/// Mines a block of `records` on `parent`, one second after it or when the last record's
/// minute has closed, whichever is later (as an honest miner stamps it).
pub fn block_on(parent: &Header, records: &[MinuteRecord], net: &Network, key_n: u8) -> Block {
    assemble(
        parent,
        records,
        &key(key_n),
        gridledger::run::block_time(parent.time_ms + 1000, 0, records),
        net.bits,
        &AtomicBool::new(false),
    )
    .expect("mined")
}

/// The wall clock in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The main chain of the node on loopback `port`, whole blocks from height 1 (up to 500).
pub async fn chain_of(client: &reqwest::Client, port: u16) -> Vec<Block> {
    let body = get_raw(
        client,
        format!("http://127.0.0.1:{port}/blocks?from=1&limit=500"),
    )
    .await;
    gridledger::wire::decode_list(&body, 1 << 20, 4096).expect("a block list")
}

/// The `/status` of the node on loopback `port`.
pub async fn status(client: &reqwest::Client, port: u16) -> serde_json::Value {
    get_json(client, format!("http://127.0.0.1:{port}/status")).await
}

/// Waits (at most `secs`) until `f` holds of a node's `/status`, or fails with the last
/// one seen.
pub async fn until(
    client: &reqwest::Client,
    port: u16,
    secs: u64,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let s = status(client, port).await;
        if f(&s) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: node :{port} never got there: {s}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Every record of `chain`, in order.
pub fn records_of(chain: &[Block]) -> Vec<MinuteRecord> {
    chain
        .iter()
        .flat_map(|b| b.records.iter())
        .map(|r| MinuteRecord::decode(r).expect("a record"))
        .collect()
}

/// A free loopback port (bound, read, released).
///
/// Taken below the kernel's ephemeral range (32768 and up on Linux), so that no socket
/// bound to port 0 meanwhile (every relay-sim and node of a test running beside this one)
/// can be handed the same port between this check and its use; within this process no
/// port is handed out twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // A start that differs from process to process (tests of several binaries run one
    // after another, and may overlap with a lingering socket).
    let seed = std::process::id().wrapping_mul(7919) % 10_000;
    for _ in 0..10_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((seed + n * 13) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000")
}

/// A relay-sim on loopback whose minute lasts `minute_secs`, serving relay `relay_id`
/// behind unit 1, its clock starting at `start_time` (Unix seconds; `None`: relay-sim's
/// default, far enough behind UTC that the compressed clock never passes it). Stops
/// when the returned sender is dropped or sent to.
pub async fn relay_sim(
    listen: std::net::SocketAddr,
    relay_id: u32,
    minute_secs: f64,
    start_time: Option<u64>,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    relay_sim_with(relay_sim::Config {
        listen,
        relay_id,
        minute_secs,
        start_time,
        ..relay_sim::Config::default()
    })
    .await
}

/// [`relay_sim`] with any configuration (signing keys, say).
pub async fn relay_sim_with(
    config: relay_sim::Config,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let s = relay_sim::Simulator::bind(config)
        .await
        .expect("relay-sim binds");
    let addr = s.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(s.run(async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// GET a JSON document.
pub async fn get_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// GET raw bytes (`Accept: application/octet-stream`: a block as it is on the wire).
pub async fn get_raw(client: &reqwest::Client, url: String) -> Vec<u8> {
    client
        .get(&url)
        .header("accept", "application/octet-stream")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .to_vec()
}

/// POST with an empty body and read the JSON answer.
pub async fn post_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    client
        .post(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: not JSON: {e}"))
}

/// A node for tests on loopback (port 0) over `dir`: it polls `relays` (unit 1) every
/// 250 ms (relay minutes of about a second), syncs with `peers` every 500 ms and waits up
/// to 200 ms before mining. Tests change what they need with `..node_config(..)`.
pub fn node_config(
    dir: &std::path::Path,
    network: Network,
    relays: &[std::net::SocketAddr],
    peers: Vec<String>,
) -> gridledger::run::NodeConfig {
    use std::time::Duration;
    gridledger::run::NodeConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.to_owned(),
        network,
        relays: relays
            .iter()
            .map(|r| format!("{r}/1").parse().expect("relay"))
            .collect(),
        peers,
        poll: gridledger::poll::PollConfig {
            period: Duration::from_millis(250),
            offset: Duration::from_millis(10),
            io_timeout: Duration::from_millis(500),
        },
        sync_every: Duration::from_millis(500),
        max_records_per_block: 64,
        mining_slot: Duration::from_millis(200),
        block_relay: Default::default(),
        tls: Default::default(),
        cors_origins: Vec::new(),
        finality: Default::default(),
        admin_token: None,
    }
}

/// [`node_config`] listening on loopback `port`, polling `relay` if any, with the nodes on
/// loopback `peers` as its peers.
pub fn node_config_at(
    port: u16,
    dir: &std::path::Path,
    net: &Network,
    relay: Option<std::net::SocketAddr>,
    peers: &[u16],
) -> gridledger::run::NodeConfig {
    let mut c = node_config(
        dir,
        net.clone(),
        &relay.into_iter().collect::<Vec<_>>(),
        peers
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect(),
    );
    c.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    c
}

/// GET a text body (`/metrics`).
pub async fn get_text(client: &reqwest::Client, url: String) -> String {
    client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// A node's HTTP API over a fresh ledger in `dir`, served on a loopback port (with the
/// client's address, as a node serves it: admin calls check it). No poller, no miner, no
/// peers: blocks arrive by `POST /blocks` or through the returned state.
pub async fn serve_api(
    dir: &std::path::Path,
    net: Network,
) -> (std::net::SocketAddr, gridledger::core::Shared) {
    use std::sync::{Arc, Mutex};
    let ledger = gridledger::ledger::Ledger::open(dir, net).expect("opens");
    let shared = Arc::new(Mutex::new(gridledger::api::Core::new(ledger)));
    let served = shared.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            gridledger::api::router(served)
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    (addr, shared)
}

/// A process (a `gridledger run`), killed when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The records of `relay` on the main chain of the node at `port`, by minute, and its tip,
/// from its `/chain`.
pub async fn chain_records(
    client: &reqwest::Client,
    port: u16,
    relay: RelayId,
) -> Option<(String, Vec<MinuteRecord>)> {
    let doc: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/chain"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let blocks = doc["chain"].as_array()?;
    let tip = blocks.last()?["id"].as_str()?.to_owned();
    let mut out = Vec::new();
    for b in blocks {
        for r in b["records"].as_array().into_iter().flatten() {
            let raw = hex::decode(r["raw"].as_str()?).ok()?;
            let rec = MinuteRecord::decode(&raw).ok()?;
            if rec.relay == relay {
                out.push(rec);
            }
        }
    }
    out.sort_by_key(|r| r.minute);
    Some((tip, out))
}

/// Serves `app` on a fresh loopback port, in the background; its address. For the fake
/// peers and proxies tests put beside real nodes.
pub async fn serve_router(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Flips `mask` into the byte `at` bytes into every copy of `needle` in the data dir's
/// files (the database, where redb may keep stale page copies, and the block file, where
/// the blocks are); returns how many copies it changed.
#[allow(dead_code)]
pub fn flip_stored(dir: &std::path::Path, needle: &[u8], at: usize, mask: u8) -> usize {
    let mut flipped = 0;
    for name in [gridledger::store::DB_FILE, gridledger::blockfile::FILE] {
        let file = dir.join(name);
        let Ok(mut raw) = std::fs::read(&file) else {
            continue;
        };
        let copies: Vec<usize> = raw
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle)
            .map(|(i, _)| i)
            .collect();
        for i in &copies {
            raw[i + at] ^= mask;
        }
        if !copies.is_empty() {
            std::fs::write(&file, &raw).expect("written");
        }
        flipped += copies.len();
    }
    flipped
}

/// Gives every entry of the data dir's block file the checksum of its bytes as they are
/// now: after a flip, the block reads back changed (what a block stored wrong by a faulty
/// writer would look like), so the chain's own rules, not the checksum, must find it.
#[allow(dead_code)]
pub fn reseal_block_file(dir: &std::path::Path) {
    let file = dir.join(gridledger::blockfile::FILE);
    let mut raw = std::fs::read(&file).expect("block file");
    let mut at = gridledger::blockfile::MAGIC.len();
    while at + 8 <= raw.len() {
        let len = u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes")) as usize;
        let body = at + 8..at + 8 + len;
        assert!(body.end <= raw.len(), "entry at {at} runs past the file");
        let crc = crc32fast::hash(&raw[body.clone()]);
        raw[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = body.end;
    }
    std::fs::write(&file, &raw).expect("written");
}

/// The workspace's root (where `docs/`, `packaging/` and `tools/` are).
#[must_use]
pub fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

/// The body of a GET of `url` with curl (5 s at most), if it answered 2xx.
pub fn http_get(url: &str) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", "--fail", "--max-time", "5", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
