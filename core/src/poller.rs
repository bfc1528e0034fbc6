//! What the poller makes of each read of a relay: which record is new and may be mined, what
//! is refused and why (a relay signature that fails, a clock never set), the gaps and clock
//! drift a person should see, and when to read again.
//!
//! The runtime reads the relay (Modbus TCP, `node/src/poll.rs`) and hands each outcome to
//! [`Poller::on_read`] with the time; it gets back the fresh record to send on, whether to
//! reconnect (read the relay's identity again), and how long to wait. Reads are aligned: one
//! every period, at the period's multiples plus an offset (the relay has closed its minute
//! by then). After a failure the next read comes sooner, 1 s, 2 s, 4 s … up to the period:
//! a relay that vanishes is retried, never fatal, and its missed minutes show as a gap.

use gridledger_chain::Registry;
use relay_core::{Minute, MinuteRecord, RecordFlags};
use tracing::{debug, info, warn};

use crate::relay_sig::Signer;

/// A relay clock this far ahead of the node's (or more) is reported as a clock problem.
pub const CLOCK_AHEAD_TOLERANCE_MS: u64 = 5_000;

/// A relay record whose minute closes this long after this node's now, or more, was stamped
/// by a clock far ahead: when the relay's clock comes back, its next minutes (older than that
/// record's) are read again rather than dropped. Ten times the future a block may be stamped
/// with (`gridledger_chain::validate::MAX_FUTURE_MS`): a relay steadily a few minutes ahead is
/// not taken for one that jumped.
pub const FAR_AHEAD_MS: u64 = 10 * gridledger_chain::validate::MAX_FUTURE_MS;

/// The first retry after a failed read; each further failure doubles it, up to the period.
pub const FIRST_RETRY_MS: u64 = 1_000;

/// What a node knows about one relay it polls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayStatus {
    /// The relay, as configured.
    pub relay: String,
    /// The relay id its records carry (from the last record read).
    pub relay_id: Option<u32>,
    /// Minute of the last record read.
    pub last_minute: Option<Minute>,
    /// Records read.
    pub records: u64,
    /// Minutes between two records read that the node never saw (relay down, node down, a
    /// poll too late).
    pub missed_minutes: u64,
    /// Polls that failed in a row (0 when the relay answers).
    pub failures_in_a_row: u64,
    /// The last error, if the last poll failed.
    pub last_error: Option<String>,
    /// Records refused because the relay's clock was not set.
    pub clock_not_set: u64,
    /// Polls that got an answer.
    pub answered: u64,
    /// Who vouches for the relay's last record read ([`crate::relay_sig::Signer`]).
    pub signer: Option<Signer>,
    /// The public key the relay serves, if it signs.
    pub served_key: Option<[u8; 32]>,
    /// Records read whose relay signature failed (or was missing where the registry
    /// requires one): reported, and not mined.
    pub bad_signatures: u64,
    /// How far the relay's clock ran ahead of this node's at the last record read, in
    /// milliseconds: the record's minute closed that long after this node's now (0 when
    /// the clock is fine). Records of a relay far ahead wait in the mempool until their
    /// minute has closed by this node's clock, since a block may not hold them earlier.
    pub clock_ahead_ms: u64,
}

impl RelayStatus {
    /// A clock problem worth telling a person about, if any.
    #[must_use]
    pub fn clock_problem(&self) -> Option<String> {
        (self.clock_ahead_ms >= CLOCK_AHEAD_TOLERANCE_MS).then(|| {
            format!(
                "relay clock runs {:.1} s ahead of this node's: its records wait until their minute has closed here; check the relay's and the node's time sync",
                self.clock_ahead_ms as f64 / 1000.0
            )
        })
    }

    /// True if the relay answered the last poll.
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.answered > 0 && self.failures_in_a_row == 0
    }
}

