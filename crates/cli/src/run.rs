//! `joulebench run`: settings from flags and conf files, a SUT, one test,
//! and its files (`result.json` plus LoadGen's logs) in the output folder.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use harness::inference::{LoadgenTest, RunDescription};
use loadgen::conf::Applied;
use loadgen::{Mode, RunControl, Scenario, TestSettings};
use report::schema::{self, AppliedSetting, RunStatus};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use workloads::builtin::text::TextModel;
use workloads::builtin::{Built, SharedQsl};
use workloads::sleep::{ServiceTime, SleepSut};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadName {
    /// Completes every sample at once: measures the load generator itself.
    Null,
    /// Each sample takes --service-time on one of --concurrency workers.
    Sleep,
    /// ResNet-50 v1.5 image classification (MLPerf's model), batched; --device, --weights.
    Resnet50,
    /// ResNet-18 image classification (edge class), batched; --device, --weights.
    Resnet18,
    /// all-MiniLM-L6-v2 (BERT) sentence embeddings, batched; --weights, --tokenizer, --dataset.
    Minilm,
    /// GPT-2 token generation with time to first token and per output token; --max-new-tokens.
    Gpt2,
    /// The digits CNN `joulebench train` saved (--weights DIR/model.safetensors) on the 359
    /// held-out digits images (real data, real weights: accuracy mode is meaningful).
    Digits,
    /// Any ONNX model (--model-file) through ONNX Runtime, on seeded synthetic inputs of the
    /// shapes and types the model declares; --device cpu or cuda:N (onnxruntime-gpu).
    Onnx,
    /// An OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, …): --endpoint, --model (the
    /// served name), --dataset prompts.jsonl, --max-tokens; streamed answers give LoadGen's
    /// time to first token and per output token; tokens per joule of the serving node.
    Openai,
    /// A plain JSON endpoint: MLPerf's LoadGen-over-Network demo server (--endpoint BASE), or
    /// any server through --request-template and --response-pointer.
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Distribution {
    Fixed,
    Exponential,
}

#[derive(Debug, Clone, Args)]
#[command(after_long_help = "\
SETTINGS are applied in this order, later wins: LoadGen's defaults; targets that fit the \
workload (e.g. the sleep SUT's capacity as offline_expected_qps); each --conf file in turn \
(mlperf.conf, then user.conf: `model.Scenario.key = value`, `*` wildcards, times in ms, \
percentiles in percent); each --set; then --mode and --duration.

--set takes a conf key (`target_qps=500`, `min_duration=600000`, or a full \
`resnet50.Offline.target_qps=500`) in conf units, or a LoadGen TestSettings field \
(`server_target_qps=500`, `min_duration_ms=600000`) in that field's units.

OUTPUT (in --output): mlperf_log_summary.txt, mlperf_log_detail.txt, mlperf_log_accuracy.json \
(LoadGen's formats) and result.json (joulebench's schema, docs/result-schema.md).

EXIT STATUS: 0 the result is VALID; 1 it is INVALID (reasons printed); 2 the run could not \
start or failed; 130 interrupted (Ctrl-C; logs are written and the result is marked interrupted).

EXAMPLES:
  joulebench run                                   # ResNet-50 (random weights, CPU), Offline, 10 s
  joulebench run --workload sleep                  # the harness alone: 1 ms per sample
  joulebench run --scenario server --set target_qps=2000 --duration 5
  joulebench run --scenario single-stream --workload null --duration 1
  joulebench run --conf mlperf.conf --conf user.conf --model resnet50 --scenario Offline")]
pub struct RunArgs {
    /// The system under test. Default: ResNet-50 (MLPerf's image model) with seeded random
    /// weights on the CPU, which needs no GPU, meter or download.
    #[arg(long, value_enum, default_value = "resnet50")]
    workload: WorkloadName,

    /// MLPerf scenario: SingleStream, MultiStream, Server or Offline (any case; also single-stream).
    #[arg(long, default_value = "Offline")]
    scenario: Scenario,

