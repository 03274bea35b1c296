//! Power logs: one CSV file per meter, `power/<meter_id>.csv`.
//!
//! The sampler streams every sample here as it arrives (flushed at least once a
//! second), so a crashed run still leaves readable logs, and the report reads
//! them back to plot power over time. The schema is fixed per reading kind so
//! that any tool (a spreadsheet, pandas, `awk`) can read it without our code:
//!
//! ```text
//! t_ns,counter_uj,wrap_uj              energy-counter meters (RAPL, NVML energy, hwmon energy)
//! 1000000,8123456789,262143328850
//!
//! t_ns,watts,volts,amps,power_factor   power-sample meters (hwmon, IPMI, PTDaemon, ...)
//! 1000000,87.25,,,
//! ```
//!
//! - `t_ns`: integer nanoseconds since the run's anchor instant (the run's one
//!   clock, see DESIGN.md "One clock"), taken by the sampler, not the meter.
//! - `counter_uj`: the raw counter in microjoules, exactly as the meter gave it
//!   (wrap-around is *not* undone in the log: energy is computed afterwards).
//! - `wrap_uj`: the value at which the counter wraps to zero; empty if it
//!   cannot wrap.
//! - `watts`: power in watts; `volts`, `amps`, `power_factor`: filled only by
//!   meters that report them (analyzers), empty otherwise.
//!
//! Floats are written with Rust's shortest round-trip formatting, so reading a
//! log back yields bit-identical values. The reader maps columns by header
//! name and needs only `t_ns` and `watts` (or `counter_uj`), so a hand-written
//! `t_ns,watts` file also reads. A last line cut short by a crash is dropped
//! and flagged in [`PowerLog::truncated_tail`] rather than failing the whole
//! log: in a log with the writer's own header, whatever follows the last
//! newline (the writer ends every line, and a number cut short may still read
//! as one); in a hand-written file, a last line without a newline that does
//! not read as a row.
//!
//! Both layouts replay as meters (`--power replay:FILE`, see
//! [`crate::meter::replay`]): a counter log as the same counter, wrap range
//! included, a sample log as the same power samples.

use crate::meter::{Reading, ReadingKind};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Header of energy-counter logs.
pub const ENERGY_HEADER: &str = "t_ns,counter_uj,wrap_uj";
/// Header of power-sample logs.
pub const POWER_HEADER: &str = "t_ns,watts,volts,amps,power_factor";

/// One reading stamped on the run's clock.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Nanoseconds since the run's anchor instant.
    pub t_ns: u64,
    pub reading: Reading,
}

impl Sample {
    pub fn kind(&self) -> ReadingKind {
        match self.reading {
            Reading::Energy { .. } => ReadingKind::EnergyCounter,
            Reading::Power { .. } => ReadingKind::PowerSample,
        }
    }
}

/// A power log read back from disk.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerLog {
    pub kind: ReadingKind,
    pub samples: Vec<Sample>,
    /// The last line was cut short (a crash mid-write) and was dropped.
    pub truncated_tail: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: bad header: {reason}", path.display())]
    Header {
        path: PathBuf,
        line: usize,
        reason: String,
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
    #[error("{}: a {found:?} sample cannot go in a {expected:?} log", path.display())]
    KindMismatch {
        path: PathBuf,
        expected: ReadingKind,
        found: ReadingKind,
    },
}

/// The header line for a reading kind.
pub fn header(kind: ReadingKind) -> &'static str {
    match kind {
        ReadingKind::EnergyCounter => ENERGY_HEADER,
        ReadingKind::PowerSample => POWER_HEADER,
    }
}

/// Appends the CSV row for `sample` (with newline) to `out`.
fn format_row(out: &mut String, sample: &Sample) {
    use std::fmt::Write as _;
    // Writing into a String cannot fail.
    let _ = match sample.reading {
        Reading::Energy {
            counter_uj,
            wrap_uj,
        } => match wrap_uj {
            Some(w) => writeln!(out, "{},{},{}", sample.t_ns, counter_uj, w),
            None => writeln!(out, "{},{},", sample.t_ns, counter_uj),
        },
        Reading::Power {
            watts,
            volts,
            amps,
            power_factor,
        } => {
            let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
            writeln!(
                out,
                "{},{},{},{},{}",
                sample.t_ns,
                watts,
                opt(volts),
                opt(amps),
                opt(power_factor)
            )
        }
    };
}

