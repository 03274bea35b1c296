//! What the user asked for: [`TestSettings`], with every field MLPerf LoadGen's
//! `TestSettings` has, under the same names and defaults, so a configuration
//! written for LoadGen means the same thing here.
//!
//! What a run *effectively* uses after defaults and scenario rules is
//! [`crate::effective::EffectiveSettings`]; both are logged.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The four MLPerf inference scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scenario {
    SingleStream,
    MultiStream,
    Server,
    Offline,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::SingleStream,
        Scenario::MultiStream,
        Scenario::Server,
        Scenario::Offline,
    ];

    /// The name MLPerf logs and conf files use.
    pub fn mlperf_name(self) -> &'static str {
        match self {
            Scenario::SingleStream => "SingleStream",
            Scenario::MultiStream => "MultiStream",
            Scenario::Server => "Server",
            Scenario::Offline => "Offline",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mlperf_name())
    }
}

/// Accepts MLPerf names in any case (`Offline`, `singlestream`) and kebab or
/// snake case (`single-stream`, `multi_stream`).
/// A scenario name that is none of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scenario '{given}': expected one of SingleStream, MultiStream, Server, Offline \
     (any case, or kebab-case like single-stream)"
)]
pub struct UnknownScenario {
    pub given: String,
}

/// A mode name that is none of LoadGen's four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown mode '{given}': expected PerformanceOnly, AccuracyOnly, SubmissionRun or \
     FindPeakPerformance (or performance, accuracy, submission, find-peak)"
)]
pub struct UnknownMode {
    pub given: String,
}

impl FromStr for Scenario {
    type Err = UnknownScenario;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let folded: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_' && *c != ' ')
            .flat_map(char::to_lowercase)
            .collect();
        match folded.as_str() {
            "singlestream" => Ok(Scenario::SingleStream),
            "multistream" => Ok(Scenario::MultiStream),
            "server" => Ok(Scenario::Server),
            "offline" => Ok(Scenario::Offline),
            _ => Err(UnknownScenario { given: s.into() }),
        }
    }
}

/// LoadGen's test modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Accuracy run followed by a performance run.
    SubmissionRun,
    /// Every sample once, responses logged to `mlperf_log_accuracy.json`.
    AccuracyOnly,
    /// Timed run; no responses logged (unless sampled for audit).
    PerformanceOnly,
    /// Binary search for the highest valid Server QPS.
    FindPeakPerformance,
}

impl Mode {
    pub fn mlperf_name(self) -> &'static str {
        match self {
            Mode::SubmissionRun => "SubmissionRun",
            Mode::AccuracyOnly => "AccuracyOnly",
            Mode::PerformanceOnly => "PerformanceOnly",
            Mode::FindPeakPerformance => "FindPeakPerformance",
        }
    }

    /// The integer the conf files' `mode` key uses.
    pub fn from_conf_value(v: u64) -> Option<Mode> {
        match v {
            0 => Some(Mode::SubmissionRun),
            1 => Some(Mode::AccuracyOnly),
            2 => Some(Mode::PerformanceOnly),
            3 => Some(Mode::FindPeakPerformance),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mlperf_name())
    }
}

/// Accepts MLPerf names in any case and short forms: `performance`,
/// `accuracy`, `submission`, `find-peak`.
impl FromStr for Mode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let folded: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_' && *c != ' ')
            .flat_map(char::to_lowercase)
            .collect();
        match folded.as_str() {
            "submissionrun" | "submission" => Ok(Mode::SubmissionRun),
            "accuracyonly" | "accuracy" => Ok(Mode::AccuracyOnly),
            "performanceonly" | "performance" => Ok(Mode::PerformanceOnly),
            "findpeakperformance" | "findpeak" => Ok(Mode::FindPeakPerformance),
            _ => Err(UnknownMode { given: s.into() }),
        }
    }
}

