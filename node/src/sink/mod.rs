//! The historian: `gridledger sink` streams a node's final blocks into PostgreSQL, where
//! analysts, pandas and Grafana already are (`docs/book/src/historian.md`).
//!
//! Only blocks that are final are written (with finality; on a network without an
//! allow-list, blocks `--depth` below the tip), so no row is ever taken back. Every batch
//! of blocks is written with `COPY` in one transaction that also moves the cursor (the last
//! block written, in `gridledger_sink`): a kill of the sink, the node or PostgreSQL at any
//! moment leaves each block written once or not at all, and a restart goes on from the
//! cursor. The sink checks what it writes: each block decodes, links to the last one
//! written, and passes every rule that needs no chain (work, Merkle root, records,
//! signatures); a block at the cursor that the node no longer has is a rewrite of history,
//! refused with the procedure to follow.

pub mod error;
pub mod rows;
pub mod schema;

use std::time::Duration;

use futures_util::SinkExt;
use tokio_postgres::Client;

use crate::chain::{Block, Network};
pub use error::SinkError;
use schema::Cursor;

/// `gridledger sink`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// The node to read, its base URL.
    #[arg(
        long,
        env = "GRIDLEDGER_SINK_FROM",
        default_value = "http://127.0.0.1:5004"
    )]
    pub from: String,
    /// The database, as a libpq connection string or URL
    /// (`postgres://user:password@host/db`, or `host=/run/postgresql dbname=historian`);
    /// better from the environment than on a command line others can read.
    #[arg(long, env = "GRIDLEDGER_SINK_TO")]
    pub to: String,
    /// On a network without finality (no allow-list): write blocks this far below the tip.
    #[arg(long, env = "GRIDLEDGER_SINK_DEPTH", default_value_t = 6)]
    pub depth: u32,
    /// Most blocks in one transaction.
    #[arg(long, default_value_t = 500)]
    pub batch_blocks: u32,
    /// How often to ask the node for newly final blocks once caught up, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub poll_ms: u64,
    /// Stop once caught up (for a back-fill from cron, or a test), instead of following.
    #[arg(long)]
    pub once: bool,
    /// CA certificate(s) (PEM) that an https:// node's certificate must chain to
    /// [default: the system's roots]
    #[arg(long, env = "GRIDLEDGER_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
}

/// What a run wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The cursor's height at the end.
    pub height: u32,
    /// Blocks written by this run.
    pub blocks: u64,
    /// Records written by this run.
    pub records: u64,
    /// Samples written by this run.
    pub samples: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sink: the database holds the chain up to height {}; this run wrote {} blocks, {} records, {} samples",
            self.height, self.blocks, self.records, self.samples
        )
    }
}

/// What the node says of its chain: network, difficulty, and the highest block that may be
/// written (final, or `depth` below the tip).
struct NodeView {
    network: Network,
    writable: u32,
}

async fn node_view(http: &reqwest::Client, args: &SinkArgs) -> Result<NodeView, SinkError> {
    let url = format!("{}/status", args.from.trim_end_matches('/'));
    let err = |why: String| SinkError::Node {
        url: args.from.clone(),
        why,
    };
    let status: crate::wire::Status = http
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| err(e.to_string()))?
        .json()
        .await
        .map_err(|e| err(format!("/status is not a node's: {e}")))?;
    let writable = match &status.finality {
        Some(f) if f.on => f.final_height,
        _ => status.height.saturating_sub(args.depth),
    };
    Ok(NodeView {
        network: Network::new(&status.network, status.difficulty_bits),
        writable,
    })
}

/// Blocks fetched and checked, with their rows ready to COPY.
struct Batch {
    blocks: Vec<Block>,
    rows: rows::Rows,
}

