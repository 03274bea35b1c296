//! `result.json`, schema version 1.
//!
//! Versioning: a field is never renamed or given a new meaning within a
//! version; new optional fields may be added. Readers check
//! `schema_version` and refuse versions they do not know.

use loadgen::stats::{LatencyStats, Validity};
use loadgen::{Mode, Scenario};
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;
pub const RESULT_FILE: &str = "result.json";

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Ran to its end (valid or not: see `performance.valid`).
    Completed,
    /// Stopped by the user (Ctrl-C); what was measured is kept.
    Interrupted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub schema_version: u32,
    pub joulebench_version: String,
    /// `inference` for `joulebench run`.
    pub kind: String,
    pub status: RunStatus,
    /// UTC, RFC 3339.
    pub started_at: String,
    /// The command line that produced this result.
    pub command: Vec<String>,
    pub system: crate::system::SystemDescription,
    pub workload: Workload,
    pub settings: SettingsRecord,
    /// The reported performance run (absent in accuracy-only mode).
    pub performance: Option<Performance>,
    pub accuracy: Option<AccuracyRecord>,
    /// The timed window on the run clock (ns since the run's anchor) and in
    /// UTC text as LoadGen logs `power_begin`/`power_end`.
    pub timed_window: Option<TimedWindow>,
    /// Server peak search steps (FindPeakPerformance mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peak_search: Vec<PeakStep>,
    /// Energy over the timed window; absent when no meter was used.
    #[serde(default)]
    pub power: Option<PowerRecord>,
    /// Files written, relative to the result's directory.
    pub files: Vec<String>,
    pub log_warnings: u64,
    pub log_errors: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workload {
    /// The built-in or model workload name (`null`, `sleep`, …).
    pub name: String,
    pub sut_name: String,
    pub qsl_name: String,
    /// Model name used for conf-file lookups (`model.Scenario.key`).
    pub conf_model: String,
    /// Workload parameters as given (service time, concurrency, …).
    pub parameters: serde_json::Value,
}

