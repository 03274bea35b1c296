//! `mlperf_log_detail.txt`: one `:::MLLOG {json}` line per event, with
//! LoadGen's keys, value types and order.
//!
//! Lines are written as they happen and flushed at each phase, so a run
//! that crashes or is interrupted still leaves a readable log.

use super::format::g6;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

/// A logged value. Doubles are printed as LoadGen's streams print them.
#[derive(Debug, Clone, PartialEq)]
pub enum LogValue {
    Str(String),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Indices(Vec<usize>),
}

impl From<&str> for LogValue {
    fn from(v: &str) -> Self {
        LogValue::Str(v.to_string())
    }
}
impl From<String> for LogValue {
    fn from(v: String) -> Self {
        LogValue::Str(v)
    }
}
impl From<i64> for LogValue {
    fn from(v: i64) -> Self {
        LogValue::Int(v)
    }
}
impl From<u64> for LogValue {
    fn from(v: u64) -> Self {
        LogValue::UInt(v)
    }
}
impl From<usize> for LogValue {
    fn from(v: usize) -> Self {
        LogValue::UInt(v as u64)
    }
}
impl From<i32> for LogValue {
    fn from(v: i32) -> Self {
        LogValue::Int(i64::from(v))
    }
}
impl From<f64> for LogValue {
    fn from(v: f64) -> Self {
        LogValue::Float(v)
    }
}
impl From<bool> for LogValue {
    fn from(v: bool) -> Self {
        LogValue::Bool(v)
    }
}
impl From<&[usize]> for LogValue {
    fn from(v: &[usize]) -> Self {
        LogValue::Indices(v.to_vec())
    }
}

impl LogValue {
    fn write_json(&self, out: &mut String) {
        use std::fmt::Write as _;
        match self {
            LogValue::Str(s) => {
                // serde_json escapes exactly what JSON needs.
                out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
            }
            LogValue::Int(v) => {
                let _ = write!(out, "{v}");
            }
            LogValue::UInt(v) => {
                let _ = write!(out, "{v}");
            }
            // JSON has no NaN or infinity (a rate over an empty run): null.
            LogValue::Float(v) if !v.is_finite() => out.push_str("null"),
            LogValue::Float(v) => out.push_str(&g6(*v)),
            LogValue::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
            LogValue::Indices(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{x}");
                }
                out.push(']');
            }
        }
    }
}

/// How serious a line is (`is_error` / `is_warning` in its metadata; the
/// summary counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// The detail log writer.
pub struct DetailLog {
    out: Option<BufWriter<File>>,
    start: Instant,
    pid: u32,
    warnings: u64,
    errors: u64,
    /// Every line also kept in memory (tests and `result.json` read them).
    lines: Vec<String>,
    /// Also print each line (LoadGen's `copy_detail_to_stdout`).
    echo: bool,
}

impl DetailLog {
    /// Creates the file; `start` is the log's time zero (`time_ms`).
    pub fn create(path: &Path, start: Instant) -> io::Result<DetailLog> {
        let file = File::create(path)?;
        Ok(DetailLog {
            out: Some(BufWriter::new(file)),
            ..DetailLog::in_memory(start)
        })
    }

    /// A log kept only in memory.
    pub fn in_memory(start: Instant) -> DetailLog {
        DetailLog {
            out: None,
            start,
            pid: std::process::id(),
            warnings: 0,
            errors: 0,
            lines: Vec::new(),
            echo: false,
        }
    }

    /// Logs `key = value`; `file`/`line` name where in joulebench it was
    /// logged (the metadata LoadGen fills with its own source position).
    pub fn log(
        &mut self,
        key: &str,
        value: impl Into<LogValue>,
        severity: Severity,
        file: &str,
        line: u32,
    ) {
        match severity {
            Severity::Warning => self.warnings += 1,
            Severity::Error => self.errors += 1,
            Severity::Info => {}
        }
        let time_ms = self.start.elapsed().as_nanos() as f64 / 1e6;
        let mut text = String::with_capacity(256);
        text.push_str(":::MLLOG {\"key\": ");
        LogValue::Str(key.to_string()).write_json(&mut text);
        text.push_str(", \"value\": ");
        value.into().write_json(&mut text);
        text.push_str(&format!(
            ", \"time_ms\": {time_ms:.6}, \"namespace\": \"mlperf::logging\", \"event_type\": \"POINT_IN_TIME\", \
             \"metadata\": {{\"is_error\": {}, \"is_warning\": {}, \"file\": \"{file}\", \"line_no\": {line}, \"pid\": {}, \"tid\": {}}}}}",
            severity == Severity::Error,
            severity == Severity::Warning,
            self.pid,
            self.pid
        ));
        if let Some(out) = self.out.as_mut() {
            // A failing disk must not stop the run; the error surfaces at flush.
            let _ = writeln!(out, "{text}");
        }
        if self.echo {
            println!("{text}");
        }
        self.lines.push(text);
    }

    /// Prints every later line to stdout too.
    pub fn echo_to_stdout(&mut self, echo: bool) {
        self.echo = echo;
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }

    pub fn warning_count(&self) -> u64 {
        self.warnings
    }

    pub fn error_count(&self) -> u64 {
        self.errors
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// Logs an informational line with this source position.
#[macro_export]
macro_rules! mllog {
    ($log:expr, $key:expr, $value:expr) => {
        $log.log(
            $key,
            $value,
            $crate::log::detail::Severity::Info,
            $crate::log::detail::file_name(file!()),
            line!(),
        )
    };
    ($log:expr, $key:expr, $value:expr, $severity:ident) => {
        $log.log(
            $key,
            $value,
            $crate::log::detail::Severity::$severity,
            $crate::log::detail::file_name(file!()),
            line!(),
        )
    };
}

/// The file name part of a `file!()` path (LoadGen logs bare file names).
pub fn file_name(path: &'static str) -> &'static str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_mllog_json() {
        let mut log = DetailLog::in_memory(Instant::now());
        mllog!(log, "effective_target_qps", 20000.0);
        mllog!(log, "result_validity", "VALID");
        mllog!(log, "loaded_qsl_set", &[3usize, 1, 2][..]);
        mllog!(log, "error_runtime", "boom", Error);
        assert_eq!(log.error_count(), 1);
        for line in log.lines() {
            let json = line.strip_prefix(":::MLLOG ").unwrap();
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert!(v["metadata"]["file"].as_str().unwrap().ends_with(".rs"));
        }
        assert!(log.lines()[0].contains("\"value\": 20000,"));
        assert!(log.lines()[2].contains("\"value\": [3,1,2],"));
        assert!(log.lines()[3].contains("\"is_error\": true"));
    }
}
