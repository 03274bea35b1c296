//! MLPerf Training logs: one `:::MLLOG {json}` line per event, as the
//! `mlperf-logging` package's `mllog` writes them and its compliance checker
//! and result summarizer read them:
//!
//! ```text
//! :::MLLOG {"namespace": "", "time_ms": 1700000000000, "event_type": "POINT_IN_TIME", "key": "eval_accuracy", "value": 0.97, "metadata": {"epoch_num": 3}}
//! ```
//!
//! Every line is flushed as it is written, so a crash or Ctrl-C leaves a
//! readable log up to that moment. Keys are the package's constants
//! (`mlperf_logging/mllog/constants.py`).
//!
//! MLPerf Power's node logs ([`write_power_log`]) are separate files,
//! `power/result_N/node_K.txt`, with `power_measurement_start`, one
//! `power_reading` (watts) per interval, `conversion_eff` and
//! `power_measurement_stop`; a switch log `sw_K.txt` carries
//! `interconnect_power_est`.

use crate::clock::RunClock;
use crate::TrainingError;
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Log keys, as `mlperf_logging.mllog.constants` spells them.
pub mod keys {
    pub const SUBMISSION_BENCHMARK: &str = "submission_benchmark";
    pub const SUBMISSION_DIVISION: &str = "submission_division";
    pub const SUBMISSION_ORG: &str = "submission_org";
    pub const SUBMISSION_PLATFORM: &str = "submission_platform";
    pub const SUBMISSION_STATUS: &str = "submission_status";
    pub const CACHE_CLEAR: &str = "cache_clear";
    pub const INIT_START: &str = "init_start";
    pub const INIT_STOP: &str = "init_stop";
    pub const RUN_START: &str = "run_start";
    pub const RUN_STOP: &str = "run_stop";
    pub const BLOCK_START: &str = "block_start";
    pub const BLOCK_STOP: &str = "block_stop";
    pub const EPOCH_START: &str = "epoch_start";
    pub const EPOCH_STOP: &str = "epoch_stop";
    pub const EVAL_START: &str = "eval_start";
    pub const EVAL_STOP: &str = "eval_stop";
    pub const EVAL_ACCURACY: &str = "eval_accuracy";
    pub const SEED: &str = "seed";
    pub const GLOBAL_BATCH_SIZE: &str = "global_batch_size";
    pub const GRADIENT_ACCUMULATION_STEPS: &str = "gradient_accumulation_steps";
    pub const TRAIN_SAMPLES: &str = "train_samples";
    pub const EVAL_SAMPLES: &str = "eval_samples";
    pub const OPT_NAME: &str = "opt_name";
    pub const OPT_BASE_LR: &str = "opt_base_learning_rate";
    pub const OPT_ADAMW_BETA_1: &str = "opt_adamw_beta_1";
    pub const OPT_ADAMW_BETA_2: &str = "opt_adamw_beta_2";
    pub const OPT_ADAMW_EPSILON: &str = "opt_adamw_epsilon";
    pub const OPT_ADAMW_WEIGHT_DECAY: &str = "opt_adamw_weight_decay";
    pub const MAX_STEPS: &str = "max_steps";
    /// The run disclosure the common rules require from 6.1.0 on
    /// ([`super::RunDisclosure`]).
    pub const LOWEST_NUMERICAL_PRECISION_IN_LINEAR: &str = "lowest_numerical_precision_in_linear";
    pub const LOWEST_NUMERICAL_PRECISION_IN_ATTN: &str = "lowest_numerical_precision_in_attn";
    pub const LOWEST_NUMERICAL_PRECISION_IN_COMM: &str = "lowest_numerical_precision_in_comm";
    pub const TENSOR_PARALLELISM: &str = "tensor_parallelism";
    pub const PIPELINE_PARALLELISM: &str = "pipeline_parallelism";
    pub const CONTEXT_PARALLELISM: &str = "context_parallelism";
    pub const EXPERT_PARALLELISM: &str = "expert_parallelism";
    pub const MICRO_BATCH_SIZE: &str = "micro_batch_size";
    pub const CONFIG_FILENAME: &str = "config_filename";
    pub const POWER_MEASUREMENT_START: &str = "power_measurement_start";
    pub const POWER_MEASUREMENT_STOP: &str = "power_measurement_stop";
    pub const POWER_READING: &str = "power_reading";
    pub const CONVERSION_EFF: &str = "conversion_eff";
    pub const INTERCONNECT_POWER_EST: &str = "interconnect_power_est";
    /// Metadata keys.
    pub const EPOCH_NUM: &str = "epoch_num";
    pub const FIRST_EPOCH_NUM: &str = "first_epoch_num";
    pub const EPOCH_COUNT: &str = "epoch_count";
    pub const SAMPLES_COUNT: &str = "samples_count";
    pub const STATUS: &str = "status";
    /// `run_stop` status values.
    pub const SUCCESS: &str = "success";
    pub const ABORTED: &str = "aborted";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    PointInTime,
    IntervalStart,
    IntervalEnd,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::PointInTime => "POINT_IN_TIME",
            EventType::IntervalStart => "INTERVAL_START",
            EventType::IntervalEnd => "INTERVAL_END",
        }
    }
}

