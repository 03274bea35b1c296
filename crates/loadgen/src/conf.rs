//! The `mlperf.conf` / `user.conf` text format.
//!
//! One setting per line: `model.Scenario.key = value`, where `model` and
//! `Scenario` may be `*`; `#` starts a comment. For a run of model M in
//! scenario S, a key is looked up as `M.S.key`, then `*.S.key`, then `M.*.key`,
//! then `*.*.key` (LoadGen's order); within a file the last line for a key
//! wins, and files applied later override earlier ones.
//!
//! Values use the conf files' units, not `TestSettings`' units: times in
//! milliseconds, percentiles and probabilities in percent. Some keys always
//! refer to one scenario whatever the run's scenario (`Server.target_qps` sets
//! the Server target even when Offline runs), exactly as LoadGen reads them.
//!
//! Unlike LoadGen, which logs and skips what it cannot read, every problem is
//! an error naming the file, the line and the key: a misspelt key in a
//! submission config is a wrong result, not a warning.

use crate::settings::{Mode, Scenario, TestSettings, UnknownMode, UnknownScenario};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a conf value came from, for error messages and for the result's
/// record of what set each setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfError {
    #[error("{}: cannot read conf file: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{origin}: {message}")]
    Line { origin: Origin, message: String },
}

/// Why a `--set key=value` override cannot be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverrideError {
    #[error("--set '{assignment}': expected key=value")]
    NotAnAssignment { assignment: String },
    /// A `TestSettings` field given a value of the wrong type.
    #[error("--set {field}={value}: '{value}' is not a valid {expected}")]
    FieldValue {
        field: String,
        value: String,
        expected: &'static str,
    },
    #[error("--set {field}={value}: expected true/false or 1/0")]
    FieldFlag { field: String, value: String },
    #[error("--set scenario={}: {error}", error.given)]
    Scenario { error: UnknownScenario },
    #[error("--set mode={}: {error}", error.given)]
    Mode { error: UnknownMode },
    /// Neither a field name nor a conf key that parses: `message` is what
    /// the conf parser said about the line.
    #[error(
        "--set {assignment}: {message}; or use a TestSettings field such as \
         server_target_qps, min_duration_ms, min_query_count"
    )]
    ConfKey { assignment: String, message: String },
    #[error(transparent)]
    Conf(#[from] ConfError),
    #[error(
        "--set {assignment}: '{key}' does not apply to model '{model}' in scenario {scenario}"
    )]
    NotApplicable {
        assignment: String,
        key: String,
        model: String,
        scenario: Scenario,
    },
}

/// The value types conf keys take.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ValueKind {
    /// Unsigned integer (decimal or 0x hex).
    Integer,
    /// Any number.
    Number,
    /// 0 or 1 (LoadGen also takes any non-zero as true for some keys; we
    /// insist on 0/1 so a typo such as `2` is caught).
    Flag,
}

/// Every key LoadGen reads from conf files, with its value type.
const KNOWN_KEYS: &[(&str, ValueKind)] = &[
    ("mode", ValueKind::Integer),
    ("qsl_rng_seed", ValueKind::Integer),
    ("sample_index_rng_seed", ValueKind::Integer),
    ("schedule_rng_seed", ValueKind::Integer),
    ("accuracy_log_rng_seed", ValueKind::Integer),
    ("accuracy_log_probability", ValueKind::Number),
    ("accuracy_log_sampling_target", ValueKind::Integer),
    ("test05", ValueKind::Flag),
    ("test05_qsl_rng_seed", ValueKind::Integer),
    ("test05_sample_index_rng_seed", ValueKind::Integer),
    ("test05_schedule_rng_seed", ValueKind::Integer),
    ("use_token_latencies", ValueKind::Flag),
    ("ttft_latency", ValueKind::Integer),
    ("tpot_latency", ValueKind::Integer),
    ("infer_token_latencies", ValueKind::Flag),
    ("token_latency_scaling_factor", ValueKind::Integer),
    ("target_latency_percentile", ValueKind::Number),
    ("samples_per_query", ValueKind::Integer),
    ("target_latency", ValueKind::Number),
    ("target_qps", ValueKind::Number),
    ("performance_issue_unique", ValueKind::Flag),
    ("performance_issue_same", ValueKind::Flag),
    ("performance_issue_same_index", ValueKind::Integer),
    ("sample_concatenate_permutation", ValueKind::Flag),
    ("coalesce_queries", ValueKind::Flag),
    ("max_async_queries", ValueKind::Integer),
    ("min_duration", ValueKind::Integer),
    ("max_duration", ValueKind::Integer),
    ("min_query_count", ValueKind::Integer),
    ("max_query_count", ValueKind::Integer),
    ("performance_sample_count_override", ValueKind::Integer),
    ("accuracy_sample_count_override", ValueKind::Integer),
    ("print_timestamps", ValueKind::Flag),
    // In MLCommons' own mlperf.conf (`*.Server.target_duration = 0`) but read
    // by no LoadGen version: accepted so that file loads, and ignored.
    ("target_duration", ValueKind::Integer),
];

