//! `GET /status`, `GET /disputes` and `GET /metrics`: what the node is, has and has seen.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use std::sync::PoisonError;

use super::answer::ApiError;
use crate::core::lock;
use crate::core::{Core, Shared};
use crate::wire::{DisputeList, DisputeView, Disputes, RelayView, Status};

pub(super) async fn status(State(shared): State<Shared>) -> Response {
    let core = lock(&shared);
    let s = core.ledger.summary();
    let net = core.ledger.network();
    let open = core.disputes().len();
    let answer = Status {
        network: net.name.clone(),
        difficulty_bits: net.bits,
        height: s.height,
        tip: s.tip.to_hex(),
        records: s.records,
        blocks_known: s.blocks,
        work: core.ledger.tree().tip_work().to_string(),
        mempool: core.mempool.len(),
        peers: core.peers.len(),
        relays: relay_statuses(&core).iter().map(relay_view).collect(),
        miner: core.miner_key.map(hex::encode),
        sync: core.sync.clone(),
        disputes: Disputes {
            total: core.counters.witness_disputes,
            open,
            // The latest few; GET /disputes lists them all.
            latest: core
                .disputes()
                .rev()
                .take(STATUS_DISPUTES)
                .map(dispute_view)
                .collect(),
        },
        finality: Some(super::finality::view(&core)),
    };
    Json(answer).into_response()
}

/// `GET /tip`: height, tip, work and miner key only (see [`crate::wire::Tip`]), tagged by
/// the tip ([`crate::wire::tip_tag`]); 304 and no body to a poller already on that tip.
pub(super) async fn tip(State(shared): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    let core = lock(&shared);
    let (final_size, justified_epoch) = core.finality_tag();
    let tree = core.ledger.tree();
    let tag = crate::wire::tip_tag_with(&tree.tip(), final_size, justified_epoch);
    let etag = [(axum::http::header::ETAG, tag.clone())];
    let unchanged = headers
        .get_all(axum::http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| crate::wire::none_match(v, &tag));
    if unchanged {
        return (axum::http::StatusCode::NOT_MODIFIED, etag).into_response();
    }
    (
        etag,
        Json(crate::wire::Tip {
            height: tree.height(),
            tip: tree.tip().to_hex(),
            work: tree.tip_work().to_string(),
            miner: core.miner_key.map(hex::encode),
            final_size,
            justified_epoch,
        }),
    )
        .into_response()
}

fn relay_view(st: &crate::poll::RelayStatus) -> RelayView {
    RelayView {
        relay: st.relay.clone(),
        relay_id: st.relay_id,
        up: st.is_up(),
        last_minute: st.last_minute.map(|m| m.0),
        last_minute_utc: st.last_minute.map(|m| m.to_string()),
        records: st.records,
        missed_minutes: st.missed_minutes,
        failures_in_a_row: st.failures_in_a_row,
        last_error: st.last_error.clone(),
        clock_not_set: st.clock_not_set,
        clock_ahead_ms: st.clock_ahead_ms,
        clock_problem: st.clock_problem(),
        signed: st.signer.map(|s| s.as_str().to_owned()),
        key: st.served_key.map(hex::encode),
        bad_signatures: st.bad_signatures,
    }
}

/// Disputes shown in `/status`.
const STATUS_DISPUTES: usize = 16;

fn dispute_view(d: &crate::core::Dispute) -> DisputeView {
    DisputeView {
        relay: d.read.relay.0,
        minute: d.read.minute.0,
        minute_utc: d.read.minute.to_string(),
        height: d.height,
        block_id: d.block.to_hex(),
        found_ms: d.found_ms,
        on_chain: crate::render::record_json(&d.on_chain),
        read: crate::render::record_json(&d.read),
    }
}

/// Every open dispute: a record on the main chain that differs from what this node read
/// from the relay itself, with both versions, oldest minute first.
pub(super) async fn disputes(State(shared): State<Shared>) -> Response {
    let core = lock(&shared);
    Json(DisputeList {
        total: core.counters.witness_disputes,
        disputes: core.disputes().map(dispute_view).collect(),
    })
    .into_response()
}

pub(super) async fn metrics(State(shared): State<Shared>) -> Response {
    // Numbers are copied under the lock; encoding happens after it is released.
    let (snapshot, metrics) = {
        let core = lock(&shared);
        let s = core.ledger.summary();
        let snapshot = crate::metrics::Snapshot {
            height: u64::from(s.height),
            records: s.records as u64,
            blocks_known: s.blocks as u64,
            mempool: core.mempool.len() as u64,
            peers: core.peers.len() as u64,
            counters: crate::metrics::Counters {
                early: core.intake.early(),
                placed: core.intake.placed_count(),
                ..core.counters
            },
            tls: core.tls.as_ref().map(|t| {
                use std::sync::atomic::Ordering::Relaxed;
                [
                    t.handshakes.load(Relaxed),
                    t.handshake_failures.load(Relaxed),
                    t.reloads.load(Relaxed),
                    t.reload_failures.load(Relaxed),
                ]
            }),
            relays: relay_statuses(&core)
                .iter()
                .map(|st| crate::metrics::RelayFigures {
                    relay: st.relay.clone(),
                    records: st.records,
                    missed_minutes: st.missed_minutes,
                    up: st.is_up(),
                    bad_signatures: st.bad_signatures,
                    clock_ahead_ms: st.clock_ahead_ms,
                    clock_not_set: st.clock_not_set,
                })
                .collect(),
            finality: core.finality.as_ref().map(|f| {
                let height = u64::from(core.ledger.tree().height());
                let final_height = u64::from(f.final_checkpoint().checkpoint.height());
                crate::metrics::FinalityFigures {
                    final_height,
                    lag_blocks: height.saturating_sub(final_height),
                    waiting_seconds: f
                        .waiting_since_ms()
                        .map_or(0, |t| crate::core::now_ms().saturating_sub(t) / 1000),
                    safety_failure: u64::from(f.safety_failure().is_some()),
                    stats: f.stats,
                }
            }),
        };
        (snapshot, core.metrics.clone())
    };
    match crate::metrics::render(snapshot, &metrics) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::internal(e),
    }
}

fn relay_statuses(core: &Core) -> Vec<crate::poll::RelayStatus> {
    core.relays
        .iter()
        .map(|r| r.lock().unwrap_or_else(PoisonError::into_inner).clone())
        .collect()
}
