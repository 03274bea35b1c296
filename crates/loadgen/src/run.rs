//! One test from start to logs: LoadGen's `StartTest` and its per-mode run
//! functions (accuracy, performance, submission = both, find-peak).

use crate::effective::{EffectiveError, EffectiveSettings};
use crate::issue::{issue_queries, IssueOutcome, RunControl};
use crate::log::detail::DetailLog;
pub use crate::log::files::LogSettings;
use crate::log::files::{render_trace, Trace, TracedSample, TracedSpan};
use crate::log::{accuracy, results, settings as settings_log, summary};
use crate::mllog;
use crate::qsl::QuerySampleLibrary;
use crate::response::LoggedResponse;
use crate::schedule::{generate_queries, loadable_sets, Purpose, SequenceGen};
use crate::settings::{Mode, Scenario, SettingsError, TestSettings};
use crate::stats::PerformanceSummary;
use crate::sut::SystemUnderTest;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// Why a test could not run at all (nothing measured).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Effective(#[from] EffectiveError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the QSL '{qsl}' could not load its samples: {reason}")]
    QslLoad { qsl: String, reason: String },
}

/// The timed window of the reported run, for the power side: on the run
/// clock (ns since the caller's anchor) and as LoadGen logs it (UTC text).
#[derive(Debug, Clone, Serialize)]
pub struct PowerWindow {
    pub begin_ns: u64,
    pub end_ns: u64,
    pub begin_utc: String,
    pub end_utc: String,
}

/// One step of the Server peak search.
#[derive(Debug, Clone, Serialize)]
pub struct PeakStep {
    pub target_qps: f64,
    pub perf_constraints_met: bool,
    pub completed_samples_per_second: f64,
}

/// What an accuracy pass covered.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracySummary {
    pub samples_issued: u64,
    pub samples_logged: u64,
    pub complete: bool,
}

/// Everything one test produced (the files are written too).
#[derive(Debug, Clone, Serialize)]
pub struct TestOutput {
    pub test_datetime: String,
    pub sut_name: String,
    pub qsl_name: String,
    pub requested: TestSettings,
    pub effective: EffectiveSettings,
    /// The reported performance run (none in accuracy-only mode).
    pub performance: Option<PerformanceSummary>,
    pub accuracy: Option<AccuracySummary>,
    pub peak_search: Vec<PeakStep>,
    pub power_window: Option<PowerWindow>,
    pub interrupted: bool,
    pub log_warnings: u64,
    pub log_errors: u64,
    pub files: Vec<PathBuf>,
}

/// LoadGen's `DateTimeStringForPower`: `MM-DD-YYYY HH:MM:SS.mmm`, UTC.
pub fn power_time_string(t: SystemTime) -> String {
    mlperf_time::Timestamp::from(t).to_string()
}

struct Test<'a> {
    sut: &'a dyn SystemUnderTest,
    qsl: &'a dyn QuerySampleLibrary,
    anchor: Instant,
    control: &'a RunControl,
    log: DetailLog,
    seq: SequenceGen,
    logged: Vec<LoggedResponse>,
    interrupted: bool,
    /// Trace events (kept only when the trace file wants them).
    trace: bool,
    traced: Vec<(u64, TracedSample)>,
    spans: Vec<TracedSpan>,
}

