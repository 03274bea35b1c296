//! Completions: the cheap, thread-safe [`Responder`] a SUT answers through,
//! and the recorder behind it.
//!
//! Every slot is preallocated before the timed run (one per issued sample), so
//! completing a sample is a clock read and a few atomic operations: no lock,
//! no allocation. A response carrying data (accuracy mode, or an audit
//! sample) takes a mutex to copy it, off the latency-critical path of the
//! timestamp, which is taken first.
//!
//! Bad completions (an id this run never issued, an id completed twice) are
//! counted and described, never panicked on: the run reports them as errors.

use crate::sut::ResponseId;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::Instant;

/// What a SUT returns for one sample.
#[derive(Debug, Clone, Copy)]
pub struct QuerySampleResponse<'a> {
    pub id: ResponseId,
    /// The sample's output bytes (logged in accuracy mode; may be empty).
    pub data: &'a [u8],
    /// Output tokens for language models (token latencies); 0 otherwise.
    pub n_tokens: u64,
}

impl<'a> QuerySampleResponse<'a> {
    /// A response with no data.
    pub fn new(id: ResponseId) -> Self {
        QuerySampleResponse {
            id,
            data: &[],
            n_tokens: 0,
        }
    }

    pub fn with_data(id: ResponseId, data: &'a [u8]) -> Self {
        QuerySampleResponse {
            id,
            data,
            n_tokens: 0,
        }
    }
}

/// The handle a SUT completes samples through. Clone it freely (an `Arc`).
#[derive(Clone)]
pub struct Responder {
    pub(crate) recorder: Arc<Recorder>,
}

impl Responder {
    /// Reports samples as complete. Call from any thread.
    pub fn complete(&self, responses: &[QuerySampleResponse<'_>]) {
        self.recorder
            .complete(responses.iter().map(|r| (r.id, r.data, r.n_tokens)));
    }

    /// Reports samples as complete with no response data: the fast path.
    pub fn complete_ids(&self, ids: impl IntoIterator<Item = ResponseId>) {
        self.recorder
            .complete(ids.into_iter().map(|id| (id, &[][..], 0)));
    }

    /// Whether `id` is a sample this pass issued (a caller that cannot trust
    /// its ids, such as Python code, checks before completing).
    pub fn issued(&self, id: ResponseId) -> bool {
        self.recorder.slot(id).is_some()
    }

    /// Whether `other` completes into the same pass as `self`.
    pub fn same_pass(&self, other: &Responder) -> bool {
        Arc::ptr_eq(&self.recorder, &other.recorder)
    }

    /// Whether the response to `id` is logged (accuracy mode, or a sample
    /// drawn for the audit): LoadGen calls `response_cb` only for these.
    pub fn logs(&self, id: ResponseId) -> bool {
        self.recorder
            .slot(id)
            .is_some_and(|slot| self.recorder.logs_slot(slot))
    }

    /// Reports the first token of each sample (language models): time to
    /// first token is measured from here. `data` is logged in accuracy mode.
    pub fn first_token(&self, responses: &[QuerySampleResponse<'_>]) {
        self.recorder.first_token(responses);
    }

    /// Reports that the SUT could not answer sample `id` (a refused
    /// connection, an HTTP error, a broken stream). LoadGen has no such
    /// call; here the sample ends (the run goes on and never waits for it),
    /// is left out of every latency statistic, and makes the result INVALID
    /// with failures counted by `failure.kind`.
    pub fn fail(&self, id: ResponseId, failure: SampleFailure) {
        self.recorder.fail(id, failure);
    }
}

/// Why the SUT could not answer one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleFailure {
    /// A short, stable label failures are counted by (`refused`, `http_429`).
    pub kind: String,
    /// What happened to this sample (logged for the first few of each kind).
    pub message: String,
}

/// One logged response (accuracy mode or audit sampling).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedResponse {
    pub seq_id: u64,
    pub qsl_idx: usize,
    pub data: Vec<u8>,
    pub n_tokens: u64,
    /// The first token's bytes, as reported (token latencies, not Offline).
    pub first_token: Option<Vec<u8>>,
}

