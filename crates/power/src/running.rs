//! Energy and power kept as running figures, for readers that keep no
//! samples (the Prometheus exporter runs for months). The arithmetic and the
//! gap rule are the run's: counters by difference with wrap-around undone (a
//! reset adds nothing), power samples by trapezoids but never across a gap,
//! and a gap is what [`gap_limit_ns`] says it is for the run sampler too, so
//! a stretch never counts as energy here and as a gap in a run's result.

use crate::energy::{counter_step, gap_limit_ns, CounterStep};
use crate::meter::{MeterInfo, Reading};
use crate::sampler::DEFAULT_GAP_PERIODS;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RunningEnergy {
    /// Power from the latest reading (a counter's: its last interval).
    pub watts: Option<f64>,
    /// Energy since the first reading.
    pub energy_j: f64,
    /// Longest interval integrated between two power samples.
    max_gap: Duration,
    last: Option<(Instant, Reading)>,
}

impl RunningEnergy {
    /// For `info`'s meter read every `sampling` (the gap limit follows the
    /// meter's own update period when that is slower).
    pub fn new(info: &MeterInfo, sampling: Duration) -> Self {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let limit_ns = gap_limit_ns(ns(sampling), ns(info.update_period), DEFAULT_GAP_PERIODS);
        RunningEnergy {
            watts: None,
            energy_j: 0.0,
            max_gap: Duration::from_nanos(limit_ns),
            last: None,
        }
    }

    pub fn max_gap(&self) -> Duration {
        self.max_gap
    }

    /// Takes one reading made at `at`.
    pub fn update(&mut self, at: Instant, reading: Reading) {
        if let Some((t0, prev)) = self.last {
            let dt = at.saturating_duration_since(t0);
            let dt_s = dt.as_secs_f64();
            match (prev, reading) {
                (
                    Reading::Energy { counter_uj: a, .. },
                    Reading::Energy {
                        counter_uj: b,
                        wrap_uj,
                    },
                ) => match counter_step(a, b, wrap_uj) {
                    CounterStep::Forward(d) | CounterStep::Wrapped(d) => {
                        let j = d as f64 * 1e-6;
                        self.energy_j += j;
                        if dt_s > 0.0 {
                            self.watts = Some(j / dt_s);
                        }
                    }
                    CounterStep::Reset => {}
                },
                (Reading::Power { watts: w0, .. }, Reading::Power { watts: w1, .. })
                    if dt_s > 0.0 && dt <= self.max_gap && w0.is_finite() && w1.is_finite() =>
                {
                    self.energy_j += 0.5 * (w0 + w1) * dt_s;
                }
                _ => {}
            }
        }
        if let Reading::Power { watts, .. } = reading {
            if watts.is_finite() {
                self.watts = Some(watts);
            }
        }
        self.last = Some((at, reading));
    }
}

