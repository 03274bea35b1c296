//! `result.json`, schema version 1.
//!
//! Versioning: a field is never renamed or given a new meaning within a
//! version; new optional fields may be added. Readers check
//! `schema_version` and refuse versions they do not know.
//!
//! Two kinds share the version: `inference` ([`RunResult`], `joulebench run`)
//! and `command` ([`CommandResult`], `joulebench measure` and `merge`). They
//! share the header (version, status, system, command line), `timed_window`,
//! `power` and `files`, field for field; a command result has no `workload`,
//! `settings` or `performance`, and adds `measured_command`, `phases`,
//! `phase_totals` and `nodes`. Readers that take either use [`read_any`] and
//! dispatch on `kind`; [`read`] keeps returning inference results only. The
//! version stays 1 because no inference result changes and no field changes
//! meaning: a command result is a new kind, not a new shape of an old one.

use loadgen::stats::{LatencyStats, Validity};
use loadgen::{Mode, Scenario};
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;
pub const RESULT_FILE: &str = "result.json";
/// `kind` of a `joulebench run` result.
pub const KIND_INFERENCE: &str = "inference";
/// `kind` of a `joulebench measure` (or `merge`) result.
pub const KIND_COMMAND: &str = "command";
/// `kind` of a `joulebench train` result ([`TrainingResult`]): a command
/// result's fields plus `training`; [`read_any`] reads it as a command (the
/// training process measured from run_start to run_stop) so every report and
/// comparison shows it, and [`read_training`] reads all of it.
pub const KIND_TRAINING: &str = "training";

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
    /// A serving endpoint's requests, tokens, latencies and energy per
    /// token (`--workload openai|http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<crate::serving::ServingRecord>,
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
    /// What `joulebench accuracy` scored from the log (metric, value, counts);
    /// absent until it has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<serde_json::Value>,
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
    #[error("{path}: schema version {found} is not supported (this joulebench reads version {SCHEMA_VERSION}); use the joulebench that wrote it, or run again")]
    Version { path: String, found: u64 },
    #[error("{path}: a result of kind `{found}` where kind `{expected}` was needed")]
    Kind {
        path: String,
        found: String,
        expected: String,
    },
}

/// Reads the file and checks its version; returns its text with its `kind`.
/// Callers deserialise their type from the text, not from a
/// `serde_json::Value`, so that a missing field or a wrong type is reported
/// with its line and column.
fn read_checked(path: &std::path::Path) -> Result<(String, String), ReadError> {
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
    let kind = value
        .get("kind")
        .and_then(|v| v.as_str())
        .unwrap_or(KIND_INFERENCE)
        .to_string();
    Ok((text, kind))
}

/// Reads an inference result (`joulebench run`).
pub fn read(path: &std::path::Path) -> Result<RunResult, ReadError> {
    let (text, kind) = read_checked(path)?;
    let p = path.display().to_string();
    if kind != KIND_INFERENCE {
        return Err(ReadError::Kind {
            path: p,
            found: kind,
            expected: KIND_INFERENCE.into(),
        });
    }
    serde_json::from_str(&text).map_err(|source| ReadError::Json { path: p, source })
}

/// Reads a result of either kind.
pub fn read_any(path: &std::path::Path) -> Result<AnyResult, ReadError> {
    let (text, kind) = read_checked(path)?;
    let p = path.display().to_string();
    let json = |source| ReadError::Json {
        path: p.clone(),
        source,
    };
    match kind.as_str() {
        KIND_INFERENCE => Ok(AnyResult::Inference(Box::new(
            serde_json::from_str(&text).map_err(json)?,
        ))),
        KIND_COMMAND | KIND_TRAINING => Ok(AnyResult::Command(Box::new(
            serde_json::from_str(&text).map_err(json)?,
        ))),
        _ => Err(ReadError::Kind {
            path: p.clone(),
            found: kind,
            expected: format!("{KIND_INFERENCE}`, `{KIND_COMMAND}` or `{KIND_TRAINING}"),
        }),
    }
}

