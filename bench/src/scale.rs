//! `scale`: what a long chain costs (issue 14), at growing lengths, each figure next to its
//! goal and its growth from the size before.
//!
//! Builds one chain of `--per-block` records per block (low difficulty, real signatures)
//! and, as it reaches each of `--sizes` blocks, measures:
//! - **disk**: bytes at rest per record (the files as allocated on disk, as `du` counts,
//!   and their length, which counts the database's sparse, never-written tail) against
//!   the record's share of the raw blocks (goal ≤ 1.3×);
//! - **verify**: full verification from disk, every rule and signature (`gridledger verify`'s
//!   path), blocks/s;
//! - **start-up and memory**: a fresh process opens a node on the data dir (verified mark)
//!   until its API is up: seconds (goal < 2 s at 1 M blocks), resident memory once up and
//!   peak (goal < 120 MB at 1 M blocks of 15, ≤ 10 % more at 2 M);
//! - **sync**: a fresh node joining a node that holds the chain (both in this process, over
//!   loopback HTTP), blocks/s, and its ratio to the verification rate (goal ≥ 0.5);
//! - **queries**: `/readings` of one relay over a day, p50/p99, back to back: on the synced
//!   node while it takes 100 new blocks/s for 10 s (the goal's condition: p99 < 20 ms),
//!   and on the serving node while it serves the sync at full speed (a harder load; with
//!   `--query-gap-ms` the reads are spaced, so that the sync is measured nearly alone).
//!
//! ```sh
//! cargo run --release -p gridledger-bench --bin scale                       # 250k,500k,1M,2M × 15
//! cargo run --release -p gridledger-bench --bin scale -- --sizes 10000,20000 --per-block 15
//! ```

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::Parser;
use gridledger::ledger::Ledger;
use gridledger::run::{start, NodeConfig};
use gridledger_chain::Network;
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

#[derive(Debug, Parser)]
#[command(name = "scale", about)]
struct Args {
    /// Chain lengths to measure at, in blocks, ascending.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "250000,500000,1000000,2000000"
    )]
    sizes: Vec<u32>,
    /// Records per block (one per relay).
    #[arg(long, default_value_t = 15)]
    per_block: u32,
    /// Keep the chain here (default: a temporary dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Pause between two `/readings` queries during the sync, in ms (0: back to back).
    #[arg(long, default_value_t = 0)]
    query_gap_ms: u64,
    /// Internal: open this data dir as a node, report start-up and memory.
    #[arg(long, hide = true)]
    child: Option<PathBuf>,
}

const NETWORK: &str = "scale-bench";
/// Minute of the first block's records.
use gridledger_bench::FIRST_MINUTE;

fn network() -> Network {
    Network::new(NETWORK, 0)
}

fn config(dir: &Path, peers: Vec<String>) -> NodeConfig {
    NodeConfig {
        sync_every: Duration::from_millis(100),
        ..gridledger_bench::node_config(dir, network(), peers)
    }
}

/// The raw bytes of every main-chain block in `dir` (for a chain this run did not build).
fn raw_bytes(dir: &Path) -> Result<u64, String> {
    let ledger = Ledger::open_read_only(dir).map_err(|e| e.to_string())?;
    let mut raw = 0u64;
    for h in 1..=ledger.tree().height() {
        let id = ledger.tree().main_at(h).ok_or("main chain gap")?;
        let b = ledger
            .block(&id)
            .map_err(|e| e.to_string())?
            .ok_or("block missing")?;
        raw += b.to_bytes().len() as u64;
    }
    Ok(raw)
}

/// The child: a node opened on `dir`; prints `UP <secs> <VmRSS kB> <VmHWM kB>`.
fn child(dir: &Path) -> Result<(), String> {
    let rt = gridledger_bench::runtime("scale").ok_or("no runtime")?;
    rt.block_on(async {
        let t = Instant::now();
        let node = start(
            config(dir, Vec::new()),
            ed25519_dalek::SigningKey::from_bytes(&[8; 32]),
        )
        .await
        .map_err(|e| e.to_string())?;
        let up = t.elapsed();
        tokio::net::TcpStream::connect(node.addr)
            .await
            .map_err(|e| format!("API not listening: {e}"))?;
        let kb = |field: &str| {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix(field))
                        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
                })
                .unwrap_or(0)
        };
        println!(
            "UP {:.3} {} {}",
            up.as_secs_f64(),
            kb("VmRSS:"),
            kb("VmHWM:")
        );
        node.stop().await;
        Ok(())
    })
}

