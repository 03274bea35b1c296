//! A SUT that runs a model in batches: samples queue up and worker threads
//! take up to `max_batch` at a time, waiting at most `max_wait` for a batch
//! to fill (dynamic batching, for Server), or taking full batches at once
//! when a whole query arrives together (Offline). `flush_queries` sends a
//! partial batch without waiting.
//!
//! Several devices (the GPUs of a node, say) serve one queue: each device
//! has its own worker group and model copy, and every worker pulls from the
//! same queue, so no device sits idle while another has a backlog. A device
//! whose inference fails is taken out of service and its batch goes back to
//! the front of the queue for the others; only when no device is left are
//! samples completed without data, and the errors say so.

use loadgen::{QuerySample, QuerySampleIndex, QuerySampleResponse, Responder, SystemUnderTest};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why a model could not answer a batch: whatever error its implementation
/// has (models live in several crates, so the contract takes any), as
/// loadgen's `QslError` does for data sets. The failure is recorded, with
/// the device, in the run's errors.
pub type ModelError = Box<dyn std::error::Error + Send + Sync>;

/// A model that answers a batch of samples with one response each.
pub trait BatchModel: Send + Sync + 'static {
    fn infer(&self, samples: &[QuerySampleIndex]) -> Result<Vec<Vec<u8>>, ModelError>;
    /// Run by each worker thread before the SUT is handed to the load
    /// generator: whatever a first batch of some size would otherwise pay
    /// inside the timed run (a GPU's per-shape set-up).
    fn warm_up(&self, _max_batch: usize) -> Result<(), ModelError> {
        Ok(())
    }
}

/// A model that gave a different number of answers than samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{answers} answers for a batch of {batch}")]
pub struct AnswerCount {
    pub answers: usize,
    pub batch: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_batch: usize,
    pub max_wait: Duration,
    /// Worker threads per device.
    pub workers: usize,
}

/// One device's model copy, served by `BatchPolicy::workers` threads.
pub struct DeviceGroup {
    /// The device's name in results (`cuda:0`, `cpu`).
    pub label: String,
    pub model: Arc<dyn BatchModel>,
}

/// What one device did during the run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceStats {
    pub device: String,
    pub samples: u64,
    pub batches: u64,
    /// Time its workers spent inside `infer`, summed over workers.
    pub busy_s: f64,
    /// The error that took it out of service, if one did.
    pub failed: Option<String>,
}

#[derive(Default)]
struct Counters {
    samples: AtomicU64,
    batches: AtomicU64,
    busy_ns: AtomicU64,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
}

/// A sample waiting for its batch.
pub struct Pending {
    pub sample: QuerySample,
    pub responder: Responder,
    arrived: Instant,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Pending>,
    flushing: bool,
    stopping: bool,
    /// No one is left to serve: samples are answered at once, without data.
    closed: bool,
}

/// The samples a SUT's workers take their batches from: a batch goes when
/// it is full, when its oldest sample has waited `max_wait`, or on a flush.
#[derive(Default)]
pub struct BatchQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

impl BatchQueue {
    /// Queues `samples` (the SUT's `issue_query`).
    pub fn push(&self, samples: &[QuerySample], responder: &Responder) {
        if let Ok(mut q) = self.state.lock() {
            if q.closed {
                responder.complete_ids(samples.iter().map(|s| s.id));
                return;
            }
            let now = Instant::now();
            q.flushing = false;
            q.items.extend(samples.iter().map(|&sample| Pending {
                sample,
                responder: responder.clone(),
                arrived: now,
            }));
        }
        self.ready.notify_all();
    }

    /// Sends a partial batch without waiting (the SUT's `flush_queries`).
    pub fn flush(&self) {
        if let Ok(mut q) = self.state.lock() {
            q.flushing = true;
        }
        self.ready.notify_all();
    }

    /// Drops what is queued and wakes every worker to end.
    pub fn stop(&self) {
        if let Ok(mut q) = self.state.lock() {
            q.stopping = true;
            q.items.clear();
        }
        self.ready.notify_all();
    }

    /// The next batch, or None once the queue stops or `quit` says so.
    pub fn take(&self, policy: &BatchPolicy, quit: impl Fn() -> bool) -> Option<Vec<Pending>> {
        let mut q = self.state.lock().ok()?;
        loop {
            if q.stopping || quit() {
                return None;
            }
            let full = q.items.len() >= policy.max_batch;
            let waited = q
                .items
                .front()
                .is_some_and(|p| p.arrived.elapsed() >= policy.max_wait);
            if !q.items.is_empty() && (full || waited || q.flushing) {
                let n = q.items.len().min(policy.max_batch.max(1));
                return Some(q.items.drain(..n).collect());
            }
            let timeout = q.items.front().map_or(Duration::from_millis(100), |p| {
                policy.max_wait.saturating_sub(p.arrived.elapsed())
            });
            q = self
                .ready
                .wait_timeout(q, timeout.max(Duration::from_micros(50)))
                .ok()?
                .0;
        }
    }

    /// Puts a batch back at the front for other workers. With `close`, no
    /// one is left: everything queued, and every later sample, is answered
    /// without data.
    pub fn requeue(&self, batch: Vec<Pending>, close: bool) {
        let Ok(mut q) = self.state.lock() else { return };
        for p in batch.into_iter().rev() {
            q.items.push_front(p);
        }
        q.closed |= close;
        if q.closed {
            for p in q.items.drain(..) {
                p.responder.complete_ids([p.sample.id]);
            }
        }
        drop(q);
        self.ready.notify_all();
    }
}