/// One read of a relay, as the runtime got it.
#[derive(Clone, Debug)]
pub enum Read {
    /// The relay's last closed minute record.
    Record {
        /// The record's sequence number in the relay's registers (a new record, a new one).
        seq: u16,
        /// The record (boxed: a read is passed by value, and most reads carry one).
        record: Box<MinuteRecord>,
        /// The public key the relay serves, if it signs.
        served_key: Option<[u8; 32]>,
    },
    /// An answer with no record yet (a relay that has not closed a minute).
    Nothing,
    /// No answer, or one that is not a record: why.
    Failed(String),
}

/// What the runtime does after a read.
#[derive(Clone, Debug, PartialEq)]
pub struct Next {
    /// A record not sent before, to send on (to the mempool, the witness).
    pub fresh: Option<MinuteRecord>,
    /// Read the relay's identity (its key) again on the next read.
    pub reconnect: bool,
    /// When to read next (Unix ms, this node's clock).
    pub at_ms: u64,
}

/// One relay's poller.
#[derive(Clone, Debug)]
pub struct Poller {
    period_ms: u64,
    offset_ms: u64,
    retry_ms: u64,
    last_seq: Option<u16>,
    /// The latest minute taken whose minute had closed, give or take [`FAR_AHEAD_MS`], by
    /// this node's clock when it was read.
    sane: Option<Minute>,
    /// The minutes taken lately (at most [`TAKEN_KEPT`], the lowest forgotten first): none is
    /// taken twice, whatever the relay's clock does.
    taken: std::collections::BTreeSet<u32>,
}

/// Minutes a poller remembers having taken (a day of minutes).
pub const TAKEN_KEPT: usize = 1440;

impl Poller {
    /// A poller reading every `period_ms` (at least 1), `offset_ms` after each multiple.
    #[must_use]
    pub fn new(period_ms: u64, offset_ms: u64) -> Self {
        Poller {
            period_ms: period_ms.max(1),
            offset_ms,
            retry_ms: FIRST_RETRY_MS,
            last_seq: None,
            sane: None,
            taken: std::collections::BTreeSet::new(),
        }
    }