/// Per-run completion state. Created by the issuer with one slot per sample
/// it may issue.
pub(crate) struct Recorder {
    anchor: Instant,
    /// Sequence id of slot 0.
    base_seq: u64,
    /// Completion time per sample, ns since `anchor`; 0 = not yet.
    complete_ns: Vec<AtomicU64>,
    /// Query index per sample.
    sample_query: Vec<u32>,
    /// QSL index per sample (for the accuracy log).
    sample_qsl_idx: Vec<usize>,
    /// Samples still outstanding per query.
    query_remaining: Vec<AtomicU32>,
    /// When each query's last sample completed, ns since `anchor`; 0 = not yet.
    query_done_ns: Vec<AtomicU64>,
    completed_samples: AtomicU64,
    completed_queries: AtomicU64,
    max_completion_ns: AtomicU64,
    /// Token latencies, allocated only when the run measures them.
    first_token_ns: Option<Vec<AtomicU64>>,
    tokens: Option<Vec<AtomicU64>>,
    /// Which samples' responses are logged; `None` means all (accuracy mode).
    log_selection: Option<Vec<bool>>,
    log_all: bool,
    logged: Mutex<Vec<LoggedResponse>>,
    /// First-token bytes of logged samples, by slot, until they complete.
    first_token_data: Mutex<std::collections::HashMap<usize, Vec<u8>>>,
    errors: Mutex<Vec<String>>,
    /// Samples the SUT reported as failed (their completion is not a latency).
    failed: Vec<AtomicBool>,
    /// Failures by kind: how many, and the first few messages.
    failures: Mutex<std::collections::BTreeMap<String, (u64, Vec<String>)>>,
    /// Bad completions counted by kind.
    error_counts: [AtomicU64; BadCompletion::KINDS],
    /// The issuing thread to wake when a query completes (stream scenarios,
    /// and the final drain).
    waiter: Mutex<Option<Thread>>,
    wake_waiter: AtomicBool,
}

/// Of each kind of bad completion, this many are described; all are counted.
const DESCRIBED_PER_KIND: u64 = 10;

/// The ways a SUT can complete wrongly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadCompletion {
    /// An id this run never issued.
    UnknownId,
    /// A sample completed more than once.
    Repeated,
    /// A first token reported more than once, or for an unknown id.
    BadFirstToken,
}

impl BadCompletion {
    const KINDS: usize = 3;

    pub fn describe(self) -> &'static str {
        match self {
            BadCompletion::UnknownId => "unknown response id",
            BadCompletion::Repeated => "repeated completion",
            BadCompletion::BadFirstToken => "bad first-token report",
        }
    }
}

pub(crate) struct RecorderPlan<'a> {
    pub anchor: Instant,
    pub base_seq: u64,
    pub sample_query: Vec<u32>,
    pub sample_qsl_idx: Vec<usize>,
    pub query_sizes: &'a [u32],
    pub token_latencies: bool,
    /// `None`: log every response; `Some(sel)`: log where `sel[i]`.
    pub log_selection: Option<Vec<bool>>,
    pub log_all: bool,
}

