//! Replay a recorded power or energy trace as if it were a live meter.
//!
//! For offline analysis (a trace from another tool, an analyzer's export) and
//! for testing everything downstream of a meter with a known signal. The
//! file is CSV with a header naming the quantity:
//!
//! ```text
//! # lines starting with '#' and blank lines are ignored
//! t_s,watts          (a power trace)         t_s,energy_j    (an energy counter)
//! 0.0,85.5                                   0.0,0
//! 0.1,86.0                                   0.1,8.55
//! ```
//!
//! - `t_s`: seconds since the start of the trace; finite, non-negative,
//!   strictly increasing.
//! - `watts`: power in watts, finite. `energy_j`: cumulative energy in
//!   joules, finite, non-negative; it may go down (to replay a counter reset),
//!   and is replayed as a counter in microjoules that does not wrap.
//!
//! A [`ReplayMeter`] plays the trace on the wall clock: `read()` returns the
//! value at the time elapsed since the meter was opened, linearly
//! interpolated between rows (so sampling it at any rate and integrating
//! gives back the trace's own integral). Before the first row it holds the
//! first value; past the last row it fails with a read error, so a run
//! longer than the trace shows up as a gap, not as invented data.
//! [`load`] returns all rows (and [`Replay::samples`] them as [`Sample`]s)
//! for analysis without a sampler.

use super::rapl::file_safe;
use super::{Meter, MeterError, MeterInfo, Provenance, Reading, ReadingKind, Scope};
use crate::log::Sample;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SOURCE: &str = "replay";

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: bad header `{found}`: expected `t_s,watts` or `t_s,energy_j`", path.display())]
    Header {
        path: PathBuf,
        line: usize,
        found: String,
    },
    #[error("{}:{line}: field `{field}`: {reason}", path.display())]
    Field {
        path: PathBuf,
        line: usize,
        field: String,
        reason: String,
    },
    #[error("{}:{line}: {reason}", path.display())]
    Row {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}: no rows after the header", path.display())]
    Empty { path: PathBuf },
}

impl From<ReplayError> for MeterError {
    fn from(e: ReplayError) -> Self {
        MeterError::Config {
            meter: SOURCE.into(),
            reason: e.to_string(),
        }
    }
}

/// One row of a trace: time and watts or joules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayRow {
    pub t_s: f64,
    pub value: f64,
}

/// A whole trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    pub path: PathBuf,
    /// `PowerSample` for `watts`, `EnergyCounter` for `energy_j`.
    pub kind: ReadingKind,
    pub rows: Vec<ReplayRow>,
}

impl Replay {
    /// The value at `t_s`, linearly interpolated; `None` past the last row.
    pub fn value_at(&self, t_s: f64) -> Option<f64> {
        let first = self.rows.first()?;
        if t_s <= first.t_s {
            return Some(first.value);
        }
        let i = self.rows.partition_point(|r| r.t_s <= t_s);
        if i >= self.rows.len() {
            let last = self.rows.last()?;
            return (t_s <= last.t_s).then_some(last.value);
        }
        let (a, b) = (self.rows[i - 1], self.rows[i]);
        Some(a.value + (b.value - a.value) * (t_s - a.t_s) / (b.t_s - a.t_s))
    }

    /// A value as the reading a meter would give.
    pub fn reading(&self, value: f64) -> Reading {
        match self.kind {
            ReadingKind::PowerSample => Reading::watts(value),
            ReadingKind::EnergyCounter => Reading::Energy {
                counter_uj: (value * 1e6).round() as u64,
                wrap_uj: None,
            },
        }
    }

    /// All rows as samples, `t_ns = offset_ns + t_s × 1e9`.
    pub fn samples(&self, offset_ns: u64) -> Vec<Sample> {
        self.rows
            .iter()
            .map(|r| Sample {
                t_ns: offset_ns.saturating_add((r.t_s * 1e9).round() as u64),
                reading: self.reading(r.value),
            })
            .collect()
    }