/// A result of any kind, with what the kinds share.
#[derive(Debug, Clone)]
pub enum AnyResult {
    Inference(Box<RunResult>),
    Command(Box<CommandResult>),
}

impl AnyResult {
    pub fn kind(&self) -> &str {
        match self {
            AnyResult::Inference(r) => &r.kind,
            AnyResult::Command(r) => &r.kind,
        }
    }

    pub fn status(&self) -> RunStatus {
        match self {
            AnyResult::Inference(r) => r.status,
            AnyResult::Command(r) => r.status,
        }
    }

    pub fn started_at(&self) -> &str {
        match self {
            AnyResult::Inference(r) => &r.started_at,
            AnyResult::Command(r) => &r.started_at,
        }
    }

    pub fn joulebench_version(&self) -> &str {
        match self {
            AnyResult::Inference(r) => &r.joulebench_version,
            AnyResult::Command(r) => &r.joulebench_version,
        }
    }

    pub fn command(&self) -> &[String] {
        match self {
            AnyResult::Inference(r) => &r.command,
            AnyResult::Command(r) => &r.command,
        }
    }

    pub fn system(&self) -> &crate::system::SystemDescription {
        match self {
            AnyResult::Inference(r) => &r.system,
            AnyResult::Command(r) => &r.system,
        }
    }

    pub fn timed_window(&self) -> Option<&TimedWindow> {
        match self {
            AnyResult::Inference(r) => r.timed_window.as_ref(),
            AnyResult::Command(r) => r.timed_window.as_ref(),
        }
    }

    pub fn power(&self) -> Option<&PowerRecord> {
        match self {
            AnyResult::Inference(r) => r.power.as_ref(),
            AnyResult::Command(r) => r.power.as_ref(),
        }
    }

    /// The performance of an inference run; `None` for a command.
    pub fn performance(&self) -> Option<&Performance> {
        match self {
            AnyResult::Inference(r) => r.performance.as_ref(),
            AnyResult::Command(_) => None,
        }
    }

    /// Seconds the measured work took: the timed window, or a command's wall time.
    pub fn duration_s(&self) -> Option<f64> {
        match self {
            AnyResult::Inference(r) => r.timed_window.as_ref().map(|w| w.duration_s),
            AnyResult::Command(r) => Some(r.measured_command.wall_s),
        }
    }

    /// A short name for tables: `sleep Offline` or the command's program.
    pub fn label(&self) -> String {
        match self {
            AnyResult::Inference(r) => format!("{} {}", r.workload.name, r.settings.scenario),
            AnyResult::Command(r) if r.kind == KIND_TRAINING => training_label(r),
            AnyResult::Command(r) => {
                let program = r
                    .measured_command
                    .argv
                    .first()
                    .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
                    .unwrap_or_else(|| "command".into());
                if r.nodes.is_empty() {
                    program
                } else {
                    format!("{program} ({} nodes)", r.nodes.len())
                }
            }
        }
    }
}

/// A measured command: `joulebench measure -- CMD` (one node) or `joulebench
/// merge` (several nodes' measurements summed), kind `command`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandResult {
    pub schema_version: u32,
    pub joulebench_version: String,
    /// Always `command`.
    pub kind: String,
    pub status: RunStatus,
    /// UTC, RFC 3339.
    pub started_at: String,
    /// The joulebench command line that produced this result.
    pub command: Vec<String>,
    pub system: crate::system::SystemDescription,
    pub measured_command: MeasuredCommand,
    /// From the command's start to its exit, on the run clock (absent in a
    /// merged result: each node has its own clock).
    pub timed_window: Option<TimedWindow>,
    /// Phases the command marked, in order, each with its energy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseRecord>,
    /// Per phase name: occurrences and energy summed (over nodes when merged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phase_totals: Vec<PhaseTotal>,
    /// A merged result's nodes, one per input result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeRecord>,
    /// Energy over `timed_window`; absent when no meter was used.
    #[serde(default)]
    pub power: Option<PowerRecord>,
    /// Each meter's highest power inside `timed_window`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peak_power: Vec<MeterPeak>,
    /// Files written, relative to the result's directory.
    pub files: Vec<String>,
}