impl Recorder {
    pub(crate) fn new(plan: RecorderPlan<'_>) -> Recorder {
        let n = plan.sample_query.len();
        let zeros = |len: usize| (0..len).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Recorder {
            anchor: plan.anchor,
            base_seq: plan.base_seq,
            complete_ns: zeros(n),
            sample_query: plan.sample_query,
            sample_qsl_idx: plan.sample_qsl_idx,
            query_remaining: plan
                .query_sizes
                .iter()
                .map(|&s| AtomicU32::new(s))
                .collect(),
            query_done_ns: zeros(plan.query_sizes.len()),
            completed_samples: AtomicU64::new(0),
            completed_queries: AtomicU64::new(0),
            max_completion_ns: AtomicU64::new(0),
            first_token_ns: plan.token_latencies.then(|| zeros(n)),
            tokens: plan.token_latencies.then(|| zeros(n)),
            log_selection: plan.log_selection,
            log_all: plan.log_all,
            logged: Mutex::new(Vec::new()),
            first_token_data: Mutex::new(std::collections::HashMap::new()),
            errors: Mutex::new(Vec::new()),
            failed: (0..n).map(|_| AtomicBool::new(false)).collect(),
            failures: Mutex::new(std::collections::BTreeMap::new()),
            error_counts: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            waiter: Mutex::new(None),
            wake_waiter: AtomicBool::new(false),
        }
    }

    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        // Never 0, which marks "not completed".
        (self.anchor.elapsed().as_nanos() as u64).max(1)
    }

    fn slot(&self, id: ResponseId) -> Option<usize> {
        let slot = id.0.checked_sub(self.base_seq)? as usize;
        (slot < self.complete_ns.len()).then_some(slot)
    }

    fn record_error(&self, kind: BadCompletion, message: impl FnOnce() -> String) {
        let seen = self.error_counts[kind as usize].fetch_add(1, Ordering::Relaxed);
        if seen < DESCRIBED_PER_KIND {
            if let Ok(mut errors) = self.errors.lock() {
                errors.push(message());
            }
        }
    }

    fn complete<'d>(&self, responses: impl Iterator<Item = (ResponseId, &'d [u8], u64)>) {
        let t = self.now_ns();
        let mut completed = 0u64;
        // Consecutive samples of one query are common (a batch): count them
        // down with one atomic operation.
        let mut pending_query: Option<(u32, u32)> = None;
        for (id, data, n_tokens) in responses {
            let Some(slot) = self.slot(id) else {
                self.record_error(BadCompletion::UnknownId, || {
                    format!(
                        "SUT completed response id {} which this run did not issue",
                        id.0
                    )
                });
                continue;
            };
            if self.complete_ns[slot]
                .compare_exchange(0, t, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                self.record_error(BadCompletion::Repeated, || {
                    format!(
                        "SUT completed response id {} (sample {}) more than once",
                        id.0, self.sample_qsl_idx[slot]
                    )
                });
                continue;
            }
            completed += 1;
            if let Some(tokens) = &self.tokens {
                tokens[slot].store(n_tokens, Ordering::Relaxed);
            }
            if self.logs_slot(slot) {
                self.log_response(slot, data, n_tokens);
            }
            let query = self.sample_query[slot];
            match &mut pending_query {
                Some((q, count)) if *q == query => *count += 1,
                _ => {
                    if let Some((q, count)) = pending_query.take() {
                        self.count_down(q, count, t);
                    }
                    pending_query = Some((query, 1));
                }
            }
        }
        if let Some((q, count)) = pending_query {
            self.count_down(q, count, t);
        }
        if completed > 0 {
            self.completed_samples
                .fetch_add(completed, Ordering::AcqRel);
            self.max_completion_ns.fetch_max(t, Ordering::AcqRel);
        }
    }

    fn fail(&self, id: ResponseId, failure: SampleFailure) {
        let t = self.now_ns();
        let Some(slot) = self.slot(id) else {
            self.record_error(BadCompletion::UnknownId, || {
                format!(
                    "SUT reported response id {} as failed, which this run did not issue",
                    id.0
                )
            });
            return;
        };
        // Marked before the completion time is published, so whoever sees
        // the sample complete also sees it failed.
        self.failed[slot].store(true, Ordering::Release);
        if self.complete_ns[slot]
            .compare_exchange(0, t, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            self.record_error(BadCompletion::Repeated, || {
                format!(
                    "SUT reported response id {} (sample {}) as failed after completing it",
                    id.0, self.sample_qsl_idx[slot]
                )
            });
            return;
        }
        if let Ok(mut failures) = self.failures.lock() {
            let (count, messages) = failures.entry(failure.kind).or_default();
            *count += 1;
            if (messages.len() as u64) < DESCRIBED_PER_KIND {
                messages.push(format!(
                    "sample {} (response id {}) failed: {}",
                    self.sample_qsl_idx[slot], id.0, failure.message
                ));
            }
        }
        self.count_down(self.sample_query[slot], 1, t);
        self.completed_samples.fetch_add(1, Ordering::AcqRel);
        self.max_completion_ns.fetch_max(t, Ordering::AcqRel);
    }

    pub(crate) fn sample_failed(&self, slot: usize) -> bool {
        self.failed[slot].load(Ordering::Acquire)
    }

    /// Failures by kind, with the described examples.
    pub(crate) fn failures(&self) -> std::collections::BTreeMap<String, (u64, Vec<String>)> {
        self.failures.lock().map(|f| f.clone()).unwrap_or_default()
    }

    fn count_down(&self, query: u32, count: u32, t: u64) {
        let q = query as usize;
        let before = self.query_remaining[q].fetch_sub(count, Ordering::AcqRel);
        if before == count {
            self.query_done_ns[q].store(t, Ordering::Release);
            self.completed_queries.fetch_add(1, Ordering::AcqRel);
            if self.wake_waiter.load(Ordering::Acquire) {
                if let Ok(waiter) = self.waiter.lock() {
                    if let Some(thread) = waiter.as_ref() {
                        thread.unpark();
                    }
                }
            }
        }
    }

    fn logs_slot(&self, slot: usize) -> bool {
        self.log_all || self.log_selection.as_ref().is_some_and(|s| s[slot])
    }

    fn log_response(&self, slot: usize, data: &[u8], n_tokens: u64) {
        let first_token = self.first_token_ns.as_ref().map(|_| {
            self.first_token_data
                .lock()
                .ok()
                .and_then(|mut m| m.remove(&slot))
                .unwrap_or_default()
        });
        if let Ok(mut logged) = self.logged.lock() {
            logged.push(LoggedResponse {
                seq_id: self.base_seq + slot as u64,
                qsl_idx: self.sample_qsl_idx[slot],
                data: data.to_vec(),
                n_tokens,
                first_token,
            });
        }
    }

    fn first_token(&self, responses: &[QuerySampleResponse<'_>]) {
        let t = self.now_ns();
        let Some(first) = &self.first_token_ns else {
            return;
        };
        for r in responses {
            match self.slot(r.id) {
                Some(slot) => {
                    let fresh = first[slot]
                        .compare_exchange(0, t, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok();
                    if fresh && self.logs_slot(slot) {
                        // Kept for the accuracy log's token_data (LoadGen's
                        // CacheToken), off the timestamp's path.
                        if let Ok(mut m) = self.first_token_data.lock() {
                            m.insert(slot, r.data.to_vec());
                        }
                    }
                    if !fresh {
                        self.record_error(BadCompletion::BadFirstToken, || {
                            format!("SUT reported the first token of response id {} more than once", r.id.0)
                        });
                    }
                }
                None => self.record_error(BadCompletion::BadFirstToken, || {
                    format!("SUT reported a first token for response id {} which this run did not issue", r.id.0)
                }),
            }
        }
    }

    /// Registers the calling thread to be woken on query completions.
    pub(crate) fn register_waiter(&self) {
        if let Ok(mut waiter) = self.waiter.lock() {
            *waiter = Some(std::thread::current());
        }
        self.wake_waiter.store(true, Ordering::Release);
    }

    pub(crate) fn query_done_ns(&self, query: usize) -> u64 {
        self.query_done_ns[query].load(Ordering::Acquire)
    }

    pub(crate) fn completed_samples(&self) -> u64 {
        self.completed_samples.load(Ordering::Acquire)
    }

    pub(crate) fn completed_queries(&self) -> u64 {
        self.completed_queries.load(Ordering::Acquire)
    }

    pub(crate) fn max_completion_ns(&self) -> u64 {
        self.max_completion_ns.load(Ordering::Acquire)
    }

    pub(crate) fn sample_complete_ns(&self, slot: usize) -> u64 {
        self.complete_ns[slot].load(Ordering::Acquire)
    }

    pub(crate) fn first_token_ns(&self, slot: usize) -> Option<u64> {
        self.first_token_ns
            .as_ref()
            .map(|v| v[slot].load(Ordering::Acquire))
    }

    pub(crate) fn tokens(&self, slot: usize) -> Option<u64> {
        self.tokens
            .as_ref()
            .map(|v| v[slot].load(Ordering::Acquire))
    }

    pub(crate) fn take_logged(&self) -> Vec<LoggedResponse> {
        self.logged
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    /// Counts per kind (non-zero only) and the described examples.
    pub(crate) fn errors(&self) -> (Vec<(BadCompletion, u64)>, Vec<String>) {
        let described = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
        let counts = [
            BadCompletion::UnknownId,
            BadCompletion::Repeated,
            BadCompletion::BadFirstToken,
        ]
        .into_iter()
        .map(|k| (k, self.error_counts[k as usize].load(Ordering::Acquire)))
        .filter(|(_, n)| *n > 0)
        .collect();
        (counts, described)
    }
}
