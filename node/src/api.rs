//! The HTTP API: JSON for people, raw block bytes for peers.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /status` | network, height, tip, records, known blocks, mempool size |
//! | `GET /chain` | the study's view: `length` and every main-chain block with decoded records |
//! | `GET /blocks?from=H&limit=N` | main-chain blocks from height H (N ≤ 500): JSON, or with `Accept: application/octet-stream` a varint count then each block as varint length + bytes |
//! | `GET /blocks/{height or id}` | one block: JSON, or its bytes with `Accept: application/octet-stream` |
//! | `POST /blocks` | a block's bytes (at most the network's block size): 200 added or known, 400 malformed, 409 unknown parent, 422 any other broken rule, each with the reason |

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::chain::block::put_varint;
use crate::chain::{Block, BlockId, Change, RecordKey, ValidationError};
use crate::export::json_block;
use crate::ledger::{AddError, Ledger};
use crate::mempool::Mempool;

/// What the API serves: the ledger and the records waiting for a block.
#[derive(Debug)]
pub struct Core {
    /// The chain.
    pub ledger: Ledger,
    /// Records waiting for a block.
    pub mempool: Mempool,
    /// Set when the tip changes, so that a miner working on the old tip stops at once.
    pub tip_changed: Arc<std::sync::atomic::AtomicBool>,
}

impl Core {
    /// Validates and stores a block (from a peer or the miner), and keeps the mempool in
    /// step: the block's records leave it, a reorg's lost records return to it.
    pub fn accept(&mut self, block: Block, now_ms: u64) -> Result<crate::ledger::Added, AddError> {
        let added = self.ledger.add(block, now_ms)?;
        if added.change != Change::SideBranch {
            self.tip_changed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let keys: Vec<RecordKey> = self.ledger.tree().keys_of(&added.id).to_vec();
        self.mempool.remove(&keys);
        for r in added.returned.clone() {
            self.mempool.add(r);
        }
        Ok(added)
    }
}

/// The core, shared between the API, the poller and the miner.
pub type Shared = Arc<Mutex<Core>>;

const RAW: &str = "application/octet-stream";
/// Most blocks one `GET /blocks` returns.
pub const MAX_LIMIT: u32 = 500;

fn wants_raw(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(RAW))
}

fn error(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": reason.to_string() }))).into_response()
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Core> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The router, with request bodies limited to the network's block size.
pub fn router(shared: Shared) -> Router {
    let limit = lock(&shared).ledger.network().max_block_bytes + 1024;
    Router::new()
        .route("/status", get(status))
        .route("/chain", get(chain))
        .route("/blocks", get(blocks).post(post_block))
        .route("/blocks/{key}", get(block))
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
        "mempool": core.mempool.len(),
    }))
    .into_response()
}

async fn chain(State(shared): State<Shared>) -> Response {
    let core = lock(&shared);
    let height = core.ledger.tree().height();
    let mut out = Vec::with_capacity(height as usize + 1);
    for h in 0..=height {
        match core.ledger.block_at(h) {
            Ok(Some(b)) => out.push(json_block(h, &b)),
            Ok(None) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("block {h} missing"),
                )
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }
    Json(json!({ "length": out.len(), "chain": out })).into_response()
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
    while h <= top && (found.len() as u32) < limit {
        match core.ledger.block_at(h) {
            Ok(Some(b)) => found.push((h, b)),
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // Validation and a durable commit: off the async workers.
    let result = tokio::task::spawn_blocking(move || {
        let mut core = lock(&shared);
        let net = core.ledger.network().clone();
        let block = Block::from_bytes(&body, net.max_block_bytes, net.max_records)
            .map_err(|e| AddError::Invalid(e.into()))?;
        core.accept(block, now)
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
        Ok(Err(AddError::Store(e))) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
