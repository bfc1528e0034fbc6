//! The HTTP API: JSON for people, raw block bytes for peers.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /status` | network, height, tip, cumulative work, records, known blocks, mempool size, and each relay's polling status (up, last minute, gaps, last error) |
//! | `GET /chain` | the study's view: `length` and every main-chain block with decoded records (streamed) |
//! | `GET /blocks?from=H&limit=N` | main-chain blocks from height H (N ≤ 500, and about 16 MiB at most): JSON, or with `Accept: application/octet-stream` a varint count then each block as varint length + bytes |
//! | `GET /blocks/{height or id}` | one block: JSON, or its bytes with `Accept: application/octet-stream` |
//! | `POST /blocks` | a block's bytes (at most the network's block size): 200 added or known, 400 malformed, 409 unknown parent, 422 any other broken rule or a witness conflict, each with the reason; a block that becomes this node's best is relayed to its peers at once |
//! | `POST /blocks/announce` | a peer offers a block by its 32-byte id: `{"want": true}` if this node lacks it (the peer then posts it), 400 for any other length (`--block-relay announce`) |
//! | `GET /readings?relay=R&from=&to=&format=json\|csv\|columns[&points=N]` | a relay's records on the chain between two minutes (minutes since 1970 or `YYYY-MM-DDTHH:MMZ`; default the last hour; at most a week), each flagged `disputed` if this node read otherwise; CSV in the export's columns; `columns` for charts (a time column and one per quantity, `null` at gaps, bucket means over `points`, default 4000) |
//! | `GET /readings/{relay}/{minute}/proof` | the record, its block header and its RFC 6962 inclusion proof |
//! | `GET /disputes` | records on the main chain that differ from this node's own read of the relay, both versions |
//! | `GET /metrics` | Prometheus text: chain, mempool, blocks mined/received/rejected, witness conflicts, reorgs, per relay records, gaps and up |
//! | `GET /peers`, `POST /peers {"url": …}`, `DELETE /peers {"url": …}` | the peer list with each peer's health and TLS subject, and the client certificates accepted (`tls_clients`); adding and removing a peer (admin), kept in the data dir |
//! | `POST /peers/resolve` | pulls from every peer at once, within 10 s; says whether the chain was replaced (admin) |
//! | `POST /nodes/register`, `GET /nodes/resolve` | the study's names for adding peers and resolving, in its answer shapes (admin) |
//!
//! "Admin" calls change the node: they answer only on loopback or with the bearer token of
//! `--admin-token-file`, else 401, and never to a web page (403) ([`crate::admin`]). CORS
//! is off unless `--cors-origin` names an origin, and then for reads only ([`cors`]). The
//! same router is served over plain TCP or TLS ([`crate::listen`]).
//!
//! One module per resource: [`status`](self) (`/status`, `/disputes`, `/metrics`), blocks
//! (`/chain`, `/blocks`), readings (`/readings`, proofs), peers, ui (the dashboard). Every error is an
//! [`ApiError`]; peers' answers are the typed structs of [`crate::wire`]; records render
//! through [`crate::render`].
//! | `GET /forks` | side-branch blocks among the latest 10 000 known, and the reorgs since start |
//! | `POST /votes`, `GET /votes?above=SIZE` | members' finality votes, back to back in their wire form (docs/book/src/FORMAT.md section 11): taken (204; 400 malformed), or those held above a checkpoint size |
//! | `GET /checkpoint`, `GET /checkpoints?from=H`, `GET /checkpoints/{height}` | the latest final checkpoint, a C2SP signed note cosigned by a quorum of members (text); the heights kept; one by height |
//! | `GET /checkpoint/proof?height=H\|block=ID[&checkpoint=C]` | a final block's RFC 6962 inclusion proof in a final checkpoint, with the note |
//! | `GET /members`, `GET /evidence` | the members' note verifier keys, origin and quorum; members' offences (double and surround votes, both signed notes) and any safety failure |
//! | `GET /`, `/relay/{id}`, `/explorer`, `/block/{key}`, `/reading/{relay}/{minute}`, `/ui/…` | the dashboard ([`ui`]): pages drawn from the endpoints above, every asset served by the node |

