//! `GET /metrics` through the maintained Prometheus client (`prometheus-client`, the
//! OpenMetrics text format that Prometheus scrapes).
//!
//! Two kinds of figures: the node's state and counters, read from the core at each scrape
//! (a [`Collector`] over a [`Snapshot`] taken under the lock, so the lock is held only to
//! copy numbers), and latency histograms that the node observes as it works ([`Metrics`]:
//! block validation, block commit, relay polls). The names are those the node has always
//! exported; counters get OpenMetrics' `_total` suffix, as before.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Counters for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Blocks this node mined and stored.
    pub mined: u64,
    /// Peer blocks stored.
    pub received: u64,
    /// Peer blocks refused (any rule, witness conflicts included).
    pub rejected: u64,
    /// Peer blocks refused because a record differs from what this node read itself.
    pub witness_conflicts: u64,
    /// Reorgs.
    pub reorgs: u64,
    /// Records found on the main chain that differ from this node's own read.
    pub witness_disputes: u64,
    /// Pulls from peers that claimed more work than ours and sent nothing usable.
    pub peer_lies: u64,
    /// Admin calls refused (not loopback, no valid token).
    pub admin_refused: u64,
    /// Pushed blocks that came before their parent and were kept ([`crate::orphans`]; the
    /// intake counts them, `gridledger_core::intake::Intake::early`).
    pub early: u64,
    /// Of those, the ones placed when their parent came.
    pub placed: u64,
}

/// Finality's counters, for `/metrics` and `/status`.
pub use gridledger_core::finality::Stats as FinalityStats;

/// The relay label of per-relay metrics.
pub type RelayLabel = Vec<(String, String)>;

/// Histograms the node observes as it works. Cheap to clone (shared inside).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Seconds to validate a block (every rule, the signature included).
    pub validate_seconds: Histogram,
    /// Seconds to commit a block durably.
    pub commit_seconds: Histogram,
    /// Seconds per relay poll (connect if needed, one read of the record block).
    pub poll_seconds: Family<RelayLabel, Histogram>,
    /// Seconds from a peer's block's time (when it was mined) to its acceptance here.
    pub propagation_seconds: Histogram,
    /// Seconds from this node reading a record to the record being on its main chain.
    pub record_to_tip_seconds: Histogram,
    /// Seconds per request to a peer (its `/status`, asked at every sync), by peer.
    pub peer_request_seconds: Family<Vec<(String, String)>, Histogram>,
    /// Blocks sent to peers, by `how`: `whole` or `id` (announced).
    pub blocks_sent: Family<Vec<(String, String)>, Counter>,
    /// Of those, the ones the peer already held (a whole block answered "known", an
    /// announcement not wanted).
    pub blocks_sent_held: Family<Vec<(String, String)>, Counter>,
    /// Bytes of finality votes received (bodies of `POST /votes` and of `GET /votes`
    /// answers): the checkpoint traffic.
    pub vote_bytes_received: Counter,
    /// The historian this node feeds (`--sink-to`), if any.
    pub sink: SinkMetrics,
}

/// The historian's progress, for the node that feeds one (`gridledger run --sink-to`).
#[derive(Clone, Debug, Default)]
pub struct SinkMetrics {
    /// The height of the last block in the database.
    pub height: Gauge,
    /// Blocks that may be written and are not yet.
    pub behind: Gauge,
    /// Samples written since the node started.
    pub samples: Counter,
    /// Failures (a lost connection, a refused write), each retried.
    pub failures: Counter,
}

/// A block sent to a peer, for [`Metrics::sent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// The whole block.
    Whole,
    /// The whole block, which the peer already held.
    WholeHeld,
    /// Its id (an announcement).
    Id,
    /// Its id, which the peer already held (not wanted).
    IdHeld,
}

fn network_buckets() -> impl Iterator<Item = f64> {
    // 1 ms to about 65 s.
    exponential_buckets(0.001, 2.0, 17)
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    // 50 µs to about 0.8 s.
    exponential_buckets(0.000_05, 2.0, 15)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            validate_seconds: Histogram::new(latency_buckets()),
            commit_seconds: Histogram::new(latency_buckets()),
            poll_seconds: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            propagation_seconds: Histogram::new(network_buckets()),
            record_to_tip_seconds: Histogram::new(network_buckets()),
            peer_request_seconds: Family::new_with_constructor(
                || Histogram::new(network_buckets()),
            ),
            blocks_sent: Family::default(),
            blocks_sent_held: Family::default(),
            vote_bytes_received: Counter::default(),
            sink: SinkMetrics::default(),
        }
    }
}