/// What was asked for and what ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettingsRecord {
    pub scenario: Scenario,
    pub mode: Mode,
    pub conf_files: Vec<String>,
    /// Every setting changed from LoadGen's defaults, and where (`file:line`,
    /// `--set`, or a flag).
    pub applied: Vec<AppliedSetting>,
    /// LoadGen's `requested_*` values.
    pub requested: serde_json::Value,
    /// LoadGen's `effective_*` values.
    pub effective: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedSetting {
    pub field: String,
    pub value: String,
    pub origin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Performance {
    pub valid: bool,
    pub validity: Validity,
    /// The scenario's headline metric, named as MLPerf names it.
    pub metric: Metric,
    /// Samples per second over the timed window (all scenarios).
    pub throughput_samples_per_s: f64,
    pub queries_issued: u64,
    pub samples_issued: u64,
    pub samples_completed: u64,
    pub sample_latency: Option<LatencyStats>,
    pub query_latency: Option<LatencyStats>,
    pub first_token_latency: Option<LatencyStats>,
    pub time_per_output_token: Option<LatencyStats>,
    pub early_stopping: String,
    pub problems: Vec<String>,
}

/// The metric MLPerf reports for the scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    /// e.g. `samples_per_second`, `completed_samples_per_second`,
    /// `p90_latency_ns`, `p99_query_latency_ns`.
    pub name: String,
    pub value: f64,
    pub unit: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccuracyRecord {
    pub samples_issued: u64,
    pub samples_logged: u64,
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimedWindow {
    pub begin_ns: u64,
    pub end_ns: u64,
    pub duration_s: f64,
    pub begin_utc: String,
    pub end_utc: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeakStep {
    pub target_qps: f64,
    pub perf_constraints_met: bool,
    pub completed_samples_per_second: f64,
}

impl Performance {
    pub fn from_summary(p: &loadgen::stats::PerformanceSummary) -> Performance {
        let s = &p.settings;
        let percent = |x: f64| {
            let t = format!("{}", (x * 1000.0).round() / 10.0);
            t.replace('.', "_")
        };
        let metric = match s.scenario {
            Scenario::Offline => Metric {
                name: "samples_per_second".into(),
                value: p.samples_per_second(),
                unit: "samples/s".into(),
            },
            Scenario::Server => Metric {
                name: "completed_samples_per_second".into(),
                value: p.completed_samples_per_second(),
                unit: "samples/s".into(),
            },
            Scenario::SingleStream => Metric {
                name: format!("p{}_latency_ns", percent(s.target_latency_percentile)),
                value: p
                    .sample
                    .as_ref()
                    .map_or(0.0, |x| x.target.latency_ns as f64),
                unit: "ns".into(),
            },
            Scenario::MultiStream => Metric {
                name: format!("p{}_query_latency_ns", percent(s.target_latency_percentile)),
                value: p.query.as_ref().map_or(0.0, |x| x.target.latency_ns as f64),
                unit: "ns".into(),
            },
        };
        Performance {
            valid: p.validity.valid,
            validity: p.validity.clone(),
            metric,
            throughput_samples_per_s: p.throughput_samples_per_second(),
            queries_issued: p.result.queries_issued,
            samples_issued: p.result.samples_issued,
            samples_completed: p.result.samples_completed,
            sample_latency: p.sample.clone(),
            query_latency: p.query.clone(),
            first_token_latency: p.first_token.clone(),
            time_per_output_token: p.time_per_output_token.clone(),
            early_stopping: p.early_stopping.text.clone(),
            problems: p.run_problems.clone(),
        }
    }
}

/// Reading a result file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a joulebench result: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: schema version {found} is not supported (this joulebench reads version {SCHEMA_VERSION})")]
    Version { path: String, found: u64 },
}

pub fn read(path: &std::path::Path) -> Result<RunResult, ReadError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
        path: p.clone(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ReadError::Json {
            path: p.clone(),
            source,
        })?;
    let found = value
        .get("schema_version")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if found != u64::from(SCHEMA_VERSION) {
        return Err(ReadError::Version { path: p, found });
    }
    serde_json::from_value(value).map_err(|source| ReadError::Json { path: p, source })
}

/// Power and energy of a run, over the timed window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PowerRecord {
    /// Sampling interval asked for, seconds.
    pub interval_s: f64,
    /// Per meter, over the timed window.
    pub meters: Vec<power::energy::MeterEnergy>,
    /// Per meter: its log file and what went wrong while sampling.
    pub logs: Vec<MeterLog>,
    /// The system total (measured and estimated kept apart) and its rule.
    pub total: power::energy::SystemTotal,
    /// MLPerf's efficiency metric for the scenario, from the measured total
    /// (or, with none, the estimated one, labelled so).
    pub efficiency: Option<EfficiencyRecord>,
    pub idle: Option<IdleRecord>,
    /// Meters looked for but not usable, and why.
    pub unusable: Vec<UnusableMeter>,
    /// MLPerf's ranging-then-testing procedure, when a PTDaemon was used.
    pub ptd: Option<PtdRecord>,
    /// False when any counted meter's energy is incomplete (gaps, errors).
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeterLog {
    pub meter_id: String,
    /// Relative to the result's folder.
    pub file: String,
    pub samples: usize,
    pub faults: power::sampler::MeterFaults,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EfficiencyRecord {
    /// `samples_per_joule` (Offline, Server) or `joules_per_query`
    /// (SingleStream, MultiStream).
    pub name: String,
    pub value: f64,
    pub provenance: power::meter::Provenance,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleRecord {
    pub duration_s: f64,
    /// Per meter average idle power.
    pub meters: Vec<(String, f64)>,
    /// Idle power of the measured total's meters, watts.
    pub total_idle_w: Option<f64>,
    /// Measured energy in the timed window above idle, joules.
    pub energy_above_idle_j: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnusableMeter {
    pub source: String,
    pub domain: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PtdRecord {
    pub analyzer_model: String,
    /// The ranging run's folder (its logs and power log); this result is the
    /// testing run's.
    pub ranging_dir: String,
    pub testing_volts_v: f64,
    pub testing_amps_a: f64,
    pub amps_capped: bool,
}
