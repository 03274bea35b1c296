//! Replay a recorded power or energy trace as if it were a live meter.
//!
//! For re-analysing a recorded run, for offline analysis (a trace from
//! another tool, an analyzer's export), for serving a recording through
//! `ptd-serve`, and for testing everything downstream of a meter with a known
//! signal. The file is CSV with a header naming the quantity; four layouts
//! are read:
//!
//! ```text
//! # hand-written or exported traces ('#' lines and blank lines are ignored)
//! t_s,watts          (power samples)          t_s,energy_j    (an energy counter)
//! 0.0,85.5                                    0.0,0
//! 0.1,86.0                                    0.1,8.55
//!
//! # joulebench's own power logs, power/<meter>.csv (see crate::log)
//! t_ns,watts,volts,amps,power_factor          t_ns,counter_uj,wrap_uj
//! 1000000,230.5,229.9,1.01,0.99               1000000,262143000000,262143328850
//! 101000000,87.25,,,                          101000000,1234,262143328850
//! ```
//!
//! - `t_s`: seconds; `t_ns`: whole nanoseconds (a log's time on its run's
//!   clock). Either way the time must be finite, non-negative, within u64
//!   nanoseconds (some 584 years) and strictly
//!   increasing (to the nanosecond), and it is played as time since the
//!   replay meter was opened: row `t` is replayed `t` after opening, as it
//!   was recorded `t` after its run's anchor.
//! - `watts`: power in watts, finite. In a power log `volts`, `amps` and
//!   `power_factor` are replayed too; an empty cell means the original meter
//!   did not report it (`None`).
//! - `energy_j`: cumulative energy in joules, finite, non-negative, under
//!   2^64 microjoules; it may go
//!   down (to replay a counter reset), and is replayed as a counter in
//!   microjoules that does not wrap.
//! - `counter_uj`, `wrap_uj`: the raw counter exactly as the original meter
//!   gave it, and the value at which it wraps to zero (empty: it cannot
//!   wrap). It is replayed as that counter, wrap range included, so energy
//!   comes out by difference with wrap-around handled just as it did for the
//!   original meter ([`crate::energy::counter_step`]).
//!
//! A [`ReplayMeter`] plays the trace on the wall clock: `read()` returns the
//! reading at the time elapsed since the meter was opened, linearly
//! interpolated between rows (so sampling it at any rate and integrating
//! gives back the trace's own integral). A counter is interpolated along the
//! energy it counts: across a wrap it passes through `wrap_uj` back to zero,
//! and across a reset (a backward step that is no wrap) it holds the value
//! before the reset until the row after it. Volts, amps and power factor
//! are interpolated where both neighbouring rows have them, `None`
//! otherwise. Before the first row the meter holds the first reading; past
//! the last row it fails with a read error, so a run longer than the trace
//! shows up as a gap, not as invented data. [`load`] returns all rows (and
//! [`Replay::samples`] them as [`Sample`]s) for analysis without a sampler.
//!
//! A file cut short by a crash replays up to its last whole line. joulebench
//! ends every line of a power log as it writes it, so in a `t_ns` log
//! whatever follows the last newline is a line cut short: it is dropped and a
//! warning says how many bytes. In a hand-written `t_s` trace a last line
//! without a newline is kept when it reads as a row, dropped (with the same
//! warning) when not. A bad line anywhere before that is an error naming the
//! file, the line and the field.

