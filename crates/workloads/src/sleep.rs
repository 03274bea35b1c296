//! The sleep SUT: each sample takes a service time (fixed, or exponentially
//! distributed around a mean from a seeded generator), served by
//! `concurrency` worker threads. Its throughput and latency are known in
//! advance, which makes it the reference for testing scenarios end to end:
//! `concurrency / service_time` samples per second, latency ≥ service time.

use loadgen::{QuerySample, Responder, SystemUnderTest};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a sample takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ServiceTime {
    Fixed(Duration),
    /// Exponentially distributed with this mean (seeded, reproducible).
    Exponential {
        mean: Duration,
        seed: u64,
    },
}

impl ServiceTime {
    pub fn mean(&self) -> Duration {
        match self {
            ServiceTime::Fixed(d) => *d,
            ServiceTime::Exponential { mean, .. } => *mean,
        }
    }
}

struct Job {
    samples: Vec<QuerySample>,
    responder: Responder,
}

pub struct SleepSut {
    name: String,
    service: ServiceTime,
    concurrency: usize,
    sender: Mutex<Option<Sender<Job>>>,
    workers: Vec<JoinHandle<()>>,
    /// Set on drop: workers abandon queued work instead of serving it.
    stopping: Arc<AtomicBool>,
}

impl SleepSut {
    pub fn new(service: ServiceTime, concurrency: usize) -> SleepSut {
        let concurrency = concurrency.max(1);
        let (sender, receiver) = channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let stopping = Arc::new(AtomicBool::new(false));
        let workers = (0..concurrency)
            .map(|worker| {
                let receiver = Arc::clone(&receiver);
                let stopping = Arc::clone(&stopping);
                let seed = match service {
                    ServiceTime::Exponential { seed, .. } => seed.wrapping_add(worker as u64),
                    ServiceTime::Fixed(_) => 0,
                };
                std::thread::spawn(move || serve(&receiver, service, seed, &stopping))
            })
            .collect();
        SleepSut {
            name: format!(
                "joulebench-sleep({} {:?}, {concurrency} workers)",
                match service {
                    ServiceTime::Fixed(_) => "fixed",
                    ServiceTime::Exponential { .. } => "exponential",
                },
                service.mean()
            ),
            service,
            concurrency,
            sender: Mutex::new(Some(sender)),
            workers,
            stopping,
        }
    }

    /// Samples per second it can sustain.
    pub fn capacity_per_second(&self) -> f64 {
        self.concurrency as f64 / self.service.mean().as_secs_f64().max(1e-9)
    }

    pub fn service_time(&self) -> ServiceTime {
        self.service
    }
}

/// A small, seeded generator for exponential service times (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn serve(receiver: &Mutex<Receiver<Job>>, service: ServiceTime, seed: u64, stopping: &AtomicBool) {
    let mut rng = SplitMix(seed);
    loop {
        let job = match receiver.lock() {
            Ok(r) => match r.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        if stopping.load(Ordering::Relaxed) {
            continue;
        }
        for sample in &job.samples {
            let duration = match service {
                ServiceTime::Fixed(d) => d,
                ServiceTime::Exponential { mean, .. } => mean.mul_f64(-(1.0 - rng.unit()).ln()),
            };
            busy_or_sleep(duration);
            job.responder.complete_ids([sample.id]);
        }
    }
}

/// Sleeps, but spins the last stretch: OS sleeps overshoot by ~60 µs, which
/// would make short service times wrong.
fn busy_or_sleep(duration: Duration) {
    let end = Instant::now() + duration;
    if duration > Duration::from_micros(200) {
        std::thread::sleep(duration - Duration::from_micros(100));
    }
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

impl SystemUnderTest for SleepSut {
    fn name(&self) -> &str {
        &self.name
    }

    fn issue_query(&self, samples: &[QuerySample], responder: &Responder) {
        let Ok(sender) = self.sender.lock() else {
            return;
        };
        let Some(sender) = sender.as_ref() else {
            return;
        };
        // One job per sample, so `concurrency` workers serve them in parallel.
        for sample in samples {
            let _ = sender.send(Job {
                samples: vec![*sample],
                responder: responder.clone(),
            });
        }
    }
}

impl Drop for SleepSut {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