    /// Duration of the trace.
    pub fn duration_s(&self) -> f64 {
        match (self.rows.first(), self.rows.last()) {
            (Some(a), Some(b)) => b.t_s - a.t_s,
            _ => 0.0,
        }
    }
}

/// Reads and validates a whole trace.
pub fn load(path: &Path) -> Result<Replay, ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReplayError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses a trace; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Replay, ReplayError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let (header_line, header) = lines.next().ok_or_else(|| ReplayError::Empty {
        path: path.to_path_buf(),
    })?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let kind = match cols.as_slice() {
        ["t_s", "watts"] => ReadingKind::PowerSample,
        ["t_s", "energy_j"] => ReadingKind::EnergyCounter,
        _ => {
            return Err(ReplayError::Header {
                path: path.to_path_buf(),
                line: header_line,
                found: header.to_string(),
            })
        }
    };
    let mut rows: Vec<ReplayRow> = Vec::new();
    for (line, raw) in lines {
        let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
        if fields.len() != 2 {
            return Err(ReplayError::Row {
                path: path.to_path_buf(),
                line,
                reason: format!("{} fields, expected 2 ({header})", fields.len()),
            });
        }
        let num = |i: usize| -> Result<f64, ReplayError> {
            let err = |reason: String| ReplayError::Field {
                path: path.to_path_buf(),
                line,
                field: cols[i].to_string(),
                reason,
            };
            let v: f64 = fields[i]
                .parse()
                .map_err(|_| err(format!("`{}` is not a number", fields[i])))?;
            if !v.is_finite() {
                return Err(err(format!("`{}` is not finite", fields[i])));
            }
            Ok(v)
        };
        let t_s = num(0)?;
        let value = num(1)?;
        let field_err = |field: &str, reason: String| ReplayError::Field {
            path: path.to_path_buf(),
            line,
            field: field.into(),
            reason,
        };
        if t_s < 0.0 {
            return Err(field_err("t_s", format!("{t_s} is negative")));
        }
        if let Some(prev) = rows.last() {
            if t_s <= prev.t_s {
                return Err(field_err(
                    "t_s",
                    format!(
                        "{t_s} is not after the previous row's {} (time must increase)",
                        prev.t_s
                    ),
                ));
            }
        }
        if kind == ReadingKind::EnergyCounter && value < 0.0 {
            return Err(field_err("energy_j", format!("{value} is negative")));
        }
        rows.push(ReplayRow { t_s, value });
    }
    if rows.is_empty() {
        return Err(ReplayError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Replay {
        path: path.to_path_buf(),
        kind,
        rows,
    })
}

/// A trace played back on the wall clock.
#[derive(Debug)]
pub struct ReplayMeter {
    info: MeterInfo,
    replay: Replay,
    opened: Instant,
}

impl ReplayMeter {
    /// Loads `path` and starts the replay clock now. `scope` says what the
    /// trace measured (a wall trace is [`Scope::Node`]), for the total.
    pub fn open(path: &Path, scope: Scope) -> Result<Self, MeterError> {
        let replay = load(path)?;
        Ok(Self::from_replay(replay, scope))
    }

    /// Plays an already loaded trace; the clock starts now.
    pub fn from_replay(replay: Replay, scope: Scope) -> Self {
        let stem = replay
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "trace".into());
        let min_step = replay
            .rows
            .windows(2)
            .map(|w| (w[1].value - w[0].value).abs())
            .filter(|d| *d > 0.0)
            .fold(f64::INFINITY, f64::min);
        let min_dt = replay
            .rows
            .windows(2)
            .map(|w| w[1].t_s - w[0].t_s)
            .fold(f64::INFINITY, f64::min);
        let info = MeterInfo {
            id: file_safe(&format!("replay-{stem}")),
            source: SOURCE.into(),
            domain: stem,
            scope,
            kind: replay.kind,
            provenance: Provenance::Measured,
            resolution: if min_step.is_finite() { min_step } else { 1e-6 },
            update_period: if min_dt.is_finite() {
                Duration::from_secs_f64(min_dt)
            } else {
                Duration::from_millis(100)
            },
            contains: Vec::new(),
        };
        Self {
            info,
            replay,
            opened: Instant::now(),
        }
    }

    pub fn replay(&self) -> &Replay {
        &self.replay
    }

    /// Seconds into the trace right now.
    pub fn position_s(&self) -> f64 {
        self.opened.elapsed().as_secs_f64()
    }
}