use super::rapl::file_safe;
use super::{Meter, MeterError, MeterInfo, Provenance, Reading, ReadingKind, Scope};
use crate::energy::{counter_step, CounterStep};
use crate::log::{LogError, Sample, ENERGY_HEADER, POWER_HEADER};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SOURCE: &str = "replay";
/// 2^64: the first value (as f64) that a u64 cannot hold.
const U64_LIMIT: f64 = 18_446_744_073_709_551_616.0;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}:{line}: bad header `{found}`: expected `t_s,watts`, `t_s,energy_j` or a joulebench \
         power log's `{POWER_HEADER}` or `{ENERGY_HEADER}`{hint}",
        path.display()
    )]
    Header {
        path: PathBuf,
        line: usize,
        found: String,
        /// Extra advice, empty or starting with "; ".
        hint: String,
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
    #[error("{}:{line}: not UTF-8 text: is this a power trace?", path.display())]
    Encoding { path: PathBuf, line: usize },
    /// A joulebench power log that `crate::log` cannot read.
    #[error(transparent)]
    Log(#[from] LogError),
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

/// Which layout a trace file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `t_s,watts`.
    PowerTrace,
    /// `t_s,energy_j`: replayed as a counter in microjoules with no wrap.
    EnergyTrace,
    /// joulebench's power-sample log, `t_ns,watts,volts,amps,power_factor`.
    PowerLog,
    /// joulebench's energy-counter log, `t_ns,counter_uj,wrap_uj`.
    CounterLog,
}

/// A whole trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    pub path: PathBuf,
    pub format: Format,
    /// `PowerSample` for watts, `EnergyCounter` for `energy_j` and counters.
    pub kind: ReadingKind,
    /// The rows as readings; `t_ns` counts from the trace's time zero.
    pub rows: Vec<Sample>,
    /// Bytes after the last whole line that were dropped (a file cut short
    /// by a crash); 0 when the file ended cleanly.
    pub dropped_tail_bytes: usize,
}

impl Replay {
    /// The reading at `t_ns`, interpolated between rows (see the module
    /// documentation); the first row's before it, `None` past the last row.
    pub fn reading_at(&self, t_ns: u64) -> Option<Reading> {
        let first = self.rows.first()?;
        if t_ns <= first.t_ns {
            return Some(first.reading);
        }
        let i = self.rows.partition_point(|r| r.t_ns <= t_ns);
        let a = self.rows[i - 1];
        if t_ns == a.t_ns {
            return Some(a.reading);
        }
        let b = self.rows.get(i)?;
        let frac = (t_ns - a.t_ns) as f64 / (b.t_ns - a.t_ns) as f64;
        Some(between(a.reading, b.reading, frac))
    }

    /// All rows as samples, `t_ns = offset_ns + the row's t_ns`.
    pub fn samples(&self, offset_ns: u64) -> Vec<Sample> {
        self.rows
            .iter()
            .map(|r| Sample {
                t_ns: offset_ns.saturating_add(r.t_ns),
                reading: r.reading,
            })
            .collect()
    }

    /// Time of the last row (the trace's end).
    pub fn end_ns(&self) -> u64 {
        self.rows.last().map(|r| r.t_ns).unwrap_or(0)
    }

    /// Duration of the trace.
    pub fn duration_s(&self) -> f64 {
        match (self.rows.first(), self.rows.last()) {
            (Some(a), Some(b)) => (b.t_ns - a.t_ns) as f64 * 1e-9,
            _ => 0.0,
        }
    }
}