pub struct BatchingSut {
    name: String,
    queue: Arc<BatchQueue>,
    workers: Vec<JoinHandle<()>>,
    devices: Vec<(String, Arc<Counters>)>,
    /// Inference errors, first ten (the run reports them).
    errors: Arc<Mutex<Vec<String>>>,
}

impl BatchingSut {
    /// One model on one device.
    pub fn new(name: String, model: Arc<dyn BatchModel>, policy: BatchPolicy) -> BatchingSut {
        let group = DeviceGroup {
            label: "device".into(),
            model,
        };
        BatchingSut::across(name, vec![group], policy)
    }

    /// One queue served by every device in `groups`.
    pub fn across(name: String, groups: Vec<DeviceGroup>, policy: BatchPolicy) -> BatchingSut {
        let queue = Arc::new(BatchQueue::default());
        let healthy = Arc::new(AtomicUsize::new(groups.len()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::new();
        let mut devices = Vec::new();
        let (warm, warmed) = std::sync::mpsc::channel::<()>();
        for group in groups {
            let counters = Arc::new(Counters::default());
            for _ in 0..policy.workers.max(1) {
                let worker = Worker {
                    queue: Arc::clone(&queue),
                    healthy: Arc::clone(&healthy),
                    model: Arc::clone(&group.model),
                    label: group.label.clone(),
                    counters: Arc::clone(&counters),
                    errors: Arc::clone(&errors),
                    policy,
                };
                let warm = warm.clone();
                workers.push(std::thread::spawn(move || worker.run(warm)));
            }
            devices.push((group.label, counters));
        }
        // Every worker warmed up (or gave up) before the timed run can start.
        drop(warm);
        while warmed.recv().is_ok() {}
        BatchingSut {
            name,
            queue,
            workers,
            devices,
            errors,
        }
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Per-device work so far, in the order the devices were given.
    pub fn device_stats(&self) -> Vec<DeviceStats> {
        self.devices
            .iter()
            .map(|(label, c)| DeviceStats {
                device: label.clone(),
                samples: c.samples.load(Ordering::Relaxed),
                batches: c.batches.load(Ordering::Relaxed),
                busy_s: c.busy_ns.load(Ordering::Relaxed) as f64 * 1e-9,
                failed: c.failure.lock().ok().and_then(|f| f.clone()),
            })
            .collect()
    }
}

struct Worker {
    queue: Arc<BatchQueue>,
    /// Devices still in service.
    healthy: Arc<AtomicUsize>,
    model: Arc<dyn BatchModel>,
    label: String,
    counters: Arc<Counters>,
    errors: Arc<Mutex<Vec<String>>>,
    policy: BatchPolicy,
}

impl Worker {
    /// Warms up, says so on `warm` (dropping it), then serves batches.
    fn run(self, warm: std::sync::mpsc::Sender<()>) {
        let warmed = self.model.warm_up(self.policy.max_batch);
        drop(warm);
        if let Err(e) = warmed {
            self.fail(format!("{}: warm-up: {e}", self.label), Vec::new());
            return;
        }
        while let Some(batch) = self.take() {
            let indices: Vec<QuerySampleIndex> = batch.iter().map(|p| p.sample.index).collect();
            let started = Instant::now();
            let outcome = self.model.infer(&indices).and_then(|outputs| {
                if outputs.len() == batch.len() {
                    Ok(outputs)
                } else {
                    Err(AnswerCount {
                        answers: outputs.len(),
                        batch: batch.len(),
                    }
                    .into())
                }
            });
            let c = &self.counters;
            c.busy_ns
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            match outcome {
                Ok(outputs) => {
                    c.batches.fetch_add(1, Ordering::Relaxed);
                    c.samples.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    for (p, data) in batch.iter().zip(&outputs) {
                        p.responder
                            .complete(&[QuerySampleResponse::with_data(p.sample.id, data)]);
                    }
                }
                Err(e) => {
                    self.fail(format!("{}: {e}", self.label), batch);
                    return;
                }
            }
        }
    }

    /// The next batch, or None when the SUT stops or this device failed.
    fn take(&self) -> Option<Vec<Pending>> {
        self.queue.take(&self.policy, || {
            self.counters.failed.load(Ordering::Relaxed)
        })
    }

    /// Takes this device out of service. Its batch goes back to the front of
    /// the queue for the devices still serving; with none left, every queued
    /// sample is completed without data (the errors say why).
    fn fail(&self, error: String, batch: Vec<Pending>) {
        if let Ok(mut errs) = self.errors.lock() {
            if errs.len() < 10 {
                errs.push(error.clone());
            }
        }
        // The first worker of a group to fail takes the group out of service.
        let mut none_left = false;
        if !self.counters.failed.swap(true, Ordering::Relaxed) {
            none_left = self.healthy.fetch_sub(1, Ordering::Relaxed) == 1;
            if let Ok(mut f) = self.counters.failure.lock() {
                *f = Some(error);
            }
        }
        self.queue.requeue(batch, none_left);
    }
}

impl SystemUnderTest for BatchingSut {
    fn name(&self) -> &str {
        &self.name
    }

    fn issue_query(&self, samples: &[QuerySample], responder: &Responder) {
        self.queue.push(samples, responder);
    }

    fn flush_queries(&self) {
        self.queue.flush();
    }
}

impl Drop for BatchingSut {
    fn drop(&mut self) {
        self.queue.stop();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
