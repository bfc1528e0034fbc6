//! The relay's clock: UTC, optionally running faster than the wall clock.
//!
//! Tests and demos compress time (`--minute-secs 2` makes a relay minute last two wall
//! seconds), so the relay clock is `origin + elapsed × speed`.
//!
//! A relay's record for minute m cannot exist before m has closed, and the ledger refuses a
//! block that holds a record whose minute closed after the block's time (FORMAT.md, rule
//! 9). So an honest compressed clock must never run ahead of UTC: by default it starts
//! [`headroom_ms`] in the past, far enough to run compressed for a whole day, and once it
//! catches up with the wall clock it runs at wall speed ([`RelayClock::capped`]).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One day in milliseconds.
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// How far behind UTC a compressed clock of `minute_secs` starts by default: enough for 24
/// hours of compressed running (`24 h × (speed − 1)`) plus an hour, so that it stays behind
/// the wall clock for at least a day. Zero at real time or slower.
#[must_use]
pub fn headroom_ms(minute_secs: f64) -> u64 {
    let speed = 60.0 / minute_secs;
    if !(speed > 1.0 && speed.is_finite()) {
        return 0;
    }
    ((speed - 1.0) * DAY_MS as f64) as u64 + DAY_MS / 24
}

/// Maps wall instants to relay time (Unix milliseconds) and back.
#[derive(Clone, Copy, Debug)]
pub struct RelayClock {
    origin: Instant,
    origin_ms: u64,
    /// The system clock at `origin`, if the clock is capped at it.
    cap_origin_ms: Option<u64>,
    /// Relay seconds per wall second.
    speed: f64,
}

impl RelayClock {
    /// A clock that reads `start_unix_ms` now and advances 60 relay seconds every
    /// `minute_secs` wall seconds, without bound: it may run ahead of UTC (tests of a relay
    /// whose clock is wrong).
    #[must_use]
    pub fn new(start_unix_ms: u64, minute_secs: f64) -> Self {
        RelayClock {
            origin: Instant::now(),
            origin_ms: start_unix_ms,
            cap_origin_ms: None,
            speed: 60.0 / minute_secs,
        }
    }

    /// Like [`RelayClock::new`], but never ahead of the system clock: once the compressed
    /// time reaches UTC, the clock runs at wall speed. What an honest relay does.
    #[must_use]
    pub fn capped(start_unix_ms: u64, minute_secs: f64) -> Self {
        RelayClock {
            cap_origin_ms: Some(Self::system_now_ms()),
            ..Self::new(start_unix_ms, minute_secs)
        }
    }

    /// The current Unix time in milliseconds from the system clock.
    #[must_use]
    pub fn system_now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Relay time now, Unix milliseconds.
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        self.at(self.origin.elapsed())
    }

    /// Relay time `elapsed` after the origin.
    fn at(&self, elapsed: Duration) -> u64 {
        let compressed = self
            .origin_ms
            .saturating_add((elapsed.as_secs_f64() * 1000.0 * self.speed) as u64);
        match self.cap_origin_ms {
            // The monotonic elapsed time, not the system clock again: the relay clock never
            // steps back when the host's clock is corrected.
            Some(wall) => compressed
                .min(wall.saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))),
            None => compressed,
        }
    }

    /// The wall instant at which the relay clock reads `relay_ms` (now, if that is past).
    #[must_use]
    pub fn instant_at(&self, relay_ms: u64) -> Instant {
        let ahead_ms = relay_ms.saturating_sub(self.origin_ms) as f64;
        let compressed = self.origin + Duration::from_secs_f64(ahead_ms / 1000.0 / self.speed);
        match self.cap_origin_ms {
            // Both the compressed and the wall time must have reached it.
            Some(wall) => {
                compressed.max(self.origin + Duration::from_millis(relay_ms.saturating_sub(wall)))
            }
            None => compressed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_clock_runs_faster() {
        let c = RelayClock::new(60_000, 2.0);
        // 30 relay seconds per wall second: relay 61 000 ms is 1/30 s after the origin.
        let at = c.instant_at(61_000).duration_since(c.origin);
        assert!((at.as_secs_f64() - 1.0 / 30.0).abs() < 1e-9);
        assert!(c.now_ms() >= 60_000);
        // A past time maps to the origin, not a panic.
        assert_eq!(c.instant_at(0), c.origin);
    }

    #[test]
    fn capped_clock_never_passes_the_wall_clock() {
        let wall = 1_800_000_000_000u64;
        let c = RelayClock {
            origin: Instant::now(),
            origin_ms: wall - 10 * 60_000,
            cap_origin_ms: Some(wall),
            speed: 30.0,
        };
        // Compressed while behind: 10 wall seconds are 300 relay seconds.
        assert_eq!(c.at(Duration::from_secs(10)), wall - 10 * 60_000 + 300_000);
        // Caught up after 600 / 29 s; from then on, wall speed.
        for secs in [21u64, 60, 3600, 86_400 * 400] {
            let t = c.at(Duration::from_secs(secs));
            assert_eq!(t, wall + secs * 1000, "at {secs} s");
        }
        // instant_at is the inverse on both sides of the catch-up point.
        for relay_ms in [wall - 300_000, wall + 5_000, wall + 3_600_000] {
            let at = c.instant_at(relay_ms).duration_since(c.origin);
            let back = c.at(at);
            assert!(back.abs_diff(relay_ms) <= 1, "{relay_ms} -> {back}");
        }
    }

    #[test]
    fn default_headroom_lasts_a_day_of_compressed_time() {
        for minute_secs in [0.2, 1.0, 2.0, 30.0] {
            let speed = 60.0 / minute_secs;
            let head = headroom_ms(minute_secs);
            let wall = 1_800_000_000_000u64;
            let c = RelayClock {
                origin: Instant::now(),
                origin_ms: wall - head,
                cap_origin_ms: None,
                speed,
            };
            // Uncapped, after 24 hours it is still behind UTC.
            let day = Duration::from_secs(86_400);
            assert!(c.at(day) < wall + DAY_MS, "{minute_secs} s minutes");
        }
        assert_eq!(headroom_ms(60.0), 0);
        assert_eq!(headroom_ms(120.0), 0);
    }
}
