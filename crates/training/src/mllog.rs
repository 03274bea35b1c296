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
