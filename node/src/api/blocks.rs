//! `GET /chain`, `GET /blocks`, `GET /blocks/{key}` and `POST /blocks`: blocks for people (JSON) and peers (raw).

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use axum::body::Bytes;

use super::answer::{wants_raw, ApiError};
use crate::chain::{BlockId, Change};
use crate::core::lock;
use crate::core::Shared;
use crate::ledger::AddError;
use crate::render::json_block;
use crate::wire::{encode_raw_list, MAX_LIMIT, MAX_LIST_BYTES, RAW};

/// Block ids looked up per lock by `GET /chain`.
const CHAIN_CHUNK: u32 = 256;

/// The whole main chain, streamed: a chunk of block ids at a time under the lock, the
/// blocks read after releasing it, so that a long chain neither stalls the miner and the
/// intake nor sits in memory as one JSON document. The chain is the one at the request's start; if a reorg replaces part of it
/// while it is sent, the answer is cut short (invalid JSON) rather than mixing branches.
pub(super) async fn chain(State(shared): State<Shared>) -> Response {
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
            // Under the lock, only this chunk's ids; the blocks are read after.
            let (ids, reader) = {
                let core = lock(&shared);
                let tree = core.ledger.tree();
                let mut ids: Vec<Option<crate::chain::BlockId>> = tree
                    .main_range(h, (end - h) as usize)
                    .into_iter()
                    .map(|(_, id)| Some(id))
                    .collect();
                ids.resize((end - h) as usize, None);
                (ids, core.ledger.reader())
            };
            for (at, id) in (h..end).zip(ids) {
                let block = match id.map(|id| reader.block(&id)) {
                    Some(Ok(Some(b))) if at == 0 || Some(b.header.prev) == prev => b,
                    Some(Err(e)) => {
                        let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                        return;
                    }
                    _ => {
                        let _ = tx.blocking_send(Err(std::io::Error::other(
                            "the main chain changed while it was sent; ask again",
                        )));
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
pub(super) struct Range {
    from: Option<u32>,
    limit: Option<u32>,
}

/// Blocks read per store transaction for a raw list: a few hundred KB at most.
const RAW_RUN: usize = 128;

pub(super) async fn blocks(
    State(shared): State<Shared>,
    Query(range): Query<Range>,
    headers: HeaderMap,
) -> Response {
    let from = range.from.unwrap_or(0);
    let limit = range.limit.unwrap_or(100).min(MAX_LIMIT);
    // Under the lock, only the ids; the blocks are read after it is released.
    let (ids, reader) = {
        let core = lock(&shared);
        let tree = core.ledger.tree();
        let ids: Vec<(u32, crate::chain::BlockId)> = tree.main_range(from, limit as usize);
        (ids, core.ledger.reader())
    };
    // A raw list sends the stored bytes as they are (no decoding, no encoding again: a
    // syncing peer asks for thousands of blocks at a time, and checks every rule itself),
    // read in runs, each in one store transaction, up to the byte cap.
    if wants_raw(&headers) {
        let read = super::answer::read_off_lock(move || {
            let mut stored = Vec::with_capacity(ids.len());
            let mut bytes = 0usize;
            'runs: for run in ids.chunks(RAW_RUN) {
                for b in reader.main_blocks_bytes(run)? {
                    let Some(b) = b else { break 'runs };
                    bytes += b.len();
                    stored.push(b);
                    if bytes >= MAX_LIST_BYTES {
                        break 'runs;
                    }
                }
            }
            Ok(stored)
        })
        .await;
        return match read {
            Ok(stored) => {
                let body = encode_raw_list(stored.iter().map(Vec::as_slice));
                ([(header::CONTENT_TYPE, RAW)], body).into_response()
            }
            Err(answer) => answer,
        };
    }
    let read = super::answer::read_off_lock(move || {
        let mut found = Vec::with_capacity(ids.len());
        let mut bytes = 0usize;
        for (h, id) in ids {
            if bytes >= MAX_LIST_BYTES {
                break;
            }
            match reader.block(&id)? {
                Some(b) => {
                    bytes += b.records.iter().map(Vec::len).sum::<usize>() + 200;
                    found.push((h, b));
                }
                None => break,
            }
        }
        Ok(found)
    })
    .await;
    let found = match read {
        Ok(f) => f,
        Err(answer) => return answer,
    };
    let list: Vec<_> = found.iter().map(|(h, b)| json_block(*h, b)).collect();
    Json(json!(list)).into_response()
}

pub(super) async fn block(
    State(shared): State<Shared>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (found, reader) = {
        let core = lock(&shared);
        let tree = core.ledger.tree();
        let id = if let Ok(h) = key.parse::<u32>() {
            tree.main_at(h)
        } else {
            BlockId::from_hex(&key).filter(|id| tree.contains(id))
        };
        let found = id.map(|id| (id, tree.height_of(&id).unwrap_or(0), tree.is_main(&id)));
        (found, core.ledger.reader())
    };
    let Some((id, height, main)) = found else {
        return ApiError::not_found(format!(
            "no block {key}: give a main-chain height or a known 64-hex-digit id"
        ));
    };
    match super::answer::read_off_lock(move || reader.block(&id)).await {
        Ok(Some(b)) if wants_raw(&headers) => {
            ([(header::CONTENT_TYPE, RAW)], b.to_bytes()).into_response()
        }
        Ok(Some(b)) => match serde_json::to_value(json_block(height, &b)) {
            Ok(mut v) => {
                // A block known by id may sit on a side branch: say which.
                v["main"] = json!(main);
                Json(v).into_response()
            }
            Err(e) => ApiError::internal(e),
        },
        Ok(None) => ApiError::not_found(format!("block {id} is not stored")),
        Err(answer) => answer,
    }
}

pub(super) async fn post_block(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = crate::core::now_ms();
    // Who sent it, by its own account (only used to not send the block back).
    let sender = sender_key(&headers);
    // A pushing node reads only the status (`wire::PREFER_MINIMAL`).
    let minimal = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(crate::wire::PREFER_MINIMAL));
    let waiting = std::sync::Arc::clone(&shared);
    // Validation and a durable commit: off the async workers. What follows of the block
    // (relays, orphans, pulls, the pusher's answer) is the core's decision
    // (`gridledger_core::intake`); this only carries it out.
    let result =
        tokio::task::spawn_blocking(move || lock(&shared).on_push(body, sender, now)).await;
    let (result, held) = match result {
        Ok((r, held, next)) => {
            crate::peers::carry_out(&waiting, next);
            (Ok(r), held)
        }
        Err(e) => (Err(e), None),
    };
    match result {
        Ok(Ok(added)) => {
            let change = match &added.change {
                Change::Extended => "extended",
                Change::Reorg { .. } => "reorg",
                Change::SideBranch => "side-branch",
            };
            if minimal {
                return minimal_answer("added", None);
            }
            Json(json!({ "result": "added", "height": added.height, "id": added.id.to_hex(), "change": change }))
                .into_response()
        }
        Ok(Err(AddError::Known(_))) if minimal => minimal_answer("known", held),
        Ok(Err(AddError::Known(id))) => {
            Json(json!({ "result": "known", "id": id.to_hex() })).into_response()
        }
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::internal(e),
    }
}

/// The miner key a pushing or announcing peer names (`gridledger-sender`), if any.
pub(super) fn sender_key(headers: &HeaderMap) -> Option<[u8; 32]> {
    headers
        .get(crate::wire::SENDER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
}

/// The answer to a push that asked for no body: 204, the preference applied (RFC 7240),
/// whether the block was `added` or `known` here, and for a known one since when, if this
/// node remembers.
fn minimal_answer(result: &'static str, held_ms: Option<u64>) -> Response {
    let mut r = (
        axum::http::StatusCode::NO_CONTENT,
        [
            ("preference-applied", crate::wire::PREFER_MINIMAL),
            (crate::wire::RESULT_HEADER, result),
        ],
    )
        .into_response();
    if let Some(ms) = held_ms {
        r.headers_mut()
            .insert(crate::wire::HELD_HEADER, axum::http::HeaderValue::from(ms));
    }
    r
}

/// `POST /blocks/announce`: a peer offers a block by its 32-byte id (the body); the answer
/// says whether this node wants it (`{"want": true}`: it does not hold it), and the peer
/// then pushes it with `POST /blocks`. Reads only: an announcement changes nothing here.
///
/// An announcement of a block held here tells, as a push would, that it is the peer's best:
/// the next poll of that peer may be skipped ([`crate::core::Core::peer_pushed`]).
pub(super) async fn announce(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(id) = <[u8; 32]>::try_from(body.as_ref()) else {
        return ApiError::bad_request(format!(
            "an announcement is a 32-byte block id, not {} bytes",
            body.len()
        ));
    };
    let known = {
        let mut core = lock(&shared);
        let known = core.ledger.tree().contains(&BlockId(id));
        if let (true, Some(key)) = (known, sender_key(&headers)) {
            core.peer_pushed(&key, crate::core::now_ms());
        }
        known
    };
    Json(json!({ "want": !known })).into_response()
}

/// Blocks `GET /forks` looks through for side branches (the latest the node took in).
const FORK_SCAN: usize = 10_000;
/// Side blocks `GET /forks` lists at most.
const FORK_LIST: usize = 100;

/// `GET /forks`: blocks this node holds off its main chain (side branches: blocks that
/// lost a race, or a branch with less work), and the reorgs since the node started.
pub(super) async fn forks(State(shared): State<Shared>) -> Response {
    let core = lock(&shared);
    let tree = core.ledger.tree();
    let side: Vec<_> = tree
        .side_blocks(FORK_SCAN, FORK_LIST)
        .into_iter()
        .map(|(id, height, parent)| {
            json!({
                "id": id.to_hex(),
                "height": height,
                "parent": parent.to_hex(),
                // The main chain's block at the same height, if the chain is that long.
                "main_at_height": tree.main_at(height).map(|m| m.to_hex()),
            })
        })
        .collect();
    let reorgs: Vec<_> = core
        .reorgs
        .iter()
        .rev()
        .map(|r| {
            json!({
                "at_ms": r.at_ms,
                "fork_height": r.fork_height,
                "abandoned": r.abandoned.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
                "adopted": r.adopted.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({
        "height": tree.height(),
        "side_blocks": side,
        "side_blocks_scanned": FORK_SCAN,
        "reorgs": reorgs,
        "reorgs_total": core.counters.reorgs,
    }))
    .into_response()
}
