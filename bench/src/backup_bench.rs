//! `backup-bench`: what `gridledger backup` of a running node costs (issue 35): at
//! `--blocks` blocks (1 M by default), the copy's time and bytes, and the node's block
//! commits while it runs beside them without it (goal: p99 at most 2 ×); then the restore
//! of that copy, with its full verification, timed.
//!
//! A node is started on the built chain (in this process); blocks are posted to it at
//! `--rate` a second (`POST /blocks`, as a peer pushes them: each answer comes once the
//! block is validated and durably committed) for `--secs` seconds alone, then again while
//! the backup runs through the node's control socket, as `gridledger backup` does.
//!
//! ```sh
//! cargo run --release -p gridledger-bench --bin backup-bench                 # 1 M blocks × 15
//! cargo run --release -p gridledger-bench --bin backup-bench -- --blocks 20000 --per-block 1
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use gridledger::run::start;
use gridledger_chain::Network;

#[derive(Debug, Parser)]
#[command(name = "backup-bench", about)]
struct Args {
    /// Blocks in the chain backed up.
    #[arg(long, default_value_t = 1_000_000)]
    blocks: u32,
    /// Records per block.
    #[arg(long, default_value_t = 15)]
    per_block: u32,
    /// Blocks posted a second while measuring commits.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Seconds of commits measured without a backup.
    #[arg(long, default_value_t = 20)]
    secs: u32,
    /// The backup's --max-rate (MB/s; 0: none).
    #[arg(long, default_value_t = 100)]
    max_rate: u64,
    /// Where the backup goes (default: beside the chain, on the same disk, the hard case:
    /// its writes compete with the node's commits). On another disk or host, as a backup
    /// should be, pass that path (`/dev/shm/x` stands in for one).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Work here (default: a temporary dir); a chain of at least --blocks there is reused.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn network() -> Network {
    Network::new("backup-bench", 0)
}

fn percentile(v: &mut [Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)].as_secs_f64() * 1000.0
}

/// Posts blocks at `rate` a second until `until` says stop (or `max` blocks); returns each
/// post's time to answer.
async fn post_paced(
    client: &reqwest::Client,
    base: &str,
    blocks: &mut std::vec::IntoIter<gridledger_chain::Block>,
    rate: u32,
    until: &dyn Fn() -> bool,
) -> Result<Vec<Duration>, String> {
    let gap = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut tick = tokio::time::interval(gap);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lat = Vec::new();
    while !until() {
        tick.tick().await;
        let Some(b) = blocks.next() else {
            return Err("ran out of prepared blocks".into());
        };
        let t = Instant::now();
        gridledger_bench::post_block(client, base, &b).await?;
        lat.push(t.elapsed());
    }
    Ok(lat)
}

fn run(args: &Args) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let work = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    let dir = work.join(format!("chain-{}x{}", args.blocks, args.per_block));
    let have = gridledger::ledger::Ledger::open_read_only(&dir)
        .map(|l| l.tree().height())
        .unwrap_or(0);
    if have < args.blocks {
        let _ = std::fs::remove_dir_all(&dir);
        gridledger_bench::build_to(&dir, &network(), args.blocks, args.per_block)?;
    }
    let rt = gridledger_bench::runtime("backup-bench").ok_or("no runtime")?;
    rt.block_on(async {
        let t = Instant::now();
        let node = start(
            gridledger_bench::node_config(&dir, network(), Vec::new()),
            ed25519_dalek::SigningKey::from_bytes(&[5; 32]),
        )
        .await
        .map_err(|e| e.to_string())?;
        eprintln!("  (node up on {} blocks in {:.1} s)", args.blocks, t.elapsed().as_secs_f64());
        let base = format!("http://{}", node.addr);
        let client = reqwest::Client::new();
        let tip = node
            .shared
            .lock()
            .map_err(|_| "lock")?
            .ledger
            .tip_header()
            .map_err(|e| e.to_string())?;
        // Enough blocks for both phases at the rate, however long the backup takes (up to
        // 10 minutes).
        let n = args.rate * (args.secs + 600);
        let mut blocks = gridledger_bench::next_blocks(tip, n, args.per_block)?.into_iter();

        let began = Instant::now();
        let secs = Duration::from_secs(args.secs.into());
        let mut alone =
            post_paced(&client, &base, &mut blocks, args.rate, &|| began.elapsed() >= secs)
                .await?;

        let out = args.out.clone().unwrap_or_else(|| work.join("node.backup"));
        let _ = std::fs::remove_file(&out);
        let done = Arc::new(AtomicBool::new(false));
        let max_rate = args.max_rate;
        let backup = {
            let (done, dir, out) = (Arc::clone(&done), dir.clone(), out.clone());
            tokio::task::spawn_blocking(move || {
                let r = gridledger::backup::backup(&gridledger::backup::BackupArgs {
                    data_dir: dir,
                    out,
                    with_key: false,
                    key_file: None,
                    force: true,
                    max_rate,
                });
                done.store(true, Ordering::Release);
                r
            })
        };
        let mut during = post_paced(&client, &base, &mut blocks, args.rate, &|| {
            done.load(Ordering::Acquire)
        })
        .await?;
        let made = backup
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        node.stop().await;

        let restored = work.join("restored");
        let _ = std::fs::remove_dir_all(&restored);
        let t = Instant::now();
        let (_, line) = gridledger::backup::restore(&gridledger::backup::RestoreArgs {
            from: out.clone(),
            data_dir: restored.clone(),
            key_file: None,
            force: false,
        })
        .map_err(|e| e.to_string())?;
        let restore_secs = t.elapsed().as_secs_f64();
        if !line.contains(&format!("height {}", made.manifest.height)) {
            return Err(format!("the restore verified something else: {line}"));
        }
        let (a50, a99) = (percentile(&mut alone, 0.5), percentile(&mut alone, 0.99));
        let (d50, d99) = (percentile(&mut during, 0.5), percentile(&mut during, 0.99));
        println!(
            "\n| blocks | --max-rate MB/s | backup s | backup bytes (B/block) | commit p50, p99 ms alone ({} posts) | commit p50, p99 ms during backup ({} posts) | p99 ratio | restore + verify s |",
            alone.len(),
            during.len()
        );
        println!("|---|---|---|---|---|---|---|---|");
        println!(
            "| {} | {} | {:.1} | {} ({:.0}) | {a50:.1}, {a99:.1} | {d50:.1}, {d99:.1} | {:.2} | {restore_secs:.1} |",
            made.manifest.height,
            args.max_rate,
            made.secs,
            made.bytes,
            made.bytes as f64 / f64::from(made.manifest.height.max(1)),
            d99 / a99,
        );
        println!("goal: commit p99 during a backup <= 2 x without it");
        println!("backup: {made}");
        println!("restore: {line}");
        let _ = std::fs::remove_dir_all(&restored);
        let _ = std::fs::remove_file(&out);
        Ok(())
    })
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backup-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
