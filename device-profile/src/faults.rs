//! Fault openings from what the samples read of the fault source: a counter's increase
//! (through a wrap, and after a reset), or a status bit's rising edges.

use crate::FaultReading;

/// The most openings believed to happen between two samples. A counter that reads lower
/// than before has either wrapped past its largest value or been reset; if counting
/// through the wrap gives at most this many openings it wrapped, otherwise it was reset
/// and the openings since are its new value.
pub const MAX_OPENINGS_BETWEEN_SAMPLES: u128 = 1000;

/// Turns successive readings of a fault source into openings.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultTracker {
    last: Option<FaultReading>,
}

impl FaultTracker {
    /// A tracker that has seen nothing yet.
    #[must_use]
    pub fn new() -> Self {
        FaultTracker::default()
    }

    /// Forgets the last reading (the device was lost: what happened meanwhile is unknown,
    /// and is not counted).
    pub fn forget(&mut self) {
        self.last = None;
    }

    /// The openings between the last reading and `now`; `wrap` is the counter's range
    /// (`2^16` for a u16). The first reading gives 0: openings before it are unknown.
    pub fn observe(&mut self, now: FaultReading, wrap: Option<u128>) -> u32 {
        let openings = match (self.last, now) {
            (Some(FaultReading::Counter(old)), FaultReading::Counter(new)) => {
                if new >= old {
                    new - old
                } else {
                    match wrap {
                        Some(w) if w - old + new <= MAX_OPENINGS_BETWEEN_SAMPLES => w - old + new,
                        _ => new,
                    }
                }
            }
            (Some(FaultReading::Status(was)), FaultReading::Status(is)) => u128::from(!was && is),
            _ => 0,
        };
        self.last = Some(now);
        u32::try_from(openings).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FaultReading::{Counter, Status};

    #[test]
    fn counters_count_through_wraps_and_resets() {
        let mut t = FaultTracker::new();
        let w = Some(1u128 << 16);
        assert_eq!(
            t.observe(Counter(100), w),
            0,
            "the first reading is a baseline"
        );
        assert_eq!(t.observe(Counter(103), w), 3);
        assert_eq!(t.observe(Counter(103), w), 0);
        assert_eq!(t.observe(Counter(65_534), w), 65_431);
        assert_eq!(t.observe(Counter(2), w), 4, "wrapped past 65535");
        assert_eq!(
            t.observe(Counter(1), w),
            1,
            "reset: the openings since are its value"
        );
        t.forget();
        assert_eq!(t.observe(Counter(50), w), 0, "after a loss, a new baseline");
    }

    #[test]
    fn status_bits_count_rising_edges() {
        let mut t = FaultTracker::new();
        assert_eq!(
            t.observe(Status(true), None),
            0,
            "already set when first seen"
        );
        assert_eq!(t.observe(Status(true), None), 0);
        assert_eq!(t.observe(Status(false), None), 0);
        assert_eq!(t.observe(Status(true), None), 1);
        assert_eq!(t.observe(Status(false), None), 0);
    }
}