/// One log line's text.
pub fn line(time_ms: u64, event: EventType, key: &str, value: &Value, metadata: &Value) -> String {
    // Field order as mllog writes it (namespace, time_ms, event_type, key,
    // value, metadata); readers parse JSON, so the order is for humans.
    format!(
        ":::MLLOG {{\"namespace\": \"\", \"time_ms\": {time_ms}, \"event_type\": \"{}\", \"key\": {}, \"value\": {}, \"metadata\": {}}}",
        event.as_str(),
        Value::String(key.to_string()),
        value,
        if metadata.is_object() { metadata.clone() } else { json!({}) }
    )
}

/// An MLPerf log file being written, stamped from the run's clock.
pub struct MlLog {
    path: PathBuf,
    out: BufWriter<File>,
    clock: RunClock,
}

impl MlLog {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path, clock: RunClock) -> Result<MlLog, TrainingError> {
        let file = File::create(path).map_err(|source| TrainingError::Log {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(MlLog {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            clock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn clock(&self) -> RunClock {
        self.clock
    }

    /// Writes one event at run-clock time `ns`.
    pub fn write_at(
        &mut self,
        ns: u64,
        event: EventType,
        key: &str,
        value: Value,
        metadata: Value,
    ) -> Result<(), TrainingError> {
        let text = line(self.clock.unix_ms(ns), event, key, &value, &metadata);
        writeln!(self.out, "{text}")
            .and_then(|_| self.out.flush())
            .map_err(|source| TrainingError::Log {
                path: self.path.clone(),
                source,
            })
    }

    /// A point-in-time event now; returns its run-clock time.
    pub fn event(
        &mut self,
        key: &str,
        value: Value,
        metadata: Value,
    ) -> Result<u64, TrainingError> {
        let ns = self.clock.now_ns();
        self.write_at(ns, EventType::PointInTime, key, value, metadata)?;
        Ok(ns)
    }

    /// An interval start now; returns its run-clock time.
    pub fn start(&mut self, key: &str, metadata: Value) -> Result<u64, TrainingError> {
        let ns = self.clock.now_ns();
        self.write_at(ns, EventType::IntervalStart, key, Value::Null, metadata)?;
        Ok(ns)
    }

    /// An interval end now; returns its run-clock time.
    pub fn end(&mut self, key: &str, metadata: Value) -> Result<u64, TrainingError> {
        let ns = self.clock.now_ns();
        self.write_at(ns, EventType::IntervalEnd, key, Value::Null, metadata)?;
        Ok(ns)
    }
}

/// Who submits what: the `submission_*` lines that open every log.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Benchmark name (ours: `joulebench_digits`, `joulebench_resnet50_synthetic`).
    pub benchmark: String,
    /// `submission_org`.
    pub org: String,
    /// `closed` or `open`.
    pub division: String,
    /// `onprem`, `cloud` or `research`.
    pub status: String,
    /// `submission_platform`: the system (host name, device).
    pub platform: String,
}

impl Submission {
    pub fn write(&self, log: &mut MlLog) -> Result<(), TrainingError> {
        for (key, value) in [
            (keys::SUBMISSION_BENCHMARK, &self.benchmark),
            (keys::SUBMISSION_ORG, &self.org),
            (keys::SUBMISSION_DIVISION, &self.division),
            (keys::SUBMISSION_STATUS, &self.status),
            (keys::SUBMISSION_PLATFORM, &self.platform),
        ] {
            log.event(key, json!(value), json!({}))?;
        }
        Ok(())
    }
}

/// An MLPerf Training ruleset whose logs joulebench writes: the version the
/// `mlperf-logging` compliance checker is run with (`--ruleset`), which
/// decides which keys its `training_<version>/common.yaml` requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ruleset {
    V5_1_0,
    /// The precision, parallelism and config keys exist, all optional.
    V6_0_0,
    /// The precision, parallelism and config keys are required, exactly
    /// one of each.
    V6_1_0,
}

impl Ruleset {
    /// Oldest first.
    pub const KNOWN: [Ruleset; 3] = [Ruleset::V5_1_0, Ruleset::V6_0_0, Ruleset::V6_1_0];
    /// What `joulebench train` writes unless told otherwise.
    pub const NEWEST: Ruleset = Ruleset::V6_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            Ruleset::V5_1_0 => "5.1.0",
            Ruleset::V6_0_0 => "6.0.0",
            Ruleset::V6_1_0 => "6.1.0",
        }
    }

