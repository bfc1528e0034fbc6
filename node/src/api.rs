//! The HTTP API: JSON for people, raw block bytes for peers.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /status` | network, height, tip, cumulative work, records, known blocks, mempool size, and each relay's polling status (up, last minute, gaps, last error) |
//! | `GET /chain` | the study's view: `length` and every main-chain block with decoded records (streamed) |
//! | `GET /blocks?from=H&limit=N` | main-chain blocks from height H (N ≤ 500, and about 16 MiB at most): JSON, or with `Accept: application/octet-stream` a varint count then each block as varint length + bytes |
//! | `GET /blocks/{height or id}` | one block: JSON, or its bytes with `Accept: application/octet-stream` |
//! | `POST /blocks` | a block's bytes (at most the network's block size): 200 added or known, 400 malformed, 409 unknown parent, 422 any other broken rule or a witness conflict, each with the reason |
//! | `GET /readings?relay=R&from=&to=&format=json\|csv` | a relay's records on the chain between two minutes (minutes since 1970 or `YYYY-MM-DDTHH:MMZ`; default the hour up to now or to the relay's latest minute on the chain, whichever is later; at most a week) |
//! | `GET /readings/{relay}/{minute}/proof` | the record, its block header and its RFC 6962 inclusion proof |
//! | `GET /metrics` | Prometheus text: chain, mempool, blocks mined/received/rejected, witness conflicts, reorgs, per relay records, gaps and up |
//! | `GET /peers`, `POST /peers {"url": …}` | the peer list, and adding a peer |
//! | `POST /peers/resolve` | pulls from every peer at once; says whether the chain was replaced |
//! | `GET /` | the dashboard: a page that polls the endpoints above |

use std::sync::PoisonError;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::chain::block::put_varint;
use crate::chain::{Block, BlockId, Change, ValidationError};
use crate::export::json_block;
use crate::ledger::AddError;

use crate::core::{lock, Origin};
pub use crate::core::{Core, Shared};

const RAW: &str = "application/octet-stream";
/// Most blocks one `GET /blocks` returns.
pub const MAX_LIMIT: u32 = 500;
/// `GET /blocks` stops adding blocks once it holds about this many bytes (at least one
/// block is always sent), so that an answer stays small whatever the blocks' size.
pub const MAX_LIST_BYTES: usize = 16 << 20;

fn wants_raw(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(RAW))
}

fn error(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": reason.to_string() }))).into_response()
}