    /// A read at `now_ms` (this node's clock): `status` brought up to date, each record's
    /// relay signature checked against `registry` (or the key the relay serves, if it is not
    /// registered), and what follows.
    pub fn on_read(
        &mut self,
        read: Read,
        status: &mut RelayStatus,
        registry: &Registry,
        now_ms: u64,
    ) -> Next {
        let mut next = Next {
            fresh: None,
            reconnect: false,
            at_ms: now_ms,
        };
        match read {
            Read::Record {
                seq,
                record,
                served_key,
            } if Some(seq) != self.last_seq => {
                self.last_seq = Some(seq);
                self.answered(status);
                status.served_key = served_key;
                let signed = crate::relay_sig::check_read(&record, served_key.as_ref(), registry);
                if let Err(e) = &signed {
                    if status.bad_signatures == 0 {
                        warn!(relay = %status.relay, "{e}");
                    } else {
                        debug!(relay = %status.relay, "{e}");
                    }
                    status.bad_signatures += 1;
                    status.last_error = Some(e.to_string());
                    // The relay may have a new key (read its identity again next time), or
                    // not have signed this record yet: read it again next time.
                    next.reconnect = true;
                    self.last_seq = None;
                } else if !record.flags.contains(RecordFlags::CLOCK_SET) {
                    status.clock_not_set += 1;
                    warn!(relay = %status.relay, "record without a set clock refused (minute counts from power-up)");
                } else if let Some(after) = self.taken_after(status, record.minute, now_ms) {
                    let closes = gridledger_chain::validate::minute_closes_ms(record.minute);
                    let sane = closes <= now_ms.saturating_add(FAR_AHEAD_MS);
                    // A gap to a minute far ahead is no gap: the minutes between will come.
                    if let (Some(m), true) = (after, sane) {
                        status.missed_minutes += u64::from(record.minute.0 - m.0 - 1);
                    }
                    if status.last_minute.is_some_and(|m| record.minute <= m) {
                        warn!(relay = %status.relay, minute = %record.minute, "the relay's clock came back from far ahead: its records are read again from here");
                    }
                    status.last_minute = Some(record.minute);
                    if sane {
                        self.sane = Some(record.minute);
                    }
                    self.taken.insert(record.minute.0);
                    while self.taken.len() > TAKEN_KEPT {
                        self.taken.pop_first();
                    }
                    status.relay_id = Some(record.relay.0);
                    status.records += 1;
                    let ahead = gridledger_chain::validate::minute_closes_ms(record.minute)
                        .saturating_sub(now_ms);
                    if ahead >= CLOCK_AHEAD_TOLERANCE_MS
                        && status.clock_ahead_ms < CLOCK_AHEAD_TOLERANCE_MS
                    {
                        warn!(relay = %status.relay, minute = %record.minute, ahead_ms = ahead, "the relay's clock runs ahead of this node's; its records wait until their minute has closed");
                    }
                    status.clock_ahead_ms = ahead;
                    status.signer = signed.ok();
                    next.fresh = Some(*record);
                }
            }
            Read::Record { .. } | Read::Nothing => self.answered(status),
            Read::Failed(e) => {
                if status.failures_in_a_row == 0 {
                    warn!(relay = %status.relay, "{e}; retrying");
                } else {
                    debug!(relay = %status.relay, "{e}");
                }
                status.failures_in_a_row += 1;
                status.last_error = Some(e);
                next.at_ms = now_ms.saturating_add(self.retry_ms.min(self.period_ms));
                self.retry_ms = self.retry_ms.saturating_mul(2).min(self.period_ms);
                return next;
            }
        }
        if self.retry_ms > FIRST_RETRY_MS {
            info!(relay = %status.relay, "relay answers again");
        }
        self.retry_ms = FIRST_RETRY_MS;
        // The next aligned instant, plus the offset.
        next.at_ms = (now_ms / self.period_ms + 1) * self.period_ms + self.offset_ms;
        next
    }

    /// Whether a record of `minute` is taken, and if so the minute it follows (for the gap):
    /// a minute after the last one read; or, when the last one read lies far ahead of this
    /// node's clock (a relay clock that jumped forward and came back), a minute after the
    /// last one read before that. A minute taken before is never taken again, nor otherwise
    /// an older one: a relay whose clock steps back would give a second, different record
    /// for a minute already read, which the chain and this node's witness hold already.
    fn taken_after(
        &self,
        status: &RelayStatus,
        minute: Minute,
        now_ms: u64,
    ) -> Option<Option<Minute>> {
        if self.taken.contains(&minute.0) {
            return None;
        }
        let Some(last) = status.last_minute else {
            return Some(None);
        };
        if minute > last {
            return Some(Some(last));
        }
        let far = gridledger_chain::validate::minute_closes_ms(last)
            > now_ms.saturating_add(FAR_AHEAD_MS);
        (far && self.sane.is_none_or(|s| minute > s)).then_some(self.sane)
    }

    fn answered(&self, status: &mut RelayStatus) {
        status.answered += 1;
        status.failures_in_a_row = 0;
        status.last_error = None;
    }
}

#[cfg(test)]
mod tests {
    use relay_core::signal::{Profile, SignalModel};
    use relay_core::{RecordSignature, RelayId};

    use super::*;

    const PERIOD: u64 = 60_000;
    const OFFSET: u64 = 2_000;
    const M: u32 = 29_943_000;

    fn record(minute: u32, flags: RecordFlags) -> MinuteRecord {
        SignalModel::new(1, Profile::Realistic).record(RelayId(4), Minute(minute), 6, flags)
    }

    fn read(seq: u16, minute: u32) -> Read {
        Read::Record {
            seq,
            record: Box::new(record(minute, RecordFlags::CLOCK_SET)),
            served_key: None,
        }
    }