    /// Whether the ruleset defines the [`RunDisclosure`] keys (5.1.0 does
    /// not: its logs carry none of them).
    pub fn defines_run_disclosure(self) -> bool {
        self >= Ruleset::V6_0_0
    }

    /// The known versions, for messages: `5.1.0, 6.0.0, 6.1.0`.
    pub fn known_list() -> String {
        Ruleset::KNOWN
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for Ruleset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Ruleset {
    type Err = TrainingError;

    fn from_str(s: &str) -> Result<Ruleset, TrainingError> {
        let given = s.trim();
        Ruleset::KNOWN
            .into_iter()
            .find(|r| r.as_str() == given)
            .ok_or_else(|| TrainingError::UnknownRuleset {
                given: given.to_string(),
                known: Ruleset::known_list(),
            })
    }
}

/// A numerical precision as the rulesets spell it (`fp64`, `fp32`,
/// `tf32`, `bfloat16`, `fp16`: the ones joulebench can compute in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp64,
    Fp32,
    /// f32 operands multiplied on tensor cores with a 10-bit mantissa.
    Tf32,
    Bfloat16,
    Fp16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp64 => "fp64",
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bfloat16 => "bfloat16",
            Precision::Fp16 => "fp16",
        }
    }
}

/// What a run discloses about how it computed, from ruleset 6.1.0 on
/// required in every log (`common.yaml`: exactly one of each key):
/// the lowest precision in linear layers (matrix products and
/// convolutions), in attention and in communication; tensor, pipeline,
/// context and expert parallelism (joulebench does none of them: 1); the
/// micro batch (each data-parallel replica's batch per step); and the file
/// that holds the run's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDisclosure {
    pub linear: Precision,
    /// `None`: the model has no attention layers. The key is still
    /// required; it then carries `linear`'s value and says so in its
    /// metadata.
    pub attention: Option<Precision>,
    /// `None`: one replica, nothing is communicated. Written like a missing
    /// `attention`.
    pub communication: Option<Precision>,
    pub micro_batch_size: usize,
    /// A file name in the result folder.
    pub config_filename: String,
}

impl RunDisclosure {
    /// Writes the disclosure keys that `ruleset` defines (none for 5.1.0).
    pub fn write(&self, log: &mut MlLog, ruleset: Ruleset) -> Result<(), TrainingError> {
        if !ruleset.defines_run_disclosure() {
            return Ok(());
        }
        let precision = |p: Option<Precision>, absent: &str| match p {
            Some(p) => (json!(p.as_str()), json!({})),
            None => (json!(self.linear.as_str()), json!({ "note": absent })),
        };
        let (attn, attn_meta) = precision(
            self.attention,
            "the model has no attention layers: the value is the linear layers' precision",
        );
        let (comm, comm_meta) = precision(
            self.communication,
            "one replica: nothing is communicated; the value is the linear layers' precision",
        );
        for (key, value, metadata) in [
            (
                keys::LOWEST_NUMERICAL_PRECISION_IN_LINEAR,
                json!(self.linear.as_str()),
                json!({}),
            ),
            (keys::LOWEST_NUMERICAL_PRECISION_IN_ATTN, attn, attn_meta),
            (keys::LOWEST_NUMERICAL_PRECISION_IN_COMM, comm, comm_meta),
            (keys::TENSOR_PARALLELISM, json!(1), json!({})),
            (keys::PIPELINE_PARALLELISM, json!(1), json!({})),
            (keys::CONTEXT_PARALLELISM, json!(1), json!({})),
            (keys::EXPERT_PARALLELISM, json!(1), json!({})),
            (
                keys::MICRO_BATCH_SIZE,
                json!(self.micro_batch_size),
                json!({}),
            ),
            (
                keys::CONFIG_FILENAME,
                json!(self.config_filename),
                json!({}),
            ),
        ] {
            log.event(key, value, metadata)?;
        }
        Ok(())
    }
}

