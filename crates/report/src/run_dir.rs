//! A run folder read back for reporting: its `result.json` (either kind) and
//! the power logs it names, turned into power-over-time series.
//!
//! The result file is required: without it there is no run to report, and
//! the error names the file and what is wrong with it. A power log that is
//! missing or corrupt is not fatal: the report is still made from what is
//! there, and the problem is listed (on the page and by the caller), because
//! a partial report of a long, expensive run is worth more than none.
//!
//! Energy counters become power by difference over each sampling interval
//! (wrap-around undone by [`power::energy::counter_step`]; a reset interval is
//! skipped, not guessed). Long series are averaged down to at most
//! [`MAX_POINTS`] points per meter, which keeps the HTML small and keeps the
//! area under the curve: averaging preserves energy, picking samples would not.

use crate::schema::{self, AnyResult, ReadError};
use power::energy::{counter_step, CounterStep};
use power::log::read_log;
use power::meter::{Provenance, Reading};
use std::path::{Path, PathBuf};

/// Points per meter series kept for charts.
pub const MAX_POINTS: usize = 1500;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: not a folder (give the folder a joulebench run wrote, with its result.json)", path.display())]
    NotADir { path: PathBuf },
    #[error("{}: no result.json here (is this the folder a joulebench run wrote?)", path.display())]
    NoResult { path: PathBuf },
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// One meter's power over time.
#[derive(Debug, Clone)]
pub struct MeterSeries {
    pub meter_id: String,
    pub provenance: Provenance,
    /// (seconds on the run clock, watts), in time order.
    pub points: Vec<(f64, f64)>,
    /// The window its energy was computed over, seconds on the run clock.
    pub window_s: Option<(f64, f64)>,
    /// Highest power inside the window (or the whole log), before averaging down.
    pub peak_w: Option<f64>,
}

/// A run folder, read.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    pub dir: PathBuf,
    pub result: AnyResult,
    pub series: Vec<MeterSeries>,
    /// What could not be read (a power log), each naming its file.
    pub problems: Vec<String>,
}

/// Reads `dir/result.json` and the power logs it lists.
pub fn load(dir: &Path) -> Result<LoadedRun, LoadError> {
    if !dir.is_dir() {
        return Err(LoadError::NotADir {
            path: dir.to_path_buf(),
        });
    }
    let path = dir.join(schema::RESULT_FILE);
    if !path.exists() {
        return Err(LoadError::NoResult {
            path: dir.to_path_buf(),
        });
    }
    let result = schema::read_any(&path)?;
    let mut series = Vec::new();
    let mut problems = Vec::new();
    if let Some(power) = result.power() {
        for log in &power.logs {
            let file = dir.join(&log.file);
            let meter = power.meters.iter().find(|m| m.meter_id == log.meter_id);
            let provenance = meter.map_or(Provenance::Measured, |m| m.provenance);
            let window_s = meter.map(|m| (secs(m.window.begin_ns), secs(m.window.end_ns)));
            match read_log(&file) {
                Ok(parsed) => {
                    if parsed.truncated_tail {
                        problems.push(format!(
                            "{}: the last line was cut short and is left out",
                            file.display()
                        ));
                    }
                    let full = watts_over_time(&parsed.samples);
                    series.push(MeterSeries {
                        meter_id: log.meter_id.clone(),
                        provenance,
                        peak_w: peak_w(&full, window_s),
                        points: downsample(full, MAX_POINTS),
                        window_s,
                    });
                }
                Err(e) => problems.push(format!("power log of {}: {e}", log.meter_id)),
            }
        }
    }
    Ok(LoadedRun {
        dir: dir.to_path_buf(),
        result,
        series,
        problems,
    })
}

fn secs(ns: u64) -> f64 {
    ns as f64 * 1e-9
}

/// Power at each sample (power meters) or over each interval, placed at its
/// midpoint (energy counters).
pub fn watts_over_time(samples: &[power::log::Sample]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        match s.reading {
            Reading::Power { watts, .. } => {
                if watts.is_finite() {
                    out.push((secs(s.t_ns), watts));
                }
            }
            Reading::Energy {
                counter_uj,
                wrap_uj,
            } => {
                let Some(prev) = i.checked_sub(1).map(|j| samples[j]) else {
                    continue;
                };
                let Reading::Energy {
                    counter_uj: prev_uj,
                    ..
                } = prev.reading
                else {
                    continue;
                };
                let dt_ns = s.t_ns.saturating_sub(prev.t_ns);
                if dt_ns == 0 {
                    continue;
                }
                let uj = match counter_step(prev_uj, counter_uj, wrap_uj) {
                    CounterStep::Forward(d) | CounterStep::Wrapped(d) => d,
                    CounterStep::Reset => continue,
                };
                let mid_ns = prev.t_ns + dt_ns / 2;
                out.push((secs(mid_ns), uj as f64 * 1e-6 / (dt_ns as f64 * 1e-9)));
            }
        }
    }
    out
}

/// Peak power is the highest average over any span this long (a single
/// reading for meters read less often): one short interval of an energy
/// counter read every few milliseconds is mostly timing noise.
pub const PEAK_SPAN_S: f64 = 0.25;

