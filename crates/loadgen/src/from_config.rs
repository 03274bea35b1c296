//! LoadGen's own `TestSettings::FromConfig`, quirks included, for the Python
//! `mlperf_loadgen` module: the same tokenizer, the same lookups, the same
//! return codes, and the current `mlperf.conf` embedded.
//!
//! joulebench's front ends read conf files with [`crate::conf`], which
//! refuses what it cannot read. Python scripts written for LoadGen rely on
//! LoadGen's leniency (unknown keys are skipped, a file is all or nothing),
//! so this module reproduces it, and reports each thing LoadGen would have
//! skipped silently as a [`ConfNote`] the caller can show (the Python module
//! turns them into warnings).
//!
//! The rules, as LoadGen 6.0.17 has them (`test_settings_internal.cc`):
//! - a line is split on whitespace: `key = value`, where `#` as a word ends
//!   the line; `key=value` without spaces is one word and is never read;
//! - a value must be, in full, an integer (`strtoul`, base 0: `0x` hex and
//!   leading-`0` octal) or a floating-point number (`strtod`); otherwise the
//!   file is rejected (`-EINVAL`) and nothing of it is applied;
//! - a key is looked up as `model.scenario.key`, `*.scenario.key`,
//!   `model.*.key`, `*.*.key`; scenario-specific keys are always looked up
//!   under their own scenario, whatever scenario was passed;
//! - `conf_type` 0 reads the embedded mlperf.conf and is the only source of
//!   the random seeds, `accuracy_log_probability` and the test05 keys; the
//!   first `conf_type` 1 call of a process applies type 0 first, later ones
//!   log "Multiple conf files"; `conf_type` 2 reads the file alone.

use crate::settings::{Mode, TestSettings};
use std::collections::HashMap;
use std::path::Path;

/// The `mlperf.conf` MLCommons' LoadGen 6.0.17 embeds, byte for byte (it is
/// mlcommons/inference's `loadgen/mlperf.conf` at b66003e).
pub const MLPERF_CONF: &str = include_str!("../data/mlperf.conf");

/// LoadGen's return codes.
pub const OK: i32 = 0;
pub const ENOENT: i32 = -2;
pub const EINVAL: i32 = -22;

/// Keys LoadGen reads; anything else in a conf file is skipped.
const READ_KEYS: &[&str] = &[
    "mode",
    "qsl_rng_seed",
    "sample_index_rng_seed",
    "schedule_rng_seed",
    "accuracy_log_probability",
    "test05",
    "test05_qsl_rng_seed",
    "test05_sample_index_rng_seed",
    "test05_schedule_rng_seed",
    "use_token_latencies",
    "ttft_latency",
    "tpot_latency",
    "infer_token_latencies",
    "token_latency_scaling_factor",
    "target_latency_percentile",
    "samples_per_query",
    "target_latency",
    "performance_issue_unique",
    "performance_issue_same",
    "performance_issue_same_index",
    "sample_concatenate_permutation",
    "coalesce_queries",
    "max_async_queries",
    "min_duration",
    "max_duration",
    "min_query_count",
    "max_query_count",
    "performance_sample_count_override",
    "accuracy_sample_count_override",
    "target_qps",
    "print_timestamps",
    "accuracy_log_rng_seed",
    "accuracy_log_sampling_target",
];

/// Keys only the embedded mlperf.conf (`conf_type` 0) may set.
const EMBEDDED_ONLY_KEYS: &[&str] = &[
    "qsl_rng_seed",
    "sample_index_rng_seed",
    "schedule_rng_seed",
    "accuracy_log_probability",
    "test05",
    "test05_qsl_rng_seed",
    "test05_sample_index_rng_seed",
    "test05_schedule_rng_seed",
];

/// Keys present in mlperf.conf that LoadGen never reads.
const KNOWN_UNREAD_KEYS: &[&str] = &["target_duration"];

/// Something LoadGen skipped or refused, with where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfNote {
    pub file: String,
    /// 1-based; 0 for the file as a whole.
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else if self.key.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(
                f,
                "{}:{}: key '{}': {}",
                self.file, self.line, self.key, self.message
            )
        }
    }
}

