//! A training campaign: `runs` runs of one task, run i with seed `seed + i`,
//! each with its own MLPerf log (`result_i.txt`), one after another on the
//! session's clock. What comes back is each finished run's timings, phases
//! and quality curve; energy and scores are `results`' business.

use crate::clock::RunClock;
use crate::digits::Digits;
use crate::mllog::{MlLog, Ruleset, Submission};
use crate::throughput::ThroughputConfig;
use crate::trainer::{DigitsConfig, Ending, EvalPoint, PhaseSpan};
use crate::{TrainingError, VarMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// What is trained, with everything a run needs.
pub enum Task {
    /// Time to quality: the digits CNN on the real digits (read from
    /// `source`), to a target.
    Digits {
        data: Digits,
        source: std::path::PathBuf,
        config: DigitsConfig,
    },
    /// Throughput: ResNet-50 training steps on synthetic inputs.
    Resnet50Synthetic(ThroughputConfig),
}

impl Task {
    pub fn name(&self) -> &'static str {
        match self {
            Task::Digits { .. } => "digits",
            Task::Resnet50Synthetic(_) => "resnet50-synthetic",
        }
    }

    /// The benchmark name in the MLPerf log (not one of MLPerf's own).
    pub fn benchmark(&self) -> &'static str {
        match self {
            Task::Digits { .. } => "joulebench_digits",
            Task::Resnet50Synthetic(_) => "joulebench_resnet50_synthetic",
        }
    }

    /// Whether runs end at a quality target (else they run a set number of steps).
    pub fn has_target(&self) -> bool {
        matches!(self, Task::Digits { .. })
    }
}

/// The runs to make and how to log them.
pub struct Campaign {
    pub task: Task,
    pub runs: usize,
    /// Seed of the first run; run i uses `seed + i`.
    pub seed: u64,
    /// `submission_org` in the MLPerf logs.
    pub org: String,
    /// `submission_platform`: host and devices.
    pub platform: String,
    pub ruleset: Ruleset,
    /// The run's configuration file, as the logs name it (`config_filename`).
    pub config_file: String,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// One finished run, whatever the task.
pub struct FinishedRun {
    pub seed: u64,
    pub ending: Ending,
    pub epochs: usize,
    pub steps: u64,
    pub samples: u64,
    pub init_s: f64,
    pub run_start_ns: u64,
    pub run_stop_ns: u64,
    pub phases: Vec<PhaseSpan>,
    pub curve: Vec<EvalPoint>,
    /// The run's MLPerf log, relative to the output folder.
    pub mllog: String,
    /// The trained weights (digits).
    pub weights: Option<VarMap>,
    /// The model's trainable parameters.
    pub parameters: usize,
    /// Data-parallel runs: how gradients were averaged.
    pub gradient_sync: Option<&'static str>,
}

impl FinishedRun {
    pub fn seconds(&self) -> f64 {
        self.run_stop_ns.saturating_sub(self.run_start_ns) as f64 / 1e9
    }
}

/// What the runs gave: those that finished, and the error that stopped the
/// next one (its log ends with `run_stop` aborted).
pub struct CampaignOutcome {
    pub done: Vec<FinishedRun>,
    pub failure: Option<(usize, TrainingError)>,
}

impl Campaign {
    pub fn digits_config(&self, seed: u64) -> Option<DigitsConfig> {
        match &self.task {
            Task::Digits { config, .. } => Some(DigitsConfig {
                seed,
                ..config.clone()
            }),
            Task::Resnet50Synthetic(_) => None,
        }
    }

    /// Every setting the runs use, defaults filled in: what
    /// `train_config.json` holds (the logs' `config_filename`).
    pub fn settings(&self, command: &[String]) -> serde_json::Value {
        let (devices, micro_batch, mut task) = match &self.task {
            Task::Digits { source, config, .. } => {
                let mut h = config.hyperparameters();
                h["data"] = serde_json::json!(source.display().to_string());
                (vec![config.device], config.batch_size, h)
            }
            Task::Resnet50Synthetic(config) => (
                config.devices.clone(),
                config.batch_per_device(),
                config.hyperparameters(),
            ),
        };
        if let Some(map) = task.as_object_mut() {
            for (key, value) in [
                (
                    "joulebench_version",
                    serde_json::json!(env!("CARGO_PKG_VERSION")),
                ),
                ("command", serde_json::json!(command)),
                ("task", serde_json::json!(self.task.name())),
                (
                    "devices",
                    serde_json::json!(devices.iter().map(|d| d.to_string()).collect::<Vec<_>>()),
                ),
                ("seed", serde_json::json!(self.seed)),
                ("runs", serde_json::json!(self.runs)),
                ("micro_batch_size", serde_json::json!(micro_batch)),
                ("mlperf_ruleset", serde_json::json!(self.ruleset.as_str())),
                ("submission_org", serde_json::json!(self.org)),
            ] {
                map.insert(key.into(), value);
            }
        }
        task
    }

