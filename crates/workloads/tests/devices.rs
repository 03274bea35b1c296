//! One queue over several devices, with CPU workers standing in for GPUs:
//! work spreads to whoever is free, a device that fails hands its batch to
//! the others, and every sample is answered with the right data.

use loadgen::{
    start_test, LogSettings, Mode, QuerySampleIndex, RunControl, Scenario, TestSettings,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::batcher::{BatchModel, BatchPolicy, BatchingSut, DeviceGroup, ModelError};
use workloads::synthetic::SyntheticQsl;

/// A fake device: each batch takes `per_batch`; after `fail_after` batches
/// every call fails (a GPU that falls off the bus). Its warm-up takes
/// `warm_up` per worker, or fails when `warm_up_fails`.
struct FakeDevice {
    per_batch: Duration,
    fail_after: Option<u64>,
    calls: AtomicU64,
    warm_up: Duration,
    warm_up_fails: bool,
    warmed: AtomicU64,
}

impl FakeDevice {
    fn new(per_batch_ms: u64, fail_after: Option<u64>) -> Arc<FakeDevice> {
        Self::warming(per_batch_ms, fail_after, 0, false)
    }

    fn warming(
        per_batch_ms: u64,
        fail_after: Option<u64>,
        warm_up_ms: u64,
        warm_up_fails: bool,
    ) -> Arc<FakeDevice> {
        Arc::new(FakeDevice {
            per_batch: Duration::from_millis(per_batch_ms),
            fail_after,
            calls: AtomicU64::new(0),
            warm_up: Duration::from_millis(warm_up_ms),
            warm_up_fails,
            warmed: AtomicU64::new(0),
        })
    }
}

impl BatchModel for FakeDevice {
    fn warm_up(&self, max_batch: usize) -> Result<(), ModelError> {
        assert_eq!(max_batch, policy().max_batch);
        std::thread::sleep(self.warm_up);
        if self.warm_up_fails {
            return Err("out of memory at batch 8".into());
        }
        self.warmed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn infer(&self, samples: &[QuerySampleIndex]) -> Result<Vec<Vec<u8>>, ModelError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if self.fail_after.is_some_and(|k| n >= k) {
            return Err("Xid 79: GPU has fallen off the bus".into());
        }
        std::thread::sleep(self.per_batch);
        // The answer is the sample's own index, so a wrong routing shows.
        Ok(samples
            .iter()
            .map(|&i| (i as u32).to_le_bytes().to_vec())
            .collect())
    }
}

fn groups(devices: &[Arc<FakeDevice>]) -> Vec<DeviceGroup> {
    devices
        .iter()
        .enumerate()
        .map(|(i, d)| DeviceGroup {
            label: format!("fake:{i}"),
            model: Arc::clone(d) as Arc<dyn BatchModel>,
        })
        .collect()
}

fn policy() -> BatchPolicy {
    BatchPolicy {
        max_batch: 8,
        max_wait: Duration::from_millis(1),
        workers: 1,
    }
}

/// Every sample once (accuracy mode), returning the logged responses.
fn accuracy_run(sut: &BatchingSut, samples: usize) -> Vec<(usize, String)> {
    let dir = tempfile::tempdir().unwrap();
    let qsl = SyntheticQsl::new(samples, samples);
    let settings = TestSettings {
        scenario: Scenario::Offline,
        mode: Mode::AccuracyOnly,
        ..Default::default()
    };
    start_test(
        sut,
        &qsl,
        &settings,
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &RunControl::default(),
    )
    .unwrap();
    let log = std::fs::read_to_string(dir.path().join("mlperf_log_accuracy.json")).unwrap();
    let entries: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap();
    entries
        .iter()
        .map(|e| {
            (
                e["qsl_idx"].as_u64().unwrap() as usize,
                e["data"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn hex_of_index(i: usize) -> String {
    (i as u32)
        .to_le_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

#[test]
fn work_spreads_to_every_device_in_proportion_to_its_speed() {
    // A device four times faster takes most of the work; the slow one still helps.
    let devices = [FakeDevice::new(2, None), FakeDevice::new(8, None)];
    let sut = BatchingSut::across("fake".into(), groups(&devices), policy());
    let started = Instant::now();
    let answers = accuracy_run(&sut, 400);
    let elapsed = started.elapsed();
    assert_eq!(answers.len(), 400);
    for (i, data) in &answers {
        assert_eq!(data, &hex_of_index(*i), "sample {i}");
    }
    let stats = sut.device_stats();
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0].samples + stats[1].samples, 400);
    assert!(stats.iter().all(|s| s.failed.is_none()));
    // 50 batches: the fast device alone would need 100 ms, the slow one 400 ms;
    // sharing a queue, the fast one does about four fifths.
    let fast_share = stats[0].samples as f64 / 400.0;
    assert!(
        (0.65..=0.92).contains(&fast_share),
        "fast device did {fast_share:.2} of the work: {stats:?}"
    );
    assert!(stats[1].samples > 0, "{stats:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn a_device_that_fails_mid_run_hands_its_work_to_the_others() {
    let devices = [
        FakeDevice::new(2, None),
        FakeDevice::new(2, Some(3)),
        FakeDevice::new(2, None),
    ];
    let sut = BatchingSut::across("fake".into(), groups(&devices), policy());
    let answers = accuracy_run(&sut, 240);
    // Every sample answered once, with its own data: nothing lost, nothing empty.
    assert_eq!(answers.len(), 240);
    for (i, data) in &answers {
        assert_eq!(data, &hex_of_index(*i), "sample {i}");
    }
    let stats = sut.device_stats();
    assert_eq!(stats[1].samples, 3 * 8, "{stats:?}");
    let why = stats[1].failed.as_deref().unwrap();
    assert!(
        why.contains("fake:1") && why.contains("fallen off"),
        "{why}"
    );
    assert!(stats[0].failed.is_none() && stats[2].failed.is_none());
    assert_eq!(stats.iter().map(|s| s.samples).sum::<u64>(), 240);
    assert_eq!(sut.errors().len(), 1);
}

#[test]
fn with_every_device_failed_samples_are_answered_empty_and_the_errors_say_why() {
    let devices = [FakeDevice::new(1, Some(1)), FakeDevice::new(1, Some(0))];
    let sut = BatchingSut::across("fake".into(), groups(&devices), policy());
    let answers = accuracy_run(&sut, 64);
    assert_eq!(answers.len(), 64, "the run still ends");
    let with_data = answers.iter().filter(|(_, d)| !d.is_empty()).count();
    assert_eq!(with_data, 8, "only the one good batch carries data");
    let stats = sut.device_stats();
    assert!(stats.iter().all(|s| s.failed.is_some()), "{stats:?}");
    assert_eq!(sut.errors().len(), 2);
}

#[test]
fn every_worker_has_warmed_up_when_the_sut_is_handed_over() {
    let devices = [
        FakeDevice::warming(1, None, 150, false),
        FakeDevice::warming(1, None, 150, false),
    ];
    let policy = BatchPolicy {
        workers: 2,
        ..policy()
    };
    let started = Instant::now();
    let sut = BatchingSut::across("fake".into(), groups(&devices), policy);
    // Four workers warmed up in parallel, all before `across` returned.
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(
        devices
            .iter()
            .map(|d| d.warmed.load(Ordering::Relaxed))
            .sum::<u64>(),
        4
    );
    assert_eq!(accuracy_run(&sut, 64).len(), 64);
}

#[test]
fn a_device_whose_warm_up_fails_is_out_of_service_before_the_run() {
    let devices = [
        FakeDevice::new(1, None),
        FakeDevice::warming(1, None, 0, true),
    ];
    let sut = BatchingSut::across("fake".into(), groups(&devices), policy());
    let answers = accuracy_run(&sut, 80);
    assert_eq!(answers.len(), 80);
    for (i, data) in &answers {
        assert_eq!(data, &hex_of_index(*i), "sample {i}");
    }
    let stats = sut.device_stats();
    assert_eq!((stats[0].samples, stats[1].samples), (80, 0), "{stats:?}");
    let why = stats[1].failed.as_deref().unwrap();
    assert!(why.contains("fake:1: warm-up: out of memory"), "{why}");
}