/// The router, with request bodies limited to the network's block size.
pub fn router(shared: Shared) -> Router {
    let limit = lock(&shared).ledger.network().max_block_bytes + 1024;
    Router::new()
        .route("/status", get(status))
        .route("/chain", get(chain))
        .route("/blocks", get(blocks).post(post_block))
        .route("/blocks/{key}", get(block))
        .route("/readings", get(readings))
        .route("/readings/{relay}/{minute}/proof", get(proof))
        .route("/metrics", get(metrics))
        .route("/disputes", get(disputes))
        .route("/peers", get(get_peers).post(post_peers))
        .route("/peers/resolve", post(resolve))
        .route("/", get(dashboard))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

async fn status(State(shared): State<Shared>) -> Response {
    let core = lock(&shared);
    let s = core.ledger.summary();
    let net = core.ledger.network();
    Json(json!({
        "network": net.name,
        "difficulty_bits": net.bits,
        "height": s.height,
        "tip": s.tip.to_hex(),
        "records": s.records,
        "blocks_known": s.blocks,
        "work": core.ledger.tree().tip_work().to_string(),
        "mempool": core.mempool.len(),
        "peers": core.peers.len(),
        "relays": relay_statuses(&core).iter().map(|st| json!({
            "relay": st.relay,
            "up": st.is_up(),
            "last_minute": st.last_minute.map(|m| m.0),
            "last_minute_utc": st.last_minute.map(|m| m.to_string()),
            "records": st.records,
            "missed_minutes": st.missed_minutes,
            "failures_in_a_row": st.failures_in_a_row,
            "last_error": st.last_error,
            "clock_not_set": st.clock_not_set,
            "clock_ahead_ms": st.clock_ahead_ms,
            "clock_problem": st.clock_problem(),
        })).collect::<Vec<_>>(),
        "disputes": {
            "total": core.counters.witness_disputes,
            "open": core.disputes().count(),
            // The latest few; GET /disputes lists them all.
            "latest": core.disputes().rev().take(STATUS_DISPUTES).map(dispute_json).collect::<Vec<_>>(),
        },
    }))
    .into_response()
}

/// Disputes shown in `/status`.
const STATUS_DISPUTES: usize = 16;

fn dispute_json(d: &crate::core::Dispute) -> serde_json::Value {
    json!({
        "relay": d.read.relay.0,
        "minute": d.read.minute.0,
        "minute_utc": d.read.minute.to_string(),
        "height": d.height,
        "block_id": d.block.to_hex(),
        "found_ms": d.found_ms,
        "on_chain": crate::export::record_json(&d.on_chain),
        "read": crate::export::record_json(&d.read),
    })
}

/// Every open dispute: a record on the main chain that differs from what this node read
/// from the relay itself, with both versions, oldest minute first.
async fn disputes(State(shared): State<Shared>) -> Response {
    let core = lock(&shared);
    let list: Vec<_> = core.disputes().map(dispute_json).collect();
    Json(json!({
        "total": core.counters.witness_disputes,
        "disputes": list,
    }))
    .into_response()
}

/// Blocks serialised per lock by `GET /chain`.
const CHAIN_CHUNK: u32 = 256;

/// The whole main chain, streamed: a chunk of blocks at a time under the lock, so that a
/// long chain neither stalls the miner and the intake nor sits in memory as one JSON
/// document. The chain is the one at the request's start; if a reorg replaces part of it
/// while it is sent, the answer is cut short (invalid JSON) rather than mixing branches.
async fn chain(State(shared): State<Shared>) -> Response {
    let height = lock(&shared).ledger.tree().height();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let head = format!("{{\"length\":{},\"chain\":[", u64::from(height) + 1);
        if tx.blocking_send(Ok(Bytes::from(head))).is_err() {
            return;
        }
        let mut prev = None;
        let mut h = 0u32;
        while h <= height {
            let end = h.saturating_add(CHAIN_CHUNK).min(height.saturating_add(1));
            let mut buf = Vec::new();
            {
                let core = lock(&shared);
                for at in h..end {
                    let block = match core.ledger.block_at(at) {
                        Ok(Some(b)) if at == 0 || Some(b.header.prev) == prev => b,
                        Ok(_) => {
                            let _ = tx.blocking_send(Err(std::io::Error::other(
                                "the main chain changed while it was sent; ask again",
                            )));
                            return;
                        }
                        Err(e) => {
                            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                            return;
                        }
                    };
                    prev = Some(block.id());
                    if at > 0 {
                        buf.push(b',');
                    }
                    if let Err(e) = serde_json::to_writer(&mut buf, &json_block(at, &block)) {
                        let _ = tx.blocking_send(Err(std::io::Error::other(e)));
                        return;
                    }
                }
            }
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return; // the client went away
            }
            h = end;
        }
        let _ = tx.blocking_send(Ok(Bytes::from_static(b"]}")));
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct Range {
    from: Option<u32>,
    limit: Option<u32>,
}

async fn blocks(
    State(shared): State<Shared>,
    Query(range): Query<Range>,
    headers: HeaderMap,
) -> Response {
    let core = lock(&shared);
    let from = range.from.unwrap_or(0);
    let limit = range.limit.unwrap_or(100).min(MAX_LIMIT);
    let top = core.ledger.tree().height();
    let mut found = Vec::new();
    let mut h = from;
    let mut bytes = 0usize;
    while h <= top && (found.len() as u32) < limit && bytes < MAX_LIST_BYTES {
        match core.ledger.block_at(h) {
            Ok(Some(b)) => {
                bytes += b.records.iter().map(Vec::len).sum::<usize>() + 200;
                found.push((h, b));
            }
            Ok(None) => break,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
        h += 1;
    }
    if wants_raw(&headers) {
        let mut body = Vec::new();
        put_varint(&mut body, found.len() as u64);
        for (_, b) in &found {
            let bytes = b.to_bytes();
            put_varint(&mut body, bytes.len() as u64);
            body.extend_from_slice(&bytes);
        }
        return ([(header::CONTENT_TYPE, RAW)], body).into_response();
    }
    let list: Vec<_> = found.iter().map(|(h, b)| json_block(*h, b)).collect();
    Json(json!(list)).into_response()
}

async fn block(
    State(shared): State<Shared>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let core = lock(&shared);
    let tree = core.ledger.tree();
    let id = if let Ok(h) = key.parse::<u32>() {
        tree.main_at(h)
    } else {
        BlockId::from_hex(&key).filter(|id| tree.contains(id))
    };
    let Some(id) = id else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no block {key}: give a main-chain height or a known 64-hex-digit id"),
        );
    };
    match core.ledger.block(&id) {
        Ok(Some(b)) if wants_raw(&headers) => {
            ([(header::CONTENT_TYPE, RAW)], b.to_bytes()).into_response()
        }
        Ok(Some(b)) => Json(json_block(tree.height_of(&id).unwrap_or(0), &b)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("block {id} is not stored")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn post_block(State(shared): State<Shared>, body: Bytes) -> Response {
    let now = crate::core::now_ms();
    // Validation and a durable commit: off the async workers.
    let result = tokio::task::spawn_blocking(move || {
        let mut core = lock(&shared);
        let net = core.ledger.network().clone();
        let block = match Block::from_bytes(&body, net.max_block_bytes, net.max_records) {
            Ok(b) => b,
            Err(e) => {
                core.counters.rejected += 1;
                return Err(AddError::Invalid(e.into()));
            }
        };
        core.accept(block, now, Origin::Peer)
    })
    .await;
    match result {
        Ok(Ok(added)) => {
            let change = match &added.change {
                Change::Extended => "extended",
                Change::Reorg { .. } => "reorg",
                Change::SideBranch => "side-branch",
            };
            Json(json!({ "result": "added", "height": added.height, "id": added.id.to_hex(), "change": change }))
                .into_response()
        }
        Ok(Err(AddError::Known(id))) => {
            Json(json!({ "result": "known", "id": id.to_hex() })).into_response()
        }
        Ok(Err(AddError::Invalid(e @ ValidationError::Malformed(_)))) => {
            error(StatusCode::BAD_REQUEST, e)
        }
        Ok(Err(AddError::Invalid(e @ ValidationError::UnknownParent(_)))) => {
            error(StatusCode::CONFLICT, e)
        }
        Ok(Err(AddError::Invalid(e))) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Ok(Err(e @ AddError::WitnessConflict { .. })) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Ok(Err(AddError::Store(e))) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// A minute given as minutes since the epoch or as `YYYY-MM-DDTHH:MM[Z]` (UTC).
fn parse_minute(s: &str) -> Option<u32> {
    if let Ok(m) = s.parse::<u32>() {
        return Some(m);
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (h, mi) = time.split_once(':')?;
    let (h, mi) = (h.parse::<i64>().ok()?, mi.get(..2)?.parse::<i64>().ok()?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 {
        return None;
    }
    // Days from civil (H. Hinnant), 1970-01-01 = 0.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u32::try_from(days * 1440 + h * 60 + mi).ok()
}

#[derive(Debug, Deserialize)]
struct Readings {
    relay: u32,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// Most minutes one `/readings` request may span (a week).
const MAX_READING_MINUTES: u32 = 7 * 1440;

async fn readings(State(shared): State<Shared>, Query(q): Query<Readings>) -> Response {
    use relay_core::{Minute, MinuteRecord, Quantity, RelayId};
    let core = lock(&shared);
    let tree = core.ledger.tree();
    let now = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        / 60) as u32;
    // The bad parameter's name, if any.
    let parse = |v: &Option<String>, default: u32, name: &'static str| match v {
        None => Ok(default),
        Some(s) => parse_minute(s).ok_or((name, s.clone())),
    };
    // Default end: now, or the relay's latest minute on the chain if later (a relay with a
    // compressed clock, as in `demo --fast`, runs ahead of the wall clock).
    let latest = (0..=tree.height())
        .rev()
        .take(10_000)
        .filter_map(|h| tree.main_at(h))
        .find_map(|id| {
            tree.keys_of(&id)
                .iter()
                .filter(|k| k.relay.0 == q.relay)
                .map(|k| k.minute.0)
                .max()
        })
        .unwrap_or(0);
    let bounds = parse(&q.to, now.max(latest), "to")
        .and_then(|to| parse(&q.from, to.saturating_sub(59), "from").map(|from| (from, to)));
    let (from, to) = match bounds {
        Ok(b) => b,
        Err((name, s)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{name}={s} is not a minute (minutes since 1970, or YYYY-MM-DDTHH:MMZ)"),
            )
        }
    };
    if from > to || to - from >= MAX_READING_MINUTES {
        return error(
            StatusCode::BAD_REQUEST,
            format!("from..to must be ordered and span at most {MAX_READING_MINUTES} minutes"),
        );
    }
    let mut found: Vec<(u32, String, MinuteRecord, bool)> = Vec::new();
    for m in from..=to {
        let key = crate::chain::RecordKey {
            relay: RelayId(q.relay),
            minute: Minute(m),
        };
        let Some(h) = tree.record_height(&key) else {
            continue;
        };
        let Ok(Some(block)) = core.ledger.block_at(h) else {
            continue;
        };
        if let Some(r) = block
            .records
            .iter()
            .filter_map(|b| MinuteRecord::decode(b).ok())
            .find(|r| r.relay.0 == q.relay && r.minute.0 == m)
        {
            let disputed = core.is_disputed(&key);
            found.push((h, block.id().to_hex(), r, disputed));
        }
    }
    if q.format.as_deref() == Some("csv") {
        let mut out = String::from("height,relay,minute,minute_utc,faults,sample,second");
        for qn in Quantity::ALL {
            out.push(',');
            out.push_str(&crate::export::column(qn));
        }
        out.push('\n');
        for (h, _, r, _) in &found {
            let step = 60 / r.samples.len().max(1);
            for (i, s) in r.samples.iter().enumerate() {
                out.push_str(&format!(
                    "{h},{},{},{},{},{i},{}",
                    r.relay,
                    r.minute.0,
                    r.minute,
                    r.faults,
                    i * step
                ));
                for qn in Quantity::ALL {
                    out.push(',');
                    out.push_str(&crate::export::milli(qn.raw(s)));
                }
                out.push('\n');
            }
        }
        return ([(header::CONTENT_TYPE, "text/csv")], out).into_response();
    }
    let list: Vec<_> = found
        .iter()
        .map(|(h, id, r, disputed)| {
            json!({
                "height": h,
                "block_id": id,
                // This node read something else from the relay for this minute: see /disputes.
                "disputed": disputed,
                "relay": r.relay.0,
                "minute": r.minute.0,
                "minute_utc": r.minute.to_string(),
                "faults": r.faults,
                "samples": r.samples.iter().map(|s| {
                    Quantity::ALL.iter().map(|q| (crate::export::column(*q), json!(crate::export::number(q.raw(s))))).collect::<serde_json::Map<_, _>>()
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "relay": q.relay, "from": from, "to": to, "readings": list })).into_response()
}

async fn proof(
    State(shared): State<Shared>,
    Path((relay, minute)): Path<(u32, String)>,
) -> Response {
    use relay_core::{Minute, MinuteRecord, RelayId};
    let Some(minute) = parse_minute(&minute) else {
        return error(StatusCode::BAD_REQUEST, format!("{minute} is not a minute"));
    };
    let core = lock(&shared);
    let key = crate::chain::RecordKey {
        relay: RelayId(relay),
        minute: Minute(minute),
    };
    let Some(height) = core.ledger.tree().record_height(&key) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no record of relay {relay} at minute {minute} on the chain"),
        );
    };
    let block = match core.ledger.block_at(height) {
        Ok(Some(b)) => b,
        Ok(None) => return error(StatusCode::INTERNAL_SERVER_ERROR, "block missing"),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let Some(index) = block.records.iter().position(|b| {
        MinuteRecord::decode(b).is_ok_and(|r| r.relay.0 == relay && r.minute.0 == minute)
    }) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "record index disagrees with the block",
        );
    };
    let Some(p) = crate::chain::merkle::InclusionProof::new(&block.records, index) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "no proof");
    };
    Json(json!({
        "relay": relay,
        "minute": minute,
        "height": height,
        "block_id": block.id().to_hex(),
        "header": hex::encode(block.header.to_bytes()),
        "record": hex::encode(&block.records[index]),
        "index": p.index,
        "size": p.size,
        "path": p.path.iter().map(hex::encode).collect::<Vec<_>>(),
        "how_to_verify": "SHA-256(header) = block_id; the record's leaf hash SHA-256(0x00 || record) climbs the RFC 6962 audit path to header bytes 38..70 (docs/FORMAT.md)",
    }))
    .into_response()
}

async fn metrics(State(shared): State<Shared>) -> Response {
    let core = lock(&shared);
    let s = core.ledger.summary();
    let c = core.counters;
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "gridledger_height",
        "Main-chain height.",
        "gauge",
        s.height.to_string(),
    );
    metric(
        "gridledger_records",
        "Minute records on the main chain.",
        "gauge",
        s.records.to_string(),
    );
    metric(
        "gridledger_blocks_known",
        "Valid blocks known, side branches included.",
        "gauge",
        s.blocks.to_string(),
    );
    metric(
        "gridledger_mempool_records",
        "Records waiting for a block.",
        "gauge",
        core.mempool.len().to_string(),
    );
    metric(
        "gridledger_peers",
        "Configured peers.",
        "gauge",
        core.peers.len().to_string(),
    );
    metric(
        "gridledger_blocks_mined_total",
        "Blocks this node mined.",
        "counter",
        c.mined.to_string(),
    );
    metric(
        "gridledger_blocks_received_total",
        "Peer blocks stored.",
        "counter",
        c.received.to_string(),
    );
    metric(
        "gridledger_blocks_rejected_total",
        "Peer blocks refused.",
        "counter",
        c.rejected.to_string(),
    );
    metric(
        "gridledger_witness_disputes_total",
        "Records found on the main chain that differ from this node's own read of the relay.",
        "counter",
        c.witness_disputes.to_string(),
    );
    metric(
        "gridledger_witness_conflicts_total",
        "Peer blocks refused for a record that differs from this node's own read.",
        "counter",
        c.witness_conflicts.to_string(),
    );
    metric(
        "gridledger_reorgs_total",
        "Main-chain switches.",
        "counter",
        c.reorgs.to_string(),
    );
    out.push_str("# HELP gridledger_relay_records_total Records read from the relay.\n# TYPE gridledger_relay_records_total counter\n");
    let statuses = relay_statuses(&core);
    for st in &statuses {
        out.push_str(&format!(
            "gridledger_relay_records_total{{relay=\"{}\"}} {}\n",
            st.relay, st.records
        ));
    }
    out.push_str("# HELP gridledger_relay_missed_minutes_total Minutes of the relay never read (gaps).\n# TYPE gridledger_relay_missed_minutes_total counter\n");
    for st in &statuses {
        out.push_str(&format!(
            "gridledger_relay_missed_minutes_total{{relay=\"{}\"}} {}\n",
            st.relay, st.missed_minutes
        ));
    }
    out.push_str("# HELP gridledger_relay_up 1 if the last poll of the relay succeeded.\n# TYPE gridledger_relay_up gauge\n");
    for st in &statuses {
        out.push_str(&format!(
            "gridledger_relay_up{{relay=\"{}\"}} {}\n",
            st.relay,
            u8::from(st.is_up())
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn relay_statuses(core: &Core) -> Vec<crate::poll::RelayStatus> {
    core.relays
        .iter()
        .map(|r| r.lock().unwrap_or_else(PoisonError::into_inner).clone())
        .collect()
}

async fn resolve(State(shared): State<Shared>) -> Response {
    let before = lock(&shared).ledger.tree().tip();
    let results = crate::peers::resolve(&crate::peers::client(), &shared).await;
    let core = lock(&shared);
    let tree = core.ledger.tree();
    Json(json!({
        "replaced": tree.tip() != before,
        "height": tree.height(),
        "tip": tree.tip().to_hex(),
        "peers": results,
    }))
    .into_response()
}

async fn dashboard() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("dashboard.html"),
    )
        .into_response()
}

async fn get_peers(State(shared): State<Shared>) -> Response {
    let mut core = lock(&shared);
    let now = crate::core::now_ms();
    let peers = core.peers.clone();
    let health: Vec<_> = peers
        .iter()
        .map(|p| {
            let h = core.peer_health(p);
            let mut v = json!(h);
            v["state"] = json!(h.state(now));
            v
        })
        .collect();
    Json(json!({ "peers": peers, "health": health })).into_response()
}

#[derive(Debug, Deserialize)]
struct NewPeer {
    url: String,
}

async fn post_peers(State(shared): State<Shared>, Json(p): Json<NewPeer>) -> Response {
    let url = p.url.trim_end_matches('/').to_owned();
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 256 {
        return error(
            StatusCode::BAD_REQUEST,
            format!("'{url}' is not an http:// URL"),
        );
    }
    let mut core = lock(&shared);
    if !core.peers.contains(&url) {
        if core.peers.len() >= 256 {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "peer list is full (256)");
        }
        core.peers.push(url);
    }
    Json(json!({ "peers": core.peers })).into_response()
}