    /// A poller's start: no read yet, an empty registry.
    fn start(period: u64, offset: u64) -> (Poller, RelayStatus, Registry) {
        (
            Poller::new(period, offset),
            RelayStatus::default(),
            Registry::default(),
        )
    }

    /// The time just after minute `m` closed, plus `ms`.
    fn after(m: u32, ms: u64) -> u64 {
        gridledger_chain::validate::minute_closes_ms(Minute(m)) + ms
    }

    /// A new record goes on once, and the next read is at the next aligned instant plus
    /// the offset; the same record read again goes nowhere; a minute skipped is a gap; an
    /// older minute (a relay whose clock stepped back) goes nowhere.
    #[test]
    fn a_new_record_goes_on_once_and_gaps_are_counted() {
        let (mut p, mut st, reg) = start(PERIOD, OFFSET);
        let now = after(M, 2_500);
        let n = p.on_read(read(1, M), &mut st, &reg, now);
        assert_eq!(n.fresh.map(|r| r.minute), Some(Minute(M)));
        assert!(!n.reconnect);
        assert_eq!(n.at_ms, (now / PERIOD + 1) * PERIOD + OFFSET);
        assert_eq!((st.records, st.answered, st.relay_id), (1, 1, Some(4)));
        assert!(st.is_up());

        let n = p.on_read(read(1, M), &mut st, &reg, now + 10);
        assert_eq!(n.fresh, None, "the same record again");
        assert_eq!((st.records, st.answered), (1, 2));

        let n = p.on_read(read(2, M + 3), &mut st, &reg, after(M + 3, 2_000));
        assert!(n.fresh.is_some());
        assert_eq!(
            (st.missed_minutes, st.last_minute),
            (2, Some(Minute(M + 3)))
        );

        let n = p.on_read(read(3, M + 1), &mut st, &reg, after(M + 3, 3_000));
        assert_eq!(n.fresh, None, "an older minute");
        assert_eq!(st.records, 2);
    }

    /// A record whose clock was never set is refused and counted; one whose relay
    /// signature fails is refused, counted, and read again with the relay's identity
    /// (reconnect), the same record checked again.
    #[test]
    fn unset_clocks_and_bad_signatures_are_refused() {
        let (mut p, mut st, reg) = start(PERIOD, OFFSET);
        let unset = Read::Record {
            seq: 1,
            record: Box::new(record(M, RecordFlags(0))),
            served_key: None,
        };
        let n = p.on_read(unset, &mut st, &reg, after(M, 1_000));
        assert_eq!((n.fresh, st.clock_not_set, st.records), (None, 1, 0));

        let mut forged = record(M, RecordFlags::CLOCK_SET);
        forged.signature = Some(RecordSignature([1; 64]));
        let bad = || Read::Record {
            seq: 2,
            record: Box::new(forged.clone()),
            served_key: Some(
                ed25519_dalek::SigningKey::from_bytes(&[3; 32])
                    .verifying_key()
                    .to_bytes(),
            ),
        };
        let n = p.on_read(bad(), &mut st, &reg, after(M, 2_000));
        assert_eq!(n.fresh, None);
        assert!(n.reconnect, "the relay's identity is read again");
        assert_eq!(st.bad_signatures, 1);
        assert!(st.last_error.is_some());
        let n = p.on_read(bad(), &mut st, &reg, after(M, 3_000));
        assert!(
            n.reconnect && st.bad_signatures == 2,
            "the same record checked again"
        );
    }

