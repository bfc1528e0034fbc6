//! `api-load`: does a long read hold up the node? A node holds `--days` of one relay's
//! records (`--per-block` relays per block); one client asks `/readings` for the last day in
//! a loop while another posts new blocks (pre-mined, one after the other) as fast as the
//! node takes them, or at `--rate` blocks/s. With `--days` over 7, a third client streams
//! `/readings` over all the days (CSV) meanwhile, once, and its samples per second are
//! printed too. Prints the latency of the posts and the day reads, p50/p99/max, and the rates.
//!
//! `cargo run --release -p gridledger-bench --bin api-load -- [--blocks 1500]`
//! `cargo run --release -p gridledger-bench --bin api-load -- --days 365 --rate 100 --blocks 6000`
//! (`--read-day 100`: read a day a hundred days back, below the node's window)

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
    /// Days of the read relay on the chain (over 7: one streamed read over all of them too).
    #[arg(long, default_value_t = 1)]
    days: u32,
    /// Blocks per second to post (0: as fast as the node takes them).
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Which day the loop reads, counted back from the last (0: the last; with the node's
    /// window of 4 096 to 8 192 blocks, a day further back than about five is read from
    /// disk, not from the tree).
    #[arg(long, default_value_t = 0)]
    read_day: u32,
}

fn pct(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:>8.2} ms  p90 {:>8.2} ms  p95 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  ({} samples)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
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
    // `days` of relay 1, ending two days ago; then the blocks to post, for relays 1000 up.
    let days = args.days.max(1);
    let chain_start = now_min - (days + 2) * 1440;
    let day_start = now_min - (3 + args.read_day.min(days - 1)) * 1440;
    let per = args.per_block.max(1);
    let to_post = {
        let built = Instant::now();
        let mut ledger = Ledger::open(dir.path(), net.clone()).map_err(|e| e.to_string())?;
        let mut tip = net.genesis().header;
        for day in 0..days {
            let blocks = mine_chain(&net, &tip, chain_start + day * 1440, 1440, 1..1 + per, &key);
            tip = blocks.last().map_or(tip, |b| b.header);
            for r in ledger.add_batch(blocks, gridledger::core::now_ms()) {
                r.map_err(|e| e.to_string())?;
            }
        }
        if days > 1 {
            println!(
                "built {days} days ({} blocks) in {:.0} s",
                days * 1440,
                built.elapsed().as_secs_f64()
            );
        }
        let tip = ledger.tip_header().map_err(|e| e.to_string())?;
        mine_chain(
            &net,
            &tip,
            chain_start - args.blocks,
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
            finality: Default::default(),
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
    let streamer = (days > 7).then(|| {
        let (client, base) = (client.clone(), base.clone());
        let url = format!(
            "{base}/readings?relay=1&from={chain_start}&to={}&format=csv",
            chain_start + days * 1440 - 1
        );
        tokio::spawn(async move {
            let t = Instant::now();
            let mut resp = client
                .get(&url)
                .timeout(Duration::from_secs(3600))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let mut newlines = 0usize;
            while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
                newlines += chunk.iter().filter(|&&b| b == b'\n').count();
            }
            Ok::<_, String>((newlines.saturating_sub(1), t.elapsed()))
        })
    });
    let started = Instant::now();
    let mut post = Vec::new();
    for (i, b) in to_post.iter().enumerate() {
        if args.rate > 0 {
            let due = started + Duration::from_secs_f64(i as f64 / f64::from(args.rate));
            tokio::time::sleep_until(due.into()).await;
        }
        let t = Instant::now();
        gridledger_bench::post_block(&client, &base, b).await?;
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
    if let Some(streamer) = streamer {
        let (samples, took) = streamer.await.map_err(|e| e.to_string())??;
        println!(
            "  GET /readings  {days} days streamed (CSV): {samples} samples in {:.1} s, {:.0} samples/s (goal >= 50 000)",
            took.as_secs_f64(),
            samples as f64 / took.as_secs_f64()
        );
    }
    node.stop().await;
    Ok(())
}