fn key_kind(key: &str) -> Option<ValueKind> {
    KNOWN_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, kind)| *kind)
}

/// One parsed `model.Scenario.key = value` line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfEntry {
    /// Model name, or `*`.
    pub model: String,
    /// Scenario, or `None` for `*`.
    pub scenario: Option<Scenario>,
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

/// A parsed conf file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfFile {
    pub path: PathBuf,
    /// `(model, scenario, key)` → the last line that set it.
    entries: HashMap<(String, Option<Scenario>, String), ConfEntry>,
}

/// A setting a conf file (or `--set`) changed, for the run's record.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub field: &'static str,
    pub value: String,
    pub origin: Origin,
}

impl ConfFile {
    /// Reads and parses a conf file.
    pub fn load(path: &Path) -> Result<ConfFile, ConfError> {
        let bytes = std::fs::read(path).map_err(|e| ConfError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => ConfFile::parse(path, text),
            // Named by its line, like any other bad line.
            Err(e) => {
                let before = &bytes[..e.valid_up_to()];
                let line = before.iter().filter(|b| **b == b'\n').count() + 1;
                let column = before.len()
                    - before
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map_or(0, |at| at + 1)
                    + 1;
                Err(ConfError::Line {
                    origin: Origin {
                        file: path.to_path_buf(),
                        line,
                    },
                    message: format!("not UTF-8 text (byte {column} of the line)"),
                })
            }
        }
    }

