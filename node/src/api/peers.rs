//! `GET /peers`, `POST /peers` and `POST /peers/resolve`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, Shared};
use crate::core::lock;

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
    Json(json!({ "peers": peers, "health": health })).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct NewPeer {
    url: String,
}

pub(super) async fn post_peers(State(shared): State<Shared>, Json(p): Json<NewPeer>) -> Response {
    let url = match crate::peers::peer_url(&p.url) {
        Ok(u) => u,
        Err(e) => return ApiError::bad_request(e),
    };
    let mut core = lock(&shared);
    if !core.peers.contains(&url) {
        if core.peers.len() >= 256 {
            return ApiError::unprocessable("peer list is full (256)");
        }
        core.peers.push(url);
    }
    Json(json!({ "peers": core.peers })).into_response()
}