    /// A relay that does not answer is retried after 1 s, 2 s, 4 s … never more than the
    /// period; once it answers the reads are aligned again and the next failure starts
    /// over at 1 s.
    #[test]
    fn a_relay_that_vanishes_is_retried_sooner_up_to_the_period() {
        let (mut p, mut st, reg) = start(10_000, 500);
        let mut now = 1_000_000;
        let mut waits = Vec::new();
        for _ in 0..6 {
            let n = p.on_read(
                Read::Failed("connection refused".into()),
                &mut st,
                &reg,
                now,
            );
            assert_eq!(n.fresh, None);
            waits.push(n.at_ms - now);
            now = n.at_ms;
        }
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(st.failures_in_a_row, 6);
        assert!(!st.is_up() && st.last_error.as_deref() == Some("connection refused"));

        let n = p.on_read(Read::Nothing, &mut st, &reg, now);
        assert_eq!(n.at_ms, (now / 10_000 + 1) * 10_000 + 500, "aligned again");
        assert!(st.is_up() && st.last_error.is_none());
        let n = p.on_read(Read::Failed("timeout".into()), &mut st, &reg, now);
        assert_eq!(n.at_ms - now, 1_000, "starts over");
    }

    /// A relay clock that jumps far ahead for one record and comes back: its next minutes
    /// are taken again (nothing lost until a restart), a gap counted from the last minute
    /// read before the jump; a minute read before the jump is still never taken twice, and
    /// without a jump an older minute goes nowhere.
    #[test]
    fn a_relay_clock_that_jumps_ahead_and_back_loses_no_minute() {
        let (mut p, mut st, reg) = start(PERIOD, OFFSET);
        assert!(p
            .on_read(read(1, M), &mut st, &reg, after(M, 1_000))
            .fresh
            .is_some());
        assert!(p
            .on_read(read(2, M + 1), &mut st, &reg, after(M + 1, 1_000))
            .fresh
            .is_some());
        // A year ahead, once.
        let glitch = M + 525_600;
        assert!(p
            .on_read(read(3, glitch), &mut st, &reg, after(M + 2, 1_000))
            .fresh
            .is_some());
        let n = p.on_read(read(4, M + 3), &mut st, &reg, after(M + 3, 1_000));
        assert_eq!(
            n.fresh.map(|r| r.minute),
            Some(Minute(M + 3)),
            "back: taken"
        );
        assert_eq!(st.missed_minutes, 1, "minute M + 2, counted from M + 1");
        assert!(p
            .on_read(read(5, M + 4), &mut st, &reg, after(M + 4, 1_000))
            .fresh
            .is_some());
        assert_eq!(
            p.on_read(read(6, M + 1), &mut st, &reg, after(M + 4, 2_000))
                .fresh,
            None,
            "a minute read before the jump is not read twice"
        );
        assert_eq!(st.records, 5);

        // A relay steadily far ahead whose clock steps back a minute: the minute it gave
        // already is not taken twice.
        let (mut p, mut st, reg) = start(PERIOD, OFFSET);
        let now = after(M, 0);
        for (seq, m) in [(1, glitch), (2, glitch + 1)] {
            assert!(p.on_read(read(seq, m), &mut st, &reg, now).fresh.is_some());
        }
        assert_eq!(p.on_read(read(3, glitch), &mut st, &reg, now).fresh, None);
        assert_eq!(
            st.missed_minutes, 0,
            "no gap counted to or among minutes far ahead"
        );
    }

    /// A record whose minute closes well after this node's now: its relay's clock runs
    /// ahead, said once and shown; the record still goes on (it waits in the mempool).
    #[test]
    fn a_relay_clock_ahead_is_shown() {
        let (mut p, mut st, reg) = start(PERIOD, OFFSET);
        let now = after(M, 0) - 10_000;
        let n = p.on_read(read(1, M), &mut st, &reg, now);
        assert!(n.fresh.is_some());
        assert_eq!(st.clock_ahead_ms, 10_000);
        assert!(st
            .clock_problem()
            .is_some_and(|m| m.contains("10.0 s ahead")));
        p.on_read(read(2, M + 1), &mut st, &reg, after(M + 1, 1_000));
        assert_eq!((st.clock_ahead_ms, st.clock_problem()), (0, None));
    }
}