    /// SingleStream with N loops at once, each issuing its next query when one of the N open
    /// ones completes: a closed loop at fixed concurrency (MLPerf Endpoints' load pattern; not
    /// an MLPerf scenario, and the logs say so). Needs --scenario single-stream.
    #[arg(long, value_name = "N")]
    streams: Option<u64>,

    /// Test mode: PerformanceOnly (default), AccuracyOnly, SubmissionRun, FindPeakPerformance
    /// (or performance, accuracy, submission, find-peak). Overrides the conf files' `mode`.
    #[arg(long)]
    mode: Option<Mode>,

    /// An mlperf.conf/user.conf file; repeat to layer them (later files win).
    #[arg(long = "conf", value_name = "FILE")]
    conf: Vec<PathBuf>,

    /// Override one setting (KEY=VALUE); repeatable. See below for the key forms.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,

    /// Model name for conf-file lookups (`model.Scenario.key`). Default: the workload's name.
    #[arg(long)]
    model: Option<String>,

    /// Minimum duration of the timed run, in seconds (LoadGen's min_duration_ms).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,

    /// Folder for the logs and result.json. Default: joulebench-results/<time>-<workload>-<scenario>.
    #[arg(long, short)]
    output: Option<PathBuf>,

    /// End the run if the SUT completes nothing for this many seconds while samples are outstanding.
    #[arg(long, value_name = "SECONDS", default_value = "60")]
    sut_timeout: f64,

    /// Sleep SUT: time per sample (e.g. 1ms, 250us, 2.5ms).
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    service_time: Duration,

    /// Sleep SUT: service-time distribution.
    #[arg(long, value_enum, default_value = "fixed")]
    service_distribution: Distribution,

    /// Sleep SUT: samples served in parallel.
    #[arg(long, default_value = "4")]
    concurrency: usize,

    /// Samples in the (synthetic) data set.
    #[arg(long, default_value = "1024")]
    samples: usize,

    #[command(flatten)]
    model_args: crate::model_args::ModelArgs,

    #[command(flatten)]
    text_args: crate::model_args::TextArgs,

    #[command(flatten)]
    ort_args: crate::ort_args::OrtArgs,

    #[command(flatten)]
    endpoint_args: crate::endpoint_args::EndpointArgs,

    /// Samples that fit in memory at once (the performance set). Default: all.
    #[arg(long)]
    performance_samples: Option<usize>,

    /// Seed for the sleep SUT's exponential service times.
    #[arg(long, default_value = "1")]
    seed: u64,

    /// No progress display.
    #[arg(long, short)]
    quiet: bool,

    #[command(flatten)]
    power: crate::meters::PowerArgs,
}