impl Metrics {
    /// Records one request to `peer` that took `took`.
    pub fn observe_peer(&self, peer: &str, took: Duration) {
        self.peer_request_seconds
            .get_or_create(&vec![("peer".to_owned(), peer.to_owned())])
            .observe(took.as_secs_f64());
    }

    /// Counts one block sent to a peer.
    pub fn sent(&self, what: Sent) {
        let (family, how) = match what {
            Sent::Whole => (&self.blocks_sent, "whole"),
            Sent::WholeHeld => (&self.blocks_sent_held, "whole"),
            Sent::Id => (&self.blocks_sent, "id"),
            Sent::IdHeld => (&self.blocks_sent_held, "id"),
        };
        family
            .get_or_create(&vec![("how".to_owned(), how.to_owned())])
            .inc();
    }

    /// Records one poll of `relay` that took `took`.
    pub fn observe_poll(&self, relay: &str, took: Duration) {
        self.poll_seconds
            .get_or_create(&vec![("relay".to_owned(), relay.to_owned())])
            .observe(took.as_secs_f64());
    }
}

/// One relay's figures at scrape time.
#[derive(Clone, Debug, Default)]
pub struct RelayFigures {
    /// `host:port/unit`.
    pub relay: String,
    /// Records read.
    pub records: u64,
    /// Minutes never read.
    pub missed_minutes: u64,
    /// The last poll was answered.
    pub up: bool,
    /// Records whose relay signature failed (or was missing where the registry requires
    /// one): not mined.
    pub bad_signatures: u64,
    /// How far the relay's clock ran ahead of this node's at the last record, ms.
    pub clock_ahead_ms: u64,
    /// Records refused because the relay's clock was not set.
    pub clock_not_set: u64,
}

/// A per-relay metric: name, help, its value, and whether it is a counter (else a gauge).
type PerRelay = (&'static str, &'static str, fn(&RelayFigures) -> u64, bool);

/// The node's state and counters, copied under the core's lock.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Main-chain height.
    pub height: u64,
    /// Records on the main chain.
    pub records: u64,
    /// Valid blocks known.
    pub blocks_known: u64,
    /// Records waiting for a block.
    pub mempool: u64,
    /// Configured peers.
    pub peers: u64,
    /// The core's counters.
    pub counters: Counters,
    /// TLS: handshakes served, handshakes refused or failed, reloads, reloads refused.
    pub tls: Option<[u64; 4]>,
    /// Per relay.
    pub relays: Vec<RelayFigures>,
    /// Finality, if on.
    pub finality: Option<FinalityFigures>,
}

