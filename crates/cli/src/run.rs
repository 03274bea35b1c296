//! `joulebench run`: settings from flags and conf files, a SUT, one test,
//! and its files (`result.json` plus LoadGen's logs) in the output folder.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use loadgen::conf::{apply_override, Applied, ConfFile};
use loadgen::{Mode, RunControl, Scenario, SystemUnderTest, TestSettings};
use report::schema::{self, AppliedSetting, PtdRecord, RunResult, RunStatus};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Distribution {
    Fixed,
    Exponential,
}

#[derive(Debug, Args)]
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
    #[arg(long, default_value = "Offline", value_parser = parse_scenario)]
    scenario: Scenario,

    /// Test mode: PerformanceOnly (default), AccuracyOnly, SubmissionRun, FindPeakPerformance
    /// (or performance, accuracy, submission, find-peak). Overrides the conf files' `mode`.
    #[arg(long, value_parser = parse_mode)]
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
    model_args: crate::model_workload::ModelArgs,

    #[command(flatten)]
    text_args: crate::text_workload::TextArgs,

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

fn parse_scenario(s: &str) -> std::result::Result<Scenario, loadgen::UnknownScenario> {
    s.parse()
}

fn parse_mode(s: &str) -> std::result::Result<Mode, loadgen::UnknownMode> {
    s.parse()
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

/// The SUT and what it can do (targets that make a sensible default run).
struct Workload {
    sut: Box<dyn SystemUnderTest>,
    qsl: Box<dyn loadgen::QuerySampleLibrary>,
    parameters: serde_json::Value,
    capacity_per_s: f64,
    /// Offline's planning rate: the capacity, or more where several workers
    /// per device overlap their work (image models).
    offline_capacity_per_s: f64,
    latency_ns: f64,
    /// A batching SUT's handle, read after the run for per-device work and
    /// inference errors.
    batching: Option<Arc<workloads::batcher::BatchingSut>>,
}

impl Workload {
    /// The parameters, with what each device did and any inference errors
    /// (printed too: a failed device must not go unnoticed).
    fn parameters_after_run(&self, quiet: bool) -> serde_json::Value {
        let mut parameters = self.parameters.clone();
        let Some(sut) = &self.batching else {
            return parameters;
        };
        let stats = sut.device_stats();
        let errors = sut.errors();
        if !quiet && stats.len() > 1 {
            for s in &stats {
                eprintln!(
                    "  {:<10} {:>9} samples  {:>7} batches  busy {:.2} s{}",
                    s.device,
                    s.samples,
                    s.batches,
                    s.busy_s,
                    s.failed
                        .as_deref()
                        .map(|e| format!("  FAILED: {e}"))
                        .unwrap_or_default()
                );
            }
        }
        for e in &errors {
            eprintln!("inference error: {e}");
        }
        if let Some(map) = parameters.as_object_mut() {
            map.insert("device_work".into(), serde_json::json!(stats));
            map.insert("inference_errors".into(), serde_json::json!(errors));
        }
        parameters
    }
}

fn build_workload(args: &RunArgs, performance_samples: usize) -> Result<Workload> {
    let synthetic = || {
        Box::new(workloads::synthetic::SyntheticQsl::new(
            args.samples,
            performance_samples,
        ))
    };
    Ok(match args.workload {
        WorkloadName::Resnet50 | WorkloadName::Resnet18 => {
            let arch = if args.workload == WorkloadName::Resnet50 {
                workloads::vision::Arch::ResNet50
            } else {
                workloads::vision::Arch::ResNet18
            };
            if args
                .mode
                .is_some_and(|m| matches!(m, Mode::AccuracyOnly | Mode::SubmissionRun))
                && args.model_args.weights.is_none()
            {
                bail!("accuracy mode needs real weights (--weights): random weights make accuracy meaningless");
            }
            let w = crate::model_workload::build(
                arch,
                &args.model_args,
                args.seed,
                args.samples,
                performance_samples,
            )?;
            Workload {
                sut: Box::new(Arc::clone(&w.sut)),
                qsl: Box::new(ArcQsl(w.qsl)),
                parameters: w.parameters,
                capacity_per_s: w.capacity_per_s,
                offline_capacity_per_s: w.offline_capacity_per_s,
                latency_ns: w.latency_ns,
                batching: Some(w.sut),
            }
        }
        WorkloadName::Minilm | WorkloadName::Gpt2 => {
            let kind = if args.workload == WorkloadName::Minilm {
                crate::text_workload::TextModel::MiniLm
            } else {
                crate::text_workload::TextModel::Gpt2
            };
            let w = crate::text_workload::build(
                kind,
                &args.model_args,
                &args.text_args,
                args.seed,
                args.samples,
                performance_samples,
                args.mode
                    .is_some_and(|m| matches!(m, Mode::AccuracyOnly | Mode::SubmissionRun)),
            )?;
            Workload {
                sut: w.sut,
                qsl: Box::new(ArcQsl(w.qsl)),
                parameters: w.parameters,
                capacity_per_s: w.capacity_per_s,
                offline_capacity_per_s: w.capacity_per_s,
                latency_ns: w.latency_ns,
                batching: w.batching,
            }
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
                    workers: args.model_args.workers().max(1),
                },
                performance_samples,
            )?;
            Workload {
                sut: Box::new(w.sut),
                qsl: Box::new(ArcQsl(w.qsl)),
                parameters: w.parameters,
                capacity_per_s: w.capacity_per_s,
                offline_capacity_per_s: w.capacity_per_s,
                latency_ns: w.latency_ns,
                batching: None,
            }
        }
        WorkloadName::Null => Workload {
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
            Workload {
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
    })
}

/// Requested settings from every source, in order, with where each came from.
fn build_settings(
    args: &RunArgs,
    workload: &Workload,
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
        WorkloadName::Null | WorkloadName::Sleep => 1.0,
        _ => CALIBRATED_OFFLINE_HEADROOM,
    };
    s.offline_expected_qps = workload.offline_capacity_per_s * headroom;
    s.server_target_qps = workload.capacity_per_s / 2.0;
    s.single_stream_expected_latency_ns = workload.latency_ns;
    // A generating model reports its first tokens: measure token latencies.
    s.use_token_latencies = args.workload == WorkloadName::Gpt2;
    s.multi_stream_expected_latency_ns = workload.latency_ns
        * (s.multi_stream_samples_per_query as f64 / args.concurrency.max(1) as f64).ceil();
    let mut applied = Vec::new();
    for path in &args.conf {
        let conf = ConfFile::load(path)
            .with_context(|| "reading --conf (mlperf.conf/user.conf format)")?;
        applied.extend(conf.apply(model, &mut s)?);
    }
    for assignment in &args.set {
        applied.push(apply_override(&mut s, model, assignment)?);
    }
    let origin = |flag: &str| loadgen::conf::Origin {
        file: PathBuf::from(flag),
        line: 0,
    };
    if let Some(mode) = args.mode {
        s.mode = mode;
        applied.push(Applied {
            field: "mode",
            value: mode.to_string(),
            origin: origin("--mode"),
        });
    }
    if let Some(seconds) = args.duration {
        if !(seconds.is_finite() && seconds >= 0.0) {
            bail!("--duration {seconds}: must be a non-negative number of seconds");
        }
        s.min_duration_ms = (seconds * 1000.0).round() as u64;
        applied.push(Applied {
            field: "min_duration_ms",
            value: s.min_duration_ms.to_string(),
            origin: origin("--duration"),
        });
    }
    s.validate().context("these settings cannot run")?;
    Ok((s, applied))
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let command: Vec<String> = std::env::args().collect();
    let workload_name = format!("{:?}", args.workload).to_lowercase();
    let model = args.model.clone().unwrap_or_else(|| workload_name.clone());
    if !(args.sut_timeout.is_finite() && args.sut_timeout > 0.0) {
        bail!("--sut-timeout must be a positive number of seconds");
    }
    let performance_samples = args.performance_samples.unwrap_or(args.samples);
    if args.samples == 0 || performance_samples == 0 {
        bail!("--samples and --performance-samples must be at least 1");
    }
    // Every input is checked before anything starts.
    let workload = build_workload(&args, performance_samples)?;
    let (settings, applied) = build_settings(&args, &workload, &model)?;
    let outdir = args.output.clone().unwrap_or_else(|| {
        harness::output::default_folder(
            &chrono::Local::now(),
            &[&workload_name, &args.scenario.mlperf_name().to_lowercase()],
        )
    });
    let interrupt = harness::Interrupt::on_signals("the logs");
    let mut session = harness::Session::open(outdir, &args.power.options(), interrupt.clone())?;
    let outdir = session.outdir().to_path_buf();
    let started_at = session.started_at();
    let control = RunControl {
        sut_timeout: Duration::from_secs_f64(args.sut_timeout),
        interrupt: interrupt.flag(),
        ..Default::default()
    };
    session.measure_idle(|s| eprintln!("measuring idle power for {s} s"))?;
    let pass = Pass {
        sut: workload.sut.as_ref(),
        qsl: workload.qsl.as_ref(),
        settings: &settings,
        control: &control,
        quiet: args.quiet,
    };
    let mut ptd_record = None;
    if let Some((client, model)) = session.ptd().cloned() {
        // MLPerf Power: a ranging run with auto ranges, then the testing run
        // with ranges fixed from what ranging saw. Only testing is the result.
        let name = started_at.format("%Y-%m-%d_%H-%M-%S").to_string();
        lock(&client)?
            .set_auto_ranges()
            .context("PTDaemon: setting auto ranges for the ranging run")?;
        lock(&client)?
            .go(&format!("{name}_ranging"))
            .context("PTDaemon: starting the ranging run")?;
        let (_, ranging_report) = pass.run(&mut session, &outdir.join("ranging"))?;
        lock(&client)?
            .stop()
            .context("PTDaemon: stopping the ranging run")?;
        let (max_v, max_a) = electrical_maxima(&ranging_report);
        let ranges = power::meter::ptd::ranges_from_maxima(max_v, max_a, power::meter::ptd::max_current_range_a(&model))
            .context("PTDaemon: the ranging run recorded no voltage and current; cannot fix the testing ranges")?;
        lock(&client)?
            .set_testing_ranges(&ranges)
            .context("PTDaemon: setting the testing ranges")?;
        lock(&client)?
            .go(&format!("{name}_testing"))
            .context("PTDaemon: starting the testing run")?;
        ptd_record = Some(PtdRecord {
            analyzer_model: model.clone(),
            ranging_dir: "ranging".into(),
            testing_volts_v: ranges.volts_v,
            testing_amps_a: ranges.amps_a,
            amps_capped: ranges.amps_capped,
        });
    }
    let (output, report) = pass.run(&mut session, &outdir)?;
    if let Some((client, _)) = session.ptd() {
        let mut client = lock(client)?;
        client
            .stop()
            .context("PTDaemon: stopping the testing run")?;
        // Leave the analyzer as we found it.
        client
            .set_auto_ranges()
            .context("PTDaemon: restoring auto ranges")?;
    }
    let power = match (&report, &output.power_window) {
        (Some(report), Some(window)) => {
            let counts = harness::efficiency::RunCounts {
                scenario: settings.scenario,
                samples: output.performance.as_ref().map_or(0, |p| p.sample_count()),
                queries: output
                    .performance
                    .as_ref()
                    .map_or(0, |p| p.result.queries_issued),
            };
            let window = power::energy::Window::new(
                window.begin_ns,
                window.end_ns.max(window.begin_ns + 1),
            )?;
            Some(session.power_record(report, window, Some(counts), ptd_record)?)
        }
        _ => None,
    };

    let interrupted = output.interrupted || interrupt.is_set();
    let result = RunResult {
        schema_version: schema::SCHEMA_VERSION,
        joulebench_version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "inference".into(),
        status: if interrupted {
            RunStatus::Interrupted
        } else {
            RunStatus::Completed
        },
        started_at: started_at.to_rfc3339(),
        command,
        system: report::system::SystemDescription::detect(),
        workload: schema::Workload {
            name: workload_name,
            sut_name: output.sut_name.clone(),
            qsl_name: output.qsl_name.clone(),
            conf_model: model,
            parameters: workload.parameters_after_run(args.quiet),
        },
        settings: schema::SettingsRecord {
            scenario: settings.scenario,
            mode: output.effective.mode,
            conf_files: args.conf.iter().map(|p| p.display().to_string()).collect(),
            applied: applied
                .iter()
                .map(|a| AppliedSetting {
                    field: a.field.to_string(),
                    value: a.value.clone(),
                    origin: a.origin.to_string(),
                })
                .collect(),
            requested: serde_json::to_value(&output.requested)?,
            effective: serde_json::to_value(&output.effective)?,
        },
        performance: output
            .performance
            .as_ref()
            .map(schema::Performance::from_summary),
        accuracy: output.accuracy.as_ref().map(|a| schema::AccuracyRecord {
            samples_issued: a.samples_issued,
            samples_logged: a.samples_logged,
            complete: a.complete,
            score: None,
        }),
        timed_window: output.power_window.as_ref().map(|w| schema::TimedWindow {
            begin_ns: w.begin_ns,
            end_ns: w.end_ns,
            duration_s: (w.end_ns.saturating_sub(w.begin_ns)) as f64 / 1e9,
            begin_utc: w.begin_utc.clone(),
            end_utc: w.end_utc.clone(),
        }),
        peak_search: output
            .peak_search
            .iter()
            .map(|p| schema::PeakStep {
                target_qps: p.target_qps,
                perf_constraints_met: p.perf_constraints_met,
                completed_samples_per_second: p.completed_samples_per_second,
            })
            .collect(),
        power,
        files: output
            .files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .chain([schema::RESULT_FILE.to_string()])
            .collect(),
        log_warnings: output.log_warnings,
        log_errors: output.log_errors,
    };
    session.write_json(schema::RESULT_FILE, &result)?;
    print!(
        "{}",
        report::text::run_summary(&result, &outdir.display().to_string())
    );
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
    Ok(if interrupted {
        ExitCode::from(130)
    } else if result.performance.as_ref().is_none_or(|p| p.valid) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One load-generator test, measured by the session.
struct Pass<'a> {
    sut: &'a dyn SystemUnderTest,
    qsl: &'a dyn loadgen::QuerySampleLibrary,
    settings: &'a TestSettings,
    control: &'a RunControl,
    quiet: bool,
}

impl Pass<'_> {
    /// Runs the test into `dir`, its meters sampled into `dir/power/`.
    fn run(
        &self,
        session: &mut harness::Session,
        dir: &std::path::Path,
    ) -> Result<(loadgen::TestOutput, Option<power::sampler::SamplerReport>)> {
        let measured = session.measure(dir, |clock: &harness::session::Clock| {
            let _display = (!self.quiet).then(|| {
                crate::progress::ProgressDisplay::start(Arc::clone(&self.control.progress))
            });
            loadgen::start_test(
                self.sut,
                self.qsl,
                self.settings,
                &loadgen::LogSettings {
                    outdir: dir.to_path_buf(),
                },
                clock.anchor(),
                self.control,
            )
        })?;
        let output = measured
            .output
            .with_context(|| format!("the run failed; logs so far are in {}", dir.display()))?;
        Ok((output, measured.report))
    }
}

