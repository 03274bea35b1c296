//! Energy of one meter over a window: counters by difference, power samples
//! by trapezoids, the window's edges interpolated, gaps and resets reported.

use super::{
    counter_step, Completeness, CounterReset, CounterStep, EnergyError, Gap, MeterEnergy, Window,
};
use crate::log::Sample;
use crate::meter::{MeterInfo, Reading, ReadingKind};

/// Gap limit for a meter: `periods` sampling periods, or `periods` of the
/// meter's own update period when that is slower (sampling a 1 Hz BMC at
/// 10 Hz must not make every second a gap).
pub fn gap_limit_ns(sampling_period_ns: u64, update_period_ns: u64, periods: u32) -> u64 {
    sampling_period_ns
        .max(update_period_ns)
        .saturating_mul(u64::from(periods.max(1)))
}

/// Energy of one meter over `window`.
///
/// `samples` must be in time order (equal timestamps are allowed) and of the
/// meter's kind. Consecutive samples more than `max_gap_ns` apart form a gap.
pub fn energy_over_window(
    info: &MeterInfo,
    samples: &[Sample],
    window: Window,
    max_gap_ns: u64,
) -> Result<MeterEnergy, EnergyError> {
    let window = Window::new(window.begin_ns, window.end_ns)?;
    let points = to_points(info, samples)?;
    let (begin, end) = (window.begin_ns, window.end_ns);

    let mut energy_j = 0.0;
    let mut covered_ns: u64 = 0;
    let mut counted_ns: u64 = 0;
    let mut gaps = Vec::new();
    let mut counter_resets = Vec::new();
    let mut reasons = Vec::new();

    for pair in points.windows(2) {
        let (p0, p1) = (&pair[0], &pair[1]);
        let (t0, t1) = (p0.t_ns, p1.t_ns);
        if t1 <= t0 {
            continue;
        }
        let a = t0.max(begin);
        let b = t1.min(end);
        if a >= b {
            continue;
        }
        if let Some(reset) = p1.reset_before {
            counter_resets.push(reset);
            reasons.push(format!(
                "counter went backwards between {:.3} s and {:.3} s ({} -> {} uJ): energy in that {:.3} s unknown, not counted",
                ns_to_s(t0),
                ns_to_s(t1),
                reset.before_uj,
                reset.after_uj,
                ns_to_s(t1 - t0)
            ));
            continue;
        }
        let va = lerp(p0, p1, a);
        let vb = lerp(p0, p1, b);
        let part_j = match info.kind {
            ReadingKind::PowerSample => 0.5 * (va + vb) * (b - a) as f64 * 1e-9,
            ReadingKind::EnergyCounter => (vb - va) * 1e-6,
        };
        energy_j += part_j;
        counted_ns += b - a;
        if t1 - t0 > max_gap_ns {
            let gap = Gap {
                from_ns: t0,
                to_ns: t1,
            };
            gaps.push(gap);
            reasons.push(format!(
                "gap of {:.3} s without samples from {:.3} s to {:.3} s (limit {:.3} s); energy across it {}",
                gap.duration_s(),
                ns_to_s(t0),
                ns_to_s(t1),
                ns_to_s(max_gap_ns),
                match info.kind {
                    ReadingKind::PowerSample => "interpolated",
                    ReadingKind::EnergyCounter => "taken from the counter",
                }
            ));
        } else {
            covered_ns += b - a;
        }
    }

    let first = points.first().map(|p| p.t_ns);
    let last = points.last().map(|p| p.t_ns);
    match (first, last) {
        (Some(f), Some(l)) if f < end && l > begin => {
            if f > begin {
                reasons.insert(
                    0,
                    format!(
                        "first sample {:.3} s after the window begins: that time is not covered",
                        ns_to_s(f - begin)
                    ),
                );
            }
            if l < end {
                reasons.push(format!(
                    "last sample {:.3} s before the window ends: that time is not covered",
                    ns_to_s(end - l)
                ));
            }
        }
        _ => reasons.insert(
            0,
            format!(
                "no samples span the window {:.3} s .. {:.3} s ({} samples in all)",
                ns_to_s(begin),
                ns_to_s(end),
                samples.len()
            ),
        ),
    }

    let samples_in_window = samples
        .iter()
        .filter(|s| s.t_ns >= begin && s.t_ns <= end)
        .count();
    let avg_w = if counted_ns > 0 {
        energy_j / (counted_ns as f64 * 1e-9)
    } else {
        0.0
    };
    Ok(MeterEnergy {
        meter_id: info.id.clone(),
        source: info.source.clone(),
        domain: info.domain.clone(),
        scope: info.scope,
        kind: info.kind,
        provenance: info.provenance,
        contains: info.contains.clone(),
        window,
        energy_j,
        avg_w,
        samples_in_window,
        covered_s: covered_ns as f64 * 1e-9,
        coverage: covered_ns as f64 / window.duration_ns() as f64,
        gaps,
        counter_resets,
        completeness: Completeness::from_reasons(reasons),
    })
}