    /// Parses conf text; `path` is only used to name the origin.
    pub fn parse(path: &Path, text: &str) -> Result<ConfFile, ConfError> {
        let mut entries = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let origin = Origin {
                file: path.to_path_buf(),
                line: index + 1,
            };
            if let Some(entry) = parse_line(raw, origin)? {
                entries.insert(
                    (entry.model.clone(), entry.scenario, entry.key.clone()),
                    entry,
                );
            }
        }
        Ok(ConfFile {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &ConfEntry> {
        self.entries.values()
    }

    /// LoadGen's lookup order for `key` as seen by `model` in `scenario`.
    fn lookup(&self, model: &str, scenario: Scenario, key: &str) -> Option<&ConfEntry> {
        let k = |m: &str, s: Option<Scenario>| (m.to_string(), s, key.to_string());
        self.entries
            .get(&k(model, Some(scenario)))
            .or_else(|| self.entries.get(&k("*", Some(scenario))))
            .or_else(|| self.entries.get(&k(model, None)))
            .or_else(|| self.entries.get(&k("*", None)))
    }

    /// Applies this file to `settings` for a run of `model` in the settings'
    /// scenario, the way LoadGen's `TestSettings::FromConfig` does. Returns
    /// what was changed.
    pub fn apply(
        &self,
        model: &str,
        settings: &mut TestSettings,
    ) -> Result<Vec<Applied>, ConfError> {
        let mut applier = Applier {
            conf: self,
            model,
            run: settings.scenario,
            applied: Vec::new(),
        };
        applier.apply_all(settings)?;
        Ok(applier.applied)
    }
}

fn parse_line(raw: &str, origin: Origin) -> Result<Option<ConfEntry>, ConfError> {
    let line = match raw.find('#') {
        Some(at) => &raw[..at],
        None => raw,
    };
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let err = |message: String| ConfError::Line {
        origin: origin.clone(),
        message,
    };
    let Some((key_part, value_part)) = line.split_once('=') else {
        return Err(err(format!(
            "expected 'model.Scenario.key = value', found '{line}'"
        )));
    };
    let full_key = key_part.trim();
    let value = value_part.trim();
    let mut parts = full_key.rsplitn(3, '.');
    let (Some(key), Some(scenario_text), Some(model)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(err(format!(
            "key '{full_key}' must have the form model.Scenario.key (use * for any model or scenario)"
        )));
    };
    if model.is_empty() {
        return Err(err(format!(
            "key '{full_key}' has an empty model name (use * for any model)"
        )));
    }
    let scenario = if scenario_text == "*" {
        None
    } else {
        match Scenario::ALL
            .iter()
            .find(|s| s.mlperf_name() == scenario_text)
        {
            Some(s) => Some(*s),
            None => {
                return Err(err(format!(
                    "key '{full_key}': unknown scenario '{scenario_text}' \
                     (expected SingleStream, MultiStream, Server, Offline or *)"
                )))
            }
        }
    };
    let Some(kind) = key_kind(key) else {
        let hint = closest_key(key)
            .map(|k| format!(" (did you mean '{k}'?)"))
            .unwrap_or_default();
        return Err(err(format!(
            "key '{full_key}': unknown setting '{key}'{hint}"
        )));
    };
    if value.is_empty() || value.contains(char::is_whitespace) {
        return Err(err(format!(
            "key '{full_key}': expected one value, found '{value}'"
        )));
    }
    let ok = match kind {
        ValueKind::Integer => parse_u64(value).is_some(),
        ValueKind::Number => value.parse::<f64>().map(f64::is_finite).unwrap_or(false),
        ValueKind::Flag => value == "0" || value == "1",
    };
    if !ok {
        let expected = match kind {
            ValueKind::Integer => "a non-negative integer",
            ValueKind::Number => "a number",
            ValueKind::Flag => "0 or 1",
        };
        return Err(err(format!(
            "key '{full_key}': value '{value}' is not {expected}"
        )));
    }
    Ok(Some(ConfEntry {
        model: model.to_string(),
        scenario,
        key: key.to_string(),
        value: value.to_string(),
        origin,
    }))
}

/// Integers as `strtoull(..., 0)` reads them: decimal or `0x` hex.
fn parse_u64(text: &str) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        text.parse::<u64>().ok()
    }
}

/// A known key within edit distance 2, for "did you mean".
fn closest_key(key: &str) -> Option<&'static str> {
    // The distance is at least the difference in length: a long key (a
    // hostile line of megabytes) is compared with nothing.
    let chars = key.chars().count();
    KNOWN_KEYS
        .iter()
        .filter(|(k, _)| k.len().abs_diff(chars) <= 2)
        .map(|(k, _)| (*k, edit_distance(k, key)))
        .filter(|(_, d)| *d <= 2)
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

struct Applier<'a> {
    conf: &'a ConfFile,
    model: &'a str,
    run: Scenario,
    applied: Vec<Applied>,
}