/// Power over a window as MLPerf Power's node log: `readings` are (run-clock
/// ns at the end of an interval, average watts over that interval), in time
/// order, covering `start_ns..stop_ns`. The result summarizer integrates
/// them as Σ W × (t − t_prev) from `power_measurement_start`, which gives
/// back the energy they were made from.
pub fn write_power_log(
    path: &Path,
    clock: RunClock,
    host: &str,
    start_ns: u64,
    stop_ns: u64,
    readings: &[(u64, f64)],
) -> Result<(), TrainingError> {
    let mut log = MlLog::create(path, clock)?;
    log.write_at(
        start_ns,
        EventType::IntervalStart,
        keys::POWER_MEASUREMENT_START,
        Value::Null,
        json!({"host": host}),
    )?;
    // Our meters measure what they measure (DC at the device for NVML and
    // RAPL, AC at the wall for PTDaemon/IPMI): no conversion is applied.
    log.write_at(
        start_ns,
        EventType::PointInTime,
        keys::CONVERSION_EFF,
        json!(1.0),
        json!({"host": host}),
    )?;
    for &(ns, watts) in readings {
        log.write_at(
            ns,
            EventType::PointInTime,
            keys::POWER_READING,
            json!(watts),
            json!({"host": host, "unit": "W"}),
        )?;
    }
    log.write_at(
        stop_ns,
        EventType::IntervalEnd,
        keys::POWER_MEASUREMENT_STOP,
        Value::Null,
        json!({"host": host}),
    )
}

/// MLPerf Power's switch log for a system with no interconnect switch: one
/// node, so the interconnect's power is zero, said so rather than left out.
pub fn write_single_node_switch_log(
    path: &Path,
    clock: RunClock,
    at_ns: u64,
) -> Result<(), TrainingError> {
    let mut log = MlLog::create(path, clock)?;
    log.write_at(
        at_ns,
        EventType::PointInTime,
        keys::INTERCONNECT_POWER_EST,
        json!(0.0),
        json!({"host": "sw_0", "note": "single node: no interconnect switch in the system"}),
    )
}