/// Main-chain blocks `from..from + limit` from the node, raw, checked, and made into rows
/// (off the async threads: the next batch is made while the last one is written).
async fn fetch(
    http: &reqwest::Client,
    args: &SinkArgs,
    net: &Network,
    from: u32,
    limit: u32,
) -> Result<Batch, SinkError> {
    let url = format!(
        "{}/blocks?from={from}&limit={limit}",
        args.from.trim_end_matches('/')
    );
    let err = |why: String| SinkError::Node {
        url: args.from.clone(),
        why,
    };
    let body = http
        .get(&url)
        .header("accept", "application/octet-stream")
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| err(e.to_string()))?
        .bytes()
        .await
        .map_err(|e| err(e.to_string()))?;
    let blocks = crate::wire::decode_list(&body, net.max_block_bytes, net.max_records)
        .map_err(|e| err(format!("GET /blocks: {e}")))?;
    // The rules that need no chain, signatures included, on every core.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let net2 = net.clone();
    let made = tokio::task::spawn_blocking(move || {
        let checked = crate::chain::validate::precheck(blocks, &net2, threads, 0);
        let mut out = Vec::with_capacity(checked.len());
        let mut rows = rows::Rows::default();
        for (i, c) in checked.into_iter().enumerate() {
            let c = c.map_err(|e| format!("block {} breaks a rule: {e}", from as usize + i))?;
            rows.add(&c.block).map_err(|e| e.to_string())?;
            out.push(c.block);
        }
        Ok::<_, String>(Batch { blocks: out, rows })
    })
    .await
    .map_err(|e| err(format!("checking blocks: {e}")))?;
    made.map_err(err)
}

/// Writes a batch (the main chain just above `cursor`) in one transaction with the cursor.
async fn write(client: &mut Client, cursor: &Cursor, batch: &Batch) -> Result<Cursor, SinkError> {
    let rows = &batch.rows;
    let mut prev = (cursor.height, cursor.block_id);
    for b in &batch.blocks {
        if b.header.height != prev.0 + 1 {
            return Err(SinkError::Node {
                url: String::new(),
                why: format!(
                    "sent block {} where {} was asked",
                    b.header.height,
                    prev.0 + 1
                ),
            });
        }
        if b.header.prev.0 != prev.1 {
            // The block this database ends with is not the parent of the node's next one.
            return Err(SinkError::Rewritten { height: prev.0 });
        }
        prev = (b.header.height, b.id().0);
    }
    let tx = client.transaction().await?;
    for (statement, text) in [
        (schema::BLOCK_COPY, &rows.blocks),
        (schema::RECORD_COPY, &rows.records),
        (schema::SAMPLE_COPY, &rows.samples),
    ] {
        if text.is_empty() {
            continue;
        }
        let sink = tx.copy_in::<_, bytes::Bytes>(statement).await?;
        futures_util::pin_mut!(sink);
        sink.send(bytes::Bytes::copy_from_slice(text.as_bytes()))
            .await?;
        sink.finish().await?;
    }
    let moved = tx
        .execute(
            "UPDATE gridledger_sink SET height = $1, block_id = $2 \
             WHERE height = $3 AND block_id = $4",
            &[
                &i64::from(prev.0),
                &prev.1.as_slice(),
                &i64::from(cursor.height),
                &cursor.block_id.as_slice(),
            ],
        )
        .await?;
    if moved != 1 {
        return Err(SinkError::Concurrent);
    }
    tx.commit().await?;
    Ok(Cursor {
        height: prev.0,
        block_id: prev.1,
    })
}

async fn connect(args: &SinkArgs) -> Result<Client, SinkError> {
    let (client, connection) = tokio_postgres::connect(&args.to, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("PostgreSQL connection: {e}");
        }
    });
    Ok(client)
}