/// A meter's highest power in a window: the highest average over any 0.25 s
/// span of its readings (`report::run_dir::PEAK_SPAN_S`; a single reading for
/// meters read less often), so one noisy short counter interval is not it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterPeak {
    pub meter_id: String,
    pub peak_w: f64,
}

/// The command that was run and how it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeasuredCommand {
    /// The program and its arguments, as given.
    pub argv: Vec<String>,
    /// The command's exit status, when it exited (not killed by a signal).
    pub exit_code: Option<i32>,
    /// The signal that ended the command, when one did.
    pub signal: Option<i32>,
    /// What joulebench exited with: the command's status, 128 + signal, or
    /// 126/127 when it could not be started.
    pub reported_exit_code: i32,
    /// Seconds from start to exit (the longest node's, when merged).
    pub wall_s: f64,
    /// Why the command could not be started, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_error: Option<String>,
    /// Signals received and passed on to the command, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarded_signals: Vec<String>,
    /// Mark lines that were not understood (ignored), with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mark_problems: Vec<String>,
    /// The Slurm job step this ran in, when it ran under Slurm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmContext>,
}

/// Where in a Slurm job a measurement ran (from `SLURM_*` variables).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlurmContext {
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// `SLURMD_NODENAME`.
    pub node_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_nodes: Option<u32>,
}

/// One marked phase: from its mark to the next mark (or `end`, or the command's exit).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub name: String,
    /// On the run clock.
    pub begin_ns: u64,
    pub end_ns: u64,
    pub duration_s: f64,
    /// Energy of each meter over the phase.
    pub meters: Vec<power::energy::MeterEnergy>,
    /// The system total over the phase, by the run's total rule.
    pub total: power::energy::SystemTotal,
    /// Measured energy above idle power (with `--idle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_above_idle_j: Option<f64>,
}

/// One phase name's occurrences, summed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTotal {
    pub name: String,
    pub occurrences: u32,
    /// Summed over occurrences (and over nodes when merged).
    pub duration_s: f64,
    pub measured_j: Option<f64>,
    pub estimated_j: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_above_idle_j: Option<f64>,
}

/// One node of a merged result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    pub hostname: String,
    /// The node's result folder, as given to `merge`.
    pub dir: String,
    pub status: RunStatus,
    pub reported_exit_code: i32,
    pub wall_s: f64,
    pub measured_j: Option<f64>,
    pub measured_avg_w: Option<f64>,
    pub estimated_j: Option<f64>,
    pub estimated_avg_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_above_idle_j: Option<f64>,
    /// False when any of this node's counted meters is incomplete.
    pub complete: bool,
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

/// A training result (`joulebench train`, kind `training`): the command
/// result's fields — `timed_window` is run_start → run_stop of the
/// representative run, `power` its energy to train, `phases` its `train` and
/// `eval` windows with their energy — and the training record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingResult {
    #[serde(flatten)]
    pub common: CommandResult,
    pub training: TrainingRecord,
}

/// Reads a training result (`joulebench train`).
pub fn read_training(path: &std::path::Path) -> Result<TrainingResult, ReadError> {
    let (text, kind) = read_checked(path)?;
    let p = path.display().to_string();
    if kind != KIND_TRAINING {
        return Err(ReadError::Kind {
            path: p,
            found: kind,
            expected: KIND_TRAINING.into(),
        });
    }
    serde_json::from_str(&text).map_err(|source| ReadError::Json { path: p, source })
}