/// Runs one test: validates, logs settings, runs the mode's passes, writes
/// the summary, detail and accuracy logs into `logs.outdir`.
///
/// `anchor` is the run's single clock: every timestamp (and the returned
/// power window) is measured from it.
pub fn start_test(
    sut: &dyn SystemUnderTest,
    qsl: &dyn QuerySampleLibrary,
    requested: &TestSettings,
    logs: &LogSettings,
    anchor: Instant,
    control: &RunControl,
) -> Result<TestOutput, RunError> {
    requested.validate()?;
    let effective = EffectiveSettings::new(
        requested,
        qsl.performance_sample_count() as u64,
        qsl.total_sample_count() as u64,
    )?;
    std::fs::create_dir_all(&logs.outdir).map_err(|source| RunError::Io {
        path: logs.outdir.clone(),
        source,
    })?;
    let test_datetime = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let paths = logs.paths(&test_datetime);
    let detail_path = paths.detail.clone();
    let mut log =
        DetailLog::create(&detail_path, Instant::now()).map_err(|source| RunError::Io {
            path: detail_path.clone(),
            source,
        })?;
    log.echo_to_stdout(logs.copy_detail_to_stdout);
    // The trace's origin: the run clock's anchor on the wall clock.
    let origin_unix_us = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(anchor.elapsed())
        .as_nanos() as f64
        / 1e3;
    let draw_audit =
        effective.accuracy_log_probability > 0.0 || effective.accuracy_log_sampling_target > 0;
    let mut test = Test {
        sut,
        qsl,
        anchor,
        control,
        log,
        seq: SequenceGen::new(draw_audit),
        logged: Vec::new(),
        interrupted: false,
        trace: logs.trace == Trace::Events,
        traced: Vec::new(),
        spans: Vec::new(),
    };
    let name_start = Instant::now();
    let sut_name = sut.name().to_string();
    let name_ns = name_start.elapsed().as_nanos() as u64;
    {
        let log = &mut test.log;
        mllog!(
            log,
            "loadgen_version",
            format!(
                "joulebench {} (MLPerf LoadGen 6.0.17 semantics)",
                env!("CARGO_PKG_VERSION")
            )
        );
        mllog!(log, "test_datetime", test_datetime.clone());
        mllog!(log, "sut_name", sut_name.clone());
        mllog!(log, "get_sut_name_duration_ns", name_ns);
        for early in &logs.early_messages {
            log.log(
                &early.key,
                early.value.clone(),
                early.severity,
                "test_settings_internal.cc",
                0,
            );
        }
        mllog!(log, "qsl_name", qsl.name());
        mllog!(log, "qsl_reported_total_count", qsl.total_sample_count());
        mllog!(
            log,
            "qsl_reported_performance_count",
            qsl.performance_sample_count()
        );
        if requested.test05 {
            mllog!(
                log,
                "warning_generic_message",
                "Test05 flag detected Overriding random seeds",
                Warning
            );
        }
        settings_log::log_requested(log, requested);
        settings_log::log_effective(log, &effective);
    }
    let _ = test.log.flush();

    let mut output = TestOutput {
        test_datetime,
        sut_name: sut_name.clone(),
        qsl_name: qsl.name().to_string(),
        requested: requested.clone(),
        effective: effective.clone(),
        performance: None,
        accuracy: None,
        peak_search: Vec::new(),
        power_window: None,
        interrupted: false,
        log_warnings: 0,
        log_errors: 0,
        files: Vec::new(),
    };
    let outcome = match effective.mode {
        Mode::AccuracyOnly => test.accuracy(&effective).map(|a| output.accuracy = Some(a)),
        Mode::PerformanceOnly => test.performance(&effective, &sut_name).map(|p| {
            output.power_window = Some(p.1);
            output.performance = Some(p.0);
        }),
        Mode::SubmissionRun => test.accuracy(&effective).and_then(|a| {
            output.accuracy = Some(a);
            if test.interrupted {
                return Ok(());
            }
            test.performance(&effective, &sut_name).map(|p| {
                output.power_window = Some(p.1);
                output.performance = Some(p.0);
            })
        }),
        Mode::FindPeakPerformance => {
            test.find_peak(&effective, &sut_name)
                .map(|(summary, window, steps)| {
                    output.performance = Some(summary);
                    output.power_window = Some(window);
                    output.peak_search = steps;
                })
        }
    };
    // Logs are finished even when a pass failed, so what ran stays readable.
    if let Some(perf) = &output.performance {
        results::log_results(&mut test.log, perf);
    }
    let num_errors = test.log.error_count();
    mllog!(test.log, "num_errors", num_errors);
    output.interrupted = test.interrupted;
    output.log_warnings = test.log.warning_count();
    output.log_errors = test.log.error_count();
    test.log.flush().map_err(|source| RunError::Io {
        path: detail_path.clone(),
        source,
    })?;

    let summary_text = match &output.performance {
        Some(perf) => summary::render(perf, output.log_warnings, output.log_errors),
        // LoadGen writes no results section without a performance run.
        None => summary::render_footer_only(output.log_warnings, output.log_errors),
    };
    let summary_path = paths.summary.clone();
    write_atomically(&summary_path, summary_text.as_bytes())?;
    if logs.copy_summary_to_stdout {
        print!("{summary_text}");
    }
    let accuracy_path = paths.accuracy.clone();
    let mut accuracy_bytes = Vec::new();
    test.logged.sort_by_key(|r| r.seq_id);
    accuracy::write(
        &mut accuracy_bytes,
        &test.logged,
        match (effective.use_token_latencies, effective.scenario) {
            (false, _) => accuracy::TokenFields::None,
            (true, Scenario::Offline) => accuracy::TokenFields::Count,
            (true, _) => accuracy::TokenFields::FirstTokenAndCount,
        },
    )
    .map_err(|source| RunError::Io {
        path: accuracy_path.clone(),
        source,
    })?;
    write_atomically(&accuracy_path, &accuracy_bytes)?;
    output.files = vec![summary_path, detail_path, accuracy_path];
    if let Some(trace_path) = paths.trace {
        let text = match logs.trace {
            Trace::Events => render_trace(&test.spans, &test.traced, origin_unix_us),
            _ => String::new(),
        };
        write_atomically(&trace_path, text.as_bytes())?;
        output.files.push(trace_path);
    }
    outcome.map(|_| output)
}

