//! Progress of long work (`gridledger verify` and `export` over a long chain, a node
//! syncing): a bar with rate and time left on a terminal (indicatif), plain lines every
//! few seconds when stderr is a file or a pipe (a log, CI), nothing when there is little to
//! do.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Below this many blocks, work is quick: no progress is shown.
const SHOW_FROM: u64 = 10_000;

/// Seconds between two plain lines; `GRIDLEDGER_PROGRESS_SECS` overrides (0: a line at
/// every step, for tests).
fn line_every() -> Duration {
    std::env::var("GRIDLEDGER_PROGRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(5), Duration::from_secs_f64)
}

/// Rate and time left, in words: `12 345 blocks/s, about 3 s left`.
#[must_use]
pub fn rate_and_eta(done: u64, total: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = done as f64 / secs;
    let left = total.saturating_sub(done) as f64 / rate.max(1e-9);
    if done == 0 {
        "starting".to_owned()
    } else {
        format!("{rate:.0} blocks/s, about {left:.0} s left")
    }
}

/// Progress of one piece of work over `total` blocks.
#[derive(Debug)]
pub struct Progress {
    what: &'static str,
    total: u64,
    started: Instant,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Hidden,
    Bar(indicatif::ProgressBar),
    Lines { every: Duration, last: Instant },
}

impl Progress {
    /// Starts showing `what` (`verify`, `export`) over `total` blocks on stderr.
    #[must_use]
    pub fn new(what: &'static str, total: u64) -> Self {
        let forced = std::env::var_os("GRIDLEDGER_PROGRESS_SECS").is_some();
        let kind = if total < SHOW_FROM && !forced {
            Kind::Hidden
        } else if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix} {bar:40} {pos}/{len} blocks, {per_sec}, {eta} left",
            ) {
                bar.set_style(style);
            }
            bar.set_prefix(what);
            Kind::Bar(bar)
        } else {
            Kind::Lines {
                every: line_every(),
                last: Instant::now(),
            }
        };
        Progress {
            what,
            total,
            started: Instant::now(),
            kind,
        }
    }

    /// `done` of the blocks are through.
    pub fn set(&mut self, done: u64) {
        match &mut self.kind {
            Kind::Hidden => {}
            Kind::Bar(bar) => bar.set_position(done),
            Kind::Lines { every, last } => {
                if last.elapsed() >= *every {
                    *last = Instant::now();
                    eprintln!(
                        "{}: {done} of {} blocks, {}",
                        self.what,
                        self.total,
                        rate_and_eta(done, self.total, self.started.elapsed())
                    );
                }
            }
        }
    }

    /// The work is over: the bar is cleared, a line says how long it took.
    pub fn finish(self, done: u64) {
        let secs = self.started.elapsed().as_secs_f64();
        match self.kind {
            Kind::Hidden => return,
            Kind::Bar(bar) => bar.finish_and_clear(),
            Kind::Lines { .. } => {}
        }
        eprintln!(
            "{}: {done} blocks in {secs:.1} s ({:.0} blocks/s)",
            self.what,
            done as f64 / secs.max(1e-3)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_time_left() {
        assert_eq!(
            rate_and_eta(1000, 3000, Duration::from_secs(2)),
            "500 blocks/s, about 4 s left"
        );
        assert_eq!(rate_and_eta(0, 3000, Duration::from_secs(2)), "starting");
    }
}
