//! `GET /peers`, `POST /peers`, `DELETE /peers`, `POST /peers/resolve`, and the study's
//! aliases `POST /nodes/register` and `GET /nodes/resolve`. All but `GET /peers` change the
//! node and pass the admin guard ([`crate::admin`]).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::answer::ApiError;
use crate::core::lock;
use crate::core::Shared;

pub(super) async fn resolve(State(shared): State<Shared>) -> Response {
    let before = lock(&shared).ledger.tree().tip();
    let client = lock(&shared).client.clone();
    let results = crate::peers::resolve(&client, &shared).await;
    let core = lock(&shared);
    let tree = core.ledger.tree();
    Json(crate::wire::ResolveAnswer {
        replaced: tree.tip() != before,
        height: tree.height(),
        tip: tree.tip().to_hex(),
        peers: results,
    })
    .into_response()
}

pub(super) async fn get_peers(State(shared): State<Shared>) -> Response {
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
    let tls_clients = core.tls.as_ref().map(|t| t.clients());
    Json(json!({ "peers": peers, "health": health, "tls_clients": tls_clients })).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct NewPeer {
    url: String,
}

/// Adds peers (checked, deduplicated, at most 256 in all) and keeps the list.
fn add_peers(shared: &Shared, urls: &[String]) -> Result<Vec<String>, ApiError> {
    let checked: Vec<String> = urls
        .iter()
        .map(|u| crate::peers::peer_url(u))
        .collect::<Result<_, _>>()
        .map_err(ApiError::BadRequest)?;
    let mut core = lock(shared);
    for url in checked {
        if !core.peers.contains(&url) {
            if core.peers.len() >= 256 {
                return Err(ApiError::Unprocessable("peer list is full (256)".into()));
            }
            core.peers.push(url);
        }
    }
    keep(&core)?;
    Ok(core.peers.clone())
}

/// Writes the peer list to the data dir, so that it survives a restart.
fn keep(core: &crate::core::Core) -> Result<(), ApiError> {
    match &core.peers_file {
        Some(path) => crate::peers::save_peers(path, &core.peers)
            .map_err(|e| ApiError::Internal(format!("cannot keep the peer list: {e}"))),
        None => Ok(()),
    }
}

pub(super) async fn post_peers(State(shared): State<Shared>, Json(p): Json<NewPeer>) -> Response {
    match add_peers(&shared, std::slice::from_ref(&p.url)) {
        Ok(peers) => Json(json!({ "peers": peers })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /peers {"url": …}`: removes a peer (a peer given by a flag or the config file
/// comes back at the next start).
pub(super) async fn delete_peers(State(shared): State<Shared>, Json(p): Json<NewPeer>) -> Response {
    let url = p.url.trim().trim_end_matches('/').to_owned();
    let mut core = lock(&shared);
    let Some(at) = core.peers.iter().position(|x| *x == url) else {
        return ApiError::not_found(format!("'{url}' is not a peer"));
    };
    core.peers.remove(at);
    core.peer_health.remove(&url);
    if let Err(e) = keep(&core) {
        return e.into_response();
    }
    Json(json!({ "peers": core.peers })).into_response()
}

/// The study's `POST /nodes/register {"nodes": [...]}`.
#[derive(Debug, Deserialize)]
pub(super) struct Register {
    nodes: Option<Vec<String>>,
}

pub(super) async fn register(State(shared): State<Shared>, Json(r): Json<Register>) -> Response {
    let Some(nodes) = r.nodes.filter(|n| !n.is_empty()) else {
        return ApiError::bad_request("Error: Please supply a valid list of nodes");
    };
    match add_peers(&shared, &nodes) {
        Ok(peers) => (
            axum::http::StatusCode::CREATED,
            Json(json!({
                "message": "New nodes have been added",
                "total_nodes": peers,
            })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Blocks shown by `GET /nodes/resolve` (the study shows the whole chain; a chain of years
/// does not fit an answer: `GET /chain` streams it all).
const RESOLVE_BLOCKS: u32 = 100;

/// The study's `GET /nodes/resolve`: resolves, then answers in the study's words.
pub(super) async fn nodes_resolve(State(shared): State<Shared>) -> Response {
    let before = lock(&shared).ledger.tree().tip();
    let client = lock(&shared).client.clone();
    let results = crate::peers::resolve(&client, &shared).await;
    let (replaced, height, ids, reader) = {
        let core = lock(&shared);
        let tree = core.ledger.tree();
        let height = tree.height();
        let from = height.saturating_sub(RESOLVE_BLOCKS - 1);
        let ids: Vec<(u32, crate::chain::BlockId)> = (from..=height)
            .filter_map(|h| tree.main_at(h).map(|id| (h, id)))
            .collect();
        (tree.tip() != before, height, ids, core.ledger.reader())
    };
    let blocks = match super::answer::read_off_lock(move || {
        ids.into_iter()
            .filter_map(|(h, id)| reader.block(&id).transpose().map(|b| b.map(|b| (h, b))))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let chain: Vec<_> = blocks
        .iter()
        .map(|(h, b)| json!(crate::render::json_block(*h, b)))
        .collect();
    let key = if replaced { "new_chain" } else { "chain" };
    Json(json!({
        "message": if replaced { "Our chain was replaced" } else { "Our chain is authoritative" },
        key: chain,
        "length": u64::from(height) + 1,
        "shown": "the latest 100 blocks; GET /chain has them all",
        "peers": results,
    }))
    .into_response()
}