struct Row {
    blocks: u32,
    records: u64,
    /// The witness (every record read by the node): bytes per record, its share of the
    /// store's bytes per record, start-up with it.
    witness_per_record: f64,
    witness_share: f64,
    up_with_witness_s: f64,
    disk_alloc: f64,
    disk_len: f64,
    verify: f64,
    up_s: f64,
    rss_mb: f64,
    hwm_mb: f64,
    synced: Synced,
}

fn percentile(v: &mut [Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
}

/// One day of relay 1's readings from `base`, from minute `from`: how long the answer
/// took, or `None` if it failed.
async fn day_read(client: &reqwest::Client, base: &str, from: u32) -> Option<Duration> {
    let t = Instant::now();
    let r = client
        .get(format!(
            "{base}/readings?relay=1&from={from}&to={}",
            from + 1439
        ))
        .send()
        .await
        .ok()
        .filter(|r| r.status().is_success())?;
    r.bytes().await.ok()?;
    Some(t.elapsed())
}

/// What [`sync_and_query`] measures.
struct Synced {
    /// Blocks/s.
    rate: f64,
    /// A day's read on the serving node while it serves the sync, p50 and p99 ms.
    serving: (f64, f64),
    /// A day's read on the synced node while it takes [`ACCEPT_RATE`] blocks/s, p50 and
    /// p99 ms (the goal's condition).
    accepting: (f64, f64),
}

/// Blocks per second posted to the synced node while its reads are timed, and for how long.
const ACCEPT_RATE: u32 = 100;
const ACCEPT_SECS: u32 = 10;

async fn sync_and_query(
    dir: &Path,
    blocks: u32,
    per_block: u32,
    gap: Duration,
) -> Result<Synced, String> {
    let fresh_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let key = || gridledger::keys::generate().map_err(|e| e.to_string());
    let source = start(config(dir, Vec::new()), key()?)
        .await
        .map_err(|e| e.to_string())?;
    let base = format!("http://{}", source.addr);
    let began = Instant::now();
    let fresh = start(config(fresh_dir.path(), vec![base.clone()]), key()?)
        .await
        .map_err(|e| e.to_string())?;
    let client = gridledger::wire::builder()
        .build()
        .map_err(|e| e.to_string())?;
    let height = gridledger_bench::height;
    // Relay 1's days, read in turn on the serving node while the fresh one pulls.
    let days = (blocks / 1440).max(1);
    let mut lat = Vec::new();
    let deadline = began + Duration::from_secs(3600);
    let mut i = 0u32;
    while height(&fresh) < blocks {
        if Instant::now() > deadline {
            return Err(format!("synced {} of {blocks} in an hour", height(&fresh)));
        }
        let t = Instant::now();
        if let Some(took) = day_read(&client, &base, FIRST_MINUTE + (i % days) * 1440).await {
            lat.push(took);
        }
        i += 1;
        // With a gap, the end of the sync is still seen within 5 ms.
        let next = t + gap;
        while Instant::now() < next && height(&fresh) < blocks {
            tokio::time::sleep(Duration::from_millis(5).min(gap)).await;
        }
    }
    let secs = began.elapsed().as_secs_f64();
    source.stop().await;
    let serving = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.99));

    // The goal's condition: the synced node takes 100 new blocks/s (posted, as a peer
    // pushes them) while a client reads days of it back to back.
    let tip = fresh
        .shared
        .lock()
        .map_err(|_| "node lock poisoned")?
        .ledger
        .tip_header()
        .map_err(|e| e.to_string())?;
    let next = gridledger_bench::next_blocks(tip, ACCEPT_RATE * ACCEPT_SECS, per_block)?;
    let fresh_base = format!("http://{}", fresh.addr);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let reads = {
        let (client, base, stop) = (client.clone(), fresh_base.clone(), stop.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(took) = day_read(&client, &base, FIRST_MINUTE + (i % days) * 1440).await
                {
                    lat.push(took);
                }
                i += 1;
            }
            lat
        })
    };
    let posting = Instant::now();
    for (i, b) in next.iter().enumerate() {
        let due = posting + Duration::from_secs_f64(i as f64 / f64::from(ACCEPT_RATE));
        tokio::time::sleep_until(due.into()).await;
        gridledger_bench::post_block(&client, &fresh_base, b).await?;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut lat = reads.await.map_err(|e| e.to_string())?;
    fresh.stop().await;
    Ok(Synced {
        rate: f64::from(blocks) / secs,
        serving,
        accepting: (percentile(&mut lat, 0.5), percentile(&mut lat, 0.99)),
    })
}