/// Streams samples of one meter to its CSV file.
pub struct PowerLogWriter {
    out: BufWriter<File>,
    path: PathBuf,
    kind: ReadingKind,
    line: String,
}

impl PowerLogWriter {
    /// Creates (truncates) `path` and writes the header.
    pub fn create(path: &Path, kind: ReadingKind) -> Result<Self, LogError> {
        let io = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(path).map_err(io)?;
        let mut out = BufWriter::new(file);
        writeln!(out, "{}", header(kind)).map_err(io)?;
        Ok(Self {
            out,
            path: path.to_path_buf(),
            kind,
            line: String::with_capacity(64),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Buffers one row; call [`flush`](Self::flush) to push it to the OS.
    pub fn append(&mut self, sample: &Sample) -> Result<(), LogError> {
        if sample.kind() != self.kind {
            return Err(LogError::KindMismatch {
                path: self.path.clone(),
                expected: self.kind,
                found: sample.kind(),
            });
        }
        self.line.clear();
        format_row(&mut self.line, sample);
        self.out
            .write_all(self.line.as_bytes())
            .map_err(|source| LogError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Hands buffered rows to the OS: after this, a crash of our process no
    /// longer loses them.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.out.flush().map_err(|source| LogError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Writes a whole log atomically (temporary file, then rename).
pub fn write_log(path: &Path, kind: ReadingKind, samples: &[Sample]) -> Result<(), LogError> {
    let mut text = String::with_capacity(32 * (samples.len() + 1));
    text.push_str(header(kind));
    text.push('\n');
    for s in samples {
        if s.kind() != kind {
            return Err(LogError::KindMismatch {
                path: path.to_path_buf(),
                expected: kind,
                found: s.kind(),
            });
        }
        format_row(&mut text, s);
    }
    atomic_file::write(path, text.as_bytes()).map_err(|e| LogError::Io {
        path: e.path,
        source: e.source,
    })
}

/// Reads a power log back into samples.
pub fn read_log(path: &Path) -> Result<PowerLog, LogError> {
    let text = std::fs::read_to_string(path).map_err(|source| LogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_log(&text, path)
}

/// Parses the text of a power log; `path` is used only in error messages.
pub fn parse_log(text: &str, path: &Path) -> Result<PowerLog, LogError> {
    let rows = parse_log_rows(text, path)?;
    Ok(PowerLog {
        kind: rows.kind,
        samples: rows.samples.into_iter().map(|(_, s)| s).collect(),
        truncated_tail: rows.truncated_tail,
    })
}

/// A power log's rows with the line each came from (for messages that name
/// the line, e.g. the replay meter's checks).
pub(crate) struct NumberedLog {
    pub kind: ReadingKind,
    /// `(line number, sample)`, 1-based like an editor's.
    pub samples: Vec<(usize, Sample)>,
    pub truncated_tail: bool,
}

/// [`parse_log`], keeping line numbers.
pub(crate) fn parse_log_rows(text: &str, path: &Path) -> Result<NumberedLog, LogError> {
    let mut lines = text.lines().enumerate();
    let (_, header_line) = lines.next().ok_or_else(|| LogError::Header {
        path: path.to_path_buf(),
        line: 1,
        reason: "the file is empty".into(),
    })?;
    let columns: Vec<&str> = header_line.trim().split(',').map(str::trim).collect();
    let find = |name: &str| columns.iter().position(|c| *c == name);
    let header_err = |reason: String| LogError::Header {
        path: path.to_path_buf(),
        line: 1,
        reason,
    };
    let t_col =
        find("t_ns").ok_or_else(|| header_err(format!("no `t_ns` column in `{header_line}`")))?;
    let layout = match (find("counter_uj"), find("watts")) {
        (Some(c), None) => Layout::Energy {
            counter: c,
            wrap: find("wrap_uj"),
        },
        (None, Some(w)) => Layout::Power {
            watts: w,
            volts: find("volts"),
            amps: find("amps"),
            pf: find("power_factor"),
        },
        (Some(_), Some(_)) => {
            return Err(header_err(
                "both `counter_uj` and `watts`: a log holds one kind".into(),
            ))
        }
        (None, None) => {
            return Err(header_err(format!(
                "neither `counter_uj` nor `watts` in `{header_line}` (expected `{ENERGY_HEADER}` or `{POWER_HEADER}`)"
            )))
        }
    };
    let kind = match layout {
        Layout::Energy { .. } => ReadingKind::EnergyCounter,
        Layout::Power { .. } => ReadingKind::PowerSample,
    };

    let ends_with_newline = text.ends_with('\n');
    // The writer ends every line it writes, so in a log with its header a
    // last line without a newline was cut short by a crash, even where what
    // is left still reads as a row (`230.5` cut to `23`).
    let written_by_us = matches!(header_line.trim(), ENERGY_HEADER | POWER_HEADER);
    let all: Vec<(usize, &str)> = lines.collect();
    let mut samples = Vec::with_capacity(all.len());
    let mut truncated_tail = false;
    for (i, (idx, raw)) in all.iter().enumerate() {
        let line_no = idx + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let is_last = i + 1 == all.len();
        if is_last && !ends_with_newline && written_by_us {
            truncated_tail = true;
            continue;
        }
        match parse_row(raw, line_no, path, &columns, t_col, &layout) {
            Ok(s) => samples.push((line_no, s)),
            Err(_) if is_last && !ends_with_newline => truncated_tail = true,
            Err(e) => return Err(e),
        }
    }
    Ok(NumberedLog {
        kind,
        samples,
        truncated_tail,
    })
}

enum Layout {
    Energy {
        counter: usize,
        wrap: Option<usize>,
    },
    Power {
        watts: usize,
        volts: Option<usize>,
        amps: Option<usize>,
        pf: Option<usize>,
    },
}

fn parse_row(
    raw: &str,
    line: usize,
    path: &Path,
    columns: &[&str],
    t_col: usize,
    layout: &Layout,
) -> Result<Sample, LogError> {
    let fields: Vec<&str> = raw.trim().split(',').map(str::trim).collect();
    if fields.len() != columns.len() {
        return Err(LogError::Row {
            path: path.to_path_buf(),
            line,
            reason: format!(
                "{} fields, the header has {} ({})",
                fields.len(),
                columns.len(),
                columns.join(",")
            ),
        });
    }
    let field_err = |col: usize, reason: String| LogError::Field {
        path: path.to_path_buf(),
        line,
        field: columns[col].to_string(),
        reason,
    };
    let int = |col: usize| -> Result<u64, LogError> {
        fields[col]
            .parse::<u64>()
            .map_err(|e| field_err(col, format!("`{}` is not a whole number: {e}", fields[col])))
    };
    let float = |col: usize| -> Result<f64, LogError> {
        let v = fields[col]
            .parse::<f64>()
            .map_err(|e| field_err(col, format!("`{}` is not a number: {e}", fields[col])))?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(field_err(col, format!("`{}` is not finite", fields[col])))
        }
    };
    let opt_float = |col: Option<usize>| -> Result<Option<f64>, LogError> {
        match col {
            Some(c) if !fields[c].is_empty() => float(c).map(Some),
            _ => Ok(None),
        }
    };
    let t_ns = int(t_col)?;
    let reading = match *layout {
        Layout::Energy { counter, wrap } => Reading::Energy {
            counter_uj: int(counter)?,
            wrap_uj: match wrap {
                Some(c) if !fields[c].is_empty() => Some(int(c)?),
                _ => None,
            },
        },
        Layout::Power {
            watts,
            volts,
            amps,
            pf,
        } => Reading::Power {
            watts: float(watts)?,
            volts: opt_float(volts)?,
            amps: opt_float(amps)?,
            power_factor: opt_float(pf)?,
        },
    };
    Ok(Sample { t_ns, reading })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("x.csv")
    }

    #[test]
    fn power_rows_round_trip_bit_exact() {
        let samples = vec![
            Sample {
                t_ns: 0,
                reading: Reading::watts(0.1 + 0.2),
            },
            Sample {
                t_ns: 1_000_000,
                reading: Reading::Power {
                    watts: 230.123456789,
                    volts: Some(229.9),
                    amps: Some(1.0000001),
                    power_factor: Some(0.97),
                },
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        write_log(&path, ReadingKind::PowerSample, &samples).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(POWER_HEADER));
        assert!(text.contains("\n0,0.30000000000000004,,,\n"));
        let back = read_log(&path).unwrap();
        assert_eq!(back.kind, ReadingKind::PowerSample);
        assert_eq!(back.samples, samples);
        assert!(!back.truncated_tail);
    }

    #[test]
    fn energy_rows_round_trip_with_and_without_wrap() {
        let samples = vec![
            Sample {
                t_ns: 5,
                reading: Reading::Energy {
                    counter_uj: 262_143_328_850,
                    wrap_uj: Some(262_143_328_850),
                },
            },
            Sample {
                t_ns: 6,
                reading: Reading::Energy {
                    counter_uj: 7,
                    wrap_uj: None,
                },
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.csv");
        let mut w = PowerLogWriter::create(&path, ReadingKind::EnergyCounter).unwrap();
        for s in &samples {
            w.append(s).unwrap();
        }
        w.flush().unwrap();
        let back = read_log(&path).unwrap();
        assert_eq!(back.kind, ReadingKind::EnergyCounter);
        assert_eq!(back.samples, samples);
    }

    #[test]
    fn writer_refuses_a_sample_of_the_other_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut w =
            PowerLogWriter::create(&dir.path().join("e.csv"), ReadingKind::EnergyCounter).unwrap();
        let err = w
            .append(&Sample {
                t_ns: 0,
                reading: Reading::watts(1.0),
            })
            .unwrap_err();
        assert!(matches!(err, LogError::KindMismatch { .. }), "{err}");
    }

    #[test]
    fn minimal_hand_written_log_reads() {
        let log = parse_log("t_ns,watts\n0,10\n1000,12.5\n", p()).unwrap();
        assert_eq!(log.samples.len(), 2);
        assert_eq!(log.samples[1].reading, Reading::watts(12.5));
    }

    #[test]
    fn bad_field_names_line_and_column() {
        let err = parse_log(
            "t_ns,watts,volts,amps,power_factor\n0,1,,,\n10,abc,,,\n",
            p(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, LogError::Field { line: 3, ref field, .. } if field == "watts"),
            "{msg}"
        );
        assert!(msg.contains("x.csv:3") && msg.contains("abc"), "{msg}");
    }

    #[test]
    fn wrong_field_count_and_bad_header_are_errors() {
        let err = parse_log("t_ns,watts\n0,1,2\n", p()).unwrap_err();
        assert!(matches!(err, LogError::Row { line: 2, .. }), "{err}");
        let err = parse_log("time,watts\n", p()).unwrap_err();
        assert!(matches!(err, LogError::Header { .. }), "{err}");
        let err = parse_log("", p()).unwrap_err();
        assert!(matches!(err, LogError::Header { .. }), "{err}");
        let err = parse_log("t_ns,watts\n0,inf\n", p()).unwrap_err();
        assert!(err.to_string().contains("not finite"), "{err}");
    }

    #[test]
    fn a_tail_cut_by_a_crash_is_dropped_and_flagged() {
        let log = parse_log("t_ns,counter_uj,wrap_uj\n0,10,\n100,2", p()).unwrap();
        assert_eq!(log.samples.len(), 1);
        assert!(log.truncated_tail);
        // The same bad line in the middle of a file is an error.
        assert!(parse_log("t_ns,counter_uj,wrap_uj\n100,2\n0,10,\n", p()).is_err());
    }
}