/// Writes a whole log file atomically (`atomic_file`).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    atomic_file::write(path, bytes).map_err(|e| RunError::Io {
        path: e.path,
        source: e.source,
    })
}

impl Test<'_> {
    fn load(&mut self, set: &[usize]) -> Result<(), RunError> {
        mllog!(self.log, "loaded_qsl_set", set);
        let _ = self.log.flush();
        self.qsl
            .load_samples_to_ram(set)
            .map_err(|e| RunError::QslLoad {
                qsl: self.qsl.name().to_string(),
                reason: e.to_string(),
            })
    }

    /// One pass over one loadable set; logs what LoadGen logs around it.
    fn issue(
        &mut self,
        settings: &EffectiveSettings,
        purpose: Purpose,
        set: &crate::schedule::LoadableSet,
    ) -> IssueOutcome {
        self.control.progress.set_phase("generating queries");
        let generating = self.anchor.elapsed();
        let plan = generate_queries(settings, purpose, set, &mut self.seq);
        if self.trace {
            self.spans.push(TracedSpan {
                name: "GenerateQueries",
                start_ns: generating.as_nanos() as u64,
                duration_ns: (self.anchor.elapsed() - generating).as_nanos() as u64,
            });
        }
        mllog!(self.log, "generated_query_count", plan.query_count());
        mllog!(
            self.log,
            "generated_samples_per_query",
            plan.samples_per_query
        );
        mllog!(
            self.log,
            "generated_query_duration",
            plan.generated_duration_ns
        );
        let _ = self.log.flush();
        self.control.progress.set_phase(match purpose {
            Purpose::Accuracy => "accuracy run",
            Purpose::Performance => "performance run",
        });
        let outcome = issue_queries(
            self.sut,
            &plan,
            settings,
            purpose,
            self.anchor,
            self.control,
            &mut self.log,
            self.trace,
        );
        let r = &outcome.result;
        let end_wall = outcome.start_wall
            + std::time::Duration::from_nanos(r.window_end_ns.saturating_sub(r.window_begin_ns));
        mllog!(
            self.log,
            "power_begin",
            power_time_string(outcome.start_wall)
        );
        mllog!(self.log, "power_end", power_time_string(end_wall));
        for problem in &outcome.problems {
            mllog!(self.log, "error_runtime", problem.clone(), Error);
        }
        let _ = self.log.flush();
        self.interrupted |= outcome.interrupted;
        let mut outcome = outcome;
        self.traced.append(&mut outcome.traced);
        outcome
    }

    fn accuracy(&mut self, settings: &EffectiveSettings) -> Result<AccuracySummary, RunError> {
        mllog!(self.log, "generic_message", "Starting accuracy mode");
        let sets = loadable_sets(
            settings,
            settings.accuracy_sample_count,
            self.qsl.total_sample_count(),
        );
        let mut summary = AccuracySummary {
            samples_issued: 0,
            samples_logged: 0,
            complete: true,
        };
        for set in &sets {
            self.load(&set.set)?;
            let mut outcome = self.issue(settings, Purpose::Accuracy, set);
            self.qsl.unload_samples_from_ram(&set.set);
            summary.samples_issued += outcome.result.samples_issued;
            summary.samples_logged += outcome.logged.len() as u64;
            summary.complete &= outcome.problems.is_empty();
            self.logged.append(&mut outcome.logged);
            if self.interrupted {
                summary.complete = false;
                break;
            }
        }
        Ok(summary)
    }

    fn perf_run(
        &mut self,
        settings: &EffectiveSettings,
        sut_name: &str,
        set: &crate::schedule::LoadableSet,
    ) -> (PerformanceSummary, PowerWindow) {
        let mut outcome = self.issue(settings, Purpose::Performance, set);
        self.logged.append(&mut outcome.logged);
        let r = &outcome.result;
        let window = PowerWindow {
            begin_ns: r.window_begin_ns,
            end_ns: r.window_end_ns,
            begin_utc: power_time_string(outcome.start_wall),
            end_utc: power_time_string(
                outcome.start_wall
                    + std::time::Duration::from_nanos(
                        r.window_end_ns.saturating_sub(r.window_begin_ns),
                    ),
            ),
        };
        (
            PerformanceSummary::new(sut_name, settings, outcome.result, outcome.problems),
            window,
        )
    }

    fn performance_set(
        &mut self,
        settings: &EffectiveSettings,
    ) -> Result<crate::schedule::LoadableSet, RunError> {
        let sets = loadable_sets(
            settings,
            settings.performance_sample_count,
            self.qsl.total_sample_count(),
        );
        let set = sets.into_iter().next().ok_or_else(|| RunError::QslLoad {
            qsl: self.qsl.name().to_string(),
            reason: "the QSL reports no samples".into(),
        })?;
        self.load(&set.set)?;
        Ok(set)
    }

    fn performance(
        &mut self,
        settings: &EffectiveSettings,
        sut_name: &str,
    ) -> Result<(PerformanceSummary, PowerWindow), RunError> {
        mllog!(self.log, "generic_message", "Starting performance mode");
        let set = self.performance_set(settings)?;
        let run = self.perf_run(settings, sut_name, &set);
        self.qsl.unload_samples_from_ram(&set.set);
        Ok(run)
    }

    /// LoadGen's FindPeakPerformance: check the user's QPS, widen until the
    /// latency bound fails, then bisect to the requested precision.
    fn find_peak(
        &mut self,
        base: &EffectiveSettings,
        sut_name: &str,
    ) -> Result<(PerformanceSummary, PowerWindow, Vec<PeakStep>), RunError> {
        mllog!(
            self.log,
            "generic_message",
            "Starting FindPeakPerformance mode"
        );
        let field = |s: &EffectiveSettings| format!("{:.6}", s.target_qps);
        mllog!(
            self.log,
            "generic_message",
            format!(
                "FindPeakPerformance: Check validity of the base settings field: {}",
                field(base)
            )
        );
        let set = self.performance_set(base)?;
        let mut steps = Vec::new();
        let step = |summary: &PerformanceSummary, steps: &mut Vec<PeakStep>| {
            steps.push(PeakStep {
                target_qps: summary.settings.target_qps,
                perf_constraints_met: summary.validity.perf_constraints_met == Some(true),
                completed_samples_per_second: summary.completed_samples_per_second(),
            });
        };
        let (mut lower, mut lower_window) = self.perf_run(base, sut_name, &set);
        step(&lower, &mut steps);
        if lower.validity.perf_constraints_met != Some(true) || self.interrupted {
            mllog!(self.log, "error_runtime", "FindPeakPerformance: Initial lower bound does not satisfy performance constraints, msg: Reduce target QPS to improve latency.", Error);
            self.qsl.unload_samples_from_ram(&set.set);
            return Ok((lower, lower_window, steps));
        }
        let step_size = base.requested.server_find_peak_qps_boundary_step_size;
        let mut upper = loop {
            let mut wider = lower.settings.clone();
            wider.target_qps *= 1.0 + step_size;
            mllog!(
                self.log,
                "generic_message",
                format!(
                    "FindBoundaries: Checking fields [{}, {})",
                    field(&lower.settings),
                    field(&wider)
                )
            );
            let (candidate, window) = self.perf_run(&wider, sut_name, &set);
            step(&candidate, &mut steps);
            if candidate.validity.perf_constraints_met != Some(true) || self.interrupted {
                break candidate;
            }
            lower = candidate;
            lower_window = window;
        };
        mllog!(
            self.log,
            "generic_message",
            format!(
                "FindPeakPerformance: Found boundaries: [{}, {})",
                field(&lower.settings),
                field(&upper.settings)
            )
        );
        let scale = 10f64.powi(base.requested.server_find_peak_qps_decimals_of_precision);
        while (lower.settings.target_qps * scale).floor() + 1.0
            < (upper.settings.target_qps * scale).floor()
            && !self.interrupted
        {
            let mut mid = lower.settings.clone();
            mid.target_qps = lower.settings.target_qps
                + (upper.settings.target_qps - lower.settings.target_qps) / 2.0;
            mllog!(
                self.log,
                "generic_message",
                format!(
                    "FindPeakPerformanceBinarySearch: Testing the mid value of bounds [{}, {}): {}",
                    field(&lower.settings),
                    field(&upper.settings),
                    field(&mid)
                )
            );
            let (candidate, window) = self.perf_run(&mid, sut_name, &set);
            step(&candidate, &mut steps);
            if candidate.validity.perf_constraints_met == Some(true) {
                lower = candidate;
                lower_window = window;
            } else {
                upper = candidate;
            }
        }
        mllog!(
            self.log,
            "generic_message",
            format!(
                "FindPeakPerformance: Found peak performance field: {}",
                field(&lower.settings)
            )
        );
        self.qsl.unload_samples_from_ram(&set.set);
        Ok((lower, lower_window, steps))
    }
}
