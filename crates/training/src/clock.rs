//! The run's one clock: nanoseconds since an anchor `Instant` (what power
//! samples and phase windows use) and, for the MLPerf log, Unix milliseconds
//! derived from the same anchor, so a log timestamp and a power sample never
//! disagree about when something happened.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    anchor: Instant,
    /// Unix time of `anchor`, milliseconds (fractional).
    anchor_unix_ms: f64,
}

impl RunClock {
    /// A clock anchored at `anchor`, which happened at Unix time `anchor_unix_ms`.
    pub fn new(anchor: Instant, anchor_unix_ms: f64) -> RunClock {
        RunClock {
            anchor,
            anchor_unix_ms,
        }
    }

    /// A clock anchored now (wall time read once, here).
    pub fn start() -> RunClock {
        let anchor = Instant::now();
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3);
        RunClock::new(anchor, unix_ms)
    }

    pub fn anchor(&self) -> Instant {
        self.anchor
    }

    /// Nanoseconds since the anchor.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.anchor.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Unix milliseconds of a run-clock time, as MLPerf logs write `time_ms`.
    pub fn unix_ms(&self, ns: u64) -> u64 {
        (self.anchor_unix_ms + ns as f64 / 1e6).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_follows_the_anchor() {
        let c = RunClock::new(Instant::now(), 1_700_000_000_000.0);
        assert_eq!(c.unix_ms(0), 1_700_000_000_000);
        assert_eq!(c.unix_ms(1_500_000), 1_700_000_000_002);
        assert_eq!(c.unix_ms(2_000_000_000), 1_700_000_002_000);
    }
}
