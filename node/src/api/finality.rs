//! Finality over HTTP: members' votes in and out (`POST /votes`, `GET /votes`), final
//! checkpoints as C2SP notes (`GET /checkpoint`, `GET /checkpoints/{height}`), a block's
//! inclusion proof against one (`GET /checkpoint/proof`), the members' verifier keys
//! (`GET /members`) and offences (`GET /evidence`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::answer::ApiError;
use crate::chain::BlockId;
use crate::core::Shared;
use crate::core::{lock, Core};
use crate::wire::FinalityView;

/// Most votes one `POST /votes` may carry.
const MAX_VOTES_POSTED: usize = 4096;

fn off() -> Response {
    ApiError::not_found(
        "finality is off on this node: its network has no allow-list, so no history is final",
    )
}

/// `/status`'s `finality`.
#[must_use]
pub fn view(core: &Core) -> FinalityView {
    let Some(f) = core.finality.as_ref() else {
        return FinalityView {
            on: false,
            says: "not final: this network has no allow-list, so anyone may mine and a chain with more work replaces any part of this one".into(),
            ..FinalityView::default()
        };
    };
    let fin = f.final_checkpoint();
    let (j, _) = f.justified();
    let height = core.ledger.tree().height();
    let safety = f.safety_failure().map(|s| {
        format!(
            "a checkpoint cosigned by a quorum (from {}) contradicts this node's final history; mining and voting stopped: {}",
            s.from,
            s.theirs.lines().take(3).collect::<Vec<_>>().join(" ")
        )
    });
    FinalityView {
        on: true,
        says: format!(
            "blocks up to height {} are final: {} of the {} members cosigned them, and this node never reorganises below them, whatever the work of another chain",
            fin.checkpoint.height(),
            f.members().quorum(),
            f.members().len()
        ),
        members: f.members().len(),
        quorum: f.members().quorum(),
        votes: f.votes(),
        final_height: fin.checkpoint.height(),
        final_block: fin.id.to_hex(),
        final_at_ms: fin.at_ms,
        lag_blocks: height.saturating_sub(fin.checkpoint.height()),
        waiting_since_ms: f.waiting_since_ms(),
        justified_height: j.checkpoint().height(),
        justified_epoch: j.epoch,
        refused_below_final: f.stats.below_final,
        refused_below_final_last_ms: core.below_final_last_ms,
        offences: f.stats.offences,
        safety_failure: safety,
    }
}