impl Applier<'_> {
    /// Finds `key` as LoadGen does for `scenario` (the run's, unless the key
    /// belongs to one scenario) and records the field it sets.
    fn find(&mut self, scenario: Scenario, key: &str, field: &'static str) -> Option<ConfEntry> {
        let entry = self.conf.lookup(self.model, scenario, key)?.clone();
        self.applied.push(Applied {
            field,
            value: entry.value.clone(),
            origin: entry.origin.clone(),
        });
        Some(entry)
    }

    fn int(&mut self, scenario: Scenario, key: &str, field: &'static str) -> Option<u64> {
        self.find(scenario, key, field)
            .and_then(|e| parse_u64(&e.value))
    }

    fn num(&mut self, scenario: Scenario, key: &str, field: &'static str) -> Option<f64> {
        self.find(scenario, key, field)
            .and_then(|e| e.value.parse::<f64>().ok())
    }

    /// A conf time in whole milliseconds (`target_latency` is read as a
    /// number and truncated, as LoadGen does) as nanoseconds; a value too
    /// large for nanoseconds in a u64, or negative, is an error on its line
    /// rather than an overflow.
    fn ms_as_ns(
        &mut self,
        scenario: Scenario,
        key: &str,
        field: &'static str,
    ) -> Result<Option<u64>, ConfError> {
        const MS_TO_NS: u64 = 1_000_000;
        let Some(entry) = self.find(scenario, key, field) else {
            return Ok(None);
        };
        let ms = match parse_u64(&entry.value) {
            Some(ms) => Some(ms),
            None => entry
                .value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0 && *v < u64::MAX as f64)
                .map(|v| v.trunc() as u64),
        };
        match ms.and_then(|ms| ms.checked_mul(MS_TO_NS)) {
            Some(ns) => Ok(Some(ns)),
            None => Err(ConfError::Line {
                origin: entry.origin,
                message: format!(
                    "key '{key}': value '{}' is not a number of milliseconds from 0 to {}",
                    entry.value,
                    u64::MAX / MS_TO_NS
                ),
            }),
        }
    }

    fn flag(&mut self, scenario: Scenario, key: &str, field: &'static str) -> Option<bool> {
        self.int(scenario, key, field).map(|v| v != 0)
    }

    fn apply_all(&mut self, s: &mut TestSettings) -> Result<(), ConfError> {
        use Scenario::*;
        let run = self.run;
        const MS_TO_NS: u64 = 1_000_000;
        if let Some(entry) = self.conf.lookup(self.model, run, "mode").cloned() {
            let value = parse_u64(&entry.value).unwrap_or(u64::MAX);
            s.mode = Mode::from_conf_value(value).ok_or_else(|| ConfError::Line {
                origin: entry.origin.clone(),
                message: format!(
                    "key 'mode': value '{}' is not a mode (0 SubmissionRun, 1 AccuracyOnly, \
                     2 PerformanceOnly, 3 FindPeakPerformance)",
                    entry.value
                ),
            })?;
            self.applied.push(Applied {
                field: "mode",
                value: entry.value,
                origin: entry.origin,
            });
        }
        if let Some(v) = self.int(run, "qsl_rng_seed", "qsl_rng_seed") {
            s.qsl_rng_seed = v;
        }
        if let Some(v) = self.int(run, "sample_index_rng_seed", "sample_index_rng_seed") {
            s.sample_index_rng_seed = v;
        }
        if let Some(v) = self.int(run, "schedule_rng_seed", "schedule_rng_seed") {
            s.schedule_rng_seed = v;
        }
        if let Some(v) = self.num(run, "accuracy_log_probability", "accuracy_log_probability") {
            s.accuracy_log_probability = v * 0.01;
        }
        if let Some(v) = self.flag(run, "test05", "test05") {
            s.test05 = v;
        }
        if let Some(v) = self.int(run, "test05_qsl_rng_seed", "test05_qsl_rng_seed") {
            s.test05_qsl_rng_seed = v;
        }
        if let Some(v) = self.int(
            run,
            "test05_sample_index_rng_seed",
            "test05_sample_index_rng_seed",
        ) {
            s.test05_sample_index_rng_seed = v;
        }
        if let Some(v) = self.int(run, "test05_schedule_rng_seed", "test05_schedule_rng_seed") {
            s.test05_schedule_rng_seed = v;
        }
        if let Some(v) = self.flag(run, "use_token_latencies", "use_token_latencies") {
            s.use_token_latencies = v;
        }
        if s.use_token_latencies {
            if let Some(v) = self.ms_as_ns(Server, "ttft_latency", "server_ttft_latency")? {
                s.server_ttft_latency = v;
            }
            if let Some(v) = self.ms_as_ns(Server, "tpot_latency", "server_tpot_latency")? {
                s.server_tpot_latency = v;
            }
        }
        if let Some(v) = self.flag(run, "infer_token_latencies", "infer_token_latencies") {
            s.infer_token_latencies = v;
        }
        if s.infer_token_latencies {
            if let Some(v) = self.int(
                run,
                "token_latency_scaling_factor",
                "token_latency_scaling_factor",
            ) {
                s.token_latency_scaling_factor = v;
            }
        }
        if let Some(v) = self.num(
            SingleStream,
            "target_latency_percentile",
            "single_stream_target_latency_percentile",
        ) {
            s.single_stream_target_latency_percentile = v * 0.01;
        }
        if let Some(v) = self.num(
            MultiStream,
            "target_latency_percentile",
            "multi_stream_target_latency_percentile",
        ) {
            s.multi_stream_target_latency_percentile = v * 0.01;
        }
        if let Some(v) = self.int(
            MultiStream,
            "samples_per_query",
            "multi_stream_samples_per_query",
        ) {
            s.multi_stream_samples_per_query = v;
        }
        if let Some(v) = self.num(
            Server,
            "target_latency_percentile",
            "server_target_latency_percentile",
        ) {
            s.server_target_latency_percentile = v * 0.01;
        }
        // LoadGen reads this one as an integer number of milliseconds.
        if let Some(v) = self.ms_as_ns(Server, "target_latency", "server_target_latency_ns")? {
            s.server_target_latency_ns = v;
        }
        if let Some(v) = self.flag(run, "performance_issue_unique", "performance_issue_unique") {
            s.performance_issue_unique = v;
        }
        if let Some(v) = self.flag(run, "performance_issue_same", "performance_issue_same") {
            s.performance_issue_same = v;
        }
        if let Some(v) = self.int(
            run,
            "performance_issue_same_index",
            "performance_issue_same_index",
        ) {
            s.performance_issue_same_index = v;
        }
        if let Some(v) = self.flag(
            run,
            "sample_concatenate_permutation",
            "sample_concatenate_permutation",
        ) {
            s.sample_concatenate_permutation = v;
        }
        if let Some(v) = self.flag(Server, "coalesce_queries", "server_coalesce_queries") {
            s.server_coalesce_queries = v;
        }
        if let Some(v) = self.int(Server, "max_async_queries", "server_max_async_queries") {
            s.server_max_async_queries = v;
        }
        if let Some(v) = self.int(run, "min_duration", "min_duration_ms") {
            s.min_duration_ms = v;
        }
        if let Some(v) = self.int(run, "max_duration", "max_duration_ms") {
            s.max_duration_ms = v;
        }
        if let Some(v) = self.int(run, "min_query_count", "min_query_count") {
            s.min_query_count = v;
        }
        if let Some(v) = self.int(run, "max_query_count", "max_query_count") {
            s.max_query_count = v;
        }
        if let Some(v) = self.int(
            run,
            "performance_sample_count_override",
            "performance_sample_count_override",
        ) {
            s.performance_sample_count_override = v;
        }
        if let Some(v) = self.int(
            run,
            "accuracy_sample_count_override",
            "accuracy_sample_count_override",
        ) {
            s.accuracy_sample_count_override = v;
        }
        if let Some(v) = self.num(
            SingleStream,
            "target_latency",
            "single_stream_expected_latency_ns",
        ) {
            s.single_stream_expected_latency_ns = v * MS_TO_NS as f64;
        }
        if let Some(v) = self.num(
            MultiStream,
            "target_latency",
            "multi_stream_expected_latency_ns",
        ) {
            s.multi_stream_expected_latency_ns = v * MS_TO_NS as f64;
        }
        if let Some(v) = self.num(Server, "target_qps", "server_target_qps") {
            s.server_target_qps = v;
        }
        if let Some(v) = self.num(Offline, "target_qps", "offline_expected_qps") {
            s.offline_expected_qps = v;
        }
        if let Some(v) = self.flag(run, "print_timestamps", "print_timestamps") {
            s.print_timestamps = v;
        }
        if let Some(v) = self.int(run, "accuracy_log_rng_seed", "accuracy_log_rng_seed") {
            s.accuracy_log_rng_seed = v;
        }
        if let Some(v) = self.int(
            run,
            "accuracy_log_sampling_target",
            "accuracy_log_sampling_target",
        ) {
            s.accuracy_log_sampling_target = v;
        }
        Ok(())
    }
}

