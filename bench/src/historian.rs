//! The historian's figures (issue 34), each beside its goal: a back-fill into PostgreSQL in
//! samples per second, the lag from a block becoming writable to its rows being visible,
//! and the database's bytes per sample beside the node's own store.
//!
//!   cargo run --release -p gridledger-bench --bin historian -- --blocks 10000 --per-block 15
//!
//! A PostgreSQL server of its own (Debian's `postgresql`, started in a temporary directory),
//! a node in this process over a chain built first (not timed), and `gridledger sink` in
//! this process too. The network has no allow-list, so "final" is `--depth 0`: a block is
//! writable as soon as the node holds it.

#[path = "../../node/tests/pg/mod.rs"]
mod pg;

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::Parser;
use ed25519_dalek::SigningKey;
use gridledger::sink::{self, SinkArgs};
use gridledger_chain::{assemble, Network};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

#[derive(Parser, Debug)]
struct Args {
    /// Blocks in the chain to back-fill.
    #[arg(long, default_value_t = 10_000)]
    blocks: u32,
    /// Records a block (each of six samples).
    #[arg(long, default_value_t = 15)]
    per_block: u32,
    /// Blocks posted one by one to measure the live lag.
    #[arg(long, default_value_t = 60)]
    live: u32,
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                dir_bytes(&path)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let pg = pg::Pg::start()?;
    let net = Network::new("historian-bench", 4);
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let built = Instant::now();
    gridledger::offline::debug_append_with(
        tmp.path(),
        net.clone(),
        None,
        args.blocks,
        args.per_block,
        &mut std::io::sink(),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "built {} blocks of {} records in {:.1} s (not timed)",
        args.blocks,
        args.per_block,
        built.elapsed().as_secs_f64()
    );
    let node = gridledger::run::start(
        gridledger_bench::node_config(tmp.path(), net.clone(), Vec::new()),
        gridledger::keys::generate().map_err(|e| e.to_string())?,
    )
    .await
    .map_err(|e| e.to_string())?;
    let from = format!("http://{}", node.addr);
    let sink_args = |once: bool| SinkArgs {
        from: from.clone(),
        to: pg.url(),
        depth: 0,
        batch_blocks: 500,
        poll_ms: 500,
        once,
        tls_ca: None,
    };

    // Back-fill.
    let began = Instant::now();
    let done = sink::run(sink_args(true))
        .await
        .map_err(|e| e.to_string())?;
    let secs = began.elapsed().as_secs_f64();
    let rate = done.samples as f64 / secs;
    println!(
        "back-fill: {} blocks, {} records, {} samples in {secs:.2} s: {rate:.0} samples/s   goal >= 200000   {}",
        done.blocks,
        done.records,
        done.samples,
        if rate >= 200_000.0 { "met" } else { "NOT met" }
    );
    let db: u64 = pg
        .psql(
            "SELECT pg_total_relation_size('samples') + pg_total_relation_size('records') \
             + pg_total_relation_size('blocks')",
        )
        .trim()
        .parse()
        .map_err(|e| format!("{e}"))?;
    let store = dir_bytes(tmp.path());
    println!(
        "bytes per sample: PostgreSQL {:.1} (tables and indexes), the node's store {:.1}",
        db as f64 / done.samples.max(1) as f64,
        store as f64 / done.samples.max(1) as f64
    );

    // Live: blocks posted one at a time; the time from the node taking each to its rows
    // being visible in PostgreSQL.
    let follower = tokio::spawn(sink::run(sink_args(false)));
    let http = reqwest::Client::new();
    let key = SigningKey::from_bytes(&[7; 32]);
    let model = SignalModel::new(3, Profile::Realistic);
    let now_min = u32::try_from(gridledger::core::now_ms() / 60_000).map_err(|e| e.to_string())?;
    let mut lags = Vec::new();
    for i in 0..args.live {
        let parent = {
            let core = node.shared.lock().map_err(|e| e.to_string())?;
            core.ledger.tip_header().map_err(|e| e.to_string())?
        };
        let minute = now_min - args.live - 2 + i;
        let records: Vec<_> = (0..args.per_block)
            .map(|r| {
                model.record(
                    RelayId(100_000 + r),
                    Minute(minute),
                    6,
                    RecordFlags::CLOCK_SET,
                )
            })
            .collect();
        let time = (parent.time_ms + 1).max(u64::from(minute + 1) * 60_000);
        let block = assemble(
            &parent,
            &records,
            &key,
            time,
            net.bits,
            &AtomicBool::new(false),
        )
        .ok_or("assembly failed")?;
        let height = block.header.height;
        gridledger_bench::post_block(&http, &from, &block).await?;
        let posted = Instant::now();
        let deadline = posted + Duration::from_secs(30);
        loop {
            let at: u32 = pg
                .psql("SELECT height FROM gridledger_sink")
                .trim()
                .parse()
                .unwrap_or(0);
            if at >= height {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("block {height} not in PostgreSQL after 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lags.push(posted.elapsed().as_secs_f64() * 1000.0);
    }
    follower.abort();
    let p50 = quantile(&mut lags, 0.5);
    let p99 = quantile(&mut lags, 0.99);
    println!(
        "live lag, block taken by the node -> rows visible ({} blocks, sink polling every 500 ms, its default): p50 {p50:.0} ms, p99 {p99:.0} ms   goal p99 <= 2000 ms   {}",
        lags.len(),
        if p99 <= 2000.0 { "met" } else { "NOT met" }
    );
    node.stop().await;
    Ok(())
}
