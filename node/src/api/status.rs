//! `GET /status`, `GET /disputes` and `GET /metrics`: what the node is, has and has seen.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use std::sync::PoisonError;

use super::{Core, Shared};
use crate::core::lock;
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
    };
    Json(answer).into_response()
}

fn relay_view(st: &crate::poll::RelayStatus) -> RelayView {
    RelayView {
        relay: st.relay.clone(),
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