/// One `--set key=value` override from the command line.
///
/// `key` is either a conf key (`target_qps`, `min_duration`, or a full
/// `model.Scenario.key`), read in conf units, or a `TestSettings` field name
/// (`server_target_qps`, `min_duration_ms`), read in that field's units.
pub fn apply_override(
    settings: &mut TestSettings,
    model: &str,
    assignment: &str,
) -> Result<Applied, OverrideError> {
    let Some((key, value)) = assignment.split_once('=') else {
        return Err(OverrideError::NotAnAssignment {
            assignment: assignment.into(),
        });
    };
    let (key, value) = (key.trim(), value.trim());
    let origin = Origin {
        file: PathBuf::from("--set"),
        line: 0,
    };
    if let Some(applied) = set_field(settings, key, value).transpose() {
        return applied.map(|field| Applied {
            field,
            value: value.to_string(),
            origin,
        });
    }
    let full_key = if key.contains('.') {
        key.to_string()
    } else {
        format!("{model}.{}.{key}", settings.scenario)
    };
    let conf = ConfFile::parse(Path::new("--set"), &format!("{full_key} = {value}")).map_err(
        |e| match e {
            ConfError::Line { message, .. } => OverrideError::ConfKey {
                assignment: assignment.into(),
                message,
            },
            other => OverrideError::Conf(other),
        },
    )?;
    let applied = conf.apply(model, settings)?;
    applied
        .into_iter()
        .next()
        .map(|a| Applied { origin, ..a })
        .ok_or_else(|| OverrideError::NotApplicable {
            assignment: assignment.into(),
            key: full_key,
            model: model.into(),
            scenario: settings.scenario,
        })
}