/// One session: connect, check the schema, write until caught up (and, unless `--once`,
/// follow). Returns only with `--once` or on an error.
async fn session(
    args: &SinkArgs,
    http: &reqwest::Client,
    total: &mut Summary,
    progress: &mut Option<(crate::progress::Progress, u32)>,
    connected: &mut bool,
    metrics: Option<&crate::metrics::SinkMetrics>,
) -> Result<(), SinkError> {
    let mut client = connect(args).await?;
    *connected = true;
    let view = node_view(http, args).await?;
    let genesis = view.network.genesis().id().0;
    let mut cursor = schema::prepare(&mut client, &view.network.name, genesis).await?;
    let mut view = view;
    let mut ahead: Option<Batch> = None;
    loop {
        total.height = cursor.height;
        if let Some(m) = metrics {
            m.height.set(i64::from(cursor.height));
            m.behind
                .set(i64::from(view.writable.saturating_sub(cursor.height)));
        }
        if cursor.height >= view.writable {
            if args.once {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
            view = node_view(http, args).await?;
            continue;
        }
        if progress.is_none() && view.writable - cursor.height >= 10_000 {
            let p =
                crate::progress::Progress::new("sink", u64::from(view.writable - cursor.height));
            *progress = Some((p, cursor.height));
        }
        let most = args.batch_blocks.max(1);
        let batch = match ahead.take() {
            Some(b) => b,
            None => {
                let limit = (view.writable - cursor.height).min(most);
                fetch(http, args, &view.network, cursor.height + 1, limit).await?
            }
        };
        if batch.blocks.is_empty() {
            view = node_view(http, args).await?;
            continue;
        }
        // The next batch is fetched and checked while this one is written: the node and
        // PostgreSQL work at once.
        let end = cursor.height + u32::try_from(batch.blocks.len()).unwrap_or(u32::MAX);
        let next_limit = view.writable.saturating_sub(end).min(most);
        let prefetch = async {
            if next_limit == 0 {
                return Ok(None);
            }
            fetch(http, args, &view.network, end + 1, next_limit)
                .await
                .map(Some)
        };
        let (written, fetched) = tokio::join!(write(&mut client, &cursor, &batch), prefetch);
        let next = written?;
        ahead = fetched?;
        let rows = &batch.rows;
        if let Some(m) = metrics {
            m.samples.inc_by(rows.sample_count);
        }
        total.blocks += u64::from(next.height - cursor.height);
        total.records += rows.record_count;
        total.samples += rows.sample_count;
        if let Some((p, from)) = progress.as_mut() {
            p.set(u64::from(next.height - *from));
        }
        tracing::debug!(height = next.height, "written");
        cursor = next;
    }
}

/// Runs the sink: sessions one after another, a transient failure (a lost connection, a
/// node restarting) retried after 1 s, doubling to 30 s; any other ends it.
pub async fn run(args: SinkArgs) -> Result<Summary, SinkError> {
    run_with(args, None).await
}

/// The HTTP client for the node: the system's roots, or `--tls-ca`.
fn http_client(args: &SinkArgs) -> Result<reqwest::Client, SinkError> {
    let err = |why: String| SinkError::Node {
        url: args.from.clone(),
        why,
    };
    let mut b = crate::wire::builder().timeout(Duration::from_secs(60));
    if let Some(path) = &args.tls_ca {
        let pem = std::fs::read(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| err(format!("{}: {e}", path.display())))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| err(e.to_string()))
}

/// [`run`], reporting its progress in `metrics` (a node feeding its own historian).
pub async fn run_with(
    args: SinkArgs,
    metrics: Option<crate::metrics::SinkMetrics>,
) -> Result<Summary, SinkError> {
    let http = http_client(&args)?;
    let mut total = Summary::default();
    let mut progress = None;
    let mut wait = Duration::from_secs(1);
    let mut connected = false;
    loop {
        let r = session(
            &args,
            &http,
            &mut total,
            &mut progress,
            &mut connected,
            metrics.as_ref(),
        )
        .await;
        match r {
            Ok(()) => {
                if let Some((p, from)) = progress.take() {
                    p.finish(u64::from(total.height - from));
                }
                return Ok(total);
            }
            // A database that cannot be reached at the very start is a setting to fix, not
            // to wait for: said at once. Once it was reached, a lost connection is waited out.
            Err(e) if e.transient() && (connected || !matches!(e, SinkError::Db(_))) => {
                if let Some(m) = &metrics {
                    m.failures.inc();
                }
                tracing::warn!("sink: {e}; trying again in {} s", wait.as_secs());
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Feeds the historian `args.to` from `node` itself, on a task of its own, with its progress
/// in the node's `/metrics` (`gridledger_sink_*`). An error a retry cannot fix (a wrong
/// password, a foreign schema) is logged and tried again every minute: the node records on,
/// whatever its historian does.
pub fn beside(node: &crate::run::RunningNode, mut args: SinkArgs, scheme: &str) {
    let mut addr = node.addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    args.from = format!("{scheme}://{addr}");
    let metrics = crate::core::lock(&node.shared).metrics.sink.clone();
    tracing::info!(from = %args.from, "feeding the historian (--sink-to)");
    tokio::spawn(async move {
        loop {
            match run_with(args.clone(), Some(metrics.clone())).await {
                Ok(_) => return,
                Err(e) => {
                    metrics.failures.inc();
                    tracing::error!("the historian (--sink-to): {e}; trying again in 60 s");
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            }
        }
    });
}