/// Where the file's bytes go, per table, against the raw blocks: what the disk figure is
/// made of.
fn print_table_bytes(dir: &Path, raw: u64, file_len: u64) -> Result<(), String> {
    let store = gridledger::store::Store::open_read_only(dir).map_err(|e| e.to_string())?;
    let tables = store.table_stats().map_err(|e| e.to_string())?;
    let ratio = |b: u64| b as f64 / raw.max(1) as f64;
    let mut line = format!("  bytes / raw: files {:.2}", ratio(file_len));
    for t in &tables {
        line += &format!(
            "; {} {:.3} stored + {:.3} metadata + {:.3} fragmented",
            t.table,
            ratio(t.stored),
            ratio(t.metadata),
            ratio(t.fragmented)
        );
    }
    println!("{line}");
    Ok(())
}

fn measure(
    dir: &Path,
    blocks: u32,
    per_block: u32,
    raw: u64,
    gap: Duration,
) -> Result<Row, String> {
    // The database and the block file beside it: every byte at rest.
    let (mut allocated, mut len) = (0, 0);
    for name in [gridledger::store::DB_FILE, gridledger::blockfile::FILE] {
        if let Ok(m) = std::fs::metadata(dir.join(name)) {
            allocated += m.blocks() * 512;
            len += m.len();
        }
    }
    let records = u64::from(blocks) * u64::from(per_block);
    print_table_bytes(dir, raw, len)?;
    let t = Instant::now();
    let verified = Ledger::open_read_only(dir).map_err(|e| e.to_string())?;
    let verify = f64::from(blocks) / t.elapsed().as_secs_f64();
    drop(verified);
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(me)
        .arg("--child")
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    let said = String::from_utf8_lossy(&out.stdout);
    let up: Vec<f64> = said
        .lines()
        .find_map(|l| l.strip_prefix("UP "))
        .ok_or_else(|| {
            format!(
                "the node process said: {said}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let [up_s, rss, hwm] = up[..] else {
        return Err(format!("unreadable child report: {said}"));
    };
    // The witness of a node that read every record of the chain (issue 29): its bytes per
    // record, and a start-up with it, beside the one without.
    let t = Instant::now();
    let witness_bytes = fill_witness(dir, blocks, per_block)?;
    eprintln!(
        "  (witness of {records} records written in {:.0} s)",
        t.elapsed().as_secs_f64()
    );
    let out = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg("--child")
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    let said = String::from_utf8_lossy(&out.stdout);
    let up_with_witness_s: f64 = said
        .lines()
        .find_map(|l| l.strip_prefix("UP "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("the node process said: {said}"))?;
    let rt = gridledger_bench::runtime("scale").ok_or("no runtime")?;
    let synced = rt.block_on(sync_and_query(dir, blocks, per_block, gap))?;
    Ok(Row {
        blocks,
        records,
        witness_per_record: witness_bytes as f64 / records as f64,
        witness_share: witness_bytes as f64 / len as f64,
        up_with_witness_s,
        disk_alloc: allocated as f64 / raw as f64,
        disk_len: len as f64 / raw as f64,
        verify,
        up_s,
        rss_mb: rss / 1024.0,
        hwm_mb: hwm / 1024.0,
        synced,
    })
}

/// Writes the witness digests of every record of the chain's `blocks` blocks that it does not
/// hold yet (as a node that read them all); returns the witness tables' bytes.
fn fill_witness(dir: &Path, blocks: u32, per_block: u32) -> Result<u64, String> {
    let store =
        gridledger::store::Store::open(dir, NETWORK, 0, false).map_err(|e| e.to_string())?;
    let ranges = store.witness_ranges().map_err(|e| e.to_string())?;
    let from = ranges
        .iter()
        .map(|(_, _, hi)| hi + 1)
        .max()
        .unwrap_or(FIRST_MINUTE);
    let model = SignalModel::new(1, Profile::Realistic);
    let mut batch = Vec::with_capacity(1 << 16);
    for relay in 1..=per_block {
        for minute in from.max(FIRST_MINUTE)..FIRST_MINUTE + blocks {
            let r = model.record(RelayId(relay), Minute(minute), 6, RecordFlags::CLOCK_SET);
            let d = gridledger_core::witness::digest(&r).ok_or("a record does not encode")?;
            batch.push((gridledger::chain::RecordKey::of(&r), d));
            if batch.len() == 1 << 16 {
                store.put_witness_many(&batch).map_err(|e| e.to_string())?;
                batch.clear();
            }
        }
        store.put_witness_many(&batch).map_err(|e| e.to_string())?;
        batch.clear();
    }
    store.witness_bytes().map_err(|e| e.to_string())
}

fn growth(now: f64, before: Option<f64>) -> String {
    before.map_or_else(String::new, |b| {
        format!(" ({:+.0} %)", (now / b - 1.0) * 100.0)
    })
}

fn print(rows: &[Row]) {
    println!(
        "\n| blocks | records | disk / raw (on disk, length) | verify blocks/s | start-up s | RSS MB (peak) | sync blocks/s (÷ verify) | day /readings at 100 blocks/s in, p50, p99 ms | day /readings serving the sync, p50, p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut prev: Option<&Row> = None;
    for r in rows {
        println!(
            "| {} | {} | {:.2}, {:.2} | {:.0} | {:.2}{} | {:.0}{} ({:.0}) | {:.0} ({:.2}) | {:.1}, {:.1} | {:.1}, {:.1} |",
            r.blocks,
            r.records,
            r.disk_alloc,
            r.disk_len,
            r.verify,
            r.up_s,
            growth(r.up_s, prev.map(|p| p.up_s)),
            r.rss_mb,
            growth(r.rss_mb, prev.map(|p| p.rss_mb)),
            r.hwm_mb,
            r.synced.rate,
            r.synced.rate / r.verify,
            r.synced.accepting.0,
            r.synced.accepting.1,
            r.synced.serving.0,
            r.synced.serving.1,
        );
        prev = Some(r);
    }
    println!(
        "goals: disk <= 1.3; start-up < 2 s at 1 M; RSS < 120 MB at 1 M x 15, <= +10 % at 2 M; sync >= 0.5 x verify; day p99 < 20 ms at 100 blocks/s in"
    );
    println!("\n| blocks | witness bytes / record | share of the store's bytes / record (goal <= 10 %) | start-up without / with the witness, s |");
    println!("|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} | {:.1} % | {:.2} / {:.2} |",
            r.blocks,
            r.witness_per_record,
            r.witness_share * 100.0,
            r.up_s,
            r.up_with_witness_s
        );
    }
}

fn run(args: &Args) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_owned());
    let per_block = args.per_block.max(1);
    let mut raw = if dir.join(gridledger::store::DB_FILE).exists() {
        raw_bytes(&dir)?
    } else {
        0
    };
    let mut rows = Vec::new();
    for &size in &args.sizes {
        raw += gridledger_bench::build_to(&dir, &network(), size, per_block)?;
        let row = measure(
            &dir,
            size,
            per_block,
            raw,
            Duration::from_millis(args.query_gap_ms),
        )?;
        rows.push(row);
        print(&rows);
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match &args.child {
        Some(dir) => child(dir),
        None => run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