/// Finality's figures ([`crate::finality`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct FinalityFigures {
    /// The latest final block's height.
    pub final_height: u64,
    /// Main-chain blocks above it.
    pub lag_blocks: u64,
    /// Seconds since the tip has been above the final block (0: it is final).
    pub waiting_seconds: u64,
    /// 1 if a quorum-cosigned checkpoint contradicted this node's final history.
    pub safety_failure: u64,
    /// The engine's counters.
    pub stats: FinalityStats,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges: [(&str, &str, u64); 6] = [
            ("gridledger_height", "Main-chain height.", self.height),
            (
                "gridledger_stale_blocks",
                "Valid blocks known off the main chain (lost a race or on a side branch).",
                self.blocks_known.saturating_sub(self.height + 1),
            ),
            (
                "gridledger_records",
                "Minute records on the main chain.",
                self.records,
            ),
            (
                "gridledger_blocks_known",
                "Valid blocks known, side branches included.",
                self.blocks_known,
            ),
            (
                "gridledger_mempool_records",
                "Records waiting for a block.",
                self.mempool,
            ),
            ("gridledger_peers", "Configured peers.", self.peers),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let c = &self.counters;
        let counters: [(&str, &str, u64); 10] = [
            ("gridledger_blocks_mined", "Blocks this node mined.", c.mined),
            ("gridledger_blocks_received", "Peer blocks stored.", c.received),
            ("gridledger_blocks_rejected", "Peer blocks refused.", c.rejected),
            (
                "gridledger_witness_disputes",
                "Records found on the main chain that differ from this node's own read of the relay.",
                c.witness_disputes,
            ),
            (
                "gridledger_witness_conflicts",
                "Peer blocks refused for a record that differs from this node's own read.",
                c.witness_conflicts,
            ),
            ("gridledger_reorgs", "Main-chain switches.", c.reorgs),
            (
                "gridledger_peer_lies",
                "Pulls from peers that claimed more work than ours and sent nothing usable.",
                c.peer_lies,
            ),
            (
                "gridledger_blocks_early",
                "Pushed blocks that came before their parent, kept until it comes (also counted as refused).",
                c.early,
            ),
            (
                "gridledger_blocks_placed",
                "Blocks that came before their parent, placed when it came.",
                c.placed,
            ),
            (
                "gridledger_admin_refused",
                "Calls that change the node refused: made by a web page, or not from loopback without a valid token.",
                c.admin_refused,
            ),
        ];
        for (name, help, v) in counters {
            let k = ConstCounter::new(v);
            k.encode(encoder.encode_descriptor(name, help, None, k.metric_type())?)?;
        }
        if let Some([ok, failed, reloads, reload_failed]) = self.tls {
            let tls: [(&str, &str, u64); 4] = [
                ("gridledger_tls_handshakes", "TLS handshakes completed by the API.", ok),
                (
                    "gridledger_tls_handshake_failures",
                    "TLS handshakes refused or failed (no or a bad client certificate, plain HTTP on the HTTPS port, a timeout).",
                    failed,
                ),
                ("gridledger_tls_reloads", "Certificate reloads that took effect.", reloads),
                (
                    "gridledger_tls_reload_failures",
                    "Certificate reloads refused (the previous certificates stay in use).",
                    reload_failed,
                ),
            ];
            for (name, help, v) in tls {
                let k = ConstCounter::new(v);
                k.encode(encoder.encode_descriptor(name, help, None, k.metric_type())?)?;
            }
        }
        if let Some(f) = &self.finality {
            let gauges: [(&str, &str, u64); 4] = [
                ("gridledger_final_height", "Height of the latest final block (cosigned by a quorum of members).", f.final_height),
                ("gridledger_finality_lag_blocks", "Main-chain blocks above the latest final block.", f.lag_blocks),
                ("gridledger_finality_waiting_seconds", "Seconds the tip has been above the latest final block (0: the tip is final).", f.waiting_seconds),
                ("gridledger_finality_safety_failure", "1 if a checkpoint cosigned by a quorum contradicts this node's final history (mining and voting stopped).", f.safety_failure),
            ];
            for (name, help, v) in gauges {
                let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
            let s = &f.stats;
            let counters: [(&str, &str, u64); 8] = [
                ("gridledger_finality_votes_redundant", "Votes not checked: their checkpoint had a quorum of votes already.", s.redundant),
                ("gridledger_finality_votes", "Members' votes taken (new, signature checked).", s.votes),
                ("gridledger_finality_votes_refused", "Votes refused (malformed, not a member's, a bad signature).", s.votes_refused),
                ("gridledger_finality_votes_cast", "Votes this node cast.", s.cast),
                ("gridledger_finality_finalized", "Times the final block moved up.", s.finalized),
                ("gridledger_finality_offences", "Members' offences found (double or surround votes; GET /evidence).", s.offences),
                ("gridledger_blocks_below_final", "Blocks refused for forking below the final block (a rewrite of final history).", s.below_final),
                ("gridledger_finality_checkpoints_learned", "Final checkpoints taken from peers.", s.learned),
            ];
            for (name, help, v) in counters {
                let k = ConstCounter::new(v);
                k.encode(encoder.encode_descriptor(name, help, None, k.metric_type())?)?;
            }
        }
        let per_relay: [PerRelay; 6] = [
            (
                "gridledger_relay_records",
                "Records read from the relay.",
                |r| r.records,
                true,
            ),
            (
                "gridledger_relay_missed_minutes",
                "Minutes of the relay never read (gaps).",
                |r| r.missed_minutes,
                true,
            ),
            (
                "gridledger_relay_up",
                "1 if the last poll of the relay succeeded.",
                |r| u64::from(r.up),
                false,
            ),
            (
                "gridledger_relay_bad_signatures",
                "Records read from the relay whose signature failed or was missing where the relay registry requires one (not mined).",
                |r| r.bad_signatures,
                true,
            ),
            (
                "gridledger_relay_clock_ahead_seconds",
                "How far the relay's clock ran ahead of this node's at its last record, whole seconds (5 or more is a clock problem).",
                |r| r.clock_ahead_ms / 1000,
                false,
            ),
            (
                "gridledger_relay_clock_not_set",
                "Records refused because the relay's clock was not set.",
                |r| r.clock_not_set,
                true,
            ),
        ];
        for (name, help, value, counter) in per_relay {
            let ty = if counter {
                ConstCounter::new(0u64).metric_type()
            } else {
                ConstGauge::new(0i64).metric_type()
            };
            let mut family = encoder.encode_descriptor(name, help, None, ty)?;
            for r in &self.relays {
                let labels = [("relay", r.relay.as_str())];
                let e = family.encode_family(&labels)?;
                if counter {
                    ConstCounter::new(value(r)).encode(e)?;
                } else {
                    ConstGauge::new(i64::try_from(value(r)).unwrap_or(i64::MAX)).encode(e)?;
                }
            }
        }
        Ok(())
    }
}

