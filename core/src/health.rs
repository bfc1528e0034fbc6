//! What a node knows of each peer's behaviour: failures, lies, and when to try it again.
//! Shown in `GET /peers`; the sync loop skips a peer while it is backed off.

use std::time::Duration;

use serde::Serialize;
use tracing::warn;

/// Longest a peer is left alone after failing again and again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// How a pull from a peer went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It went well; this many blocks were stored.
    Stored(u32),
    /// It failed.
    Failed {
        /// Why.
        error: String,
        /// The peer claimed more work than ours and sent nothing usable.
        lied: bool,
        /// No connection or no answer: the peer may be down, or cut off.
        unreachable: bool,
    },
}

/// What this node knows of one peer's behaviour, for `GET /peers` and for backing off.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerHealth {
    /// The peer's base URL.
    pub url: String,
    /// Pulls that failed in a row (0: the last one went well).
    pub failures_in_a_row: u32,
    /// Times the peer claimed more work than ours and sent nothing new.
    pub lies: u32,
    /// No sync with it before this (Unix ms; 0: none pending).
    pub backoff_until_ms: u64,
    /// Why the last pull failed.
    pub last_error: Option<String>,
    /// When a pull from it last went well (Unix ms).
    pub last_ok_ms: Option<u64>,
    /// Blocks stored from it since start.
    pub stored: u64,
    /// The subject of its TLS certificate, as last seen (`https://` peers).
    pub tls_subject: Option<String>,
    /// The key it says it mines with, from its `/status` (only ever used to order the
    /// mining turns: a false one delays this node's turn by a slot at most).
    #[serde(skip)]
    pub miner: Option<[u8; 32]>,
    /// A pull from it is under way.
    #[serde(skip)]
    pub in_flight: bool,
    /// When it last pushed a block that became this node's best (Unix ms; 0: never).
    #[serde(skip)]
    pub pushed_ms: u64,
    /// Sync rounds in a row that did not poll it because it had just pushed.
    #[serde(skip)]
    pub polls_skipped: u32,
}

/// Sync rounds in a row that skip polling a peer which pushed this node a block it took or
/// held within the last period (see [`PeerHealth::skip_poll`]); the next round polls it
/// anyway.
pub const MAX_POLLS_SKIPPED: u32 = 3;

impl PeerHealth {
    /// A peer at `url`, nothing known of it yet but the miner key it says it mines with.
    #[must_use]
    pub fn new(url: &str, miner: Option<[u8; 32]>) -> Self {
        PeerHealth {
            url: url.to_owned(),
            miner,
            ..PeerHealth::default()
        }
    }

    /// Whether the sync round at `now_ms` (one every `period`) skips polling this peer,
    /// counting the skip. A peer that pushed within the last period told this node its tip
    /// (a node relays each block that becomes its best): a poll would most likely learn
    /// nothing and cost a request and an answer on the link. The poll stays the safety net
    /// for a push lost on the way and for a tip the peer reached by pulling (not relayed),
    /// so at most [`MAX_POLLS_SKIPPED`] rounds in a row are skipped, whatever the pushes.
    pub fn skip_poll(&mut self, now_ms: u64, period: Duration) -> bool {
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        let recent = self.pushed_ms != 0 && now_ms.saturating_sub(self.pushed_ms) < period_ms;
        if recent && self.polls_skipped < MAX_POLLS_SKIPPED {
            self.polls_skipped += 1;
            true
        } else {
            self.polls_skipped = 0;
            false
        }
    }

    /// `"ok"`, `"failing"` or `"backed off"`, for people.
    #[must_use]
    pub fn state(&self, now_ms: u64) -> &'static str {
        if self.backoff_until_ms > now_ms {
            "backed off"
        } else if self.failures_in_a_row > 0 {
            "failing"
        } else {
            "ok"
        }
    }

    /// Records the outcome of a pull: a success clears the failures; a failure backs the
    /// peer off for `base × 2^(failures − 1)`, at most [`MAX_BACKOFF`]. A lie counts as a
    /// failure too, and is remembered. A peer that is only unreachable is tried again after
    /// `base` each time, not longer: a link that comes back (a healed partition, a restarted
    /// site) is used within one sync period, and a connection attempt costs little.
    pub fn record(&mut self, outcome: &Outcome, base: Duration, now_ms: u64) {
        match outcome {
            Outcome::Stored(n) => {
                self.failures_in_a_row = 0;
                self.backoff_until_ms = 0;
                self.last_error = None;
                self.last_ok_ms = Some(now_ms);
                self.stored += u64::from(*n);
            }
            Outcome::Failed {
                error,
                lied,
                unreachable,
            } => {
                if *lied {
                    self.lies += 1;
                    warn!(peer = %self.url, lies = self.lies, "{error}; backing off");
                }
                self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
                let factor = if *unreachable && !*lied {
                    1
                } else {
                    1u32 << (self.failures_in_a_row - 1).min(20)
                };
                let wait = base.saturating_mul(factor).min(MAX_BACKOFF);
                self.backoff_until_ms = now_ms + u64::try_from(wait.as_millis()).unwrap_or(0);
                self.last_error = Some(error.clone());
            }
        }
    }
}

/// The peers (of `urls`) the sync round at `now_ms` (one every `period`) pulls from: each
/// with no pull under way, not backed off, and not skipped for a recent push
/// ([`PeerHealth::skip_poll`]); each is marked as pulled from until [`PeerHealth::record`]
/// ends its pull (the runtime clears `in_flight` then). A peer seen for the first time gets
/// its record here.
pub fn due(
    urls: &[String],
    health: &mut std::collections::HashMap<String, PeerHealth>,
    now_ms: u64,
    period: Duration,
) -> Vec<String> {
    urls.iter()
        .filter(|url| {
            let h = health
                .entry((*url).clone())
                .or_insert_with(|| PeerHealth::new(url, None));
            let due = !h.in_flight && h.backoff_until_ms <= now_ms && !h.skip_poll(now_ms, period);
            if due {
                h.in_flight = true;
            }
            due
        })
        .cloned()
        .collect()
}