/// Highest power among `points` inside `window_s` (all points without one),
/// averaged over [`PEAK_SPAN_S`]. The power at the window's edges, between a
/// point outside and one inside, counts too: energy over the window is
/// integrated on the same line, so the average can never exceed the peak
/// for want of it.
pub fn peak_w(points: &[(f64, f64)], window_s: Option<(f64, f64)>) -> Option<f64> {
    let mut inside: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| window_s.is_none_or(|(a, b)| p.0 >= a && p.0 <= b))
        .collect();
    if let Some((a, b)) = window_s {
        let at = |t: f64| {
            let after = points.iter().position(|p| p.0 > t)?;
            let (p0, p1) = (points.get(after.checked_sub(1)?)?, points[after]);
            (p0.0 < t).then(|| (t, p0.1 + (p1.1 - p0.1) * (t - p0.0) / (p1.0 - p0.0)))
        };
        if let Some(edge) = at(a) {
            inside.insert(0, edge);
        }
        if let Some(edge) = at(b) {
            inside.push(edge);
        }
    }
    let mut peak: Option<f64> = None;
    let mut j = 0;
    let mut sum = 0.0;
    for i in 0..inside.len() {
        if j < i {
            j = i;
            sum = 0.0;
        }
        // Grow [i, j) while the span stays within PEAK_SPAN_S.
        while j < inside.len() && (j == i || inside[j].0 - inside[i].0 <= PEAK_SPAN_S) {
            sum += inside[j].1;
            j += 1;
        }
        let avg = sum / (j - i) as f64;
        peak = Some(peak.map_or(avg, |p: f64| p.max(avg)));
        sum -= inside[i].1;
    }
    peak
}

/// At most `max` points: consecutive runs of points averaged (time and power).
pub fn downsample(points: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max == 0 {
        return points;
    }
    let per = points.len().div_ceil(max);
    points
        .chunks(per)
        .map(|c| {
            let n = c.len() as f64;
            (
                c.iter().map(|p| p.0).sum::<f64>() / n,
                c.iter().map(|p| p.1).sum::<f64>() / n,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use power::log::Sample;

    #[test]
    fn counters_become_watts_over_each_interval_across_a_wrap() {
        let e = |t_ns: u64, uj: u64| Sample {
            t_ns,
            reading: Reading::Energy {
                counter_uj: uj,
                wrap_uj: Some(1_000_000),
            },
        };
        // 0.1 s steps: +0.5 J (5 W), +0.4 J (4 W), then through the wrap at
        // 1 J: 0.1 J before it and 0.1 J after (2 W).
        let w = watts_over_time(&[
            e(0, 0),
            e(100_000_000, 500_000),
            e(200_000_000, 900_000),
            e(300_000_000, 100_000),
        ]);
        assert_eq!(w.len(), 3);
        assert!((w[0].0 - 0.05).abs() < 1e-12);
        assert!((w[0].1 - 5.0).abs() < 1e-9, "{w:?}");
        assert!((w[1].1 - 4.0).abs() < 1e-9, "{w:?}");
        assert!((w[2].1 - 2.0).abs() < 1e-9, "wrap undone: {w:?}");
    }

    #[test]
    fn a_counter_reset_interval_is_skipped_not_guessed() {
        let e = |t_ns: u64, uj: u64| Sample {
            t_ns,
            reading: Reading::Energy {
                counter_uj: uj,
                wrap_uj: None,
            },
        };
        let w = watts_over_time(&[e(0, 100), e(1_000_000_000, 50), e(2_000_000_000, 1_050)]);
        assert_eq!(w.len(), 1);
        assert!((w[0].1 - 0.001).abs() < 1e-12);
    }

    #[test]
    fn peak_power_is_the_highest_short_average_not_one_noisy_interval() {
        // 1/64 s intervals (exact in binary, so the span edge is not left to
        // rounding) at 40 W with one 100 W spike interval.
        let mut pts: Vec<(f64, f64)> = (0..128).map(|i| (i as f64 / 64.0, 40.0)).collect();
        pts[64].1 = 100.0;
        let peak = peak_w(&pts, None).unwrap();
        // 17 points per 0.25 s span: (16 × 40 + 100) / 17.
        assert!((peak - 740.0 / 17.0).abs() < 1e-9, "{peak}");
        // Readings 1 s apart: each is its own span.
        let slow = [(0.0, 10.0), (1.0, 30.0), (2.0, 20.0)];
        assert_eq!(peak_w(&slow, None), Some(30.0));
        // The window starts half-way down from 30 to 20 W: 25 W there.
        assert_eq!(peak_w(&slow, Some((1.5, 3.0))), Some(25.0));
        // A window shorter than the span: the mean of its two edges.
        assert_eq!(peak_w(&slow, Some((1.5, 1.75))), Some(23.75));
        assert_eq!(peak_w(&[], None), None);
    }

    #[test]
    fn downsampling_keeps_the_mean_power() {
        let pts: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, (i % 7) as f64)).collect();
        let mean = |p: &[(f64, f64)]| p.iter().map(|x| x.1).sum::<f64>() / p.len() as f64;
        let before = mean(&pts);
        let small = downsample(pts, 1000);
        assert_eq!(small.len(), 1000);
        assert!((mean(&small) - before).abs() < 1e-9);
    }
}