/// What one `FromConfig` call did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FromConfigOutcome {
    /// LoadGen's return value: [`OK`], [`ENOENT`] or [`EINVAL`].
    pub code: i32,
    /// What LoadGen logs as `error_invalid_config` (it appears in the next
    /// test's detail log).
    pub detail_errors: Vec<String>,
    /// Everything skipped or refused, for the user.
    pub notes: Vec<ConfNote>,
}

/// The process-wide count of `conf_type` 1 calls (LoadGen's function-local
/// `static int configCount`).
#[derive(Debug, Default)]
pub struct UserConfCount(pub u64);

/// LoadGen's `TestSettings::FromConfig(path, model, scenario, conf_type)`.
pub fn from_config(
    settings: &mut TestSettings,
    path: &Path,
    model: &str,
    scenario: &str,
    conf_type: i64,
    count: &mut UserConfCount,
) -> FromConfigOutcome {
    let mut outcome = FromConfigOutcome::default();
    if conf_type == 1 {
        if count.0 == 0 {
            let embedded = from_config(settings, Path::new(""), model, scenario, 0, count);
            outcome.detail_errors.extend(embedded.detail_errors);
            outcome.notes.extend(embedded.notes);
        } else {
            let message =
                "Multiple conf files are used. This is not valid for official submission.";
            outcome.detail_errors.push(message.into());
            outcome.notes.push(ConfNote {
                file: path.display().to_string(),
                line: 0,
                key: String::new(),
                message: format!(
                    "{message} (only the first conf_type=1 call of a process applies the \
                     embedded mlperf.conf; pass conf_type=2 for extra files)"
                ),
            });
        }
        count.0 += 1;
    }
    let (name, text) = if conf_type == 0 {
        (
            "mlperf.conf (embedded)".to_string(),
            MLPERF_CONF.to_string(),
        )
    } else {
        let name = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => (name, String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) => {
                outcome
                    .detail_errors
                    .push(format!("can't open file {name}"));
                outcome.notes.push(ConfNote {
                    file: name,
                    line: 0,
                    key: String::new(),
                    message: format!("cannot open the conf file ({e}); nothing was read from it"),
                });
                outcome.code = ENOENT;
                return outcome;
            }
        }
    };
    let parsed = parse(&name, &text, conf_type);
    outcome.notes.extend(parsed.notes);
    if !parsed.errors.is_empty() {
        outcome.detail_errors.extend(parsed.errors);
        outcome.notes.push(ConfNote {
            file: name,
            line: 0,
            key: String::new(),
            message: "nothing from this file was applied (LoadGen applies a conf file \
                      whole or not at all)"
                .into(),
        });
        outcome.code = EINVAL;
        return outcome;
    }
    let mut lookup = Lookup {
        kv: &parsed.kv,
        model,
        scenario,
    };
    outcome
        .detail_errors
        .extend(lookup.apply(settings, conf_type == 0));
    outcome
}

/// A parsed file: the last value per full key, and what was wrong.
struct Parsed {
    kv: HashMap<String, String>,
    errors: Vec<String>,
    notes: Vec<ConfNote>,
}