/// The peers (of `urls`) a block that became this node's best goes on to: all but the one
/// that sent it, known by the miner key its `/status` gives (`None`: every peer).
#[must_use]
pub fn relay_peers(
    urls: &[String],
    health: &std::collections::HashMap<String, PeerHealth>,
    sender: Option<[u8; 32]>,
) -> Vec<String> {
    urls.iter()
        .filter(|p| sender.is_none() || health.get(*p).and_then(|h| h.miner) != sender)
        .cloned()
        .collect()
}

/// A peer that says it mines with `key` pushed a block at `now_ms` that this node took or
/// already held: that block was the peer's best (a node relays only its best), and this
/// node knows it, so the next sync round may skip polling the peer
/// ([`PeerHealth::skip_poll`]). A false key only delays one peer's poll, by at most
/// [`MAX_POLLS_SKIPPED`] rounds.
pub fn pushed(
    health: &mut std::collections::HashMap<String, PeerHealth>,
    key: &[u8; 32],
    now_ms: u64,
) {
    for h in health.values_mut() {
        if h.miner.as_ref() == Some(key) {
            h.pushed_ms = now_ms;
        }
    }
}

/// A peer that says it mines with `key` just reached this node with a block whose parent
/// this node lacks: its backoff ends and a recent push no longer skips its poll, so the
/// next sync round pulls from it (a healed partition mends at the first block across it,
/// not at the backoff's end). A false key only brings one peer's pull forward.
pub fn reached(health: &mut std::collections::HashMap<String, PeerHealth>, key: &[u8; 32]) {
    for h in health.values_mut() {
        if h.miner.as_ref() == Some(key) {
            h.backoff_until_ms = 0;
            h.pushed_ms = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(lied: bool, unreachable: bool) -> Outcome {
        Outcome::Failed {
            error: "x".into(),
            lied,
            unreachable,
        }
    }

    /// Bad answers back a peer off longer and longer; an unreachable peer is tried again
    /// every period; a success clears both.
    #[test]
    fn backoff_grows_for_bad_answers_not_for_silence() {
        let base = Duration::from_secs(5);
        let mut h = PeerHealth::default();
        for (i, want) in [5_000u64, 10_000, 20_000, 40_000].iter().enumerate() {
            h.record(&failed(false, false), base, 0);
            assert_eq!(h.backoff_until_ms, *want, "failure {}", i + 1);
        }
        h.record(&Outcome::Stored(1), base, 0);
        assert_eq!((h.failures_in_a_row, h.backoff_until_ms), (0, 0));
        for _ in 0..6 {
            h.record(&failed(false, true), base, 1_000);
            assert_eq!(h.backoff_until_ms, 6_000);
        }
        assert_eq!(h.failures_in_a_row, 6);
        h.record(&failed(true, true), base, 0);
        assert_eq!(h.lies, 1);
        assert_eq!(
            h.backoff_until_ms,
            5_000 << 6,
            "a lie backs off by the count"
        );
    }

    /// A round pulls from each peer not already being pulled from, not backed off and not
    /// skipped for a recent push; a peer met for the first time is due at once.
    #[test]
    fn a_round_pulls_from_the_peers_that_are_due() {
        let period = Duration::from_secs(5);
        let urls: Vec<String> = ["a", "b", "c", "d"]
            .iter()
            .map(|u| (*u).to_owned())
            .collect();
        let mut health = std::collections::HashMap::new();
        for u in &urls[..3] {
            health.insert(u.clone(), PeerHealth::new(u, None));
        }
        if let Some(b) = health.get_mut("b") {
            b.backoff_until_ms = 20_000;
        }
        if let Some(c) = health.get_mut("c") {
            c.pushed_ms = 9_000;
        }
        assert_eq!(due(&urls, &mut health, 10_000, period), ["a", "d"]);
        assert!(health["a"].in_flight && health["d"].in_flight && !health["b"].in_flight);
        assert_eq!(health["c"].polls_skipped, 1, "the skip is counted");
        // Next round: a and d still pulling, b still backed off, c skipped again.
        assert!(due(&urls, &mut health, 11_000, period).is_empty());
        if let Some(a) = health.get_mut("a") {
            a.in_flight = false;
        }
        assert_eq!(due(&urls, &mut health, 21_000, period), ["a", "b", "c"]);
    }

    /// A peer that pushed within the last period is not polled, but only for
    /// `MAX_POLLS_SKIPPED` rounds in a row, however often it pushes; one that has not
    /// pushed for a period, or never, is polled every round.
    #[test]
    fn a_recent_push_skips_a_few_polls_never_all() {
        let period = Duration::from_secs(5);
        let mut h = PeerHealth::default();
        assert!(!h.skip_poll(1_000, period), "never pushed");
        let mut polled = 0;
        for round in 0..(4 * (MAX_POLLS_SKIPPED + 1)) {
            let now = 10_000 + u64::from(round) * 5_000;
            h.pushed_ms = now - 1_000;
            if !h.skip_poll(now, period) {
                polled += 1;
            }
        }
        assert_eq!(
            polled,
            4,
            "one poll in every {} rounds",
            MAX_POLLS_SKIPPED + 1
        );
        h.pushed_ms = 100_000;
        assert!(!h.skip_poll(105_000, period), "a push a whole period ago");
        assert!(
            h.skip_poll(104_999, period),
            "a push just within the period"
        );
    }
}