mod answer;
mod blocks;
pub mod cors;
pub mod finality;
mod peers;
mod readings;
mod status;
mod ui;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::core::lock;
pub use crate::core::{Core, Shared};
pub use crate::wire::{MAX_LIMIT, MAX_LIST_BYTES};
pub use answer::ApiError;

/// The router, with request bodies limited to the network's block size.
pub fn router(shared: Shared) -> Router {
    let (limit, reader) = {
        let core = lock(&shared);
        (
            core.ledger.network().max_block_bytes + 1024,
            core.ledger.reader(),
        )
    };
    // Calls that change the node: loopback, or the admin token (crate::admin).
    let admin = Router::new()
        .route(
            "/peers",
            post(peers::post_peers).delete(peers::delete_peers),
        )
        .route("/peers/resolve", post(peers::resolve))
        .route("/nodes/register", post(peers::register))
        .route("/nodes/resolve", get(peers::nodes_resolve))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            admin_guard,
        ));
    Router::new()
        .route("/status", get(status::status))
        .route("/tip", get(status::tip))
        .route("/chain", get(blocks::chain))
        .route("/blocks", get(blocks::blocks).post(blocks::post_block))
        .route("/blocks/announce", post(blocks::announce))
        .route("/blocks/{key}", get(blocks::block))
        .route("/readings", get(readings::readings))
        .route("/readings/{relay}/{minute}/proof", get(readings::proof))
        .route("/metrics", get(status::metrics))
        .route("/disputes", get(status::disputes))
        .route("/peers", get(peers::get_peers))
        .route("/forks", get(blocks::forks))
        .route(
            "/votes",
            get(finality::get_votes).post(finality::post_votes),
        )
        .route("/checkpoint", get(finality::checkpoint))
        .route("/checkpoint/proof", get(finality::proof))
        .route("/checkpoints", get(finality::checkpoints))
        .route("/checkpoints/{height}", get(finality::checkpoint_at))
        .route("/members", get(finality::members))
        .route("/evidence", get(finality::evidence))
        .route("/", get(ui::page))
        .route("/relay/{id}", get(ui::page))
        .route("/explorer", get(ui::page))
        .route("/block/{key}", get(ui::page))
        .route("/reading/{relay}/{minute}", get(ui::page))
        .route("/ui/{name}", get(ui::asset))
        .merge(admin)
        // What reads the store without the node's lock (`/readings`): the ledger, and so
        // its store, lives as long as the node.
        .layer(axum::Extension(reader))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

/// Lets a call through if it comes from loopback or carries the admin token; else 401,
/// counted in `gridledger_admin_refused_total`.
async fn admin_guard(
    axum::extract::State(shared): axum::extract::State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::listen::Remote>>()
        .map(|c| c.0.addr)
        // The router served by plain axum (`into_make_service_with_connect_info::<SocketAddr>`).
        .or_else(|| {
            req.extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0)
        });
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let from_page = crate::admin::from_browser_page(
        req.headers().get(header::ORIGIN).is_some(),
        req.headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok()),
    );
    let ok = {
        let mut core = lock(&shared);
        let ok = crate::admin::allowed(core.admin_token.as_deref(), peer, auth);
        if !ok || from_page {
            core.counters.admin_refused += 1;
        }
        ok
    };
    if from_page {
        tracing::warn!(peer = ?peer, path = %req.uri().path(), "refused an admin call made by a web page");
        return (
            StatusCode::FORBIDDEN,
            Json(json!({ "error": "calls that change the node are not taken from web pages (the request carries Origin or a cross-site Sec-Fetch-Site): use curl or another tool" })),
        )
            .into_response();
    }
    if !ok {
        tracing::warn!(peer = ?peer, path = %req.uri().path(), "refused an admin call: not from loopback and no valid token");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "this call changes the node: make it from loopback, or with Authorization: Bearer <the --admin-token-file token>" })),
        )
            .into_response();
    }
    next.run(req).await
}
