//! Energy counters as monotonic totals. A RAPL counter wraps at
//! `max_energy_range_uj` (minutes at a few hundred watts); NVML's counts
//! from the driver's load. The agent polls well inside the wrap time, so
//! between two readings a counter wraps at most once: a smaller reading is a
//! wrap when the counter has a wrap value, else a reset (driver reload), and
//! then only the new reading is added.

use serde::{Deserialize, Serialize};

/// One counter's state, as kept in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The last raw reading, µJ.
    pub last_raw_uj: u64,
    /// Where it wraps, if it does.
    pub wrap_uj: Option<u64>,
    /// Energy since the agent first saw the counter, µJ; never decreases.
    pub total_uj: u64,
    /// Wraps and resets seen, for the record.
    pub wraps: u64,
    pub resets: u64,
}

impl Counter {
    pub fn new(raw_uj: u64, wrap_uj: Option<u64>) -> Counter {
        Counter {
            last_raw_uj: raw_uj,
            wrap_uj,
            total_uj: 0,
            wraps: 0,
            resets: 0,
        }
    }

    /// Takes a new raw reading; returns the energy it added, µJ.
    pub fn advance(&mut self, raw_uj: u64, wrap_uj: Option<u64>) -> u64 {
        if wrap_uj.is_some() {
            self.wrap_uj = wrap_uj;
        }
        let added = if raw_uj >= self.last_raw_uj {
            raw_uj - self.last_raw_uj
        } else if let Some(wrap) = self.wrap_uj.filter(|&w| w > self.last_raw_uj) {
            self.wraps += 1;
            wrap - self.last_raw_uj + raw_uj
        } else {
            self.resets += 1;
            raw_uj
        };
        self.last_raw_uj = raw_uj;
        self.total_uj = self.total_uj.saturating_add(added);
        added
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_grow_across_wraps_and_resets() {
        let mut c = Counter::new(900, Some(1000));
        assert_eq!(c.advance(950, None), 50);
        assert_eq!(c.advance(20, None), 70, "wrapped at 1000");
        assert_eq!(c.total_uj, 120);
        assert_eq!(c.wraps, 1);
        let mut n = Counter::new(5_000, None);
        assert_eq!(n.advance(300, None), 300, "no wrap value: a reset");
        assert_eq!((n.total_uj, n.resets), (300, 1));
    }
}
