//! Energy counters as monotonic totals. A RAPL counter wraps at
//! `max_energy_range_uj` (minutes at a few hundred watts); NVML's counts
//! from the driver's load. The agent polls well inside the wrap time, so
//! between two readings a counter wraps at most once: a smaller reading is a
//! wrap when the counter has a wrap value, else a reset (driver reload), and
//! then only the new reading is added.
//!
//! A meter that reports power, not energy (hwmon, a BMC through IPMI or
//! Redfish), becomes a counter too: an [`Integral`] of its samples. Its
//! energy is measured between samples taken while the agent ran; across a
//! gap in them (the agent down, the BMC not answering) it can only be
//! bridged, by the trapezoid of the samples either side, and that part is
//! kept apart as estimated.

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

/// A power meter's samples integrated into energy, as kept in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Integral {
    /// The last sample, W, and when it was taken (ns since the Unix epoch).
    pub last_watts: f64,
    pub last_unix_ns: u64,
    /// Energy since the agent first sampled the meter, µJ; never decreases.
    pub total_uj: u64,
    /// Of `total_uj`, what was bridged across gaps in the samples (estimated).
    pub bridged_uj: u64,
    /// Gaps bridged.
    pub gaps: u64,
}

impl Integral {
    pub fn new(watts: f64, at_unix_ns: u64) -> Integral {
        Integral {
            last_watts: clean_watts(watts),
            last_unix_ns: at_unix_ns,
            total_uj: 0,
            bridged_uj: 0,
            gaps: 0,
        }
    }

    /// Takes a sample: the trapezoid since the last one is added, and kept
    /// apart as bridged when `gap` says the samples between are missing.
    /// A sample older than the last one is ignored. Returns the energy added, µJ.
    pub fn advance(&mut self, watts: f64, at_unix_ns: u64, gap: bool) -> u64 {
        let Some(dt_ns) = at_unix_ns.checked_sub(self.last_unix_ns) else {
            return 0;
        };
        let watts = clean_watts(watts);
        let added = trapezoid_uj(self.last_watts, watts, dt_ns);
        self.total_uj = self.total_uj.saturating_add(added);
        if gap {
            self.bridged_uj = self.bridged_uj.saturating_add(added);
            self.gaps += 1;
        }
        self.last_watts = watts;
        self.last_unix_ns = at_unix_ns;
        added
    }

    /// The total as of `now_unix_ns`: the last sample's power held since it
    /// was taken (at most one sampling interval), so a job's window ends at
    /// the hook, not at the last sample. µJ.
    pub fn total_at(&self, now_unix_ns: u64) -> u64 {
        let dt_ns = now_unix_ns.saturating_sub(self.last_unix_ns);
        self.total_uj
            .saturating_add(trapezoid_uj(self.last_watts, self.last_watts, dt_ns))
    }
}

/// A reading no meter can mean (negative, NaN) counts as nothing.
fn clean_watts(watts: f64) -> f64 {
    if watts.is_finite() && watts > 0.0 {
        watts
    } else {
        0.0
    }
}

/// µJ of the trapezoid between two samples `dt_ns` apart.
fn trapezoid_uj(a_watts: f64, b_watts: f64, dt_ns: u64) -> u64 {
    ((a_watts + b_watts) / 2.0 * dt_ns as f64 / 1e3).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_samples_integrate_and_gaps_are_kept_apart() {
        let s = 1_000_000_000;
        let mut i = Integral::new(100.0, 10 * s);
        assert_eq!(i.advance(200.0, 12 * s, false), 300_000_000, "2 s at 150 W");
        assert_eq!(
            i.advance(200.0, 22 * s, true),
            2_000_000_000,
            "bridged 10 s"
        );
        assert_eq!(
            (i.total_uj, i.bridged_uj, i.gaps),
            (2_300_000_000, 2_000_000_000, 1)
        );
        assert_eq!(
            i.advance(500.0, 21 * s, false),
            0,
            "older than the last: ignored"
        );
        assert_eq!(i.total_at(23 * s), 2_500_000_000, "held at 200 W for 1 s");
        assert_eq!(
            i.advance(f64::NAN, 23 * s, false),
            100_000_000,
            "NaN counts as 0 W"
        );
    }

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