/// Watts now: a power reading as is; a counter's rate since the previous one.
pub fn live_watts(previous: Option<&crate::log::Sample>, now: &crate::log::Sample) -> Option<f64> {
    match now.reading {
        Reading::Power { watts, .. } => Some(watts),
        Reading::Energy {
            counter_uj,
            wrap_uj,
        } => {
            let prev = previous?;
            let Reading::Energy {
                counter_uj: before, ..
            } = prev.reading
            else {
                return None;
            };
            let dt_s = now.t_ns.checked_sub(prev.t_ns)? as f64 / 1e9;
            if dt_s <= 0.0 {
                return None;
            }
            let delta_uj = match crate::energy::counter_step(before, counter_uj, wrap_uj) {
                crate::energy::CounterStep::Forward(d) | crate::energy::CounterStep::Wrapped(d) => {
                    d
                }
                crate::energy::CounterStep::Reset => return None,
            };
            Some(delta_uj as f64 / 1e6 / dt_s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::{Provenance, ReadingKind, Scope};

    fn info(kind: ReadingKind, update_period: Duration) -> MeterInfo {
        MeterInfo {
            id: "m".into(),
            source: "test".into(),
            domain: "d".into(),
            scope: Scope::Node,
            kind,
            provenance: Provenance::Measured,
            resolution: 1e-6,
            update_period,
            contains: vec![],
        }
    }

    #[test]
    fn counters_accumulate_across_a_wrap_and_give_watts() {
        let i = info(ReadingKind::EnergyCounter, Duration::from_millis(1));
        let mut s = RunningEnergy::new(&i, Duration::from_millis(100));
        let t0 = Instant::now();
        let e = |uj| Reading::Energy {
            counter_uj: uj,
            wrap_uj: Some(1_000_000),
        };
        s.update(t0, e(900_000));
        assert_eq!(s.watts, None, "no power from one reading");
        s.update(t0 + Duration::from_millis(100), e(100_000));
        assert!((s.energy_j - 0.2).abs() < 1e-12, "{}", s.energy_j);
        assert!((s.watts.unwrap() - 2.0).abs() < 1e-9);
        s.update(t0 + Duration::from_millis(200), e(50));
        assert!((s.energy_j - 0.2).abs() < 1e-12, "a reset adds nothing");
    }

    #[test]
    fn power_samples_integrate_but_not_across_a_gap() {
        let i = info(ReadingKind::PowerSample, Duration::from_millis(1));
        let mut s = RunningEnergy::new(&i, Duration::from_millis(200));
        let t0 = Instant::now();
        s.update(t0, Reading::watts(10.0));
        s.update(t0 + Duration::from_millis(500), Reading::watts(30.0));
        assert!((s.energy_j - 10.0).abs() < 1e-9);
        s.update(t0 + Duration::from_secs(5), Reading::watts(30.0));
        assert!((s.energy_j - 10.0).abs() < 1e-9, "gap skipped");
        assert_eq!(s.watts, Some(30.0));
    }

    #[test]
    fn the_gap_rule_is_the_run_samplers() {
        // A BMC that updates once a second, read at 10 Hz: a 2 s stretch is
        // within 3 of its update periods, as a run's energy counts it.
        let bmc = info(ReadingKind::PowerSample, Duration::from_secs(1));
        let s = RunningEnergy::new(&bmc, Duration::from_millis(100));
        assert_eq!(
            s.max_gap().as_nanos() as u64,
            gap_limit_ns(100_000_000, 1_000_000_000, DEFAULT_GAP_PERIODS)
        );
        let mut s = s;
        let t0 = Instant::now();
        s.update(t0, Reading::watts(100.0));
        s.update(t0 + Duration::from_secs(2), Reading::watts(100.0));
        assert!((s.energy_j - 200.0).abs() < 1e-9, "{}", s.energy_j);
        // A fast meter read at 10 Hz: 0.5 s without a reading is a gap (the
        // exporter's old rule, 10 of its own intervals, counted it).
        let fast = info(ReadingKind::PowerSample, Duration::from_millis(1));
        let mut s = RunningEnergy::new(&fast, Duration::from_millis(100));
        s.update(t0, Reading::watts(100.0));
        s.update(t0 + Duration::from_millis(500), Reading::watts(100.0));
        assert_eq!(s.energy_j, 0.0);
    }

    #[test]
    fn live_watts_are_a_readings_power_or_a_counters_rate() {
        let at = |t_ns, reading| crate::log::Sample { t_ns, reading };
        let e = |uj| Reading::Energy {
            counter_uj: uj,
            wrap_uj: Some(1_000_000),
        };
        assert_eq!(live_watts(None, &at(0, Reading::watts(42.0))), Some(42.0));
        assert_eq!(
            live_watts(None, &at(0, e(10))),
            None,
            "one reading: no rate"
        );
        // 0.2 J in 100 ms across the wrap: 2 W.
        let w = live_watts(Some(&at(0, e(900_000))), &at(100_000_000, e(100_000))).unwrap();
        assert!((w - 2.0).abs() < 1e-9, "{w}");
        assert_eq!(
            live_watts(Some(&at(0, e(600_000))), &at(100_000_000, e(500_000))),
            None,
            "a reset"
        );
    }
}
