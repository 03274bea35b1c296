//! Where a test's log files go and what they are called: LoadGen's
//! `LogOutputSettings` (folder, prefix, suffix, an optional date-time in the
//! name, copies to stdout) and its Chrome-trace file.
//!
//! LoadGen names its files `<outdir>/<prefix>[<datetime>_]<kind><suffix>.<ext>`
//! with the kinds `summary`, `detail` (`.txt`), `accuracy` and `trace`
//! (`.json`); the defaults give `mlperf_log_summary.txt` and so on.

use crate::log::detail::Severity;
use std::path::PathBuf;

/// How the Chrome-trace file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    /// No trace file (joulebench's own front ends).
    NoFile,
    /// The file exists and is empty (LoadGen with `enable_trace = False`).
    EmptyFile,
    /// The file holds the test's events (LoadGen with `enable_trace = True`).
    Events,
}

/// A line logged before the test started (LoadGen buffers `FromConfig`'s
/// complaints and writes them into the next test's detail log).
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyMessage {
    pub key: String,
    pub value: String,
    pub severity: Severity,
}

/// Where LoadGen's files go and how they are named.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub outdir: PathBuf,
    pub prefix: String,
    pub suffix: String,
    /// Inserts the test's date-time and `_` after the prefix.
    pub prefix_with_datetime: bool,
    pub copy_summary_to_stdout: bool,
    pub copy_detail_to_stdout: bool,
    pub trace: Trace,
    /// Logged at the top of the detail log, after the version lines.
    pub early_messages: Vec<EarlyMessage>,
}

impl LogSettings {
    /// LoadGen's default names in `outdir`, no trace file.
    pub fn in_dir(outdir: impl Into<PathBuf>) -> LogSettings {
        LogSettings {
            outdir: outdir.into(),
            prefix: "mlperf_log_".into(),
            suffix: String::new(),
            prefix_with_datetime: false,
            copy_summary_to_stdout: false,
            copy_detail_to_stdout: false,
            trace: Trace::NoFile,
            early_messages: Vec::new(),
        }
    }

    /// The same settings writing into another folder (a ranging pass).
    pub fn with_outdir(&self, outdir: impl Into<PathBuf>) -> LogSettings {
        LogSettings {
            outdir: outdir.into(),
            ..self.clone()
        }
    }

    /// The paths of one test's files; `test_datetime` is the name's
    /// date-time when `prefix_with_datetime` is set.
    pub fn paths(&self, test_datetime: &str) -> LogPaths {
        let mut stem = self.prefix.clone();
        if self.prefix_with_datetime {
            stem.push_str(test_datetime);
            stem.push('_');
        }
        let path = |kind: &str, ext: &str| {
            self.outdir
                .join(format!("{stem}{kind}{}.{ext}", self.suffix))
        };
        LogPaths {
            summary: path("summary", "txt"),
            detail: path("detail", "txt"),
            accuracy: path("accuracy", "json"),
            trace: (self.trace != Trace::NoFile).then(|| path("trace", "json")),
        }
    }
}

/// One test's file paths.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPaths {
    pub summary: PathBuf,
    pub detail: PathBuf,
    pub accuracy: PathBuf,
    pub trace: Option<PathBuf>,
}

/// One sample as the trace shows it: a begin/end pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TracedSample {
    pub sample_seq: u64,
    pub query_seq: u64,
    pub sample_idx: usize,
    /// Issue and completion, ns since the pass started.
    pub issue_start_ns: u64,
    pub complete_ns: u64,
}

/// One timed stretch (`"ph":"X"`): what LoadGen was doing and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct TracedSpan {
    pub name: &'static str,
    /// Start and duration, ns since the test started.
    pub start_ns: u64,
    pub duration_ns: u64,
}

/// Renders LoadGen's Chrome-trace layout: one event per line inside
/// `{"traceEvents":[`, closed by a `LastTrace` event, the display unit and
/// the wall-clock origin in microseconds.
pub fn render_trace(
    spans: &[TracedSpan],
    samples: &[(u64, TracedSample)],
    origin_unix_us: f64,
) -> String {
    let pid = std::process::id();
    let us = |ns: u64| format!("{:.3}", ns as f64 / 1e3);
    let mut out = String::from("{\"traceEvents\":[\n");
    for span in spans {
        out.push_str(&format!(
            "{{\"name\":\"{}\",\"ph\":\"X\",\"pid\":{pid},\"tid\":{pid},\"ts\":{},\"dur\":{},\"args\":{{}}}},\n",
            span.name,
            us(span.start_ns),
            us(span.duration_ns)
        ));
    }
    for (pass_start_ns, s) in samples {
        let id = s.sample_seq;
        out.push_str(&format!(
            "{{\"name\":\"Sample\",\"cat\":\"default\",\"ph\":\"b\",\"pid\":{pid},\"id\":{id},\"ts\":{},\"args\":{{\"sample_seq\":{id},\"query_seq\":{},\"sample_idx\":{},\"issue_start_ns\":{},\"complete_ns\":{}}}}},\n",
            us(pass_start_ns + s.issue_start_ns),
            s.query_seq,
            s.sample_idx,
            s.issue_start_ns,
            s.complete_ns
        ));
        out.push_str(&format!(
            "{{\"name\":\"Sample\",\"cat\":\"default\",\"ph\":\"e\", \"pid\":{pid},\"id\":{id},\"ts\":{}}},\n",
            us(pass_start_ns + s.complete_ns)
        ));
    }
    out.push_str(&format!(
        "{{\"name\":\"LastTrace\"}}\n],\n\"displayTimeUnit\":\"ns\",\n\"otherData\":{{\n\"ts\":{origin_unix_us:.3},\n\"version\":\"MLPerf LoadGen v1.0\"\n}}\n}}\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_loadgens_pattern() {
        let mut logs = LogSettings::in_dir("/out");
        let p = logs.paths("2026-12-05T10:00:00Z");
        assert_eq!(p.summary, PathBuf::from("/out/mlperf_log_summary.txt"));
        assert_eq!(p.accuracy, PathBuf::from("/out/mlperf_log_accuracy.json"));
        assert_eq!(p.trace, None);
        logs.prefix = "run_".into();
        logs.suffix = "_b".into();
        logs.prefix_with_datetime = true;
        logs.trace = Trace::EmptyFile;
        let p = logs.paths("2026-12-05T10:00:00Z");
        assert_eq!(
            p.detail,
            PathBuf::from("/out/run_2026-12-05T10:00:00Z_detail_b.txt")
        );
        assert_eq!(
            p.trace,
            Some(PathBuf::from("/out/run_2026-12-05T10:00:00Z_trace_b.json"))
        );
    }

    #[test]
    fn trace_is_json_with_loadgens_frame() {
        let text = render_trace(
            &[TracedSpan {
                name: "GenerateQueries",
                start_ns: 1500,
                duration_ns: 2000,
            }],
            &[(
                1000,
                TracedSample {
                    sample_seq: 3,
                    query_seq: 1,
                    sample_idx: 7,
                    issue_start_ns: 10,
                    complete_ns: 5010,
                },
            )],
            1_796_447_202_646_603.0,
        );
        assert!(text.starts_with("{\"traceEvents\":[\n"));
        assert!(text.ends_with("\"version\":\"MLPerf LoadGen v1.0\"\n}\n}\n"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let events = v["traceEvents"].as_array().unwrap();
        assert_eq!(events.len(), 4);
        assert_eq!(events[1]["args"]["sample_idx"], 7);
        assert_eq!(events[2]["ts"], 6.01);
        assert_eq!(events[3]["name"], "LastTrace");
    }
}