fn lock(
    client: &power::meter::ptd::SharedPtdClient,
) -> Result<std::sync::MutexGuard<'_, power::meter::ptd::PtdClient>> {
    client
        .lock()
        .map_err(|_| anyhow::anyhow!("the PTDaemon connection was poisoned by a panic"))
}

/// Largest voltage and current any meter reported (the analyzer's).
fn electrical_maxima(report: &Option<power::sampler::SamplerReport>) -> (Option<f64>, Option<f64>) {
    let (mut volts, mut amps) = (None::<f64>, None::<f64>);
    for meter in report.iter().flat_map(|r| r.meters.iter()) {
        for sample in &meter.samples {
            if let power::meter::Reading::Power {
                volts: v, amps: a, ..
            } = sample.reading
            {
                if let Some(v) = v {
                    volts = Some(volts.map_or(v, |m| m.max(v)));
                }
                if let Some(a) = a {
                    amps = Some(amps.map_or(a, |m| m.max(a)));
                }
            }
        }
    }
    (volts, amps)
}

/// A shared QSL behind the load generator's `&dyn` interface.
struct ArcQsl<Q>(std::sync::Arc<Q>);

impl<Q: loadgen::QuerySampleLibrary> loadgen::QuerySampleLibrary for ArcQsl<Q> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn total_sample_count(&self) -> usize {
        self.0.total_sample_count()
    }
    fn performance_sample_count(&self) -> usize {
        self.0.performance_sample_count()
    }
    fn load_samples_to_ram(
        &self,
        samples: &[loadgen::QuerySampleIndex],
    ) -> Result<(), loadgen::qsl::QslError> {
        self.0.load_samples_to_ram(samples)
    }
    fn unload_samples_from_ram(&self, samples: &[loadgen::QuerySampleIndex]) {
        self.0.unload_samples_from_ram(samples)
    }
}