/// Parses one `:::MLLOG` line (for tests and for reading our own logs back).
pub fn parse_line(text: &str) -> Option<Value> {
    let json = text.trim().strip_prefix(":::MLLOG ")?;
    serde_json::from_str(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn lines_are_mllog_json_and_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result_0.txt");
        let clock = RunClock::new(Instant::now(), 1_000.0);
        let mut log = MlLog::create(&path, clock).unwrap();
        log.write_at(
            2_000_000,
            EventType::PointInTime,
            keys::EVAL_ACCURACY,
            json!(0.5),
            json!({"epoch_num": 2}),
        )
        .unwrap();
        log.start(keys::RUN_START, json!({})).unwrap();
        // Not dropped yet: the line must already be on disk.
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(":::MLLOG {\"namespace\": \"\", \"time_ms\": 1002,"));
        let v = parse_line(lines[0]).unwrap();
        assert_eq!(v["key"], "eval_accuracy");
        assert_eq!(v["value"], 0.5);
        assert_eq!(v["metadata"]["epoch_num"], 2);
        assert_eq!(v["event_type"], "POINT_IN_TIME");
        assert_eq!(
            parse_line(lines[1]).unwrap()["event_type"],
            "INTERVAL_START"
        );
    }

    #[test]
    fn rulesets_parse_and_an_unknown_one_lists_the_known() {
        assert_eq!("6.1.0".parse::<Ruleset>().unwrap(), Ruleset::V6_1_0);
        assert_eq!(" 5.1.0".parse::<Ruleset>().unwrap(), Ruleset::V5_1_0);
        assert_eq!(Ruleset::NEWEST, *Ruleset::KNOWN.last().unwrap());
        for r in Ruleset::KNOWN {
            assert_eq!(r.to_string().parse::<Ruleset>().unwrap(), r);
        }
        let e = "6.1".parse::<Ruleset>().unwrap_err().to_string();
        assert!(
            e.contains("\"6.1\"") && e.contains("5.1.0, 6.0.0, 6.1.0"),
            "{e}"
        );
    }

    fn disclosure_lines(ruleset: Ruleset, d: &RunDisclosure) -> Vec<Value> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result_0.txt");
        let mut log = MlLog::create(&path, RunClock::new(Instant::now(), 0.0)).unwrap();
        d.write(&mut log, ruleset).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        text.lines().filter_map(parse_line).collect()
    }

    #[test]
    fn the_run_disclosure_is_written_only_where_the_ruleset_defines_it() {
        let d = RunDisclosure {
            linear: Precision::Bfloat16,
            attention: None,
            communication: Some(Precision::Fp32),
            micro_batch_size: 16,
            config_filename: "train_config.json".into(),
        };
        assert!(disclosure_lines(Ruleset::V5_1_0, &d).is_empty());
        let lines = disclosure_lines(Ruleset::V6_1_0, &d);
        let value = |key: &str| {
            let found: Vec<&Value> = lines.iter().filter(|l| l["key"] == key).collect();
            assert_eq!(found.len(), 1, "{key}: {lines:?}");
            found[0].clone()
        };
        assert_eq!(lines.len(), 9);
        assert_eq!(
            value(keys::LOWEST_NUMERICAL_PRECISION_IN_LINEAR)["value"],
            "bfloat16"
        );
        // No attention: the linear precision, and a note saying why.
        let attn = value(keys::LOWEST_NUMERICAL_PRECISION_IN_ATTN);
        assert_eq!(attn["value"], "bfloat16");
        assert!(attn["metadata"]["note"]
            .as_str()
            .unwrap()
            .contains("no attention"));
        assert_eq!(
            value(keys::LOWEST_NUMERICAL_PRECISION_IN_COMM)["value"],
            "fp32"
        );
        for key in [
            keys::TENSOR_PARALLELISM,
            keys::PIPELINE_PARALLELISM,
            keys::CONTEXT_PARALLELISM,
            keys::EXPERT_PARALLELISM,
        ] {
            assert_eq!(value(key)["value"], 1, "{key}");
        }
        assert_eq!(value(keys::MICRO_BATCH_SIZE)["value"], 16);
        assert_eq!(value(keys::CONFIG_FILENAME)["value"], "train_config.json");
        // 6.0.0 defines the same keys (optional there): written the same.
        let key_values = |ls: &[Value]| -> Vec<(Value, Value)> {
            ls.iter()
                .map(|l| (l["key"].clone(), l["value"].clone()))
                .collect()
        };
        assert_eq!(
            key_values(&disclosure_lines(Ruleset::V6_0_0, &d)),
            key_values(&lines)
        );
    }

    #[test]
    fn a_power_log_integrates_back_to_its_energy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node_0.txt");
        let clock = RunClock::new(Instant::now(), 0.0);
        // 10 W for 1 s then 30 W for 1 s: 40 J.
        write_power_log(
            &path,
            clock,
            "node_0",
            0,
            2_000_000_000,
            &[(1_000_000_000, 10.0), (2_000_000_000, 30.0)],
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().filter_map(parse_line).collect();
        // The summarizer's integration: Σ W × Δt(ms) from the start, / 1000.
        let mut prev = 0.0;
        let mut joules = 0.0;
        for l in &lines {
            let t = l["time_ms"].as_f64().unwrap();
            if l["key"] == keys::POWER_MEASUREMENT_START {
                prev = t;
            }
            if l["key"] == keys::POWER_READING {
                joules += l["value"].as_f64().unwrap() * (t - prev) / 1000.0;
                prev = t;
            }
        }
        assert!((joules - 40.0).abs() < 1e-9, "{joules}");
        assert_eq!(lines.last().unwrap()["key"], keys::POWER_MEASUREMENT_STOP);
    }
}