/// `POST /votes`: members' votes, back to back in their wire form (FORMAT.md section 11).
/// 204 when taken (each is checked; a bad signature is dropped, not an error), 400 if the
/// body does not decode, 404 without finality.
pub(super) async fn post_votes(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sender = super::blocks::sender_key(&headers);
    let now = crate::core::now_ms();
    let r = tokio::task::spawn_blocking(move || {
        let mut core = lock(&shared);
        core.metrics.vote_bytes_received.inc_by(body.len() as u64);
        let Some(f) = core.finality.as_ref() else {
            return Err(None);
        };
        let votes = crate::peers::decode_votes(f.members(), &body)
            .map_err(|e| Some(ApiError::BadRequest(format!("votes: {e}"))))?;
        if votes.len() > MAX_VOTES_POSTED {
            return Err(Some(ApiError::TooLarge(format!(
                "at most {MAX_VOTES_POSTED} votes a request"
            ))));
        }
        let from = sender.and_then(|k| core.peer_of(&k));
        core.on_votes(votes, from.as_deref(), now);
        Ok(())
    })
    .await;
    match r {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(Some(e))) => e.into_response(),
        Ok(Err(None)) => off(),
        Err(e) => ApiError::internal(e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Above {
    above: Option<u64>,
}

/// `GET /votes?above=SIZE`: the votes this node holds for checkpoints bigger than SIZE, in
/// their wire form: what a peer that missed them asks for.
pub(super) async fn get_votes(State(shared): State<Shared>, Query(q): Query<Above>) -> Response {
    let core = lock(&shared);
    let Some(f) = core.finality.as_ref() else {
        return off();
    };
    let origin = f.members().origin();
    let max = 4 * f.members().len().max(16);
    let body: Vec<u8> = f
        .held_votes(q.above.unwrap_or(0), max)
        .iter()
        .flat_map(|v| v.to_bytes(origin))
        .collect();
    ([(header::CONTENT_TYPE, crate::wire::RAW)], body).into_response()
}

fn note_answer(note: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
}

/// `GET /checkpoint`: the latest final checkpoint, a C2SP signed note with a quorum of
/// members' signatures (text/plain); 404 while only the genesis block is final.
pub(super) async fn checkpoint(State(shared): State<Shared>) -> Response {
    let core = lock(&shared);
    let Some(f) = core.finality.as_ref() else {
        return off();
    };
    let fin = f.final_checkpoint();
    if fin.note.is_empty() {
        return ApiError::not_found("no checkpoint is final yet: only the genesis block is");
    }
    note_answer(fin.note.clone().into_bytes())
}

/// `GET /checkpoints/{height}`: the final checkpoint note of that height, if this node keeps
/// it (the latest, and the first final one at or above each multiple of 1024).
pub(super) async fn checkpoint_at(
    State(shared): State<Shared>,
    Path(height): Path<u32>,
) -> Response {
    let reader = {
        let core = lock(&shared);
        let Some(f) = core.finality.as_ref() else {
            return off();
        };
        let fin = f.final_checkpoint();
        if fin.checkpoint.height() == height && !fin.note.is_empty() {
            return note_answer(fin.note.clone().into_bytes());
        }
        core.ledger.reader()
    };
    match super::answer::read_off_lock(move || reader.store().checkpoint(height)).await {
        Ok(Some(note)) => note_answer(note),
        Ok(None) => ApiError::not_found(format!(
            "no final checkpoint of height {height} here (GET /checkpoints lists them)"
        )),
        Err(answer) => answer,
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct From {
    from: Option<u32>,
}

/// `GET /checkpoints?from=H`: the heights of final checkpoints kept here, from H up (at
/// most 1000; the latest, `GET /checkpoint`, besides).
pub(super) async fn checkpoints(State(shared): State<Shared>, Query(q): Query<From>) -> Response {
    let reader = {
        let core = lock(&shared);
        if core.finality.is_none() {
            return off();
        }
        core.ledger.reader()
    };
    let from = q.from.unwrap_or(0);
    match super::answer::read_off_lock(move || reader.store().checkpoint_heights(from, 1000)).await
    {
        Ok(heights) => Json(json!({ "heights": heights })).into_response(),
        Err(answer) => answer,
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ProofQuery {
    height: Option<u32>,
    block: Option<String>,
    /// The checkpoint's height [default: the latest final one].
    checkpoint: Option<u32>,
}

/// `GET /checkpoint/proof?height=H` (or `block=ID`) `[&checkpoint=C]`: the RFC 6962
/// inclusion proof of a final block in a final checkpoint (the latest, or that of height
/// C), with the checkpoint note it is checked against.
pub(super) async fn proof(State(shared): State<Shared>, Query(q): Query<ProofQuery>) -> Response {
    let (index, id, size, note, reader) = {
        let core = lock(&shared);
        let Some(f) = core.finality.as_ref() else {
            return off();
        };
        let tree = core.ledger.tree();
        let fin = f.final_checkpoint();
        let found = match (&q.height, &q.block) {
            (Some(h), _) => tree.main_at(*h).map(|id| (*h, id)),
            (None, Some(b)) => BlockId::from_hex(b)
                .filter(|id| tree.is_main(id))
                .and_then(|id| tree.height_of(&id).map(|h| (h, id))),
            (None, None) => {
                return ApiError::bad_request("give height=H or block=ID");
            }
        };
        let Some((index, id)) = found else {
            return ApiError::not_found("no such block on the main chain");
        };
        let size = q
            .checkpoint
            .map_or(fin.checkpoint.size, |c| u64::from(c) + 1);
        if size > fin.checkpoint.size {
            return ApiError::not_found(format!(
                "the checkpoint of height {} is not final here (final: {})",
                size - 1,
                fin.checkpoint.height()
            ));
        }
        if u64::from(index) >= size {
            return ApiError::not_found(format!(
                "block {index} is above the checkpoint of height {}: not final there yet",
                size - 1
            ));
        }
        let note = (size == fin.checkpoint.size).then(|| fin.note.clone());
        (index, id, size, note, core.ledger.reader())
    };
    let read = super::answer::read_off_lock(move || {
        let note = match note {
            Some(n) if !n.is_empty() => Some(n),
            _ => reader
                .store()
                .checkpoint(u32::try_from(size - 1).unwrap_or(u32::MAX))?
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
        };
        let tlog = crate::tlog::FinalTlog::new(&reader);
        let path = crate::chain::tlog::inclusion_proof(&tlog, u64::from(index), size)?;
        let root = crate::chain::tlog::root_of(&tlog, size)?;
        Ok((note, path, root))
    })
    .await;
    match read {
        Ok((note, Some(path), root)) => Json(json!({
            "index": index,
            "block": id.to_hex(),
            "size": size,
            "root": B64.encode(root),
            "checkpoint": note,
            "path": path.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok((_, None, _)) => ApiError::not_found("the block is not in that checkpoint"),
        Err(answer) => answer,
    }
}

/// `GET /members`: the network's members as note verifier keys (Go's
/// `name+hash+base64` form), the checkpoints' origin and the quorum.
pub(super) async fn members(State(shared): State<Shared>) -> Response {
    let core = lock(&shared);
    let Some(f) = core.finality.as_ref() else {
        return off();
    };
    let m = f.members();
    Json(json!({
        "origin": m.origin(),
        "quorum": m.quorum(),
        "members": m.verifiers().iter().map(|v| json!({
            "key": hex::encode(v.key),
            "name": v.name,
            "vkey": v.to_vkey(),
        })).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// `GET /evidence`: members' offences found (two signed votes no honest member signs, as
/// notes anyone can check with `GET /members`' keys), and a safety failure if one was met.
pub(super) async fn evidence(State(shared): State<Shared>) -> Response {
    let core = lock(&shared);
    let Some(f) = core.finality.as_ref() else {
        return off();
    };
    Json(json!({
        "offences": f.evidence().iter().map(crate::finality::evidence_json).collect::<Vec<_>>(),
        "safety_failure": f.safety_failure().map(|s| json!({
            "ours": s.ours,
            "theirs": s.theirs,
            "from": s.from,
            "at_ms": s.at_ms,
        })),
    }))
    .into_response()
}