/// Renders a scrape: the snapshot and the histograms, as OpenMetrics text.
pub fn render(snapshot: Snapshot, metrics: &Metrics) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let histograms = [
        (
            "gridledger_block_validation_seconds",
            "Seconds to validate a block against every rule, signature included",
            &metrics.validate_seconds,
        ),
        (
            "gridledger_block_commit_seconds",
            "Seconds to commit a block to the store durably",
            &metrics.commit_seconds,
        ),
        (
            "gridledger_block_propagation_seconds",
            "Seconds from a peer block's time (when it was mined) to its acceptance by this node",
            &metrics.propagation_seconds,
        ),
        (
            "gridledger_record_to_tip_seconds",
            "Seconds from this node reading a record to the record being on its main chain",
            &metrics.record_to_tip_seconds,
        ),
    ];
    for (name, help, h) in histograms {
        registry.register(name, help, h.clone());
    }
    let labelled = [
        (
            "gridledger_relay_poll_seconds",
            "Seconds per poll of a relay (connecting if needed, reading the record block)",
            &metrics.poll_seconds,
        ),
        (
            "gridledger_peer_request_seconds",
            "Seconds per request to a peer (its /status, asked at every sync)",
            &metrics.peer_request_seconds,
        ),
    ];
    for (name, help, family) in labelled {
        registry.register(name, help, family.clone());
    }
    registry.register(
        "gridledger_blocks_sent",
        "Blocks sent to peers, whole or announced by id (how)",
        metrics.blocks_sent.clone(),
    );
    registry.register(
        "gridledger_finality_vote_bytes_received",
        "Bytes of members' votes received (bodies of POST /votes and GET /votes answers)",
        metrics.vote_bytes_received.clone(),
    );
    let sink_gauges = [
        (
            "gridledger_sink_height",
            "The historian (--sink-to): height of the last block in the database",
            &metrics.sink.height,
        ),
        (
            "gridledger_sink_blocks_behind",
            "The historian (--sink-to): blocks that may be written and are not yet",
            &metrics.sink.behind,
        ),
    ];
    for (name, help, g) in sink_gauges {
        registry.register(name, help, g.clone());
    }
    let sink_counters = [
        (
            "gridledger_sink_samples",
            "The historian (--sink-to): samples written since the node started",
            &metrics.sink.samples,
        ),
        (
            "gridledger_sink_failures",
            "The historian (--sink-to): failures, each retried (a lost connection, a refused write)",
            &metrics.sink.failures,
        ),
    ];
    for (name, help, c) in sink_counters {
        registry.register(name, help, c.clone());
    }
    registry.register(
        "gridledger_blocks_sent_held",
        "Blocks sent to peers that already held them (a whole block answered known, an id not wanted)",
        metrics.blocks_sent_held.clone(),
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}