/// Requested settings, field for field LoadGen's `mlperf::TestSettings`
/// (same names, units in the names, same defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestSettings {
    pub scenario: Scenario,
    pub mode: Mode,

    pub single_stream_expected_latency_ns: f64,
    pub single_stream_target_latency_percentile: f64,

    pub multi_stream_expected_latency_ns: f64,
    pub multi_stream_target_latency_percentile: f64,
    pub multi_stream_samples_per_query: u64,

    pub server_target_qps: f64,
    pub server_target_latency_ns: u64,
    pub server_target_latency_percentile: f64,
    pub server_coalesce_queries: bool,
    pub server_find_peak_qps_decimals_of_precision: i32,
    pub server_find_peak_qps_boundary_step_size: f64,
    /// 0 means no limit.
    pub server_max_async_queries: u64,
    pub server_num_issue_query_threads: u64,

    pub offline_expected_qps: f64,

    pub sample_concatenate_permutation: bool,

    pub min_duration_ms: u64,
    /// 0 means no limit.
    pub max_duration_ms: u64,
    pub min_query_count: u64,
    /// 0 means no limit.
    pub max_query_count: u64,

    pub qsl_rng_seed: u64,
    pub sample_index_rng_seed: u64,
    pub schedule_rng_seed: u64,
    pub accuracy_log_rng_seed: u64,
    pub accuracy_log_probability: f64,
    pub accuracy_log_sampling_target: u64,

    pub test05: bool,
    pub test05_qsl_rng_seed: u64,
    pub test05_sample_index_rng_seed: u64,
    pub test05_schedule_rng_seed: u64,

    pub print_timestamps: bool,
    pub performance_issue_unique: bool,
    pub performance_issue_same: bool,
    pub performance_issue_same_index: u64,
    /// 0 means "use the QSL's performance sample count".
    pub performance_sample_count_override: u64,
    /// 0 means "use the QSL's total sample count".
    pub accuracy_sample_count_override: u64,

    pub use_token_latencies: bool,
    pub server_ttft_latency: u64,
    pub server_tpot_latency: u64,
    pub infer_token_latencies: bool,
    pub token_latency_scaling_factor: u64,

    /// joulebench's extension, not LoadGen's: SingleStream with this many
    /// streams at once, each issuing its next query as soon as one of the
    /// open ones completes (a closed loop at fixed concurrency: MLPerf
    /// Endpoints' load pattern). 0 and 1 are LoadGen's SingleStream.
    #[serde(default)]
    pub closed_loop_streams: u64,
}

impl Default for TestSettings {
    fn default() -> Self {
        TestSettings {
            scenario: Scenario::SingleStream,
            mode: Mode::PerformanceOnly,
            single_stream_expected_latency_ns: 1_000_000.0,
            single_stream_target_latency_percentile: 0.90,
            multi_stream_expected_latency_ns: 8_000_000.0,
            multi_stream_target_latency_percentile: 0.99,
            multi_stream_samples_per_query: 8,
            server_target_qps: 1.0,
            server_target_latency_ns: 100_000_000,
            server_target_latency_percentile: 0.99,
            server_coalesce_queries: false,
            server_find_peak_qps_decimals_of_precision: 1,
            server_find_peak_qps_boundary_step_size: 1.0,
            server_max_async_queries: 0,
            server_num_issue_query_threads: 0,
            offline_expected_qps: 1.0,
            sample_concatenate_permutation: false,
            min_duration_ms: 10_000,
            max_duration_ms: 0,
            min_query_count: 100,
            max_query_count: 0,
            qsl_rng_seed: 0,
            sample_index_rng_seed: 0,
            schedule_rng_seed: 0,
            accuracy_log_rng_seed: 0,
            accuracy_log_probability: 0.0,
            accuracy_log_sampling_target: 0,
            test05: false,
            test05_qsl_rng_seed: 0,
            test05_sample_index_rng_seed: 0,
            test05_schedule_rng_seed: 0,
            print_timestamps: false,
            performance_issue_unique: false,
            performance_issue_same: false,
            performance_issue_same_index: 0,
            performance_sample_count_override: 0,
            accuracy_sample_count_override: 0,
            use_token_latencies: false,
            server_ttft_latency: 100_000_000,
            server_tpot_latency: 100_000_000,
            infer_token_latencies: false,
            token_latency_scaling_factor: 0,
            closed_loop_streams: 1,
        }
    }
}

/// A setting that cannot run, found before anything starts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid setting {field} = {value}: {reason}")]
pub struct SettingsError {
    pub field: &'static str,
    pub value: String,
    pub reason: String,
}