/// `digits training` (from `--task` in the command line) for tables.
fn training_label(r: &CommandResult) -> String {
    let argv = &r.measured_command.argv;
    let task = argv
        .iter()
        .position(|a| a == "--task")
        .and_then(|i| argv.get(i + 1).cloned())
        .or_else(|| {
            argv.iter()
                .find_map(|a| a.strip_prefix("--task=").map(str::to_string))
        })
        .unwrap_or_else(|| "digits".into());
    format!("{task} training")
}

/// What was trained, how, and how each run went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// `digits` (time to quality) or `resnet50-synthetic` (throughput).
    pub task: String,
    pub model: String,
    /// The data and whether it is real (`synthetic_data` false) or made up.
    pub data: String,
    pub synthetic_data: bool,
    /// The devices, comma-separated (one for most runs).
    pub device: String,
    /// Each device of a data-parallel run (one replica each).
    #[serde(default)]
    pub devices: Vec<String>,
    pub dtype: String,
    /// e.g. `held-out top-1 accuracy`; absent for throughput tasks.
    #[serde(default)]
    pub quality_metric: Option<String>,
    /// The quality that ends a run as converged, 0..=1.
    #[serde(default)]
    pub target_accuracy: Option<f64>,
    /// Batch size, learning rate, optimiser, epochs, evaluation interval, …
    pub hyperparameters: serde_json::Value,
    /// True when every run reached the target (throughput tasks: every run
    /// completed its steps).
    pub converged: bool,
    pub runs: Vec<TrainingRunRecord>,
    /// Index into `runs` of the run whose window, power and phases are the
    /// result's top-level ones (the median time to train).
    pub representative_run: usize,
    /// MLPerf's score over the runs: olympic average of time to train.
    #[serde(default)]
    pub time_to_train_s: Option<OlympicRecord>,
    /// Olympic average of energy to train over the same counted runs.
    #[serde(default)]
    pub energy_to_train_j: Option<OlympicRecord>,
    /// The MLPerf Training log of each run (`result_N.txt`).
    pub mllog_files: Vec<String>,
    /// The trained weights (safetensors), when saved.
    #[serde(default)]
    pub weights_file: Option<String>,
}

/// An olympic average: the runs counted and dropped (indices into `runs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OlympicRecord {
    pub value: f64,
    pub counted: Vec<usize>,
    pub dropped: Vec<usize>,
    /// False with fewer than 3 runs: a plain mean, nothing dropped.
    pub olympic: bool,
    /// `measured` or `estimated` for energies; absent for times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<power::meter::Provenance>,
}

/// One training run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainingRunRecord {
    pub seed: u64,
    /// `converged`, `not_converged` (stopped at max epochs: MLPerf status
    /// `aborted`) or `interrupted`.
    pub status: String,
    pub converged: bool,
    pub epochs: usize,
    pub steps: u64,
    pub samples_trained: u64,
    /// run_start → run_stop, seconds.
    pub time_to_train_s: f64,
    /// init_start → init_stop (not part of time to train), seconds.
    pub init_s: f64,
    pub samples_per_s: f64,
    #[serde(default)]
    pub final_accuracy: Option<f64>,
    /// Energy over run_start → run_stop, by the run's total rule.
    #[serde(default)]
    pub energy_j: Option<f64>,
    #[serde(default)]
    pub energy_provenance: Option<power::meter::Provenance>,
    #[serde(default)]
    pub avg_w: Option<f64>,
    #[serde(default)]
    pub j_per_sample: Option<f64>,
    /// Time and energy of `train` and `eval` (and `init`, outside the window).
    #[serde(default)]
    pub phase_totals: Vec<PhaseTotal>,
    /// The quality curve: one point per evaluation.
    #[serde(default)]
    pub curve: Vec<QualityPoint>,
    /// This run's MLPerf Training log.
    pub mllog: String,
}

/// One evaluation of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityPoint {
    pub epoch: usize,
    pub samples_trained: u64,
    pub accuracy: f64,
    /// Mean training loss since the previous evaluation.
    pub train_loss: f64,
    /// Seconds since run_start.
    pub at_s: f64,
}
