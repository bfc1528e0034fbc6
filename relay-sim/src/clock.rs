//! The relay's clock: UTC, optionally running faster than the wall clock.
//!
//! Tests and demos compress time (`--minute-secs 2` makes a relay minute last two wall
//! seconds), so the relay clock is `origin + elapsed × speed`. Records carry relay-clock
//! minutes; under compression those run ahead of the wall clock, which is the point.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Maps wall instants to relay time (Unix milliseconds) and back.
#[derive(Clone, Copy, Debug)]
pub struct RelayClock {
    origin: Instant,
    origin_ms: u64,
    /// Relay seconds per wall second.
    speed: f64,
}

impl RelayClock {
    /// A clock that reads `start_unix_ms` now and advances 60 relay seconds every
    /// `minute_secs` wall seconds.
    #[must_use]
    pub fn new(start_unix_ms: u64, minute_secs: f64) -> Self {
        RelayClock {
            origin: Instant::now(),
            origin_ms: start_unix_ms,
            speed: 60.0 / minute_secs,
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
        self.origin_ms + (self.origin.elapsed().as_secs_f64() * 1000.0 * self.speed) as u64
    }

    /// The wall instant at which the relay clock reads `relay_ms` (now, if that is past).
    #[must_use]
    pub fn instant_at(&self, relay_ms: u64) -> Instant {
        let ahead_ms = relay_ms.saturating_sub(self.origin_ms) as f64;
        self.origin + Duration::from_secs_f64(ahead_ms / 1000.0 / self.speed)
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
}