/// The reading a fraction `frac` (0..1) of the way from row `a` to row `b`.
fn between(a: Reading, b: Reading, frac: f64) -> Reading {
    match (a, b) {
        (
            Reading::Power {
                watts: wa,
                volts: va,
                amps: aa,
                power_factor: pa,
            },
            Reading::Power {
                watts: wb,
                volts: vb,
                amps: ab,
                power_factor: pb,
            },
        ) => {
            let lerp = |x: f64, y: f64| x + (y - x) * frac;
            let opt = |x: Option<f64>, y: Option<f64>| Some(lerp(x?, y?));
            Reading::Power {
                watts: lerp(wa, wb),
                volts: opt(va, vb),
                amps: opt(aa, ab),
                power_factor: opt(pa, pb),
            }
        }
        (
            Reading::Energy { counter_uj: ca, .. },
            Reading::Energy {
                counter_uj: cb,
                wrap_uj,
            },
        ) => {
            // The step is classified as the energy module will classify it
            // (with the later row's wrap, as there), so a replay sampled at
            // any rate adds up to the same energy as the log itself.
            let counter_uj = match counter_step(ca, cb, wrap_uj) {
                // At most the whole step: d as f64 may round above d.
                CounterStep::Forward(d) => ca + ((d as f64 * frac).round() as u64).min(d),
                CounterStep::Wrapped(d) => {
                    let c = u128::from(ca) + (d as f64 * frac).round() as u128;
                    let w = u128::from(wrap_uj.unwrap_or(u64::MAX));
                    // A wrapped step implies ca <= w and c <= w + cb.
                    u64::try_from(if c >= w { c - w } else { c }).unwrap_or(cb)
                }
                // The energy of a reset interval is unknown: hold, then jump.
                CounterStep::Reset => ca,
            };
            Reading::Energy {
                counter_uj,
                wrap_uj,
            }
        }
        // The rows of one replay are all of one kind (checked when parsed).
        _ => a,
    }
}

/// Reads and validates a whole trace.
pub fn load(path: &Path) -> Result<Replay, ReplayError> {
    let bytes = std::fs::read(path).map_err(|source| ReplayError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_bytes(&bytes, path)
}

/// Parses a trace; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Replay, ReplayError> {
    parse_bytes(text.as_bytes(), path)
}

