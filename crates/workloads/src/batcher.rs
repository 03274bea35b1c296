//! A SUT that runs a model in batches: samples queue up and worker threads
//! take up to `max_batch` at a time, waiting at most `max_wait` for a batch
//! to fill (dynamic batching, for Server), or taking full batches at once
//! when a whole query arrives together (Offline). `flush_queries` sends a
//! partial batch without waiting.

use loadgen::{QuerySample, QuerySampleIndex, QuerySampleResponse, Responder, SystemUnderTest};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A model that answers a batch of samples with one response each.
pub trait BatchModel: Send + Sync + 'static {
    fn infer(&self, samples: &[QuerySampleIndex]) -> Result<Vec<Vec<u8>>, String>;
}

#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_batch: usize,
    pub max_wait: Duration,
    pub workers: usize,
}

struct Pending {
    sample: QuerySample,
    responder: Responder,
    arrived: Instant,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Pending>,
    flushing: bool,
    stopping: bool,
}

pub struct BatchingSut {
    name: String,
    shared: Arc<(Mutex<Queue>, Condvar)>,
    workers: Vec<JoinHandle<()>>,
    /// Inference errors (the sample is still completed, with no data).
    errors: Arc<Mutex<Vec<String>>>,
}

impl BatchingSut {
    pub fn new(name: String, model: Arc<dyn BatchModel>, policy: BatchPolicy) -> BatchingSut {
        let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..policy.workers.max(1))
            .map(|_| {
                let (shared, model, errors) =
                    (Arc::clone(&shared), Arc::clone(&model), Arc::clone(&errors));
                std::thread::spawn(move || work(&shared, model.as_ref(), policy, &errors))
            })
            .collect();
        BatchingSut {
            name,
            shared,
            workers,
            errors,
        }
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

fn work(
    shared: &(Mutex<Queue>, Condvar),
    model: &dyn BatchModel,
    policy: BatchPolicy,
    errors: &Mutex<Vec<String>>,
) {
    let (lock, ready) = shared;
    loop {
        let batch: Vec<Pending> = {
            let Ok(mut q) = lock.lock() else { return };
            loop {
                if q.stopping {
                    return;
                }
                let full = q.items.len() >= policy.max_batch;
                let waited = q
                    .items
                    .front()
                    .is_some_and(|p| p.arrived.elapsed() >= policy.max_wait);
                if !q.items.is_empty() && (full || waited || q.flushing) {
                    break;
                }
                let timeout = q.items.front().map_or(Duration::from_millis(100), |p| {
                    policy.max_wait.saturating_sub(p.arrived.elapsed())
                });
                q = match ready.wait_timeout(q, timeout.max(Duration::from_micros(50))) {
                    Ok((q, _)) => q,
                    Err(_) => return,
                };
            }
            let n = q.items.len().min(policy.max_batch);
            q.items.drain(..n).collect()
        };
        let indices: Vec<QuerySampleIndex> = batch.iter().map(|p| p.sample.index).collect();
        match model.infer(&indices) {
            Ok(outputs) => {
                for (p, data) in batch.iter().zip(&outputs) {
                    p.responder
                        .complete(&[QuerySampleResponse::with_data(p.sample.id, data)]);
                }
            }
            Err(e) => {
                if let Ok(mut errs) = errors.lock() {
                    if errs.len() < 10 {
                        errs.push(e);
                    }
                }
                for p in &batch {
                    p.responder.complete_ids([p.sample.id]);
                }
            }
        }
    }
}

impl SystemUnderTest for BatchingSut {
    fn name(&self) -> &str {
        &self.name
    }

    fn issue_query(&self, samples: &[QuerySample], responder: &Responder) {
        let (lock, ready) = &*self.shared;
        if let Ok(mut q) = lock.lock() {
            let now = Instant::now();
            q.flushing = false;
            q.items.extend(samples.iter().map(|&sample| Pending {
                sample,
                responder: responder.clone(),
                arrived: now,
            }));
        }
        ready.notify_all();
    }

    fn flush_queries(&self) {
        let (lock, ready) = &*self.shared;
        if let Ok(mut q) = lock.lock() {
            q.flushing = true;
        }
        ready.notify_all();
    }
}

impl Drop for BatchingSut {
    fn drop(&mut self) {
        let (lock, ready) = &*self.shared;
        if let Ok(mut q) = lock.lock() {
            q.stopping = true;
            q.items.clear();
        }
        ready.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