fn invalid(field: &'static str, value: impl fmt::Display, reason: &str) -> SettingsError {
    SettingsError {
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

impl TestSettings {
    /// Rejects settings that cannot produce a meaningful run. LoadGen logs
    /// some of these as errors and carries on; we refuse before starting,
    /// because a run that silently used other values is worse than none.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let positive = |field, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(field, v, "must be a positive number"))
            }
        };
        let percentile = |field, v: f64| {
            if v > 0.0 && v < 1.0 {
                Ok(())
            } else {
                Err(invalid(
                    field,
                    v,
                    "must be a fraction between 0 and 1 (e.g. 0.99)",
                ))
            }
        };
        match self.scenario {
            Scenario::SingleStream => {
                positive(
                    "single_stream_expected_latency_ns",
                    self.single_stream_expected_latency_ns,
                )?;
                percentile(
                    "single_stream_target_latency_percentile",
                    self.single_stream_target_latency_percentile,
                )?;
            }
            Scenario::MultiStream => {
                positive(
                    "multi_stream_expected_latency_ns",
                    self.multi_stream_expected_latency_ns,
                )?;
                percentile(
                    "multi_stream_target_latency_percentile",
                    self.multi_stream_target_latency_percentile,
                )?;
                if self.multi_stream_samples_per_query == 0 {
                    return Err(invalid(
                        "multi_stream_samples_per_query",
                        0,
                        "must be at least 1",
                    ));
                }
            }
            Scenario::Server => {
                positive("server_target_qps", self.server_target_qps)?;
                if self.server_target_latency_ns == 0 {
                    return Err(invalid("server_target_latency_ns", 0, "must be positive"));
                }
                percentile(
                    "server_target_latency_percentile",
                    self.server_target_latency_percentile,
                )?;
                if self.mode == Mode::FindPeakPerformance
                    && self
                        .server_find_peak_qps_boundary_step_size
                        .partial_cmp(&0.0)
                        != Some(std::cmp::Ordering::Greater)
                {
                    return Err(invalid(
                        "server_find_peak_qps_boundary_step_size",
                        self.server_find_peak_qps_boundary_step_size,
                        "must be positive",
                    ));
                }
            }
            Scenario::Offline => positive("offline_expected_qps", self.offline_expected_qps)?,
        }
        if self.mode == Mode::FindPeakPerformance && self.scenario != Scenario::Server {
            return Err(invalid(
                "mode",
                self.mode,
                "finding peak performance is only supported in the Server scenario",
            ));
        }
        if self.max_duration_ms != 0 && self.min_duration_ms > self.max_duration_ms {
            return Err(invalid(
                "min_duration_ms",
                self.min_duration_ms,
                &format!("is greater than max_duration_ms ({})", self.max_duration_ms),
            ));
        }
        if self.max_query_count != 0 && self.min_query_count > self.max_query_count {
            return Err(invalid(
                "min_query_count",
                self.min_query_count,
                &format!("is greater than max_query_count ({})", self.max_query_count),
            ));
        }
        if !(0.0..=1.0).contains(&self.accuracy_log_probability) {
            return Err(invalid(
                "accuracy_log_probability",
                self.accuracy_log_probability,
                "must be between 0 and 1",
            ));
        }
        if self.performance_issue_unique && self.performance_issue_same {
            return Err(invalid(
                "performance_issue_same",
                true,
                "cannot be set together with performance_issue_unique",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_parse_in_every_spelling() {
        for (text, want) in [
            ("Offline", Scenario::Offline),
            ("offline", Scenario::Offline),
            ("SingleStream", Scenario::SingleStream),
            ("single-stream", Scenario::SingleStream),
            ("MULTI_STREAM", Scenario::MultiStream),
            ("server", Scenario::Server),
        ] {
            assert_eq!(text.parse::<Scenario>(), Ok(want), "{text}");
        }
        let err = "batch".parse::<Scenario>().unwrap_err();
        assert_eq!(err.given, "batch");
        assert!(
            err.to_string().contains("unknown scenario 'batch'"),
            "{err}"
        );
    }

    #[test]
    fn modes_parse_long_and_short() {
        assert_eq!("PerformanceOnly".parse::<Mode>(), Ok(Mode::PerformanceOnly));
        assert_eq!("accuracy".parse::<Mode>(), Ok(Mode::AccuracyOnly));
        assert_eq!("find-peak".parse::<Mode>(), Ok(Mode::FindPeakPerformance));
        assert!("fast".parse::<Mode>().is_err());
    }

    #[test]
    fn defaults_are_loadgens() {
        let s = TestSettings::default();
        assert_eq!(s.min_duration_ms, 10_000);
        assert_eq!(s.min_query_count, 100);
        assert_eq!(s.server_target_latency_ns, 100_000_000);
        assert_eq!(s.multi_stream_samples_per_query, 8);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn settings_that_cannot_run_are_refused() {
        let mut s = TestSettings {
            scenario: Scenario::Server,
            server_target_qps: 0.0,
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "server_target_qps");
        s.server_target_qps = -5.0;
        assert!(s.validate().is_err());
        let s = TestSettings {
            min_duration_ms: 5000,
            max_duration_ms: 1000,
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "min_duration_ms");
        let s = TestSettings {
            min_query_count: 10,
            max_query_count: 5,
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "min_query_count");
        let s = TestSettings {
            scenario: Scenario::Offline,
            offline_expected_qps: f64::NAN,
            ..Default::default()
        };
        assert!(s.validate().is_err());
        let s = TestSettings {
            mode: Mode::FindPeakPerformance,
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "mode");
    }
}