/// Parses a trace as read from disk (a crash may have cut it anywhere, even
/// inside a character); `path` names it in errors.
pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Replay, ReplayError> {
    // Whole lines end with a newline; what follows the last one is a tail
    // that may have been cut short.
    let split = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (whole, tail) = bytes.split_at(split);
    let text = std::str::from_utf8(whole).map_err(|e| ReplayError::Encoding {
        path: path.to_path_buf(),
        line: 1 + whole[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
    })?;
    let tail = (!tail.iter().all(u8::is_ascii_whitespace)).then_some(tail);
    let last_line = text.lines().count();

    let header = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .find(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let Some((header_line, header)) = header else {
        return Err(ReplayError::Empty {
            path: path.to_path_buf(),
        });
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let (mut replay, tail_kept) = if cols.contains(&"t_ns") {
        if header_line != 1 {
            return Err(ReplayError::Header {
                path: path.to_path_buf(),
                line: header_line,
                found: header.to_string(),
                hint: "; a power log's header is its first line, with nothing before it".into(),
            });
        }
        // The writer ends every line, so the tail is a line cut short.
        (parse_log(text, path)?, false)
    } else {
        parse_trace(text, tail, header_line, &cols, path)?
    };
    if let (Some(tail), false) = (tail, tail_kept) {
        replay.dropped_tail_bytes = tail.len();
        tracing::warn!(
            "{}: the last {} bytes after line {last_line} are not a whole line (a file cut short \
             by a crash?): dropped, replaying up to line {last_line}",
            path.display(),
            tail.len(),
        );
    }
    Ok(replay)
}

/// A joulebench power log (`text` holds whole lines only).
fn parse_log(text: &str, path: &Path) -> Result<Replay, ReplayError> {
    let log = crate::log::parse_log_rows(text, path)?;
    for pair in log.samples.windows(2) {
        let ((_, prev), (line, cur)) = (pair[0], pair[1]);
        if cur.t_ns <= prev.t_ns {
            return Err(ReplayError::Field {
                path: path.to_path_buf(),
                line,
                field: "t_ns".into(),
                reason: format!(
                    "{} is not after the previous row's {} (time must increase)",
                    cur.t_ns, prev.t_ns
                ),
            });
        }
    }
    if log.samples.is_empty() {
        return Err(ReplayError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Replay {
        path: path.to_path_buf(),
        format: match log.kind {
            ReadingKind::EnergyCounter => Format::CounterLog,
            ReadingKind::PowerSample => Format::PowerLog,
        },
        kind: log.kind,
        rows: log.samples.into_iter().map(|(_, s)| s).collect(),
        dropped_tail_bytes: 0,
    })
}

/// A `t_s,watts` or `t_s,energy_j` trace; also says whether `tail` (a last
/// line without a newline) was kept as a row.
fn parse_trace(
    text: &str,
    tail: Option<&[u8]>,
    header_line: usize,
    cols: &[&str],
    path: &Path,
) -> Result<(Replay, bool), ReplayError> {
    let format = match cols {
        ["t_s", "watts"] => Format::PowerTrace,
        ["t_s", "energy_j"] => Format::EnergyTrace,
        _ => {
            return Err(ReplayError::Header {
                path: path.to_path_buf(),
                line: header_line,
                found: cols.join(","),
                hint: String::new(),
            })
        }
    };
    let mut rows: Vec<(f64, Sample)> = Vec::new();
    let mut last_line = header_line;
    for (i, raw) in text.lines().enumerate().skip(header_line) {
        let raw = raw.trim();
        last_line = i + 1;
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let row = trace_row(raw, i + 1, format, cols, rows.last(), path)?;
        rows.push(row);
    }
    let mut tail_kept = false;
    if let Some(raw) = tail.and_then(|t| std::str::from_utf8(t).ok()) {
        // A hand-written file may end without a newline: its last line is
        // kept when it reads as a row.
        let raw = raw.trim();
        if raw.starts_with('#') {
            tail_kept = true;
        } else if let Ok(row) = trace_row(raw, last_line + 1, format, cols, rows.last(), path) {
            rows.push(row);
            tail_kept = true;
        }
    }
    if rows.is_empty() {
        return Err(ReplayError::Empty {
            path: path.to_path_buf(),
        });
    }
    let replay = Replay {
        path: path.to_path_buf(),
        format,
        kind: match format {
            Format::EnergyTrace => ReadingKind::EnergyCounter,
            _ => ReadingKind::PowerSample,
        },
        rows: rows.into_iter().map(|(_, s)| s).collect(),
        dropped_tail_bytes: 0,
    };
    Ok((replay, tail_kept))
}

/// One row of a `t_s` trace, with its `t_s` as written.
fn trace_row(
    raw: &str,
    line: usize,
    format: Format,
    cols: &[&str],
    prev: Option<&(f64, Sample)>,
    path: &Path,
) -> Result<(f64, Sample), ReplayError> {
    let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
    if fields.len() != 2 {
        return Err(ReplayError::Row {
            path: path.to_path_buf(),
            line,
            reason: format!("{} fields, expected 2 ({})", fields.len(), cols.join(",")),
        });
    }
    let field_err = |i: usize, reason: String| ReplayError::Field {
        path: path.to_path_buf(),
        line,
        field: cols[i].to_string(),
        reason,
    };
    let num = |i: usize| -> Result<f64, ReplayError> {
        let v: f64 = fields[i]
            .parse()
            .map_err(|_| field_err(i, format!("`{}` is not a number", fields[i])))?;
        if !v.is_finite() {
            return Err(field_err(i, format!("`{}` is not finite", fields[i])));
        }
        Ok(v)
    };
    let t_s = num(0)?;
    let value = num(1)?;
    if t_s < 0.0 {
        return Err(field_err(0, format!("{t_s} is negative")));
    }
    // u64 nanoseconds hold some 584 years; a later time would be saturated
    // into a wrong one.
    let t_ns = (t_s * 1e9).round();
    if t_ns >= U64_LIMIT {
        return Err(field_err(0, format!("{t_s} s is too large")));
    }
    let t_ns = t_ns as u64;
    if let Some((prev_s, prev)) = prev {
        if t_ns <= prev.t_ns {
            return Err(field_err(
                0,
                format!("{t_s} is not after the previous row's {prev_s} (time must increase)"),
            ));
        }
    }
    let reading = match format {
        Format::EnergyTrace => {
            if value < 0.0 {
                return Err(field_err(1, format!("{value} is negative")));
            }
            let counter_uj = (value * 1e6).round();
            if counter_uj >= U64_LIMIT {
                return Err(field_err(1, format!("{value} J is too large")));
            }
            Reading::Energy {
                counter_uj: counter_uj as u64,
                wrap_uj: None,
            }
        }
        _ => Reading::watts(value),
    };
    Ok((t_s, Sample { t_ns, reading }))
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
        // Smallest step, in the quantity's SI unit (W, or J for counters).
        let min_step = replay
            .rows
            .windows(2)
            .filter_map(|w| match (w[0].reading, w[1].reading) {
                (Reading::Power { watts: a, .. }, Reading::Power { watts: b, .. }) => {
                    Some((b - a).abs())
                }
                (Reading::Energy { counter_uj: a, .. }, Reading::Energy { counter_uj: b, .. }) => {
                    Some(b.saturating_sub(a) as f64 * 1e-6)
                }
                _ => None,
            })
            .filter(|d| *d > 0.0)
            .fold(f64::INFINITY, f64::min);
        let min_dt_ns = replay.rows.windows(2).map(|w| w[1].t_ns - w[0].t_ns).min();
        let info = MeterInfo {
            id: file_safe(&format!("replay-{stem}")),
            source: SOURCE.into(),
            domain: stem,
            scope,
            kind: replay.kind,
            provenance: Provenance::Measured,
            resolution: if min_step.is_finite() { min_step } else { 1e-6 },
            update_period: min_dt_ns
                .map(Duration::from_nanos)
                .unwrap_or(Duration::from_millis(100)),
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

    /// Nanoseconds into the trace right now.
    pub fn position_ns(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Meter for ReplayMeter {
    fn info(&self) -> &MeterInfo {
        &self.info
    }

    fn read(&mut self) -> Result<Reading, MeterError> {
        let t = self.position_ns();
        match self.replay.reading_at(t) {
            Some(r) => Ok(r),
            None => Err(MeterError::Read {
                meter: self.info.id.clone(),
                reason: format!(
                    "replay {} ended at {:.3} s (now at {:.3} s)",
                    self.replay.path.display(),
                    self.replay.end_ns() as f64 * 1e-9,
                    t as f64 * 1e-9
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::{energy_over_window, Window};

    fn p() -> &'static Path {
        Path::new("trace.csv")
    }

    const S: u64 = 1_000_000_000;

    fn energy(uj: u64, wrap: Option<u64>) -> Reading {
        Reading::Energy {
            counter_uj: uj,
            wrap_uj: wrap,
        }
    }

    fn watts_at(r: &Replay, t_ns: u64) -> Option<f64> {
        match r.reading_at(t_ns)? {
            Reading::Power { watts, .. } => Some(watts),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn power_trace_parses_and_interpolates() {
        let r = parse("# from a PTD export\nt_s,watts\n0,10\n\n1,20\n3,20\n", p()).unwrap();
        assert_eq!(r.format, Format::PowerTrace);
        assert_eq!(r.kind, ReadingKind::PowerSample);
        assert_eq!(r.rows.len(), 3);
        assert_eq!(r.dropped_tail_bytes, 0);
        assert_eq!(watts_at(&r, 0), Some(10.0));
        assert_eq!(watts_at(&r, S / 4), Some(12.5));
        assert_eq!(watts_at(&r, 2 * S), Some(20.0));
        assert_eq!(watts_at(&r, 3 * S), Some(20.0));
        assert_eq!(watts_at(&r, 3 * S + 1), None);
        assert_eq!(r.duration_s(), 3.0);
    }

    #[test]
    fn energy_trace_becomes_a_counter_in_microjoules() {
        let r = parse("t_s,energy_j\n0,0\n1,1.5\n", p()).unwrap();
        assert_eq!(r.format, Format::EnergyTrace);
        let s = r.samples(1000);
        assert_eq!(s[1].t_ns, 1_000_001_000);
        assert_eq!(s[1].reading, energy(1_500_000, None));
        assert_eq!(r.reading_at(S / 2), Some(energy(750_000, None)));
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
        assert!(e.to_string().contains(ENERGY_HEADER), "{e}");
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

    #[test]
    fn a_power_log_replays_with_volts_amps_and_power_factor() {
        let text = format!(
            "{POWER_HEADER}\n1000,100,230,0.5,0.9\n2000,200,,,\n3000,300,240,1.5,1\n4000,400,250,2.5,0.5\n"
        );
        let r = parse(&text, p()).unwrap();
        assert_eq!(r.format, Format::PowerLog);
        assert_eq!(r.kind, ReadingKind::PowerSample);
        let full = |w, v, a, pf| Reading::Power {
            watts: w,
            volts: Some(v),
            amps: Some(a),
            power_factor: Some(pf),
        };
        // Before the first row: the first reading; rows exactly as logged.
        assert_eq!(r.reading_at(0), Some(full(100.0, 230.0, 0.5, 0.9)));
        assert_eq!(r.reading_at(1000), Some(full(100.0, 230.0, 0.5, 0.9)));
        assert_eq!(r.reading_at(2000), Some(Reading::watts(200.0)));
        // An empty cell is "not measured": not interpolated from one side.
        assert_eq!(r.reading_at(1500), Some(Reading::watts(150.0)));
        assert_eq!(r.reading_at(2500), Some(Reading::watts(250.0)));
        assert_eq!(r.reading_at(3500), Some(full(350.0, 245.0, 2.0, 0.75)));
        assert_eq!(r.reading_at(4000), Some(full(400.0, 250.0, 2.5, 0.5)));
        assert_eq!(r.reading_at(4001), None);
        assert_eq!(r.samples(0)[0].t_ns, 1000);

        let m = ReplayMeter::from_replay(r, Scope::Node);
        assert_eq!(m.info().kind, ReadingKind::PowerSample);
        assert_eq!(m.info().update_period, Duration::from_nanos(1000));
    }

    #[test]
    fn a_counter_log_replays_through_its_wrap() {
        // A 1000 uJ counter range: 900 -> (wrap) -> 100 is 200 uJ spent.
        let text = format!("{ENERGY_HEADER}\n0,900,1000\n1000,100,1000\n2000,300,1000\n");
        let r = parse(&text, p()).unwrap();
        assert_eq!(r.format, Format::CounterLog);
        assert_eq!(r.kind, ReadingKind::EnergyCounter);
        let w = Some(1000);
        assert_eq!(r.reading_at(0), Some(energy(900, w)));
        assert_eq!(r.reading_at(250), Some(energy(950, w)));
        assert_eq!(r.reading_at(500), Some(energy(0, w)));
        assert_eq!(r.reading_at(750), Some(energy(50, w)));
        assert_eq!(r.reading_at(1000), Some(energy(100, w)));
        assert_eq!(r.reading_at(1500), Some(energy(200, w)));

        // Sampled at other times, it adds up to the log's own energy.
        let meter = ReplayMeter::from_replay(r.clone(), Scope::CpuPackage);
        assert!((meter.info().resolution - 200e-6).abs() < 1e-15);
        let window = Window::new(100, 1900).unwrap();
        let original = energy_over_window(meter.info(), &r.rows, window, S).unwrap();
        let resampled: Vec<Sample> = (0..=2000)
            .step_by(73)
            .chain([100, 1900])
            .collect::<std::collections::BTreeSet<u64>>()
            .into_iter()
            .map(|t_ns| Sample {
                t_ns,
                reading: r.reading_at(t_ns).unwrap(),
            })
            .collect();
        let replayed = energy_over_window(meter.info(), &resampled, window, S).unwrap();
        assert!(replayed.counter_resets.is_empty(), "{replayed:?}");
        assert!((original.energy_j - 360e-6).abs() < 1e-12, "{original:?}");
        assert!(
            (replayed.energy_j - original.energy_j).abs() <= 2e-6,
            "{} vs {}",
            replayed.energy_j,
            original.energy_j
        );
    }

    #[test]
    fn a_counter_log_without_wrap_holds_across_a_reset() {
        let text = format!("{ENERGY_HEADER}\n0,5000,\n1000,6000,\n2000,10,\n");
        let r = parse(&text, p()).unwrap();
        assert_eq!(r.reading_at(500), Some(energy(5500, None)));
        // A backward step with no wrap range is a reset: hold, then jump.
        assert_eq!(r.reading_at(1500), Some(energy(6000, None)));
        assert_eq!(r.reading_at(2000), Some(energy(10, None)));
    }

    #[test]
    fn a_log_cut_short_replays_up_to_its_last_whole_line() {
        // A crash mid-write: the last row lost its end.
        let text = format!("{ENERGY_HEADER}\n0,10,\n100,20,\n200,3");
        let r = parse(&text, p()).unwrap();
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.dropped_tail_bytes, "200,3".len());
        // Even a tail that would parse is not a whole line of a log.
        let r = parse(&format!("{ENERGY_HEADER}\n0,10,\n100,20,"), p()).unwrap();
        assert_eq!((r.rows.len(), r.dropped_tail_bytes), (1, 7));
        // Cut inside a character, or in the header's own line.
        let mut bytes = format!("{POWER_HEADER}\n0,1,,,\n").into_bytes();
        bytes.extend_from_slice(&[b'1', b'0', 0xe2, 0x82]);
        let r = parse_bytes(&bytes, p()).unwrap();
        assert_eq!((r.rows.len(), r.dropped_tail_bytes), (1, 4));
        let e = parse("t_ns,counter_u", p()).unwrap_err();
        assert!(matches!(e, ReplayError::Empty { .. }), "{e}");
        // The same bad line before the end is an error naming line and field.
        let e = parse(&format!("{POWER_HEADER}\n0,1,,,\n10,1x,,,\n20,1,,,\n"), p()).unwrap_err();
        assert!(
            e.to_string().starts_with("trace.csv:3: field `watts`"),
            "{e}"
        );
        let e = parse(&format!("{ENERGY_HEADER}\n0,10,\n100,2\n200,30,\n"), p()).unwrap_err();
        assert!(e.to_string().starts_with("trace.csv:3:"), "{e}");
    }

    #[test]
    fn a_hand_written_trace_may_end_without_a_newline() {
        let r = parse("t_s,watts\n0,1\n1,2", p()).unwrap();
        assert_eq!((r.rows.len(), r.dropped_tail_bytes), (2, 0));
        let r = parse("t_s,watts\n0,1\n1,2\n2,", p()).unwrap();
        assert_eq!((r.rows.len(), r.dropped_tail_bytes), (2, 2));
    }

    #[test]
    fn a_log_with_time_not_increasing_or_a_late_header_is_refused() {
        let e = parse("t_ns,watts\n5,1\n5,2\n", p()).unwrap_err();
        assert!(
            matches!(&e, ReplayError::Field { line: 3, field, .. } if field == "t_ns"),
            "{e}"
        );
        let e = parse(&format!("# note\n{POWER_HEADER}\n0,1,,,\n"), p()).unwrap_err();
        assert!(matches!(e, ReplayError::Header { line: 2, .. }), "{e}");
        assert!(e.to_string().contains("first line"), "{e}");
        let e = parse("t_ns,watts,counter_uj\n0,1,2\n", p()).unwrap_err();
        assert!(
            matches!(e, ReplayError::Log(LogError::Header { .. })),
            "{e}"
        );
    }
}