fn ns_to_s(ns: u64) -> f64 {
    ns as f64 * 1e-9
}

/// A vertex of the piecewise-linear function: watts, or cumulative uJ.
struct Point {
    t_ns: u64,
    value: f64,
    /// Set when the counter reset between the previous point and this one.
    reset_before: Option<CounterReset>,
}

fn lerp(p0: &Point, p1: &Point, t: u64) -> f64 {
    let span = (p1.t_ns - p0.t_ns) as f64;
    let frac = (t - p0.t_ns) as f64 / span;
    p0.value + (p1.value - p0.value) * frac
}

fn to_points(info: &MeterInfo, samples: &[Sample]) -> Result<Vec<Point>, EnergyError> {
    let mut points = Vec::with_capacity(samples.len());
    let mut cumulative_uj: u64 = 0;
    let mut prev: Option<(u64, u64)> = None; // (t_ns, raw counter)
    for (index, s) in samples.iter().enumerate() {
        if let Some(p) = points.last() {
            let p: &Point = p;
            if s.t_ns < p.t_ns {
                return Err(EnergyError::TimeWentBackwards {
                    meter: info.id.clone(),
                    index,
                    t_ns: s.t_ns,
                    prev_ns: p.t_ns,
                });
            }
        }
        if s.kind() != info.kind {
            return Err(EnergyError::KindMismatch {
                meter: info.id.clone(),
                index,
                expected: info.kind,
                found: s.kind(),
            });
        }
        match s.reading {
            Reading::Power { watts, .. } => {
                if !watts.is_finite() {
                    return Err(EnergyError::NonFinite {
                        meter: info.id.clone(),
                        index,
                        watts,
                    });
                }
                points.push(Point {
                    t_ns: s.t_ns,
                    value: watts,
                    reset_before: None,
                });
            }
            Reading::Energy {
                counter_uj,
                wrap_uj,
            } => {
                let mut reset_before = None;
                if let Some((prev_t, prev_uj)) = prev {
                    match counter_step(prev_uj, counter_uj, wrap_uj) {
                        CounterStep::Forward(d) | CounterStep::Wrapped(d) => {
                            cumulative_uj = cumulative_uj.saturating_add(d);
                        }
                        CounterStep::Reset => {
                            reset_before = Some(CounterReset {
                                from_ns: prev_t,
                                to_ns: s.t_ns,
                                before_uj: prev_uj,
                                after_uj: counter_uj,
                            });
                        }
                    }
                }
                prev = Some((s.t_ns, counter_uj));
                points.push(Point {
                    t_ns: s.t_ns,
                    value: cumulative_uj as f64,
                    reset_before,
                });
            }
        }
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::{Provenance, Scope};
    use std::time::Duration;

    fn info(kind: ReadingKind) -> MeterInfo {
        MeterInfo {
            id: "m".into(),
            source: "test".into(),
            domain: "d".into(),
            scope: Scope::CpuPackage,
            kind,
            provenance: Provenance::Measured,
            resolution: 1e-6,
            update_period: Duration::from_millis(1),
            contains: vec![],
        }
    }

    fn power(points: &[(u64, f64)]) -> Vec<Sample> {
        points
            .iter()
            .map(|&(t_ns, w)| Sample {
                t_ns,
                reading: Reading::watts(w),
            })
            .collect()
    }

    fn counter(points: &[(u64, u64)], wrap: Option<u64>) -> Vec<Sample> {
        points
            .iter()
            .map(|&(t_ns, c)| Sample {
                t_ns,
                reading: Reading::Energy {
                    counter_uj: c,
                    wrap_uj: wrap,
                },
            })
            .collect()
    }

    const S: u64 = 1_000_000_000;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-12)
    }

    #[test]
    fn constant_power_integrates_exactly() {
        let s: Vec<Sample> = power(&(0..=100).map(|i| (i * S / 10, 50.0)).collect::<Vec<_>>());
        let e = energy_over_window(
            &info(ReadingKind::PowerSample),
            &s,
            Window::new(0, 10 * S).unwrap(),
            S,
        )
        .unwrap();
        assert!(close(e.energy_j, 500.0, 1e-12), "{}", e.energy_j);
        assert!(close(e.avg_w, 50.0, 1e-12));
        assert_eq!(e.samples_in_window, 101);
        assert!(e.is_complete(), "{:?}", e.completeness);
        assert!(close(e.coverage, 1.0, 1e-12));
    }

    #[test]
    fn linear_ramp_with_interpolated_edges_is_exact() {
        // P(t) = 10 + 2 t (W, t in s), sampled every second from 0 to 10 s.
        let s = power(
            &(0..=10)
                .map(|i| (i * S, 10.0 + 2.0 * i as f64))
                .collect::<Vec<_>>(),
        );
        // Window 2.5 s .. 7.25 s: both edges fall between samples.
        let w = Window::new(2 * S + S / 2, 7 * S + S / 4).unwrap();
        let e = energy_over_window(&info(ReadingKind::PowerSample), &s, w, 2 * S).unwrap();
        let exact = |t: f64| 10.0 * t + t * t;
        let want = exact(7.25) - exact(2.5);
        assert!(close(e.energy_j, want, 1e-9), "{} vs {want}", e.energy_j);
        assert_eq!(e.samples_in_window, 5); // 3,4,5,6,7 s
        assert!(e.is_complete());
    }

    #[test]
    fn sine_power_within_a_tenth_of_a_percent() {
        // P(t) = 100 + 40 sin(2 pi t / 0.7 s) over 5 s at 1 kHz, window 0.3..4.6 s.
        let period = 0.7;
        let p = |t: f64| 100.0 + 40.0 * (2.0 * std::f64::consts::PI * t / period).sin();
        let s = power(
            &(0..=5000)
                .map(|i| (i * S / 1000, p(i as f64 / 1000.0)))
                .collect::<Vec<_>>(),
        );
        let (a, b) = (0.3, 4.6);
        let prim = |t: f64| {
            100.0 * t
                - 40.0 * period / (2.0 * std::f64::consts::PI)
                    * (2.0 * std::f64::consts::PI * t / period).cos()
        };
        let want = prim(b) - prim(a);
        let w = Window::new((a * 1e9) as u64, (b * 1e9) as u64).unwrap();
        let e = energy_over_window(&info(ReadingKind::PowerSample), &s, w, S / 100).unwrap();
        assert!(close(e.energy_j, want, 1e-3), "{} vs {want}", e.energy_j);
        assert!(e.is_complete());
    }

    #[test]
    fn counter_difference_with_interpolated_edges() {
        // 100 W as a counter: 100_000 uJ per ms... sampled every 100 ms.
        let s = counter(
            &(0..=10)
                .map(|i| (i * S / 10, 5_000 + i * 10_000_000))
                .collect::<Vec<_>>(),
            None,
        );
        let w = Window::new(S / 20, S - S / 20).unwrap(); // 0.05 .. 0.95 s
        let e = energy_over_window(&info(ReadingKind::EnergyCounter), &s, w, S).unwrap();
        assert!(close(e.energy_j, 90.0, 1e-12), "{}", e.energy_j);
        assert!(close(e.avg_w, 100.0, 1e-12));
        assert!(e.is_complete());
    }

    #[test]
    fn counter_wraps_through_wrap_uj() {
        let wrap = 1_000_000; // 1 J range
        let s = counter(
            &[
                (0, 900_000),
                (S, 950_000),
                (2 * S, 50_000),
                (3 * S, 100_000),
            ],
            Some(wrap),
        );
        let e = energy_over_window(
            &info(ReadingKind::EnergyCounter),
            &s,
            Window::new(0, 3 * S).unwrap(),
            2 * S,
        )
        .unwrap();
        assert!(close(e.energy_j, 0.2, 1e-12), "{}", e.energy_j);
        assert!(e.counter_resets.is_empty());
        assert!(e.is_complete());
    }

    #[test]
    fn counter_reset_is_reported_not_negative() {
        let wrap = 1_000_000_000;
        // 0..1 s: +0.5 J; 1..2 s: reset (900_000 -> 1_000); 2..3 s: +0.2 J.
        let s = counter(
            &[(0, 400_000), (S, 900_000), (2 * S, 1_000), (3 * S, 201_000)],
            Some(wrap),
        );
        let e = energy_over_window(
            &info(ReadingKind::EnergyCounter),
            &s,
            Window::new(0, 3 * S).unwrap(),
            2 * S,
        )
        .unwrap();
        assert!(close(e.energy_j, 0.7, 1e-12), "{}", e.energy_j);
        assert_eq!(e.counter_resets.len(), 1);
        assert_eq!(e.counter_resets[0].before_uj, 900_000);
        assert!(!e.is_complete());
        assert!(e.completeness.reasons()[0].contains("backwards"));
        assert!(close(e.coverage, 2.0 / 3.0, 1e-12));
        // Without a wrap value every backward step is a reset.
        assert_eq!(counter_step(10, 5, None), CounterStep::Reset);
        assert_eq!(counter_step(990, 10, Some(1000)), CounterStep::Wrapped(20));
        assert_eq!(counter_step(5, 7, Some(1000)), CounterStep::Forward(2));
    }

    #[test]
    fn gaps_are_reported_and_make_the_result_incomplete() {
        let s = power(&[(0, 10.0), (S, 10.0), (5 * S, 10.0), (6 * S, 10.0)]);
        let e = energy_over_window(
            &info(ReadingKind::PowerSample),
            &s,
            Window::new(0, 6 * S).unwrap(),
            2 * S,
        )
        .unwrap();
        assert_eq!(
            e.gaps,
            vec![Gap {
                from_ns: S,
                to_ns: 5 * S
            }]
        );
        assert!(close(e.energy_j, 60.0, 1e-12)); // interpolated across the gap
        assert!(close(e.coverage, 2.0 / 6.0, 1e-12));
        assert!(!e.is_complete());
        assert!(e.completeness.reasons()[0].contains("gap of 4.000 s"));
    }

    #[test]
    fn window_outside_the_samples_is_not_extrapolated() {
        let s = power(&[(2 * S, 10.0), (4 * S, 10.0)]);
        let e = energy_over_window(
            &info(ReadingKind::PowerSample),
            &s,
            Window::new(S, 5 * S).unwrap(),
            10 * S,
        )
        .unwrap();
        assert!(close(e.energy_j, 20.0, 1e-12));
        assert!(close(e.avg_w, 10.0, 1e-12));
        assert!(close(e.coverage, 0.5, 1e-12));
        let r = e.completeness.reasons();
        assert!(r[0].contains("first sample 1.000 s after"), "{r:?}");
        assert!(r[1].contains("last sample 1.000 s before"), "{r:?}");

        let none = energy_over_window(
            &info(ReadingKind::PowerSample),
            &s,
            Window::new(10 * S, 11 * S).unwrap(),
            10 * S,
        )
        .unwrap();
        assert_eq!(none.energy_j, 0.0);
        assert!(none.completeness.reasons()[0].contains("no samples span"));
    }

    #[test]
    fn bad_input_is_an_error() {
        let i = info(ReadingKind::PowerSample);
        assert!(Window::new(5, 5).is_err());
        let back = power(&[(2, 1.0), (1, 1.0)]);
        assert!(matches!(
            energy_over_window(
                &i,
                &back,
                Window {
                    begin_ns: 0,
                    end_ns: 3
                },
                10
            ),
            Err(EnergyError::TimeWentBackwards { index: 1, .. })
        ));
        let mixed = counter(&[(0, 1)], None);
        assert!(matches!(
            energy_over_window(
                &i,
                &mixed,
                Window {
                    begin_ns: 0,
                    end_ns: 3
                },
                10
            ),
            Err(EnergyError::KindMismatch { .. })
        ));
    }
}