fn parse(file: &str, text: &str, conf_type: i64) -> Parsed {
    let mut parsed = Parsed {
        kv: HashMap::new(),
        errors: Vec::new(),
        notes: Vec::new(),
    };
    let note = |line: usize, key: &str, message: String| ConfNote {
        file: file.to_string(),
        line,
        key: key.to_string(),
        message,
    };
    for (index, line) in text.lines().enumerate() {
        let line_nr = index + 1;
        let mut key = "";
        let mut looking_for = 0;
        let mut stored = false;
        for word in line.split_whitespace() {
            if word == "#" && looking_for != 2 {
                break;
            }
            match looking_for {
                2 => {
                    if parses_in_full(word) {
                        parsed.kv.insert(key.to_string(), word.to_string());
                        stored = true;
                        continue;
                    }
                    parsed.errors.push(format!(
                        "value needs to be integer or double, line={line_nr}"
                    ));
                    parsed.notes.push(note(
                        line_nr,
                        key,
                        format!("value '{word}' is neither an integer nor a number"),
                    ));
                    break;
                }
                1 if word != "=" => {
                    parsed
                        .errors
                        .push(format!("expected 'key=value', line={line_nr}"));
                    parsed.notes.push(note(
                        line_nr,
                        key,
                        format!("expected '=' after the key, found '{word}'"),
                    ));
                    break;
                }
                0 => key = word,
                _ => {}
            }
            looking_for += 1;
        }
        if looking_for == 1 && key.contains('=') && !key.starts_with('#') {
            parsed.notes.push(note(
                line_nr,
                key,
                "never read: LoadGen needs spaces around '=' ('key = value')".into(),
            ));
        } else if stored && conf_type != 0 {
            if let Some(message) = check_key(key, conf_type) {
                parsed.notes.push(note(line_nr, key, message));
            }
        }
    }
    parsed
}

/// Why a well-formed key will not be read, if it won't.
fn check_key(full_key: &str, conf_type: i64) -> Option<String> {
    let mut parts = full_key.splitn(3, '.');
    let (Some(_), Some(_), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return Some("never read: keys have the form model.scenario.key".into());
    };
    // Model names may contain dots: the setting is after the last one.
    let name = full_key.rsplit('.').next().unwrap_or(full_key);
    if KNOWN_UNREAD_KEYS.contains(&name) {
        return None;
    }
    if !READ_KEYS.contains(&name) {
        return Some(format!(
            "never read: '{name}' is not a setting LoadGen knows"
        ));
    }
    if EMBEDDED_ONLY_KEYS.contains(&name) && conf_type != 0 {
        return Some(format!(
            "ignored: '{name}' is only read from the embedded mlperf.conf (conf_type=0)"
        ));
    }
    None
}

/// `strtoul(word, &end, 0)` or `strtod(word, &end)` reading all of `word`.
fn parses_in_full(word: &str) -> bool {
    strtoull(word).1 == word.len() || strtod(word).1 == word.len()
}

/// C's `strtoull(text, &end, 0)`: the value and the bytes consumed (0 when
/// nothing parsed). Negative values wrap, overflow saturates.
fn strtoull(text: &str) -> (u64, usize) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    let negative = i < b.len() && b[i] == b'-';
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let (radix, digits_start) = if i + 1 < b.len()
        && b[i] == b'0'
        && (b[i + 1] | 0x20) == b'x'
        && hex_digit(b.get(i + 2))
    {
        (16, i + 2)
    } else if i < b.len() && b[i] == b'0' {
        (8, i)
    } else {
        (10, i)
    };
    let mut end = digits_start;
    let mut value: u64 = 0;
    let mut overflow = false;
    while end < b.len() {
        let Some(d) = (b[end] as char).to_digit(radix) else {
            break;
        };
        match value
            .checked_mul(radix as u64)
            .and_then(|v| v.checked_add(d as u64))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
        end += 1;
    }
    if end == digits_start {
        return (0, 0);
    }
    let value = if overflow {
        u64::MAX
    } else if negative {
        value.wrapping_neg()
    } else {
        value
    };
    (value, end)
}

fn hex_digit(b: Option<&u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_hexdigit())
}

/// C's `strtod(text, &end)` for decimal numbers, `inf`/`infinity` and
/// `nan`: the value and the bytes consumed.
fn strtod(text: &str) -> (f64, usize) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let rest = text[i..].to_ascii_lowercase();
    for word in ["infinity", "inf", "nan"] {
        if rest.starts_with(word) {
            let end = i + word.len();
            let value = text[start..end].parse::<f64>().unwrap_or(f64::NAN);
            return (value, end);
        }
    }
    let digits = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        j
    };
    let int_end = digits(i);
    let mut end = int_end;
    if end < b.len() && b[end] == b'.' {
        let frac_end = digits(end + 1);
        if int_end > i || frac_end > end + 1 {
            end = frac_end;
        }
    }
    if end == i || (end == i + 1 && b[i] == b'.') {
        return (0.0, 0);
    }
    if end < b.len() && (b[end] | 0x20) == b'e' {
        let mut j = end + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_end = digits(j);
        if exp_end > j {
            end = exp_end;
        }
    }
    (text[start..end].parse::<f64>().unwrap_or(0.0), end)
}