    /// Every run in turn into `outdir`, until one fails or `stop` is set.
    pub fn run(&self, outdir: &Path, clock: RunClock, stop: &AtomicBool) -> CampaignOutcome {
        let mut done = Vec::new();
        for i in 0..self.runs {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let seed = self.seed.wrapping_add(i as u64);
            match self.one_run(i, seed, outdir, clock, stop) {
                Ok(r) => done.push(r),
                Err(e) => {
                    return CampaignOutcome {
                        done,
                        failure: Some((i, e)),
                    }
                }
            }
        }
        CampaignOutcome {
            done,
            failure: None,
        }
    }

    /// The MLPerf log of run `i`.
    pub fn log_name(i: usize) -> String {
        format!("result_{i}.txt")
    }

    fn one_run(
        &self,
        i: usize,
        seed: u64,
        outdir: &Path,
        clock: RunClock,
        stop: &AtomicBool,
    ) -> Result<FinishedRun, TrainingError> {
        let log_name = Self::log_name(i);
        let mut log = MlLog::create(&outdir.join(&log_name), clock)?;
        Submission {
            benchmark: self.task.benchmark().into(),
            org: self.org.clone(),
            // Not one of MLPerf's benchmarks, so never the closed division.
            division: "open".into(),
            status: "research".into(),
            platform: self.platform.clone(),
        }
        .write(&mut log)?;
        let run = i + 1;
        let runs = self.runs;
        let say = |line: String| {
            if self.progress {
                eprintln!("run {run}/{runs}: {line}");
            }
        };
        match &self.task {
            Task::Digits { data, config, .. } => {
                let cfg = DigitsConfig {
                    seed,
                    ..config.clone()
                };
                cfg.run_disclosure(&self.config_file)
                    .write(&mut log, self.ruleset)?;
                let mut progress = Progress {
                    progress: self.progress,
                    run,
                    runs,
                };
                let o = crate::trainer::train_digits(data, &cfg, &mut log, stop, &mut progress)?;
                say(format!(
                    "{} after {} epochs, {:.3} s to train",
                    match o.ending {
                        Ending::Converged => "converged",
                        Ending::NotConverged => "NOT converged (target not reached)",
                        Ending::Interrupted => "interrupted",
                    },
                    o.epochs,
                    o.time_to_train_s()
                ));
                Ok(FinishedRun {
                    seed,
                    ending: o.ending,
                    epochs: o.epochs,
                    steps: o.steps,
                    samples: o.samples_trained,
                    init_s: o.run_start_ns.saturating_sub(o.init_start_ns) as f64 / 1e9,
                    run_start_ns: o.run_start_ns,
                    run_stop_ns: o.run_stop_ns,
                    phases: o.phases,
                    curve: o.curve,
                    mllog: log_name,
                    weights: Some(o.weights),
                    parameters: o.parameters,
                    gradient_sync: None,
                })
            }
            Task::Resnet50Synthetic(config) => {
                let cfg = ThroughputConfig {
                    seed,
                    ..config.clone()
                };
                cfg.run_disclosure(&self.config_file)
                    .write(&mut log, self.ruleset)?;
                say(format!(
                    "ResNet-50 on {}, batch {}, {} warm-up + {} timed steps",
                    device_names(&cfg.devices),
                    cfg.batch_size,
                    cfg.warmup_steps,
                    cfg.steps
                ));
                let mut step_progress = |step: u64, steps: u64| {
                    if step == steps || step.is_multiple_of(5) {
                        say(format!("step {step}/{steps}"));
                    }
                };
                let o = crate::throughput::train_resnet50_synthetic(
                    &cfg,
                    &mut log,
                    stop,
                    &mut step_progress,
                )?;
                say(format!(
                    "{:.2} samples/s ({} steps in {:.3} s, mean loss {:.3})",
                    o.samples_per_s(),
                    o.steps,
                    o.seconds(),
                    o.mean_loss
                ));
                let init_s = o
                    .phases
                    .first()
                    .map_or(0.0, |p| p.end_ns.saturating_sub(p.begin_ns) as f64 / 1e9);
                Ok(FinishedRun {
                    seed,
                    ending: o.ending,
                    epochs: 1,
                    steps: o.steps,
                    samples: o.samples,
                    init_s,
                    run_start_ns: o.run_start_ns,
                    run_stop_ns: o.run_stop_ns,
                    phases: o.phases,
                    curve: Vec::new(),
                    mllog: log_name,
                    weights: None,
                    parameters: o.parameters,
                    gradient_sync: Some(o.gradient_sync),
                })
            }
        }
    }
}

/// `cuda:0,cuda:1`: the devices as results and progress lines name them.
pub fn device_names(devices: &[workloads::device::DeviceSpec]) -> String {
    devices
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Progress of a digits run: each evaluation on stderr.
struct Progress {
    progress: bool,
    run: usize,
    runs: usize,
}

impl crate::trainer::Observer for Progress {
    fn evaluated(&mut self, p: &EvalPoint, target: f64) {
        if self.progress {
            eprintln!(
                "run {}/{} epoch {:>3}: held-out accuracy {:6.2}% (target {:.2}%), train loss {:.4}, {:.2} s",
                self.run,
                self.runs,
                p.epoch,
                p.accuracy * 100.0,
                target * 100.0,
                p.train_loss,
                p.at_s
            );
        }
    }
}