impl Meter for ReplayMeter {
    fn info(&self) -> &MeterInfo {
        &self.info
    }

    fn read(&mut self) -> Result<Reading, MeterError> {
        let t = self.position_s();
        match self.replay.value_at(t) {
            Some(v) => Ok(self.replay.reading(v)),
            None => Err(MeterError::Read {
                meter: self.info.id.clone(),
                reason: format!(
                    "replay {} ended at {:.3} s (now at {t:.3} s)",
                    self.replay.path.display(),
                    self.replay.rows.last().map(|r| r.t_s).unwrap_or(0.0)
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("trace.csv")
    }

    #[test]
    fn power_trace_parses_and_interpolates() {
        let r = parse("# from a PTD export\nt_s,watts\n0,10\n\n1,20\n3,20\n", p()).unwrap();
        assert_eq!(r.kind, ReadingKind::PowerSample);
        assert_eq!(r.rows.len(), 3);
        assert_eq!(r.value_at(-1.0), Some(10.0));
        assert_eq!(r.value_at(0.25), Some(12.5));
        assert_eq!(r.value_at(2.0), Some(20.0));
        assert_eq!(r.value_at(3.0), Some(20.0));
        assert_eq!(r.value_at(3.1), None);
        assert_eq!(r.duration_s(), 3.0);
    }

    #[test]
    fn energy_trace_becomes_a_counter_in_microjoules() {
        let r = parse("t_s,energy_j\n0,0\n1,1.5\n", p()).unwrap();
        let s = r.samples(1000);
        assert_eq!(s[1].t_ns, 1_000_001_000);
        assert_eq!(
            s[1].reading,
            Reading::Energy {
                counter_uj: 1_500_000,
                wrap_uj: None
            }
        );
    }

    #[test]
    fn bad_rows_name_file_line_and_field() {
        let e = parse("t_s,watts\n0,1\n0.5,lots\n", p()).unwrap_err();
        assert!(
            matches!(&e, ReplayError::Field { line: 3, field, .. } if field == "watts"),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("trace.csv:3: field `watts`"),
            "{e}"
        );

        let e = parse("t_s,watts\n1,1\n1,2\n", p()).unwrap_err();
        assert!(
            matches!(&e, ReplayError::Field { line: 3, field, .. } if field == "t_s"),
            "{e}"
        );
        let e = parse("t_s,energy_j\n0,-1\n", p()).unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
        let e = parse("time,watts\n0,1\n", p()).unwrap_err();
        assert!(matches!(e, ReplayError::Header { line: 1, .. }), "{e}");
        let e = parse("t_s,watts\n0,1,2\n", p()).unwrap_err();
        assert!(matches!(e, ReplayError::Row { line: 2, .. }), "{e}");
        let e = parse("t_s,watts\n", p()).unwrap_err();
        assert!(matches!(e, ReplayError::Empty { .. }), "{e}");
        let e = parse("t_s,watts\nNaN,1\n", p()).unwrap_err();
        assert!(e.to_string().contains("not finite"), "{e}");
    }

    #[test]
    fn meter_reads_follow_the_wall_clock_and_end_with_an_error() {
        let r = parse("t_s,watts\n0,100\n0.05,100\n", p()).unwrap();
        let mut m = ReplayMeter::from_replay(r, Scope::Node);
        assert_eq!(m.info().id, "replay-trace");
        assert_eq!(m.read().unwrap(), Reading::watts(100.0));
        std::thread::sleep(Duration::from_millis(80));
        let err = m.read().unwrap_err();
        assert!(err.to_string().contains("ended at 0.050 s"), "{err}");
    }
}
