//! `api-load`: does a long read hold up the node? A node holds a day of one relay's records
//! (1 440 one-record blocks); one client asks `/readings` for the whole day in a loop while
//! another posts new blocks (pre-mined, one after the other) as fast as the node takes them.
//! Prints the latency of both, p50/p99/max, and the rates.
//!
//! `cargo run --release -p gridledger-bench --bin api-load -- [--blocks 1500]`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ed25519_dalek::SigningKey;
use gridledger::ledger::Ledger;
use gridledger::poll::PollConfig;
use gridledger::run::{block_time, start, NodeConfig};
use gridledger_chain::{assemble, Block, Network};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

/// `/readings` of a day while the node accepts blocks.
#[derive(Debug, Parser)]
#[command(name = "api-load", about)]
struct Args {
    /// Blocks posted while the reads run.
    #[arg(long, default_value_t = 1500)]
    blocks: u32,
    /// Relays' records per block (the read asks for one relay's): a consortium's block
    /// holds every relay's record of its minute.
    #[arg(long, default_value_t = 1)]
    per_block: u32,
}

fn pct(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  ({} samples)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
        v.len()
    )
}

fn mine_chain(
    net: &Network,
    parent: &gridledger_chain::Header,
    first_minute: u32,
    n: u32,
    relays: std::ops::Range<u32>,
    key: &SigningKey,
) -> Vec<Block> {
    let model = SignalModel::new(1, Profile::Realistic);
    let cancel = AtomicBool::new(false);
    let mut parent = *parent;
    let mut out = Vec::new();
    for i in 0..n {
        let records: Vec<_> = relays
            .clone()
            .map(|relay| {
                model.record(
                    RelayId(relay),
                    Minute(first_minute + i),
                    6,
                    RecordFlags::CLOCK_SET,
                )
            })
            .collect();
        let time = block_time(parent.time_ms + 1, 0, &records);
        let Some(b) = assemble(&parent, &records, key, time, net.bits, &cancel) else {
            break;
        };
        parent = b.header;
        out.push(b);
    }
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let net = Network::new("api-load", 4);
    let key = SigningKey::from_bytes(&[5; 32]);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let now_min = u32::try_from(gridledger::core::now_ms() / 60_000).map_err(|e| e.to_string())?;
    // A day of relay 1, ending two days ago; then the blocks to post, for relay 2.
    let day_start = now_min - 3 * 1440;
    let to_post = {
        let mut ledger = Ledger::open(dir.path(), net.clone()).map_err(|e| e.to_string())?;
        let per = args.per_block.max(1);
        let day = mine_chain(
            &net,
            &net.genesis().header,
            day_start,
            1440,
            1..1 + per,
            &key,
        );
        for b in day {
            ledger
                .add(b, gridledger::core::now_ms())
                .map_err(|e| e.to_string())?;
        }
        let tip = ledger.tip_header().map_err(|e| e.to_string())?;
        mine_chain(
            &net,
            &tip,
            day_start - args.blocks,
            args.blocks,
            1000..1000 + per,
            &key,
        )
    };
    let node = start(
        NodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.path().to_owned(),
            network: net,
            relays: Vec::new(),
            peers: Vec::new(),
            poll: PollConfig {
                period: Duration::from_secs(60),
                offset: Duration::from_secs(1),
                io_timeout: Duration::from_secs(1),
            },
            sync_every: Duration::from_secs(5),
            max_records_per_block: 64,
            mining_slot: Duration::ZERO,
            block_relay: Default::default(),
            tls: Default::default(),
            cors_origins: Vec::new(),
            admin_token: None,
        },
        key,
    )
    .await
    .map_err(|e| e.to_string())?;
    let base = format!("http://{}", node.addr);
    let client = gridledger::wire::builder().build().expect("http client");
    let done = Arc::new(AtomicBool::new(false));

    let reader = {
        let (client, base, done) = (client.clone(), base.clone(), Arc::clone(&done));
        let url = format!(
            "{base}/readings?relay=1&from={day_start}&to={}",
            day_start + 1439
        );
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                let t = Instant::now();
                let ok = client
                    .get(&url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success());
                if let Some(r) = ok {
                    let _ = r.bytes().await;
                    lat.push(t.elapsed());
                }
            }
            lat
        })
    };
    let started = Instant::now();
    let mut post = Vec::new();
    for b in &to_post {
        let t = Instant::now();
        let r = client
            .post(format!("{base}/blocks"))
            .header("content-type", "application/octet-stream")
            .body(b.to_bytes())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("a block was refused: {}", r.status()));
        }
        post.push(t.elapsed());
    }
    let posting = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let reads = reader.await.map_err(|e| e.to_string())?;
    println!(
        "api-load: /readings of a day (1 440 records, {} per block) while {} blocks are posted",
        args.per_block.max(1),
        to_post.len()
    );
    println!(
        "  POST /blocks   {}   {:.0} blocks/s",
        pct(post.clone()),
        to_post.len() as f64 / posting.as_secs_f64()
    );
    println!(
        "  GET /readings  {}   {:.1} reads/s",
        pct(reads.clone()),
        reads.len() as f64 / posting.as_secs_f64()
    );
    node.stop().await;
    Ok(())
}
