//! dashboard: what each dashboard page weighs and how soon it shows something, in headless
//! Chromium, every load a first visit (cache off).
//!
//! Without `--url`, builds a node in-process holding a week of one relay's records (one
//! block a minute, real signatures, ending at the current minute) and measures the
//! overview, explorer, block and proof pages and the relay page over an hour, a day and a
//! week. With `--url` (for instance the demo's `http://127.0.0.1:5004`), measures that
//! node's pages instead.
//!
//! `cargo run --release -p gridledger-bench --bin dashboard [-- --url http://127.0.0.1:5004]`

#[path = "../../node/tests/browser/mod.rs"]
mod browser;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use clap::Parser;
use ed25519_dalek::SigningKey;
use gridledger::chain::{assemble, Network};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

#[derive(Parser)]
#[command(about = "Page weight and time to first chart of the dashboard, in headless Chromium")]
struct Args {
    /// A running node to measure (e.g. the demo's http://127.0.0.1:5004); default: a node
    /// built here with a week of records.
    #[arg(long)]
    url: Option<String>,
    /// The relay whose page is measured.
    #[arg(long, default_value_t = 1)]
    relay: u32,
    /// Loads per page (the median is shown).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Days of records in the built node.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Also write a PNG of each page (its last load) into this directory.
    #[arg(long)]
    screenshots: Option<std::path::PathBuf>,
    /// With --screenshots: JPEGs at 3/4 scale instead (the book's picture, docs/book/src/dashboard-relay.jpg).
    #[arg(long)]
    jpeg: bool,
}

/// Builds a node holding `days` of relay `relay`'s records up to the current minute and
/// serves its API on loopback.
async fn build_node(relay: u32, days: u32) -> Result<(SocketAddr, tempfile::TempDir), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let net = Network::new("dashboard-bench", 4);
    let mut ledger =
        gridledger::ledger::Ledger::open(dir.path(), net.clone()).map_err(|e| e.to_string())?;
    let key = SigningKey::from_bytes(&[7; 32]);
    let model = SignalModel::new(1, Profile::Realistic);
    let now = gridledger::clock::now_ms();
    let last = (now / 60_000) as u32 - 2;
    let first = last + 1 - days * 1440;
    let mut parent = net.genesis().header;
    let mut batch = Vec::new();
    let start = std::time::Instant::now();
    for m in first..=last {
        let r = model.record(RelayId(relay), Minute(m), 6, RecordFlags::CLOCK_SET);
        let time = gridledger::run::block_time(parent.time_ms + 1000, 0, std::slice::from_ref(&r));
        let b = assemble(&parent, &[r], &key, time, net.bits, &AtomicBool::new(false))
            .ok_or("mining stopped")?;
        parent = b.header;
        batch.push(b);
        if batch.len() == 500 || m == last {
            for r in ledger.add_batch(std::mem::take(&mut batch), now) {
                r.map_err(|e| e.to_string())?;
            }
        }
    }
    eprintln!(
        "built {} blocks of relay {relay} in {:.1} s",
        last - first + 1,
        start.elapsed().as_secs_f64()
    );
    let shared = Arc::new(Mutex::new(gridledger::api::Core::new(ledger)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            gridledger::api::router(shared).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Ok((addr, dir))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn run(args: Args) -> Result<(), String> {
    let exe = browser::find().ok_or("no chromium on PATH (set GRIDLEDGER_CHROMIUM)")?;
    let (base, _dir) = match &args.url {
        Some(u) => (u.trim_end_matches('/').to_owned(), None),
        None => {
            let (addr, dir) = build_node(args.relay, args.days).await?;
            (format!("http://{addr}"), Some(dir))
        }
    };
    let client = gridledger::wire::builder()
        .build()
        .map_err(|e| e.to_string())?;
    let status = browser::json(client.get(format!("{base}/status"))).await?;
    let height = status["height"].as_u64().unwrap_or(0);
    let tip = browser::json(client.get(format!("{base}/blocks/{height}"))).await?;
    let reading = tip["records"][0]
        .as_object()
        .map(|r| format!("/reading/{}/{}", r["relay"], r["minute"]));
    let relay = args.relay;
    let mut pages = vec![
        ("overview".to_owned(), "/".to_owned()),
        ("explorer".to_owned(), "/explorer".to_owned()),
        ("block (tip)".to_owned(), format!("/block/{height}")),
        (
            format!("relay {relay}, hour"),
            format!("/relay/{relay}?range=hour"),
        ),
        (
            format!("relay {relay}, day"),
            format!("/relay/{relay}?range=day"),
        ),
        (
            format!("relay {relay}, week"),
            format!("/relay/{relay}?range=week"),
        ),
    ];
    if let Some(r) = reading {
        pages.push(("proof (tip record)".to_owned(), r));
    }
    let chrome = browser::Browser::launch(&exe).await?;
    let page = chrome.page().await?;
    println!(
        "dashboard: {base}, {} loads per page, cache off (medians)",
        args.runs
    );
    println!(
        "{:<20} {:>10} {:>9} {:>11} {:>16} {:>9}",
        "page", "bytes", "requests", "ready ms", "first chart ms", "points"
    );
    for (name, path) in pages {
        let (mut bytes, mut requests, mut ready, mut chart, mut points) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let load = page.open(&format!("{base}{path}")).await?;
            if !load.errors.is_empty() || !load.failed.is_empty() {
                return Err(format!("{path}: {:?} {:?}", load.errors, load.failed));
            }
            bytes.push(load.bytes as f64);
            requests.push(load.requests as f64);
            let v = page
                .eval("[window.gl.readyMs, window.gl.firstChartMs, window.gl.data ? window.gl.data.t.length : null]")
                .await?;
            ready.push(v[0].as_f64().unwrap_or(f64::NAN));
            if let Some(c) = v[1].as_f64() {
                chart.push(c);
            }
            if let Some(p) = v[2].as_f64() {
                points.push(p);
            }
        }
        if let Some(dir) = &args.screenshots {
            let file: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            if args.jpeg {
                page.screenshot_jpeg(&dir.join(format!("{file}.jpg")), 0.75)
                    .await?;
            } else {
                page.screenshot(&dir.join(format!("{file}.png"))).await?;
            }
        }
        let opt = |v: Vec<f64>| {
            if v.is_empty() {
                "—".to_owned()
            } else {
                format!("{:.0}", median(v))
            }
        };
        println!(
            "{name:<20} {:>10.0} {:>9.0} {:>11.0} {:>16} {:>9}",
            median(bytes),
            median(requests),
            median(ready),
            opt(chart),
            opt(points)
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let Some(rt) = gridledger_bench::runtime("dashboard") else {
        return std::process::ExitCode::FAILURE;
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dashboard: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