/// Durations like `1ms`, `250us`, `2.5ms`, `1s`, `500ns`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("'{s}' is not a duration (try 1ms, 250us, 2s)"))?;
    let seconds = match unit.trim() {
        "s" | "" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "ns" => value / 1e9,
        other => bail!("'{s}': unknown unit '{other}' (use s, ms, us or ns)"),
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("'{s}': a duration must be positive");
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Offline asks a calibrated model for this many times its calibrated rate.
const CALIBRATED_OFFLINE_HEADROOM: f64 = 1.5;

/// A serving endpoint's SUT, kept to read its requests after the run.
struct Endpoint {
    sut: Arc<endpoints::EndpointSut>,
    token_latencies: bool,
}

/// The SUT and what it can do (targets that make a sensible default run).
fn build_workload(
    args: &RunArgs,
    performance_samples: usize,
    control: &RunControl,
) -> Result<(Built, Option<Endpoint>)> {
    let accuracy = args
        .mode
        .is_some_and(|m| matches!(m, Mode::AccuracyOnly | Mode::SubmissionRun));
    let scope = crate::model_args::RunScope {
        seed: args.seed,
        samples: args.samples,
        performance_samples,
        accuracy,
    };
    let synthetic = || {
        Box::new(workloads::synthetic::SyntheticQsl::new(
            args.samples,
            performance_samples,
        ))
    };
    if matches!(args.workload, WorkloadName::Openai | WorkloadName::Http) {
        let built = args.endpoint_args.build(
            &crate::endpoint_args::EndpointScope {
                openai: args.workload == WorkloadName::Openai,
                model: args.model.as_deref(),
                dataset: args.text_args.dataset.as_deref(),
                tokenizer: args.text_args.tokenizer.as_deref(),
                max_tokens: args.text_args.max_new_tokens as u64,
                samples: args.samples,
                performance_samples,
                seed: args.seed,
                scenario: args.scenario,
            },
            control,
        )?;
        let endpoint = Endpoint {
            sut: Arc::clone(&built.sut),
            token_latencies: built.token_latencies,
        };
        return Ok((
            Built {
                sut: Box::new(built.sut),
                qsl: Box::new(built.qsl),
                parameters: built.parameters,
                // Planning figures only (a server's capacity is what the run
                // finds out): set target_qps with --set or a conf file.
                capacity_per_s: 2.0,
                offline_capacity_per_s: 2.0,
                // SingleStream generates queries for this latency: too high
                // a guess runs out of queries before the minimum duration.
                latency_ns: 5e7,
                batching: None,
            },
            Some(endpoint),
        ));
    }
    Ok((
        match args.workload {
            WorkloadName::Resnet50 | WorkloadName::Resnet18 => {
                let arch = if args.workload == WorkloadName::Resnet50 {
                    workloads::vision::Arch::ResNet50
                } else {
                    workloads::vision::Arch::ResNet18
                };
                workloads::builtin::image::build(
                    arch,
                    &args.model_args.options(&scope),
                    &args.model_args.image_options(),
                )?
            }
            WorkloadName::Minilm | WorkloadName::Gpt2 => {
                let kind = if args.workload == WorkloadName::Minilm {
                    TextModel::MiniLm
                } else {
                    TextModel::Gpt2
                };
                workloads::builtin::text::build(
                    kind,
                    &args.model_args.options(&scope),
                    &args.text_args.options(),
                )?
            }
            WorkloadName::Digits => {
                let weights = args.model_args.weights.as_deref().context(
                "--workload digits needs --weights: the model.safetensors `joulebench train` wrote",
            )?;
                let w = training::serve::build(
                    std::path::Path::new(weights),
                    &training::digits::default_path(),
                    args.model_args.device,
                    workloads::batcher::BatchPolicy {
                        max_batch: args.model_args.batch_size.max(1),
                        max_wait: args.model_args.max_wait,
                        workers: args.model_args.workers.unwrap_or(1).max(1),
                    },
                    performance_samples,
                )?;
                Built {
                    sut: Box::new(w.sut),
                    qsl: Box::new(SharedQsl(w.qsl)),
                    parameters: w.parameters,
                    capacity_per_s: w.capacity_per_s,
                    offline_capacity_per_s: w.capacity_per_s,
                    latency_ns: w.latency_ns,
                    batching: None,
                }
            }
            WorkloadName::Onnx => {
                let on_gpu = matches!(
                    args.model_args.device,
                    workloads::device::DeviceSpec::Cuda(_)
                );
                let ort = args.ort_args.options(
                    args.model_args.image_options(),
                    &args.text_args,
                    on_gpu,
                )?;
                ort_backend::build(&args.model_args.options(&scope), &ort)?
            }
            WorkloadName::Null => Built {
                qsl: synthetic(),
                sut: Box::new(workloads::null::NullSut),
                parameters: serde_json::json!({}),
                // Planning targets only: the null SUT is as fast as the harness.
                capacity_per_s: 1_000_000.0,
                offline_capacity_per_s: 1_000_000.0,
                latency_ns: 5_000.0,
                batching: None,
            },
            WorkloadName::Sleep => {
                if args.concurrency == 0 {
                    bail!("--concurrency must be at least 1");
                }
                let service = match args.service_distribution {
                    Distribution::Fixed => ServiceTime::Fixed(args.service_time),
                    Distribution::Exponential => ServiceTime::Exponential {
                        mean: args.service_time,
                        seed: args.seed,
                    },
                };
                let sut = SleepSut::new(service, args.concurrency);
                Built {
                    qsl: synthetic(),
                    capacity_per_s: sut.capacity_per_second(),
                    offline_capacity_per_s: sut.capacity_per_second(),
                    latency_ns: args.service_time.as_nanos() as f64,
                    parameters: serde_json::json!({
                        "service_time_ns": args.service_time.as_nanos() as u64,
                        "service_distribution": format!("{:?}", args.service_distribution).to_lowercase(),
                        "concurrency": args.concurrency,
                        "seed": args.seed,
                    }),
                    sut: Box::new(sut),
                    batching: None,
                }
            }
            WorkloadName::Openai | WorkloadName::Http => unreachable!("built above"),
        },
        None,
    ))
}

/// Requested settings from every source, in order, with where each came from.
fn build_settings(
    args: &RunArgs,
    workload: &Built,
    endpoint: Option<&Endpoint>,
    model: &str,
) -> Result<(TestSettings, Vec<Applied>)> {
    let mut s = TestSettings {
        scenario: args.scenario,
        ..Default::default()
    };
    // Targets that fit the workload; conf files and --set override them.
    // A model's capacity is calibrated on one batch and one worker; the
    // pipelined, batched run goes faster, and an Offline run that runs out of
    // samples before its minimum duration is INVALID: ask for more.
    let headroom = match args.workload {
        WorkloadName::Null | WorkloadName::Sleep | WorkloadName::Openai | WorkloadName::Http => 1.0,
        _ => CALIBRATED_OFFLINE_HEADROOM,
    };
    s.offline_expected_qps = workload.offline_capacity_per_s * headroom;
    s.server_target_qps = workload.capacity_per_s / 2.0;
    s.single_stream_expected_latency_ns = workload.latency_ns;
    // A generating model reports its first tokens: measure token latencies.
    s.use_token_latencies =
        args.workload == WorkloadName::Gpt2 || endpoint.is_some_and(|e| e.token_latencies);
    s.multi_stream_expected_latency_ns = workload.latency_ns
        * (s.multi_stream_samples_per_query as f64 / args.concurrency.max(1) as f64).ceil();
    if let Some(n) = args.streams {
        if args.scenario != Scenario::SingleStream || n == 0 {
            bail!(
                "--streams {n} runs N SingleStream loops at once: it needs --scenario \
                 single-stream and N of at least 1"
            );
        }
        s.closed_loop_streams = n;
    }
    let layers = loadgen::layers::Layers {
        conf_files: args.conf.clone(),
        overrides: args.set.clone(),
        mode: args.mode,
        min_duration_s: args.duration,
    };
    let applied = layers.apply(&mut s, model)?;
    Ok((s, applied))
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    run_point(args).map(|p| ExitCode::from(p.exit_code))
}

/// How a run ended: its exit status and its result.
pub struct RunOutcome {
    /// 0 VALID, 1 INVALID, 2 could not be measured, 130 interrupted.
    pub exit_code: u8,
    pub result: report::schema::RunResult,
}

impl RunArgs {
    /// These arguments as one point of a concurrency sweep: `streams`
    /// SingleStream loops, written to `outdir`.
    pub fn sweep_point(&self, streams: u64, outdir: PathBuf) -> RunArgs {
        RunArgs {
            scenario: Scenario::SingleStream,
            streams: Some(streams),
            output: Some(outdir),
            ..self.clone()
        }
    }

    /// Where the run writes (`None`: a dated folder).
    pub fn output(&self) -> Option<&std::path::Path> {
        self.output.as_deref()
    }
}

/// One run, its summary printed and its result returned.
pub fn run_point(args: RunArgs) -> Result<RunOutcome> {
    let workload_name = format!("{:?}", args.workload).to_lowercase();
    let model = args.model.clone().unwrap_or_else(|| workload_name.clone());
    if !(args.sut_timeout.is_finite() && args.sut_timeout > 0.0) {
        bail!("--sut-timeout must be a positive number of seconds");
    }
    let performance_samples = args.performance_samples.unwrap_or(args.samples);
    if args.samples == 0 || performance_samples == 0 {
        bail!("--samples and --performance-samples must be at least 1");
    }
    let interrupt = harness::Interrupt::on_signals("the logs");
    let control = RunControl {
        sut_timeout: Duration::from_secs_f64(args.sut_timeout),
        interrupt: interrupt.flag(),
        ..Default::default()
    };
    // Every input is checked before anything starts.
    let (workload, endpoint) = build_workload(&args, performance_samples, &control)?;
    let (settings, applied) = build_settings(&args, &workload, endpoint.as_ref(), &model)?;
    let outdir = args.output.clone().unwrap_or_else(|| {
        harness::output::default_folder(
            &chrono::Local::now(),
            &[&workload_name, &args.scenario.mlperf_name().to_lowercase()],
        )
    });
    let mut session = harness::Session::open(outdir, &args.power.options(), interrupt.clone())?;
    session.measure_idle(|s| eprintln!("measuring idle power for {s} s"))?;
    let logs = loadgen::LogSettings::in_dir(session.outdir());
    let test = LoadgenTest {
        sut: workload.sut.as_ref(),
        qsl: workload.qsl.as_ref(),
        settings: &settings,
        control: &control,
        logs: &logs,
    };
    let measured = test.measure(&mut session, |control| {
        (!args.quiet)
            .then(|| crate::progress::ProgressDisplay::start(Arc::clone(&control.progress)))
    })?;
    // A failed device must not go unnoticed.
    if !args.quiet {
        workload
            .device_work_lines()
            .iter()
            .for_each(|l| eprintln!("{l}"));
    }
    workload
        .inference_errors()
        .iter()
        .for_each(|e| eprintln!("inference error: {e}"));
    let description = RunDescription {
        command: std::env::args().collect(),
        workload: workload_name,
        conf_model: model,
        parameters: workload.parameters_after_run(),
        conf_files: args.conf.iter().map(|p| p.display().to_string()).collect(),
        applied: applied
            .iter()
            .map(|a| AppliedSetting {
                field: a.field.to_string(),
                value: a.value.clone(),
                origin: a.origin.to_string(),
            })
            .collect(),
    };
    let mut result = harness::inference::run_result(&session, description, measured)?;
    if let Some(endpoint) = &endpoint {
        let window_s = result.timed_window.as_ref().map_or(0.0, |w| w.duration_s);
        let mut serving = endpoint.sut.tally().record(window_s);
        if let Some(power) = &result.power {
            serving.energy = report::serving::token_energy(power, &serving);
        }
        result.serving = Some(serving);
    }
    let interrupted = result.status == RunStatus::Interrupted;
    session.write_json(schema::RESULT_FILE, &result)?;
    print!(
        "{}",
        report::text::run_summary(&result, &session.outdir().display().to_string())
    );
    if let Some(serving) = &result.serving {
        report::serving::lines(serving)
            .iter()
            .for_each(|l| println!("{l}"));
    }
    match &result.power {
        Some(record) => {
            println!("  energy over the timed window:");
            for line in report::text::power_lines(record) {
                println!("{line}");
            }
        }
        None if session.options().none_asked() => {}
        None => println!(
            "  energy      not measured: no usable meter (`joulebench power list` says why; \
             --power estimate --tdp W gives an estimate)"
        ),
    }
    let exit_code = if let Some(why) = endpoint.as_ref().and_then(|e| e.sut.fatal()) {
        eprintln!("error: {why}");
        2
    } else if interrupted {
        130
    } else if result.performance.as_ref().is_none_or(|p| p.valid)
        && result.accuracy.as_ref().is_none_or(|a| a.complete)
    {
        0
    } else {
        1
    };
    Ok(RunOutcome { exit_code, result })
}