/// Sets a `TestSettings` field by its name, in the field's own units.
/// `Ok(None)` when `name` is not a field name.
fn set_field(
    s: &mut TestSettings,
    name: &str,
    value: &str,
) -> Result<Option<&'static str>, OverrideError> {
    fn num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, OverrideError> {
        value.parse::<T>().map_err(|_| OverrideError::FieldValue {
            field: name.into(),
            value: value.into(),
            expected: std::any::type_name::<T>(),
        })
    }
    /// A finite float: NaN or an infinity would be recorded in result.json
    /// as `null`, which no reader takes back.
    fn finite(name: &str, value: &str) -> Result<f64, OverrideError> {
        let v = num::<f64>(name, value)?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(OverrideError::FieldValue {
                field: name.into(),
                value: value.into(),
                expected: "finite number",
            })
        }
    }
    fn flag(name: &str, value: &str) -> Result<bool, OverrideError> {
        match value {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            _ => Err(OverrideError::FieldFlag {
                field: name.into(),
                value: value.into(),
            }),
        }
    }
    macro_rules! fields {
        ($($field:ident : $kind:ident),* $(,)?) => {
            match name {
                $(stringify!($field) => { s.$field = fields!(@parse $kind, name, value)?; Ok(Some(stringify!($field))) })*
                "scenario" => {
                    s.scenario = value.parse().map_err(|error| OverrideError::Scenario { error })?;
                    Ok(Some("scenario"))
                }
                "mode" => {
                    s.mode = value.parse().map_err(|error| OverrideError::Mode { error })?;
                    Ok(Some("mode"))
                }
                _ => Ok(None),
            }
        };
        (@parse f64, $n:expr, $v:expr) => { finite($n, $v) };
        (@parse u64, $n:expr, $v:expr) => { num::<u64>($n, $v) };
        (@parse i32, $n:expr, $v:expr) => { num::<i32>($n, $v) };
        (@parse bool, $n:expr, $v:expr) => { flag($n, $v) };
    }
    fields!(
        single_stream_expected_latency_ns: f64,
        single_stream_target_latency_percentile: f64,
        multi_stream_expected_latency_ns: f64,
        multi_stream_target_latency_percentile: f64,
        multi_stream_samples_per_query: u64,
        server_target_qps: f64,
        server_target_latency_ns: u64,
        server_target_latency_percentile: f64,
        server_coalesce_queries: bool,
        server_find_peak_qps_decimals_of_precision: i32,
        server_find_peak_qps_boundary_step_size: f64,
        server_max_async_queries: u64,
        server_num_issue_query_threads: u64,
        offline_expected_qps: f64,
        sample_concatenate_permutation: bool,
        min_duration_ms: u64,
        max_duration_ms: u64,
        min_query_count: u64,
        max_query_count: u64,
        qsl_rng_seed: u64,
        sample_index_rng_seed: u64,
        schedule_rng_seed: u64,
        accuracy_log_rng_seed: u64,
        accuracy_log_probability: f64,
        accuracy_log_sampling_target: u64,
        print_timestamps: bool,
        performance_issue_unique: bool,
        performance_issue_same: bool,
        performance_issue_same_index: u64,
        performance_sample_count_override: u64,
        accuracy_sample_count_override: u64,
        use_token_latencies: bool,
        server_ttft_latency: u64,
        server_tpot_latency: u64,
        infer_token_latencies: bool,
        token_latency_scaling_factor: u64,
    )
}
