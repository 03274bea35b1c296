//! SUTs and a QSL for the load generator's own tests (the real ones live in
//! the workloads crate, which depends on this one).
#![allow(dead_code)]

use loadgen::{
    QuerySample, QuerySampleIndex, QuerySampleLibrary, QuerySampleResponse, Responder,
    SystemUnderTest,
};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Qsl {
    pub total: usize,
    pub performance: usize,
}

impl QuerySampleLibrary for Qsl {
    fn name(&self) -> &str {
        "TestQSL"
    }
    fn total_sample_count(&self) -> usize {
        self.total
    }
    fn performance_sample_count(&self) -> usize {
        self.performance
    }
    fn load_samples_to_ram(&self, _: &[QuerySampleIndex]) -> Result<(), loadgen::qsl::QslError> {
        Ok(())
    }
    fn unload_samples_from_ram(&self, _: &[QuerySampleIndex]) {}
}

/// Completes at once; records every issued query (sample indices and when).
#[derive(Default)]
pub struct RecordingNull {
    pub issued: Mutex<Vec<(Instant, Vec<QuerySample>)>>,
    pub data: bool,
}

impl SystemUnderTest for RecordingNull {
    fn name(&self) -> &str {
        "RecordingNull"
    }
    fn issue_query(&self, samples: &[QuerySample], responder: &Responder) {
        self.issued
            .lock()
            .unwrap()
            .push((Instant::now(), samples.to_vec()));
        if self.data {
            let bytes: Vec<[u8; 4]> = samples
                .iter()
                .map(|s| (s.index as u32).to_le_bytes())
                .collect();
            let responses: Vec<QuerySampleResponse> = samples
                .iter()
                .zip(&bytes)
                .map(|(s, b)| QuerySampleResponse::with_data(s.id, b))
                .collect();
            responder.complete(&responses);
        } else {
            responder.complete_ids(samples.iter().map(|s| s.id));
        }
    }
}

/// Each sample takes `service` on one of `workers` threads; records issue
/// times and completion concurrency.
pub struct Sleeper {
    tx: Mutex<Sender<(QuerySample, Responder)>>,
    pub issued: Arc<Mutex<Vec<(Instant, usize)>>>,
}

impl Sleeper {
    pub fn new(service: Duration, workers: usize) -> Sleeper {
        let (tx, rx) = channel::<(QuerySample, Responder)>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers {
            let rx = Arc::clone(&rx);
            std::thread::spawn(move || loop {
                let next = rx.lock().unwrap().recv();
                let Ok((sample, responder)) = next else {
                    return;
                };
                std::thread::sleep(service);
                responder.complete_ids([sample.id]);
            });
        }
        Sleeper {
            tx: Mutex::new(tx),
            issued: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl SystemUnderTest for Sleeper {
    fn name(&self) -> &str {
        "Sleeper"
    }
    fn issue_query(&self, samples: &[QuerySample], responder: &Responder) {
        self.issued
            .lock()
            .unwrap()
            .push((Instant::now(), samples.len()));
        for s in samples {
            self.tx
                .lock()
                .unwrap()
                .send((*s, responder.clone()))
                .unwrap();
        }
    }
}

/// Never completes anything.
pub struct Silent;

impl SystemUnderTest for Silent {
    fn name(&self) -> &str {
        "Silent"
    }
    fn issue_query(&self, _: &[QuerySample], _: &Responder) {}
}

/// Completes every sample twice and also an id it was never given.
pub struct Sloppy;

impl SystemUnderTest for Sloppy {
    fn name(&self) -> &str {
        "Sloppy"
    }
    fn issue_query(&self, samples: &[QuerySample], responder: &Responder) {
        responder.complete_ids(samples.iter().map(|s| s.id));
        responder.complete_ids(samples.iter().map(|s| s.id));
        responder.complete_ids([loadgen::ResponseId(u64::MAX)]);
    }
}

/// The detail log's keys, in order.
pub fn detail_keys(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l.strip_prefix(":::MLLOG ").expect("MLLOG prefix")).unwrap();
            v["key"].as_str().unwrap().to_string()
        })
        .collect()
}

pub fn detail_value(text: &str, key: &str) -> Option<serde_json::Value> {
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l.strip_prefix(":::MLLOG ")?).ok()?;
        (v["key"] == key).then(|| v["value"].clone())
    })
}
