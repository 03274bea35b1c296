//! Issuing a generated query plan to the SUT and collecting what it measured
//! (LoadGen's `IssueQueries` and `IssueQueryController`).
//!
//! One thread issues. Between queries it waits as the scenario says: for the
//! previous query (SingleStream, MultiStream), for the scheduled arrival
//! (Server: sleeping while far away, spinning for the last ~150 µs so the
//! harness adds microseconds, not a scheduler tick), or not at all (Offline).
//!
//! Unlike LoadGen, which waits forever for a SUT that stopped answering,
//! every wait here also watches for an interrupt (Ctrl-C) and for a SUT that
//! has completed nothing for `sut_timeout`: the run then ends, its logs are
//! complete, and the result says why it is invalid.

use crate::effective::EffectiveSettings;
use crate::log::detail::DetailLog;
use crate::log::files::TracedSample;
use crate::mllog;
use crate::response::{LoggedResponse, Recorder, RecorderPlan, Responder};
use crate::rng::Mt19937;
use crate::schedule::{Purpose, QueryPlan};
use crate::settings::Scenario;
use crate::stats::PerformanceResult;
use crate::sut::SystemUnderTest;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Live counters a progress display can poll from another thread.
#[derive(Debug, Default)]
pub struct Progress {
    phase: Mutex<String>,
    pub queries_issued: AtomicU64,
    pub queries_planned: AtomicU64,
    pub samples_completed: AtomicU64,
    /// The run's minimum duration in ms (0 when it ends by count).
    pub min_duration_ms: AtomicU64,
    started: Mutex<Option<Instant>>,
}

impl Progress {
    pub fn phase(&self) -> String {
        self.phase.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub(crate) fn set_phase(&self, phase: &str) {
        if let Ok(mut p) = self.phase.lock() {
            *p = phase.to_string();
        }
    }

    /// Time since the current timed run started.
    pub fn elapsed(&self) -> Option<Duration> {
        self.started
            .lock()
            .ok()
            .and_then(|s| s.map(|t| t.elapsed()))
    }

    fn start(&self, planned: u64, min_duration_ms: u64) {
        self.queries_issued.store(0, Ordering::Relaxed);
        self.samples_completed.store(0, Ordering::Relaxed);
        self.queries_planned.store(planned, Ordering::Relaxed);
        self.min_duration_ms
            .store(min_duration_ms, Ordering::Relaxed);
        if let Ok(mut s) = self.started.lock() {
            *s = Some(Instant::now());
        }
    }
}

/// How a run is controlled from outside the load generator.
#[derive(Debug, Clone)]
pub struct RunControl {
    /// Set (e.g. by a Ctrl-C handler) to end the run early; logs are still
    /// written and the result is marked interrupted.
    pub interrupt: Arc<AtomicBool>,
    /// A SUT that completes nothing for this long, while samples are
    /// outstanding, is declared stalled and the run ends.
    pub sut_timeout: Duration,
    pub progress: Arc<Progress>,
    /// Why `interrupt` was set, when not by the user (a Python callback
    /// that raised); logged instead of "interrupted by the user".
    pub stop_reason: Arc<Mutex<Option<String>>>,
}

impl RunControl {
    /// Ends the run early for `reason` (the first reason given is kept).
    pub fn stop(&self, reason: String) {
        if let Ok(mut r) = self.stop_reason.lock() {
            r.get_or_insert(reason);
        }
        self.interrupt.store(true, Ordering::SeqCst);
    }
}

impl Default for RunControl {
    fn default() -> Self {
        RunControl {
            interrupt: Arc::new(AtomicBool::new(false)),
            sut_timeout: Duration::from_secs(60),
            progress: Arc::new(Progress::default()),
            stop_reason: Arc::new(Mutex::new(None)),
        }
    }
}

/// Why waiting stopped before the awaited completion.
#[derive(Debug, Clone, PartialEq)]
enum WaitAbort {
    Interrupted,
    Stalled,
}

/// Everything one pass over a plan produced.
pub(crate) struct IssueOutcome {
    pub result: PerformanceResult,
    pub logged: Vec<LoggedResponse>,
    /// Problems that make the run invalid (stall, bad completions, interrupt).
    pub problems: Vec<String>,
    pub interrupted: bool,
    /// Wall-clock time of the start (LoadGen's `power_begin`).
    pub start_wall: SystemTime,
    /// Each issued sample for the trace file (empty unless asked for), with
    /// the pass's start on the run clock.
    pub traced: Vec<(u64, TracedSample)>,
}

/// Which samples' responses an audit (accuracy-log sampling) keeps in a
/// performance run, drawn as LoadGen draws them.
fn audit_selection(settings: &EffectiveSettings, plan: &QueryPlan) -> Option<Vec<bool>> {
    let values = plan.accuracy_log_values.as_ref()?;
    let offset = Mt19937::new(settings.accuracy_log_rng_seed).canonical();
    let mut probability = settings.accuracy_log_probability;
    if settings.accuracy_log_sampling_target > 0 {
        let mut expected = (settings.target_qps * settings.min_duration_ms as f64 / 1000.0) as u64;
        let minimum = if settings.scenario == Scenario::Offline {
            settings.min_sample_count
        } else {
            expected *= settings.samples_per_query;
            settings.min_query_count * settings.samples_per_query
        };
        probability =
            settings.accuracy_log_sampling_target as f64 / expected.max(minimum).max(1) as f64;
    }
    Some(
        values
            .iter()
            .map(|v| {
                let shifted = if v + offset < 1.0 {
                    v + offset
                } else {
                    v + offset - 1.0
                };
                shifted <= probability
            })
            .collect(),
    )
}

struct Waiter<'a> {
    recorder: &'a Recorder,
    control: &'a RunControl,
}

