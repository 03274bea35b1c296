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
use report::schema;
use std::path::PathBuf;
use std::process::ExitCode;
use training::campaign::{self, Campaign};
use training::clock::RunClock;
use training::digits::Digits;
use training::mllog::Ruleset;
use training::throughput::ThroughputConfig;
use training::trainer::DigitsConfig;
use workloads::device::DeviceSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Task {
    /// Time to quality: a small CNN on scikit-learn's real 8×8 digits, to --target-accuracy.
    Digits,
    /// Throughput: ResNet-50 training steps on synthetic ImageNet-shaped inputs, no target.
    #[value(name = "resnet50-synthetic")]
    Resnet50Synthetic,
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
result_N.txt (MLPerf Training log per run, --ruleset's keys), train_config.json (the run's \
settings, the logs' config_filename), power/*.csv (meter samples), \
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
    #[arg(long, default_value = "cpu")]
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

    /// MLPerf Training ruleset the logs follow (what `mlperf-logging`'s checker is given as
    /// --ruleset): 5.1.0, 6.0.0 or 6.1.0. From 6.0.0 on, each log also says its precisions,
    /// parallelism, micro batch and config file (train_config.json).
    #[arg(long, default_value_t = Ruleset::NEWEST, value_name = "VERSION")]
    ruleset: Ruleset,

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

/// The run's configuration file, in the output folder; the MLPerf logs
/// name it as their `config_filename`.
const CONFIG_FILE: &str = "train_config.json";

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    // Every input is checked before anything starts.
    let campaign = campaign(&args)?;
    let outdir = args.output.clone().unwrap_or_else(|| {
        harness::output::default_folder(&chrono::Local::now(), &["train", campaign.task.name()])
    });
    let interrupt = harness::Interrupt::on_signals("the run's logs");
    let mut session = harness::Session::open(outdir, &args.power.options(), interrupt.clone())?;
    let command: Vec<String> = std::env::args().collect();
    session.write_json(CONFIG_FILE, &campaign.settings(&command))?;
    session.measure_idle(|s| eprintln!("measuring idle power for {s} s"))?;
    // The session's clock stamps the MLPerf logs, the phases and the power samples.
    let started_at = session.started_at();
    let anchor_unix_ms = started_at
        .timestamp_nanos_opt()
        .map_or(started_at.timestamp_millis() as f64, |ns| ns as f64 / 1e6);
    let clock = RunClock::new(session.clock().anchor(), anchor_unix_ms);
    let outdir = session.outdir().to_path_buf();
    let stop = interrupt.flag();
    let measured = session.measure(&outdir, |_: &harness::session::Clock| {
        campaign.run(&outdir, clock, &stop)
    })?;
    let outcome = measured.output;
    if let Some((i, e)) = outcome.failure {
        let seed = campaign.seed.wrapping_add(i as u64);
        return Err(anyhow::Error::new(e).context(format!(
            "run {} of {} (seed {seed}); its MLPerf log {} ends with run_stop aborted",
            i + 1,
            campaign.runs,
            outdir.join(Campaign::log_name(i)).display()
        )));
    }
    if outcome.done.is_empty() {
        bail!("interrupted before the first run started; nothing measured");
    }
    let files = vec![schema::RESULT_FILE.to_string(), CONFIG_FILE.to_string()];
    let finished = training::results::finish(
        &campaign,
        &outcome.done,
        &session,
        measured.report.as_ref(),
        clock,
        files,
    )?;
    session.write_json(schema::RESULT_FILE, &finished.result)?;
    print!(
        "{}",
        report::text::training_summary(&finished.result, &outdir.display().to_string())
    );
    Ok(ExitCode::from(finished.exit_code))
}

/// The runs the flags ask for, every input read and checked.
fn campaign(args: &TrainArgs) -> Result<Campaign> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let task = match args.task {
        Task::Digits => {
            if args.devices.is_some() {
                bail!(
                    "--devices: the digits task trains on one device; choose it with --device \
                     (data-parallel training is the resnet50-synthetic task's)"
                );
            }
            let source = args
                .data
                .clone()
                .unwrap_or_else(training::digits::default_path);
            let data = Digits::load(&source).context("reading the digits data set")?;
            if !args.quiet {
                let (train, held) = data.split();
                eprintln!(
                    "digits: {} images from {} ({} training, {} held out)",
                    data.len(),
                    source.display(),
                    train.len(),
                    held.len()
                );
            }
            let config = DigitsConfig {
                device: args.device,
                seed: args.seed,
                batch_size: args.batch_size,
                learning_rate: args.learning_rate.unwrap_or(0.003),
                weight_decay: 1e-4,
                target_accuracy: args.target_accuracy,
                max_epochs: args.max_epochs,
                eval_every: args.eval_every,
                inject_nan_at_step: args.inject_nan_at_step,
            };
            config.check()?;
            campaign::Task::Digits {
                data,
                source,
                config,
            }
        }
        Task::Resnet50Synthetic => {
            let devices = match &args.devices {
                Some(list) => workloads::builtin::device_list(list)?,
                None => vec![args.device],
            };
            let config = ThroughputConfig {
                devices,
                dtype: match args.dtype {
                    DtypeArg::F32 => training::DType::F32,
                    DtypeArg::Bf16 => training::DType::BF16,
                    DtypeArg::F16 => training::DType::F16,
                },
                seed: args.seed,
                batch_size: args.batch_size,
                steps: args.steps,
                warmup_steps: args.warmup_steps,
                image_side: args.image_size,
                learning_rate: args.learning_rate.unwrap_or(0.001),
            };
            config.check()?;
            campaign::Task::Resnet50Synthetic(config)
        }
    };
    let devices = match &task {
        campaign::Task::Digits { config, .. } => vec![config.device],
        campaign::Task::Resnet50Synthetic(config) => config.devices.clone(),
    };
    Ok(Campaign {
        task,
        runs: args.runs,
        seed: args.seed,
        org: args.submission_org.clone(),
        platform: format!(
            "{} {}",
            report::system::SystemDescription::detect().hostname,
            campaign::device_names(&devices)
        ),
        ruleset: args.ruleset,
        config_file: CONFIG_FILE.into(),
        progress: !args.quiet,
    })
}