/// LoadGen's `lookupkv`.
struct Lookup<'a> {
    kv: &'a HashMap<String, String>,
    model: &'a str,
    scenario: &'a str,
}

impl Lookup<'_> {
    fn find(&self, scenario: &str, key: &str) -> Option<&str> {
        [
            format!("{}.{scenario}.{key}", self.model),
            format!("*.{scenario}.{key}"),
            format!("{}.*.{key}", self.model),
            format!("*.*.{key}"),
        ]
        .iter()
        .find_map(|k| self.kv.get(k))
        .map(String::as_str)
    }

    /// An integer setting (`strtoull` times an integer multiplier,
    /// wrapping as C's unsigned arithmetic does).
    fn int(&self, scenario: &str, key: &str, multiplier: u64, field: &mut u64) -> bool {
        match self.find(scenario, key) {
            Some(v) => {
                *field = strtoull(v).0.wrapping_mul(multiplier);
                true
            }
            None => false,
        }
    }

    fn num(&self, scenario: &str, key: &str, multiplier: f64, field: &mut f64) {
        if let Some(v) = self.find(scenario, key) {
            *field = strtod(v).0 * multiplier;
        }
    }

    fn value(&self, scenario: &str, key: &str) -> Option<u64> {
        self.find(scenario, key).map(|v| strtoull(v).0)
    }

    /// Applies every key LoadGen reads; returns the errors it logs.
    fn apply(&mut self, s: &mut TestSettings, embedded: bool) -> Vec<String> {
        const MS: u64 = 1_000_000;
        let mut errors = Vec::new();
        let run = self.scenario;
        if let Some(v) = self.value(run, "mode") {
            match Mode::from_conf_value(v) {
                Some(mode) => s.mode = mode,
                None => errors.push("Invalid value passed to Mode key in config.".into()),
            }
        }
        if embedded {
            self.int(run, "qsl_rng_seed", 1, &mut s.qsl_rng_seed);
            self.int(
                run,
                "sample_index_rng_seed",
                1,
                &mut s.sample_index_rng_seed,
            );
            self.int(run, "schedule_rng_seed", 1, &mut s.schedule_rng_seed);
            self.num(
                run,
                "accuracy_log_probability",
                0.01,
                &mut s.accuracy_log_probability,
            );
            if let Some(v) = self.value(run, "test05") {
                s.test05 = v == 1;
            }
            self.int(run, "test05_qsl_rng_seed", 1, &mut s.test05_qsl_rng_seed);
            self.int(
                run,
                "test05_sample_index_rng_seed",
                1,
                &mut s.test05_sample_index_rng_seed,
            );
            self.int(
                run,
                "test05_schedule_rng_seed",
                1,
                &mut s.test05_schedule_rng_seed,
            );
        }
        if let Some(v) = self.value(run, "use_token_latencies") {
            s.use_token_latencies = v == 1;
        }
        if s.use_token_latencies {
            self.int("Server", "ttft_latency", MS, &mut s.server_ttft_latency);
            self.int("Server", "tpot_latency", MS, &mut s.server_tpot_latency);
        }
        if let Some(v) = self.value(run, "infer_token_latencies") {
            s.infer_token_latencies = v == 1;
        }
        if s.infer_token_latencies {
            self.int(
                run,
                "token_latency_scaling_factor",
                1,
                &mut s.token_latency_scaling_factor,
            );
        }
        self.num(
            "SingleStream",
            "target_latency_percentile",
            0.01,
            &mut s.single_stream_target_latency_percentile,
        );
        self.num(
            "MultiStream",
            "target_latency_percentile",
            0.01,
            &mut s.multi_stream_target_latency_percentile,
        );
        self.int(
            "MultiStream",
            "samples_per_query",
            1,
            &mut s.multi_stream_samples_per_query,
        );
        self.num(
            "Server",
            "target_latency_percentile",
            0.01,
            &mut s.server_target_latency_percentile,
        );
        self.int(
            "Server",
            "target_latency",
            MS,
            &mut s.server_target_latency_ns,
        );
        if let Some(v) = self.value(run, "performance_issue_unique") {
            s.performance_issue_unique = v != 0;
        }
        if let Some(v) = self.value(run, "performance_issue_same") {
            s.performance_issue_same = v != 0;
        }
        self.int(
            run,
            "performance_issue_same_index",
            1,
            &mut s.performance_issue_same_index,
        );
        if let Some(v) = self.value(run, "sample_concatenate_permutation") {
            s.sample_concatenate_permutation = v == 1;
        }
        if let Some(v) = self.value("Server", "coalesce_queries") {
            s.server_coalesce_queries = v != 0;
        }
        if let Some(v) = self.value("Server", "max_async_queries") {
            // LoadGen stores it through an `int`.
            s.server_max_async_queries = v as i32 as i64 as u64;
        }
        self.int(run, "min_duration", 1, &mut s.min_duration_ms);
        self.int(run, "max_duration", 1, &mut s.max_duration_ms);
        self.int(run, "min_query_count", 1, &mut s.min_query_count);
        self.int(run, "max_query_count", 1, &mut s.max_query_count);
        self.int(
            run,
            "performance_sample_count_override",
            1,
            &mut s.performance_sample_count_override,
        );
        self.int(
            run,
            "accuracy_sample_count_override",
            1,
            &mut s.accuracy_sample_count_override,
        );
        self.num(
            "SingleStream",
            "target_latency",
            MS as f64,
            &mut s.single_stream_expected_latency_ns,
        );
        self.num(
            "MultiStream",
            "target_latency",
            MS as f64,
            &mut s.multi_stream_expected_latency_ns,
        );
        self.num("Server", "target_qps", 1.0, &mut s.server_target_qps);
        self.num("Offline", "target_qps", 1.0, &mut s.offline_expected_qps);
        if let Some(v) = self.value(run, "print_timestamps") {
            s.print_timestamps = v != 0;
        }
        self.int(
            run,
            "accuracy_log_rng_seed",
            1,
            &mut s.accuracy_log_rng_seed,
        );
        self.int(
            run,
            "accuracy_log_sampling_target",
            1,
            &mut s.accuracy_log_sampling_target,
        );
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// One call with a fresh process count (no earlier conf_type=1 call).
    fn alone(
        s: &mut TestSettings,
        path: &Path,
        model: &str,
        scenario: &str,
        conf_type: i64,
    ) -> FromConfigOutcome {
        from_config(
            s,
            path,
            model,
            scenario,
            conf_type,
            &mut UserConfCount::default(),
        )
    }

    fn conf(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn c_number_parsing_matches_strtoull_and_strtod() {
        assert_eq!(strtoull("42"), (42, 2));
        assert_eq!(strtoull("0x1F"), (31, 4));
        assert_eq!(strtoull("010"), (8, 3));
        assert_eq!(strtoull("08"), (0, 1));
        assert_eq!(strtoull("0.5"), (0, 1));
        assert_eq!(strtoull("-1"), (u64::MAX, 2));
        assert_eq!(strtoull("99999999999999999999"), (u64::MAX, 20));
        assert_eq!(strtoull("abc"), (0, 0));
        assert_eq!(strtod("0.5"), (0.5, 3));
        assert_eq!(strtod("1e3x"), (1000.0, 3));
        assert_eq!(strtod(".5"), (0.5, 2));
        assert_eq!(strtod("5."), (5.0, 2));
        assert_eq!(strtod("."), (0.0, 0));
        assert_eq!(strtod("1e"), (1.0, 1));
        assert!(strtod("inf").0.is_infinite());
        assert!(parses_in_full("08"));
        assert!(!parses_in_full("fast"));
        assert!(!parses_in_full("1,5"));
    }

    #[test]
    fn the_embedded_conf_sets_seeds_and_model_keys() {
        let mut s = TestSettings::default();
        let mut count = UserConfCount::default();
        let out = from_config(&mut s, Path::new(""), "resnet50", "Offline", 0, &mut count);
        assert_eq!(out.code, OK);
        assert!(out.detail_errors.is_empty(), "{:?}", out.detail_errors);
        assert_eq!(s.performance_sample_count_override, 1024);
        assert_eq!(s.min_duration_ms, 600_000);
        assert_ne!(s.qsl_rng_seed, 0);
        assert_eq!(count.0, 0);
    }

    #[test]
    fn user_conf_applies_embedded_once_then_complains() {
        let user = conf("resnet50.Offline.target_qps = 1234\n*.*.qsl_rng_seed = 5\n");
        let mut s = TestSettings::default();
        let mut count = UserConfCount::default();
        let out = from_config(&mut s, user.path(), "resnet50", "Offline", 1, &mut count);
        assert_eq!(out.code, OK);
        assert_eq!(s.offline_expected_qps, 1234.0);
        let embedded_seed = s.qsl_rng_seed;
        assert_ne!(embedded_seed, 5, "a user.conf cannot set seeds");
        assert!(out.notes.iter().any(|n| n.key == "*.*.qsl_rng_seed"));
        let mut fresh = TestSettings::default();
        let out = from_config(
            &mut fresh,
            user.path(),
            "resnet50",
            "Offline",
            1,
            &mut count,
        );
        assert_eq!(
            fresh.qsl_rng_seed, 0,
            "the embedded conf is applied once a process"
        );
        assert!(out.detail_errors[0].starts_with("Multiple conf files"));
    }

    #[test]
    fn a_bad_value_rejects_the_whole_file() {
        let user = conf("*.Offline.target_qps = 99\n*.*.min_duration = fast\n");
        let mut s = TestSettings::default();
        let out = alone(&mut s, user.path(), "m", "Offline", 2);
        assert_eq!(out.code, EINVAL);
        assert_eq!(s, TestSettings::default());
        assert_eq!(
            out.detail_errors,
            vec!["value needs to be integer or double, line=2".to_string()]
        );
        let note = &out.notes[0];
        assert_eq!((note.line, note.key.as_str()), (2, "*.*.min_duration"));
    }

    #[test]
    fn missing_file_and_silent_skips_are_reported() {
        let mut s = TestSettings::default();
        let out = alone(
            &mut s,
            Path::new("/nonexistent/user.conf"),
            "m",
            "Offline",
            2,
        );
        assert_eq!(out.code, ENOENT);
        let user = conf("*.*.min_duraton = 5\n*.*.min_query_count=7\nmin_duration = 3\n");
        let out = alone(&mut s, user.path(), "m", "Offline", 2);
        assert_eq!(out.code, OK);
        assert_eq!(s.min_query_count, 100);
        let lines: Vec<usize> = out.notes.iter().map(|n| n.line).collect();
        assert_eq!(lines, vec![1, 2, 3], "{:?}", out.notes);
        // Measured with mlcommons-loadgen 6.0.17: a comment after a value is
        // read as a second value, and rejects the file.
        let user = conf("*.*.min_query_count = 3 # three\n");
        let out = alone(&mut s, user.path(), "m", "Offline", 2);
        assert_eq!(out.code, EINVAL);
    }

    #[test]
    fn lookups_follow_loadgens_order_and_units() {
        let user = conf(
            "*.*.min_duration = 1000\nm.*.min_duration = 2000\n*.Offline.min_duration = 3000\n\
             *.Server.target_qps = 7\n*.Server.target_latency = 0.5\nm.Server.target_latency_percentile = 97\n",
        );
        let mut s = TestSettings::default();
        alone(&mut s, user.path(), "m", "Offline", 2);
        assert_eq!(s.min_duration_ms, 3000);
        assert_eq!(
            s.server_target_qps, 7.0,
            "Server keys apply whatever the scenario"
        );
        assert_eq!(s.server_target_latency_ns, 0, "LoadGen reads 0.5 ms as 0");
        assert!((s.server_target_latency_percentile - 0.97).abs() < 1e-12);
    }
}