impl Waiter<'_> {
    fn interrupted(&self) -> bool {
        self.control.interrupt.load(Ordering::Relaxed)
    }

    /// Waits until `done()`; aborts on interrupt or when no sample completes
    /// for `sut_timeout`.
    fn wait_for(&self, done: impl Fn() -> bool) -> Result<(), WaitAbort> {
        let spin_until = Instant::now() + Duration::from_micros(50);
        while Instant::now() < spin_until {
            if done() {
                return Ok(());
            }
            std::hint::spin_loop();
        }
        let mut seen = self.recorder.completed_samples();
        let mut last_progress = Instant::now();
        loop {
            if done() {
                return Ok(());
            }
            if self.interrupted() {
                return Err(WaitAbort::Interrupted);
            }
            let now_completed = self.recorder.completed_samples();
            if now_completed != seen {
                seen = now_completed;
                last_progress = Instant::now();
                self.control
                    .progress
                    .samples_completed
                    .store(seen, Ordering::Relaxed);
            } else if last_progress.elapsed() >= self.control.sut_timeout {
                return Err(WaitAbort::Stalled);
            }
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }

    /// Waits until the run clock reaches `target_ns`; returns the time then.
    fn until(&self, target_ns: u64) -> u64 {
        const SPIN_NS: u64 = 150_000;
        loop {
            let now = self.recorder.now_ns();
            if now >= target_ns {
                return now;
            }
            let gap = target_ns - now;
            if gap > SPIN_NS {
                if self.interrupted() {
                    return now;
                }
                std::thread::sleep(Duration::from_nanos((gap - SPIN_NS / 2).min(100_000_000)));
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Issues `plan` to `sut` and measures it; `trace` keeps each sample's
/// times for the trace file.
#[allow(clippy::too_many_arguments)]
pub(crate) fn issue_queries(
    sut: &dyn SystemUnderTest,
    plan: &QueryPlan,
    settings: &EffectiveSettings,
    purpose: Purpose,
    anchor: Instant,
    control: &RunControl,
    log: &mut DetailLog,
    trace: bool,
) -> IssueOutcome {
    let scenario = settings.scenario;
    let accuracy = purpose == Purpose::Accuracy;
    let n_queries = plan.query_count();
    let mut sample_query = Vec::with_capacity(plan.samples.len());
    let mut query_sizes = Vec::with_capacity(n_queries);
    for q in 0..n_queries {
        let size = plan.query_start[q + 1] - plan.query_start[q];
        query_sizes.push(size as u32);
        sample_query.extend(std::iter::repeat_n(q as u32, size));
    }
    let recorder = Arc::new(Recorder::new(RecorderPlan {
        anchor,
        base_seq: plan.base_sample_seq,
        sample_query,
        sample_qsl_idx: plan.samples.iter().map(|s| s.index).collect(),
        query_sizes: &query_sizes,
        token_latencies: settings.use_token_latencies,
        log_selection: if accuracy {
            None
        } else {
            audit_selection(settings, plan)
        },
        log_all: accuracy,
    }));
    let responder = Responder {
        recorder: Arc::clone(&recorder),
    };
    let wait = Waiter {
        recorder: &recorder,
        control,
    };
    if matches!(scenario, Scenario::SingleStream | Scenario::MultiStream) {
        recorder.register_waiter();
    }
    control
        .progress
        .start(n_queries as u64, settings.min_duration_ms);

    let mut scheduled_ns = vec![0u64; n_queries];
    let mut issued_ns = vec![0u64; n_queries];
    let mut queries_issued: usize = 0;
    let mut samples_issued: usize = 0;
    let mut ran_out_of_generated_queries = scenario != Scenario::Server;
    let mut abort: Option<WaitAbort> = None;
    let target_duration_ns = settings.target_duration_ms * 1_000_000;
    let max_duration_ns = settings.max_duration_ms * 1_000_000;

    let start_wall = SystemTime::now();
    let start = recorder.now_ns();
    let mut q = 0;
    while q < n_queries {
        if wait.interrupted() {
            abort = Some(WaitAbort::Interrupted);
            break;
        }
        let now = match scenario {
            Scenario::SingleStream | Scenario::MultiStream => {
                let streams = settings.closed_loop_streams.max(1) as usize;
                let waited = if streams > 1 {
                    // A closed loop: at most `streams` queries open at once.
                    (q >= streams).then(|| {
                        wait.wait_for(|| recorder.completed_queries() as usize + streams > q)
                    })
                } else {
                    (q > 0).then(|| wait.wait_for(|| recorder.query_done_ns(q - 1) != 0))
                };
                if let Some(Err(why)) = waited {
                    abort = Some(why);
                    break;
                }
                let now = recorder.now_ns();
                scheduled_ns[q] = now;
                now
            }
            Scenario::Server => {
                scheduled_ns[q] = start + plan.scheduled_delta_ns[q];
                wait.until(scheduled_ns[q])
            }
            Scenario::Offline => {
                scheduled_ns[q] = start;
                recorder.now_ns()
            }
        };
        issued_ns[q] = now;
        // Server coalescing: send every query already due as one call.
        let mut last = q;
        if scenario == Scenario::Server && settings.requested.server_coalesce_queries {
            while last + 1 < n_queries && now >= start + plan.scheduled_delta_ns[last + 1] {
                last += 1;
                scheduled_ns[last] = start + plan.scheduled_delta_ns[last];
                issued_ns[last] = now;
            }
        }
        let samples = &plan.samples[plan.query_start[q]..plan.query_start[last + 1]];
        sut.issue_query(samples, &responder);
        samples_issued += samples.len();
        queries_issued += last - q + 1;
        q = last + 1;
        if queries_issued.is_multiple_of(1024) || queries_issued == n_queries {
            control
                .progress
                .queries_issued
                .store(queries_issued as u64, Ordering::Relaxed);
        }
        if accuracy {
            continue;
        }
        let duration = now - start;
        if scenario == Scenario::Server {
            if settings.max_async_queries != 0 {
                let outstanding = queries_issued as u64 - recorder.completed_queries();
                if outstanding > settings.max_async_queries {
                    mllog!(log, "error_runtime", format!(
                        "IssueQueryThread 0 Ending early: Too many outstanding queries. issued {queries_issued} outstanding {outstanding}"
                    ), Error);
                    break;
                }
            }
        } else if queries_issued as u64 >= settings.min_query_count
            && duration >= target_duration_ns
        {
            mllog!(
                log,
                "generic_message",
                "Ending naturally: Minimum query count and test duration met."
            );
            ran_out_of_generated_queries = false;
            break;
        }
        if settings.max_query_count != 0 && queries_issued as u64 >= settings.max_query_count {
            mllog!(log, "error_runtime", format!(
                "IssueQueryThread 0 Ending early: Max query count reached. query_count {queries_issued}"
            ), Error);
            ran_out_of_generated_queries = false;
            break;
        }
        if max_duration_ns != 0 && duration > max_duration_ns {
            mllog!(
                log,
                "error_runtime",
                format!(
                "IssueQueryThread 0 Ending early: Max test duration reached. duration_ns {duration}"
            ),
                Error
            );
            ran_out_of_generated_queries = false;
            break;
        }
    }
    control
        .progress
        .queries_issued
        .store(queries_issued as u64, Ordering::Relaxed);
    sut.flush_queries();
    if !accuracy && ran_out_of_generated_queries && abort.is_none() {
        mllog!(log, "error_runtime",
            "Ending early: Ran out of generated queries to issue before the minimum query count and test duration were reached. Please update the relevant expected latency or target qps in the TestSettings so they are more accurate.",
            Error);
    }

    // Drain: wait for every issued sample.
    control.progress.set_phase("waiting for the SUT to finish");
    if abort.is_none() {
        recorder.register_waiter();
        abort = wait
            .wait_for(|| recorder.completed_samples() >= samples_issued as u64)
            .err();
    }
    control
        .progress
        .samples_completed
        .store(recorder.completed_samples(), Ordering::Relaxed);

    let mut result = collect(
        &recorder,
        plan,
        settings,
        queries_issued,
        samples_issued,
        &scheduled_ns,
        &issued_ns,
        start,
    );
    let mut problems = Vec::new();
    let incomplete = result.samples_issued - result.samples_completed - result.samples_failed;
    match abort {
        Some(WaitAbort::Interrupted) => problems.push(format!(
            "{} after {:.1} s ({} of {} issued samples completed)",
            control
                .stop_reason
                .lock()
                .ok()
                .and_then(|r| r.clone())
                .unwrap_or_else(|| "interrupted by the user".into()),
            (recorder.now_ns() - start) as f64 / 1e9,
            result.samples_completed,
            result.samples_issued
        )),
        Some(WaitAbort::Stalled) => problems.push(format!(
            "the SUT stopped answering: {incomplete} of {} issued samples never completed \
             (no completion for {} s, the --sut-timeout)",
            result.samples_issued,
            control.sut_timeout.as_secs_f64()
        )),
        None if incomplete > 0 => problems.push(format!(
            "{incomplete} of {} issued samples never completed",
            result.samples_issued
        )),
        None => {}
    }
    let (bad_completions, described) = recorder.errors();
    for message in &described {
        mllog!(log, "error_runtime", message.clone(), Error);
    }
    if !bad_completions.is_empty() {
        let kinds: Vec<String> = bad_completions
            .iter()
            .map(|(k, n)| format!("{n} × {}", k.describe()))
            .collect();
        problems.push(format!(
            "the SUT made invalid completions ({}); examples are in the detail log",
            kinds.join(", ")
        ));
    }
    let failures = recorder.failures();
    for (_, messages) in failures.values() {
        for message in messages {
            mllog!(log, "error_runtime", message.clone(), Error);
        }
    }
    if !failures.is_empty() {
        let kinds: Vec<String> = failures
            .iter()
            .map(|(kind, (n, _))| format!("{n} × {kind}"))
            .collect();
        problems.push(format!(
            "{} of {} issued samples failed in the SUT ({}); examples are in the detail log",
            result.samples_failed,
            result.samples_issued,
            kinds.join(", ")
        ));
    }
    if result.window_end_ns == 0 {
        result.window_end_ns = recorder.now_ns();
    }
    let traced = if trace {
        traced_samples(&recorder, plan, &issued_ns[..queries_issued], start)
    } else {
        Vec::new()
    };
    IssueOutcome {
        result,
        logged: recorder.take_logged(),
        problems,
        interrupted: abort == Some(WaitAbort::Interrupted),
        start_wall,
        traced,
    }
}

/// Every issued sample's issue and completion times, relative to the pass
/// start `start` (a sample never completed shows completion 0).
fn traced_samples(
    recorder: &Recorder,
    plan: &QueryPlan,
    issued_ns: &[u64],
    start: u64,
) -> Vec<(u64, TracedSample)> {
    let mut traced = Vec::with_capacity(plan.query_start[issued_ns.len()]);
    for (q, &issued) in issued_ns.iter().enumerate() {
        for slot in plan.query_start[q]..plan.query_start[q + 1] {
            let done = recorder.sample_complete_ns(slot);
            traced.push((
                start,
                TracedSample {
                    sample_seq: plan.base_sample_seq + slot as u64,
                    query_seq: q as u64,
                    sample_idx: plan.samples[slot].index,
                    issue_start_ns: issued.saturating_sub(start),
                    complete_ns: done.saturating_sub(start),
                },
            ));
        }
    }
    traced
}

/// Turns the recorder's raw timestamps into LoadGen's `PerformanceResult`.
#[allow(clippy::too_many_arguments)]
fn collect(
    recorder: &Recorder,
    plan: &QueryPlan,
    settings: &EffectiveSettings,
    queries_issued: usize,
    samples_issued: usize,
    scheduled_ns: &[u64],
    issued_ns: &[u64],
    start: u64,
) -> PerformanceResult {
    let mut r = PerformanceResult {
        queries_issued: queries_issued as u64,
        samples_issued: samples_issued as u64,
        window_begin_ns: start,
        window_end_ns: recorder.max_completion_ns(),
        ..Default::default()
    };
    r.sample_latencies_ns.reserve(samples_issued);
    let mut max_latency: i64 = 0;
    for (q, &scheduled) in scheduled_ns.iter().enumerate().take(queries_issued) {
        let sched = scheduled as i64;
        for slot in plan.query_start[q]..plan.query_start[q + 1] {
            let done = recorder.sample_complete_ns(slot);
            if done == 0 {
                continue;
            }
            if recorder.sample_failed(slot) {
                r.samples_failed += 1;
                continue;
            }
            let latency = done as i64 - sched;
            max_latency = max_latency.max(latency);
            r.sample_latencies_ns.push(latency);
            if settings.use_token_latencies {
                let tokens = recorder.tokens(slot).unwrap_or(0);
                r.token_count += tokens;
                if let Some(first) = recorder.first_token_ns(slot).filter(|&t| t != 0) {
                    let ttft = first as i64 - sched;
                    r.first_token_latencies_ns.push(ttft);
                    if tokens > 1 {
                        r.time_per_output_token_ns
                            .push((latency - ttft) / (tokens as i64 - 1));
                    }
                }
            }
        }
        if settings.scenario == Scenario::MultiStream {
            let done = recorder.query_done_ns(q);
            if done != 0 {
                r.query_latencies_ns.push(done as i64 - sched);
            }
        }
    }
    r.samples_completed = r.sample_latencies_ns.len() as u64;
    r.max_latency_s = max_latency as f64 / 1e9;
    if queries_issued > 0 {
        let last = queries_issued - 1;
        r.final_query_scheduled_time_s = plan.scheduled_delta_ns[last] as f64 / 1e9;
        r.final_query_issued_time_s = (issued_ns[last] - start) as f64 / 1e9;
        let done = recorder.query_done_ns(last);
        // A final query that never finished: fall back to the last completion.
        let done = if done != 0 {
            done
        } else {
            recorder.max_completion_ns().max(start)
        };
        r.final_query_all_samples_done_time_s = (done - start) as f64 / 1e9;
    }
    r
}
