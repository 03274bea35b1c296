//! `joulebench train`: time to train and energy to train, the MLPerf
//! Training way (and training throughput at scale), with the power sampler
//! around the runs and energy computed over each run's run_start → run_stop
//! and over each phase (training blocks, evaluations).
//!
//! The output folder is laid out as an MLPerf Training benchmark folder, so
//! the `mlperf-logging` result summarizer reads it: `result_N.txt` (one
//! MLPerf log per run) and, with a meter, `power/result_N/node_0.txt` and
//! `sw_0.txt`; beside them `result.json` (kind `training`), the sampler's
//! `power/*.csv` and the trained weights `model.safetensors`.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use power::energy::{self, SystemTotal, TotalPart, Window};
use power::sampler::SamplerReport;
use report::schema::{
    self, CommandResult, MeasuredCommand, OlympicRecord, PhaseRecord, QualityPoint, RunStatus,
    TimedWindow, TrainingRecord, TrainingResult, TrainingRunRecord, UnusableMeter,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use training::clock::RunClock;
use training::digits::Digits;
use training::mllog::{MlLog, Submission};
use training::trainer::{DigitsConfig, Ending, EvalPoint, PhaseSpan};
use workloads::device::DeviceSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Task {
    /// Time to quality: a small CNN on scikit-learn's real 8×8 digits, to --target-accuracy.
    Digits,
    /// Throughput: ResNet-50 training steps on synthetic ImageNet-shaped inputs, no target.
    #[value(name = "resnet50-synthetic")]
    Resnet50Synthetic,
}

impl Task {
    fn name(self) -> &'static str {
        match self {
            Task::Digits => "digits",
            Task::Resnet50Synthetic => "resnet50-synthetic",
        }
    }

    /// The benchmark name in the MLPerf log (not one of MLPerf's own).
    fn benchmark(self) -> &'static str {
        match self {
            Task::Digits => "joulebench_digits",
            Task::Resnet50Synthetic => "joulebench_resnet50_synthetic",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    F32,
    Bf16,
    F16,
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
TASKS:
  digits              a 38k-parameter CNN on scikit-learn's real 8×8 handwritten digits \
(1438 training images, 359 held out: every fifth image, fixed), AdamW, trained until the \
held-out top-1 accuracy reaches --target-accuracy, evaluated every --eval-every epochs. A run \
that has not reached it after --max-epochs stops with MLPerf status `aborted`: not converged, \
exit status 1. Data: bench/data/fetch_digits.sh puts it in \
${JOULEBENCH_CACHE:-~/.cache/joulebench}/digits/digits.csv (or give --data).
  resnet50-synthetic  ResNet-50 training steps (batch norm in training mode, AdamW) on \
synthetic 3×224×224 inputs with random labels: samples/s and J/sample over --steps timed steps \
after --warmup-steps untimed ones. No quality target; the result says the data is synthetic.

SCORING: with --runs N, run i uses seed --seed + i; time to train is MLPerf's olympic average \
(the fastest and the slowest run dropped; a run that did not converge is the dropped slowest; \
two such runs leave no score). Energy to train is averaged over the same runs.

OUTPUT (--output): result.json (kind `training`; `joulebench report`/`compare` read it), \
result_N.txt (MLPerf Training log per run), power/*.csv (meter samples), \
power/result_N/node_0.txt + sw_0.txt (MLPerf Power logs), model.safetensors (digits: the \
trained weights; `joulebench run --workload digits --weights DIR/model.safetensors`).

EXIT STATUS: 0 converged (every run); 1 a run did not converge; 2 error (e.g. NaN loss: the \
MLPerf log is complete and marked aborted); 130 interrupted.

EXAMPLES:
  bench/data/fetch_digits.sh && joulebench train -o train-digits
  joulebench train --runs 5 --target-accuracy 0.97 --power rapl -o digits-5runs
  joulebench train --task resnet50-synthetic --device cuda --batch-size 64 --steps 50 -o rn50")]
pub struct TrainArgs {
    /// What to train.
    #[arg(long, value_enum, default_value = "digits")]
    task: Task,

    /// Where training runs: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: DeviceSpec,

    /// resnet50-synthetic: data-parallel training on several devices, one replica each: `all`
    /// (every GPU), GPU indices (`0,1`) or device names (`cpu,cpu`). --batch-size is the global
    /// batch, split evenly; gradients are averaged every step (NCCL in a build with the `nccl`
    /// feature, else through host memory). Overrides --device.
    #[arg(long, value_name = "LIST")]
    devices: Option<String>,

    /// Seed of the first run (weights, shuffling, synthetic data); run i uses seed + i.
    #[arg(long, default_value = "1")]
    seed: u64,

    /// Runs; with 3 or more, time to train is the olympic average (fastest and slowest dropped).
    #[arg(long, default_value = "1")]
    runs: usize,

    /// digits: held-out top-1 accuracy that ends a run as converged (0..1).
    #[arg(long, default_value = "0.97")]
    target_accuracy: f64,

    /// digits: stop a run that has not converged after this many epochs (MLPerf status aborted).
    #[arg(long, default_value = "40")]
    max_epochs: usize,

    /// digits: evaluate on the held-out set every this many epochs.
    #[arg(long, default_value = "1", value_name = "EPOCHS")]
    eval_every: usize,

    /// Samples per training step (the global batch size).
    #[arg(long, default_value = "32")]
    batch_size: usize,

    /// AdamW learning rate. Default: 0.003 (digits), 0.001 (resnet50-synthetic).
    #[arg(long)]
    learning_rate: Option<f64>,

    /// digits: the data set file (scikit-learn's digits.csv).
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,

    /// resnet50-synthetic: timed training steps.
    #[arg(long, default_value = "20")]
    steps: u64,

    /// resnet50-synthetic: untimed steps before run_start.
    #[arg(long, default_value = "2")]
    warmup_steps: u64,

    /// resnet50-synthetic: input side in pixels (ImageNet: 224).
    #[arg(long, default_value = "224", value_name = "PIXELS")]
    image_size: usize,

    /// resnet50-synthetic: weights and activations type (digits trains in f32).
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DtypeArg,

    /// `submission_org` in the MLPerf log.
    #[arg(long, default_value = "joulebench")]
    submission_org: String,

    /// Folder for result.json and the logs. Default: joulebench-results/<time>-train-<task>.
    #[arg(long, short)]
    output: Option<PathBuf>,

    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,

    /// Testing only: make the loss NaN at this step to check divergence handling.
    #[arg(long, hide = true, value_name = "STEP")]
    inject_nan_at_step: Option<u64>,

    #[command(flatten)]
    power: crate::meters::PowerArgs,
}

fn parse_device(s: &str) -> std::result::Result<DeviceSpec, workloads::device::UnknownDevice> {
    s.parse()
}

/// `cuda:0,cuda:1`: the devices as results and progress lines name them.
fn device_names(devices: &[DeviceSpec]) -> String {
    devices
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// One finished run, whatever the task.
struct RunDone {
    task: Task,
    seed: u64,
    ending: Ending,
    epochs: usize,
    steps: u64,
    samples: u64,
    init_s: f64,
    run_start_ns: u64,
    run_stop_ns: u64,
    phases: Vec<PhaseSpan>,
    curve: Vec<EvalPoint>,
    mllog: String,
    weights: Option<training::VarMap>,
    /// Data-parallel runs: how gradients were averaged.
    gradient_sync: Option<&'static str>,
}

impl RunDone {
    fn seconds(&self) -> f64 {
        self.run_stop_ns.saturating_sub(self.run_start_ns) as f64 / 1e9
    }
}

struct Progress {
    quiet: bool,
    run: usize,
    runs: usize,
}

impl training::trainer::Observer for Progress {
    fn evaluated(&mut self, p: &EvalPoint, target: f64) {
        if !self.quiet {
            eprintln!(
                "run {}/{} epoch {:>3}: held-out accuracy {:6.2}% (target {:.2}%), train loss {:.4}, {:.2} s",
                self.run + 1,
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

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    let command: Vec<String> = std::env::args().collect();
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    // Every input is checked before anything starts.
    let data = match args.task {
        Task::Digits => {
            let path = args
                .data
                .clone()
                .unwrap_or_else(training::digits::default_path);
            let d = Digits::load(&path).context("reading the digits data set")?;
            if !args.quiet {
                let (train, held) = d.split();
                eprintln!(
                    "digits: {} images from {} ({} training, {} held out)",
                    d.len(),
                    path.display(),
                    train.len(),
                    held.len()
                );
            }
            Some(d)
        }
        Task::Resnet50Synthetic => None,
    };
    let devices = match (&args.devices, args.task) {
        (None, _) => vec![args.device],
        (Some(list), Task::Resnet50Synthetic) => crate::model_workload::device_list(list)?,
        (Some(_), Task::Digits) => bail!(
            "--devices: the digits task trains on one device; choose it with --device \
             (data-parallel training is the resnet50-synthetic task's)"
        ),
    };
    let device_text = device_names(&devices);
    let digits_cfg = |seed: u64| DigitsConfig {
        device: args.device,
        seed,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate.unwrap_or(0.003),
        weight_decay: 1e-4,
        target_accuracy: args.target_accuracy,
        max_epochs: args.max_epochs,
        eval_every: args.eval_every,
        inject_nan_at_step: args.inject_nan_at_step,
    };
    if args.task == Task::Digits {
        digits_cfg(args.seed).check()?;
    }
    let dtype = match args.dtype {
        DtypeArg::F32 => training::DType::F32,
        DtypeArg::Bf16 => training::DType::BF16,
        DtypeArg::F16 => training::DType::F16,
    };
    let throughput_cfg = |seed: u64| training::throughput::ThroughputConfig {
        devices: devices.clone(),
        dtype,
        seed,
        batch_size: args.batch_size,
        steps: args.steps,
        warmup_steps: args.warmup_steps,
        image_side: args.image_size,
        learning_rate: args.learning_rate.unwrap_or(0.001),
    };

    if args.task == Task::Resnet50Synthetic {
        throughput_cfg(args.seed).check()?;
    }

    let started_at = chrono::Utc::now();
    let outdir = args.output.clone().unwrap_or_else(|| {
        PathBuf::from("joulebench-results").join(format!(
            "{}-train-{}",
            started_at.format("%Y%m%d-%H%M%S"),
            args.task.name()
        ))
    });
    std::fs::create_dir_all(&outdir)
        .with_context(|| format!("creating the output folder {}", outdir.display()))?;
    let selection = args.power.select()?;
    let unusable: Vec<UnusableMeter> = selection
        .unusable
        .iter()
        .map(|u| UnusableMeter {
            source: u.source.clone(),
            domain: u.domain.clone(),
            reason: u.error.to_string(),
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    install_interrupt_handler(Arc::clone(&stop));

    // The run's single clock: MLPerf log times, phases and power samples.
    let anchor = Instant::now();
    let anchor_unix_ms = started_at
        .timestamp_nanos_opt()
        .map_or(started_at.timestamp_millis() as f64, |ns| ns as f64 / 1e6);
    let clock = RunClock::new(anchor, anchor_unix_ms);
    let mut plans = args.power.options().plans(selection.meters);
    let mut idle = None;
    if let (Some(seconds), false) = (args.power.idle, plans.is_empty()) {
        eprintln!("measuring idle power for {seconds} s");
        let (measured, back) = crate::energy::measure_idle(&outdir, anchor, plans, seconds)?;
        idle = Some(measured);
        plans = back;
    }
    let sampler = if plans.is_empty() {
        None
    } else {
        Some(crate::energy::start(&outdir, anchor, plans)?)
    };

    let platform = format!(
        "{} {device_text}",
        report::system::SystemDescription::detect().hostname,
    );
    let mut done: Vec<RunDone> = Vec::new();
    let mut failure = None;
    for i in 0..args.runs {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let seed = args.seed.wrapping_add(i as u64);
        let log_name = format!("result_{i}.txt");
        match one_run(
            &args,
            i,
            seed,
            &log_name,
            &outdir,
            clock,
            &platform,
            &stop,
            data.as_ref(),
            &digits_cfg,
            &throughput_cfg,
        ) {
            Ok(r) => done.push(r),
            Err(e) => {
                failure = Some(e.context(format!(
                    "run {} of {} (seed {seed}); its MLPerf log {} ends with run_stop aborted",
                    i + 1,
                    args.runs,
                    outdir.join(&log_name).display()
                )));
                break;
            }
        }
    }
    // The sampler stops (its logs close) whatever happened to the runs.
    let report = sampler.map(|s| s.stop());
    if let Some(e) = failure {
        return Err(e);
    }
    if done.is_empty() {
        bail!("interrupted before the first run started; nothing measured");
    }

    let total_ids = &args.power.total;
    let idle_total_w = idle
        .as_ref()
        .and_then(|m| idle_total(report.as_ref(), m, total_ids));
    // Per run: energy to train, and each phase's energy.
    let mut run_records = Vec::new();
    let mut run_phases: Vec<Vec<PhaseRecord>> = Vec::new();
    for r in &done {
        let (record, phases) = run_record(r, report.as_ref(), total_ids, idle_total_w)?;
        run_records.push(record);
        run_phases.push(phases);
    }
    // MLPerf Power logs, one node file per run, for the result summarizer.
    let mut files = vec![schema::RESULT_FILE.to_string()];
    files.extend(done.iter().map(|r| r.mllog.clone()));
    if let Some(rep) = &report {
        for (i, r) in done.iter().enumerate() {
            match mlperf_power_logs(
                &outdir,
                i,
                r,
                rep,
                total_ids,
                clock,
                args.power.power_interval,
            ) {
                Ok(mut written) => files.append(&mut written),
                Err(e) => eprintln!("warning: MLPerf power log of run {}: {e:#}", i + 1),
            }
        }
    }

    // Scores: olympic average of time to train over converged runs; energy
    // over the same counted runs.
    let converged_times: Vec<Option<f64>> = done
        .iter()
        .map(|r| (r.ending == Ending::Converged).then(|| r.seconds()))
        .collect();
    let time_score = training::olympic::olympic_average(&converged_times);
    let energy_score = time_score.as_ref().and_then(|s| {
        let energies: Option<Vec<f64>> =
            s.counted.iter().map(|&i| run_records[i].energy_j).collect();
        energies.map(|e| OlympicRecord {
            value: e.iter().sum::<f64>() / e.len() as f64,
            counted: s.counted.clone(),
            dropped: s.dropped.clone(),
            olympic: s.olympic,
            provenance: run_records[s.counted[0]].energy_provenance,
        })
    });
    // The representative run: the median time to train.
    let mut by_time: Vec<usize> = (0..done.len()).collect();
    by_time.sort_by(|&a, &b| done[a].seconds().total_cmp(&done[b].seconds()));
    let rep_i = by_time[(by_time.len() - 1) / 2];
    let rep = &done[rep_i];
    let window = (rep.run_start_ns, rep.run_stop_ns.max(rep.run_start_ns + 1));
    let power = match &report {
        Some(rep_report) => Some(crate::energy::record(
            rep_report,
            window,
            &crate::energy::RunCounts {
                // Offline's efficiency metric is samples per joule: here,
                // training samples processed per joule.
                scenario: "Offline",
                samples: rep.samples,
                queries: 0,
            },
            idle.as_ref(),
            unusable,
            args.power.power_interval,
            &outdir,
            None,
            total_ids,
        )?),
        None => None,
    };
    if let Some(p) = &power {
        files.extend(p.logs.iter().map(|l| l.file.clone()));
    }
    let weights_file = match (&rep.weights, args.task) {
        (Some(w), Task::Digits) => {
            let name = "model.safetensors";
            save_weights(w, &outdir.join(name))?;
            files.push(name.into());
            Some(name.to_string())
        }
        _ => None,
    };
    let interrupted =
        stop.load(Ordering::Relaxed) || done.iter().any(|r| r.ending == Ending::Interrupted);
    let all_converged =
        done.len() == args.runs && done.iter().all(|r| r.ending == Ending::Converged);
    let exit_code: u8 = if interrupted {
        130
    } else if all_converged {
        0
    } else {
        1
    };
    let to_utc = |ns: u64| {
        (started_at + chrono::Duration::nanoseconds(i64::try_from(ns).unwrap_or(i64::MAX)))
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    };
    let top_phases: Vec<PhaseRecord> = run_phases[rep_i]
        .iter()
        .filter(|p| p.name != "init")
        .cloned()
        .collect();
    let (task_model, data_text, synthetic) = match args.task {
        Task::Digits => (
            training::model::MODEL_NAME.to_string(),
            "scikit-learn digits (UCI optical digits, real): 8×8 images, 1438 training, \
             359 held out (every fifth image)"
                .to_string(),
            false,
        ),
        Task::Resnet50Synthetic => (
            "resnet50".to_string(),
            format!(
                "synthetic ImageNet-shaped inputs: 3×{s}×{s} seeded normal pixels, random labels \
                 of 1000 classes, one batch reused (data loading not measured); throughput only",
                s = args.image_size
            ),
            true,
        ),
    };
    let hyperparameters = match args.task {
        Task::Digits => serde_json::json!({
            "optimizer": "adamw",
            "learning_rate": args.learning_rate.unwrap_or(0.003),
            "weight_decay": 1e-4,
            "global_batch_size": args.batch_size,
            "max_epochs": args.max_epochs,
            "eval_every_epochs": args.eval_every,
            "parameters": 38_730,
        }),
        Task::Resnet50Synthetic => serde_json::json!({
            "optimizer": "adamw",
            "learning_rate": args.learning_rate.unwrap_or(0.001),
            "global_batch_size": args.batch_size,
            "timed_steps": args.steps,
            "warmup_steps": args.warmup_steps,
            "image_side": args.image_size,
            "batch_norm": if devices.len() > 1 {
                "training mode (each replica's own batch statistics)"
            } else {
                "training mode (batch statistics)"
            },
            "parameters": 25_557_032,
            "batch_per_device": args.batch_size / devices.len(),
            "gradient_sync": done.first().and_then(|r| r.gradient_sync),
        }),
    };
    let result = TrainingResult {
        common: CommandResult {
            schema_version: schema::SCHEMA_VERSION,
            joulebench_version: env!("CARGO_PKG_VERSION").into(),
            kind: schema::KIND_TRAINING.into(),
            status: if interrupted {
                RunStatus::Interrupted
            } else {
                RunStatus::Completed
            },
            started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            command: command.clone(),
            system: report::system::SystemDescription::detect(),
            measured_command: MeasuredCommand {
                argv: command,
                exit_code: Some(i32::from(exit_code)),
                signal: None,
                reported_exit_code: i32::from(exit_code),
                wall_s: rep.seconds(),
                start_error: None,
                forwarded_signals: Vec::new(),
                mark_problems: Vec::new(),
                slurm: None,
            },
            timed_window: Some(TimedWindow {
                begin_ns: rep.run_start_ns,
                end_ns: rep.run_stop_ns,
                duration_s: rep.seconds(),
                begin_utc: to_utc(rep.run_start_ns),
                end_utc: to_utc(rep.run_stop_ns),
            }),
            phase_totals: report::phases::phase_totals(&top_phases),
            phases: top_phases,
            nodes: Vec::new(),
            power,
            peak_power: Vec::new(),
            files,
        },
        training: TrainingRecord {
            task: args.task.name().into(),
            model: task_model,
            data: data_text,
            synthetic_data: synthetic,
            device: device_text.clone(),
            devices: devices.iter().map(|d| d.to_string()).collect(),
            dtype: match args.task {
                Task::Digits => "f32".into(),
                Task::Resnet50Synthetic => format!("{dtype:?}").to_lowercase(),
            },
            quality_metric: (args.task == Task::Digits).then(|| "held-out top-1 accuracy".into()),
            target_accuracy: (args.task == Task::Digits).then_some(args.target_accuracy),
            hyperparameters,
            converged: all_converged,
            runs: run_records,
            representative_run: rep_i,
            time_to_train_s: time_score.map(|s| OlympicRecord {
                value: s.value,
                counted: s.counted,
                dropped: s.dropped,
                olympic: s.olympic,
                provenance: None,
            }),
            energy_to_train_j: energy_score,
            mllog_files: done.iter().map(|r| r.mllog.clone()).collect(),
            weights_file,
        },
    };
    let json = serde_json::to_vec_pretty(&result)?;
    atomic_file::write(&outdir.join(schema::RESULT_FILE), &json)?;
    print_summary(&result, &outdir);
    Ok(ExitCode::from(exit_code))
}

/// One run into `log_name`, whatever the task.
#[allow(clippy::too_many_arguments)]
fn one_run(
    args: &TrainArgs,
    i: usize,
    seed: u64,
    log_name: &str,
    outdir: &Path,
    clock: RunClock,
    platform: &str,
    stop: &AtomicBool,
    data: Option<&Digits>,
    digits_cfg: &dyn Fn(u64) -> DigitsConfig,
    throughput_cfg: &dyn Fn(u64) -> training::throughput::ThroughputConfig,
) -> Result<RunDone> {
    let mut log = MlLog::create(&outdir.join(log_name), clock)?;
    Submission {
        benchmark: args.task.benchmark().into(),
        org: args.submission_org.clone(),
        // Not one of MLPerf's benchmarks, so never the closed division.
        division: "open".into(),
        status: "research".into(),
        platform: platform.into(),
    }
    .write(&mut log)?;
    // `run` loads the digits data set exactly when the task is digits.
    match data {
        Some(d) => {
            let mut progress = Progress {
                quiet: args.quiet,
                run: i,
                runs: args.runs,
            };
            let o = training::trainer::train_digits(
                d,
                &digits_cfg(seed),
                &mut log,
                stop,
                &mut progress,
            )?;
            if !args.quiet {
                eprintln!(
                    "run {}/{}: {} after {} epochs, {:.3} s to train",
                    i + 1,
                    args.runs,
                    match o.ending {
                        Ending::Converged => "converged",
                        Ending::NotConverged => "NOT converged (target not reached)",
                        Ending::Interrupted => "interrupted",
                    },
                    o.epochs,
                    o.time_to_train_s()
                );
            }
            Ok(RunDone {
                task: args.task,
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
                mllog: log_name.into(),
                weights: Some(o.weights),
                gradient_sync: None,
            })
        }
        None => {
            let cfg = throughput_cfg(seed);
            let quiet = args.quiet;
            let runs = args.runs;
            let mut progress = |step: u64, steps: u64| {
                if !quiet && (step == steps || step.is_multiple_of(5)) {
                    eprintln!("run {}/{runs}: step {step}/{steps}", i + 1);
                }
            };
            if !quiet {
                eprintln!(
                    "run {}/{}: ResNet-50 on {}, batch {}, {} warm-up + {} timed steps",
                    i + 1,
                    runs,
                    device_names(&cfg.devices),
                    cfg.batch_size,
                    cfg.warmup_steps,
                    cfg.steps
                );
            }
            let o = training::throughput::train_resnet50_synthetic(
                &cfg,
                &mut log,
                stop,
                &mut progress,
            )?;
            if !quiet {
                eprintln!(
                    "run {}/{}: {:.2} samples/s ({} steps in {:.3} s, mean loss {:.3})",
                    i + 1,
                    runs,
                    o.samples_per_s(),
                    o.steps,
                    o.seconds(),
                    o.mean_loss
                );
            }
            let init = o
                .phases
                .first()
                .map_or(0.0, |p| p.end_ns.saturating_sub(p.begin_ns) as f64 / 1e9);
            Ok(RunDone {
                task: args.task,
                seed,
                ending: o.ending,
                epochs: 1,
                steps: o.steps,
                samples: o.samples,
                init_s: init,
                run_start_ns: o.run_start_ns,
                run_stop_ns: o.run_stop_ns,
                phases: o.phases,
                curve: Vec::new(),
                mllog: log_name.into(),
                weights: None,
                gradient_sync: Some(o.gradient_sync),
            })
        }
    }
}

/// The counted part of a total: measured, else estimated.
fn counted(total: &SystemTotal) -> Option<&TotalPart> {
    total.measured.as_ref().or(total.estimated.as_ref())
}

/// Idle power of the meters in the measured total.
fn idle_total(
    report: Option<&SamplerReport>,
    idle: &power::sampler::IdleMeasurement,
    ids: &[String],
) -> Option<f64> {
    let report = report?;
    let last = report
        .meters
        .iter()
        .filter_map(|m| m.samples.last())
        .map(|s| s.t_ns)
        .max()?;
    let first = report
        .meters
        .iter()
        .filter_map(|m| m.samples.first())
        .map(|s| s.t_ns)
        .min()?;
    let meters = report.energy(Window::new(first, last).ok()?).ok()?;
    let total = crate::energy::total_of(&meters, ids).ok()?;
    let part = total.measured.as_ref()?;
    Some(
        idle.energies
            .iter()
            .filter(|e| part.meter_ids.contains(&e.meter_id))
            .map(|e| e.avg_w)
            .sum(),
    )
}

/// A run's record and its phases' energy.
fn run_record(
    r: &RunDone,
    report: Option<&SamplerReport>,
    ids: &[String],
    idle_total_w: Option<f64>,
) -> Result<(TrainingRunRecord, Vec<PhaseRecord>)> {
    let mut phases = Vec::new();
    let mut energy_j = None;
    let mut provenance = None;
    let mut avg_w = None;
    for p in &r.phases {
        let span = report::phases::PhaseSpan {
            name: p.name.clone(),
            begin_ns: p.begin_ns,
            end_ns: p.end_ns,
        };
        let (meters, total) = match report {
            Some(rep) => {
                let meters = rep.energy(Window::new(p.begin_ns, p.end_ns.max(p.begin_ns + 1))?)?;
                let total = crate::energy::total_of(&meters, ids)?;
                (meters, total)
            }
            None => (Vec::new(), energy::system_total(&[])),
        };
        phases.push(report::phases::record(&span, meters, total, idle_total_w));
    }
    if let Some(rep) = report {
        let meters = rep.energy(Window::new(
            r.run_start_ns,
            r.run_stop_ns.max(r.run_start_ns + 1),
        )?)?;
        let total = crate::energy::total_of(&meters, ids)?;
        if let Some(part) = counted(&total) {
            energy_j = Some(part.energy_j);
            provenance = Some(part.provenance);
            avg_w = Some(part.avg_w);
        }
    }
    let seconds = r.seconds();
    let record = TrainingRunRecord {
        seed: r.seed,
        status: match r.ending {
            // A throughput task has no target: it completes its steps.
            Ending::Converged if r.task == Task::Resnet50Synthetic => "completed",
            Ending::Converged => "converged",
            Ending::NotConverged => "not_converged",
            Ending::Interrupted => "interrupted",
        }
        .into(),
        converged: r.ending == Ending::Converged,
        epochs: r.epochs,
        steps: r.steps,
        samples_trained: r.samples,
        time_to_train_s: seconds,
        init_s: r.init_s,
        samples_per_s: if seconds > 0.0 {
            r.samples as f64 / seconds
        } else {
            0.0
        },
        final_accuracy: r.curve.last().map(|p| p.accuracy),
        energy_j,
        energy_provenance: provenance,
        avg_w,
        j_per_sample: energy_j
            .filter(|_| r.samples > 0)
            .map(|j| j / r.samples as f64),
        phase_totals: report::phases::phase_totals(&phases),
        curve: r
            .curve
            .iter()
            .map(|p| QualityPoint {
                epoch: p.epoch,
                samples_trained: p.samples_trained,
                accuracy: p.accuracy,
                train_loss: p.train_loss,
                at_s: p.at_s,
            })
            .collect(),
        mllog: r.mllog.clone(),
    };
    Ok((record, phases))
}

/// Most power readings written per run (longer runs get longer intervals).
const MAX_POWER_READINGS: u64 = 2000;

/// `power/result_N/node_0.txt` (the counted total's power, interval by
/// interval, over run_start → run_stop) and `sw_0.txt`.
fn mlperf_power_logs(
    outdir: &Path,
    i: usize,
    r: &RunDone,
    report: &SamplerReport,
    ids: &[String],
    clock: RunClock,
    interval: std::time::Duration,
) -> Result<Vec<String>> {
    let dir_rel = format!("power/result_{i}");
    let dir = outdir.join(&dir_rel);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (begin, end) = (r.run_start_ns, r.run_stop_ns.max(r.run_start_ns + 1));
    let span = end - begin;
    let step = (interval.as_nanos() as u64)
        .max(span.div_ceil(MAX_POWER_READINGS))
        .max(1);
    let mut readings = Vec::new();
    let mut t = begin;
    while t < end {
        let next = (t + step).min(end);
        let meters = report.energy(Window::new(t, next)?)?;
        let total = crate::energy::total_of(&meters, ids)?;
        let part = counted(&total).context("no meter counts in the total")?;
        readings.push((next, part.energy_j / ((next - t) as f64 / 1e9)));
        t = next;
    }
    training::mllog::write_power_log(
        &dir.join("node_0.txt"),
        clock,
        "node_0",
        begin,
        end,
        &readings,
    )?;
    training::mllog::write_single_node_switch_log(&dir.join("sw_0.txt"), clock, begin)?;
    Ok(vec![
        format!("{dir_rel}/node_0.txt"),
        format!("{dir_rel}/sw_0.txt"),
    ])
}

/// Writes through a temporary file, so a crash never leaves half a model.
fn save_weights(w: &training::VarMap, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    w.save(&tmp)
        .with_context(|| format!("saving the trained weights to {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

fn print_summary(r: &TrainingResult, outdir: &Path) {
    let t = &r.training;
    println!("joulebench train: {} ({}) on {}", t.task, t.model, t.device);
    println!("  data        {}", t.data);
    if let Some(target) = t.target_accuracy {
        println!(
            "  target      {:.2}% held-out top-1 accuracy",
            target * 100.0
        );
    }
    println!("  run  seed  status         epochs  steps   time s   samples/s  accuracy   energy J   avg W");
    for (i, run) in t.runs.iter().enumerate() {
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "-".to_string(), f);
        println!(
            "  {:>3}  {:>4}  {:<13}  {:>6}  {:>5}  {:>7.3}  {:>10.1}  {:>8}  {:>9}  {:>6}",
            i + 1,
            run.seed,
            run.status,
            run.epochs,
            run.steps,
            run.time_to_train_s,
            run.samples_per_s,
            opt(run.final_accuracy, &|a| format!("{:.2}%", a * 100.0)),
            opt(run.energy_j, &|j| format!("{j:.2}")),
            opt(run.avg_w, &|w| format!("{w:.2}")),
        );
        for p in &run.phase_totals {
            if let Some(j) = p.measured_j.or(p.estimated_j) {
                println!(
                    "        {:<6} {:>8.3} s {:>10.3} J",
                    p.name, p.duration_s, j
                );
            }
        }
    }
    let throughput = t.target_accuracy.is_none();
    if throughput {
        let rep = &t.runs[t.representative_run];
        let j = rep
            .j_per_sample
            .map_or_else(|| "-".to_string(), |j| format!("{j:.4} J/sample"));
        println!(
            "  throughput  {:.2} samples/s, {j} (median run; synthetic data)",
            rep.samples_per_s
        );
    }
    match &t.time_to_train_s {
        _ if throughput => {}
        Some(s) => println!(
            "  time to train  {:.3} s ({})",
            s.value,
            if s.olympic {
                format!("olympic average of {} runs", s.counted.len())
            } else {
                format!(
                    "mean of {} runs: fewer than 3, nothing dropped",
                    s.counted.len()
                )
            }
        ),
        None => {
            println!("  time to train  none: too many runs did not converge (MLPerf allows one)")
        }
    }
    if let Some(e) = t.energy_to_train_j.as_ref().filter(|_| !throughput) {
        let est = if e.provenance == Some(power::meter::Provenance::Estimated) {
            " (estimated)"
        } else {
            ""
        };
        println!("  energy to train  {:.3} J{est}", e.value);
    }
    if let Some(p) = &r.common.power {
        println!(
            "  energy of the median run (run {}):",
            t.representative_run + 1
        );
        for line in crate::energy::summary_lines(p) {
            println!("{line}");
        }
    } else {
        println!("  energy      not measured: no usable meter (`joulebench power list` says why; --power estimate --tdp W gives an estimate)");
    }
    println!("  results     {}", outdir.display());
}

/// First Ctrl-C: end the current run cleanly (its log gets run_stop aborted,
/// the result is written and marked interrupted). Second: leave at once.
fn install_interrupt_handler(flag: Arc<AtomicBool>) {
    let result = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing the run's logs (Ctrl-C again to quit at once)");
    });
    if let Err(e) = result {
        tracing::warn!("cannot install the Ctrl-C handler: {e}");
    }
}
