//! Each scenario's query pattern, observed from the SUT's side.

mod common;

use common::{Qsl, RecordingNull, Sleeper};
use loadgen::{
    start_test, LogSettings, QuerySampleIndex, QuerySampleLibrary, RunControl, Scenario,
    TestOutput, TestSettings,
};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn run(
    sut: &dyn loadgen::SystemUnderTest,
    settings: &TestSettings,
    qsl: &Qsl,
) -> (TestOutput, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = start_test(
        sut,
        qsl,
        settings,
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &RunControl::default(),
    )
    .unwrap();
    (out, dir)
}

#[test]
fn single_stream_issues_one_query_at_a_time() {
    let service = Duration::from_millis(2);
    let sut = Sleeper::new(service, 4);
    let settings = TestSettings {
        scenario: Scenario::SingleStream,
        single_stream_expected_latency_ns: 2e6,
        min_duration_ms: 300,
        min_query_count: 50,
        ..Default::default()
    };
    let (out, _dir) = run(
        &sut,
        &settings,
        &Qsl {
            total: 100,
            performance: 100,
        },
    );
    let issued = sut.issued.lock().unwrap().clone();
    let perf = out.performance.unwrap();
    assert_eq!(perf.result.queries_issued as usize, issued.len());
    assert!(issued.len() >= 50 && issued.len() < 200, "{}", issued.len());
    assert!(issued.iter().all(|(_, n)| *n == 1));
    // The next query waits for the previous one: gaps of at least the service time.
    for pair in issued.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= service, "queries overlapped");
    }
    let stats = perf.sample.as_ref().unwrap();
    assert!(stats.min_ns >= service.as_nanos() as i64);
    assert!(perf.validity.min_duration_met && perf.validity.min_queries_met);
}

#[test]
fn multi_stream_queries_are_contiguous_runs_of_the_loaded_set() {
    let sut = RecordingNull::default();
    let settings = TestSettings {
        scenario: Scenario::MultiStream,
        multi_stream_expected_latency_ns: 1e5,
        multi_stream_samples_per_query: 8,
        min_duration_ms: 50,
        min_query_count: 100,
        ..Default::default()
    };
    let qsl = LoadRecording {
        qsl: Qsl {
            total: 256,
            performance: 256,
        },
        loaded: Mutex::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    let out = start_test(
        &sut,
        &qsl,
        &settings,
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &RunControl::default(),
    )
    .unwrap();
    // The loaded set as LoadGen hands it to the QSL: shuffled, and padded
    // with its first samples_per_query - 1 entries.
    let loaded = qsl.loaded.lock().unwrap().clone();
    assert_eq!(loaded.len(), 256 + 7);
    let issued = sut.issued.lock().unwrap();
    assert!(issued.len() >= 100);
    for (_, query) in issued.iter() {
        assert_eq!(query.len(), 8);
        let start = loaded.iter().position(|&s| s == query[0].index).unwrap();
        let indices: Vec<usize> = query.iter().map(|s| s.index).collect();
        assert_eq!(indices, loaded[start..start + 8].to_vec());
    }
    let perf = out.performance.unwrap();
    assert_eq!(
        perf.query.as_ref().unwrap().count,
        perf.result.queries_issued
    );
}

/// The test QSL, keeping the last set it was asked to load, in its order.
struct LoadRecording {
    qsl: Qsl,
    loaded: Mutex<Vec<QuerySampleIndex>>,
}

impl QuerySampleLibrary for LoadRecording {
    fn name(&self) -> &str {
        self.qsl.name()
    }
    fn total_sample_count(&self) -> usize {
        self.qsl.total_sample_count()
    }
    fn performance_sample_count(&self) -> usize {
        self.qsl.performance_sample_count()
    }
    fn load_samples_to_ram(
        &self,
        samples: &[QuerySampleIndex],
    ) -> Result<(), loadgen::qsl::QslError> {
        *self.loaded.lock().unwrap() = samples.to_vec();
        Ok(())
    }
    fn unload_samples_from_ram(&self, _: &[QuerySampleIndex]) {}
}

#[test]
fn server_issues_on_schedule() {
    let sut = RecordingNull::default();
    let settings = TestSettings {
        scenario: Scenario::Server,
        server_target_qps: 2_000.0,
        min_duration_ms: 500,
        min_query_count: 1,
        ..Default::default()
    };
    let (out, _dir) = run(
        &sut,
        &settings,
        &Qsl {
            total: 64,
            performance: 64,
        },
    );
    let perf = out.performance.unwrap();
    let issued = sut.issued.lock().unwrap();
    assert_eq!(issued.len() as u64, perf.result.queries_issued);
    // Completed QPS tracks the target (a Poisson count over 0.5 s: ±10%).
    let qps = perf.completed_samples_per_second();
    assert!((qps / 2000.0 - 1.0).abs() < 0.1, "completed {qps} QPS");
    // The null SUT answers at issue, so latency is the harness's lateness.
    let p50 = perf.sample.as_ref().unwrap().percentile(0.5).unwrap();
    assert!(p50 < 1_000_000, "median lateness {p50} ns");
    assert!(perf.validity.valid, "{:?}", perf.validity.reasons);
}

#[test]
fn offline_sends_everything_in_one_query() {
    let sut = RecordingNull::default();
    let settings = TestSettings {
        scenario: Scenario::Offline,
        offline_expected_qps: 50_000.0,
        min_duration_ms: 200,
        ..Default::default()
    };
    let (out, _dir) = run(
        &sut,
        &settings,
        &Qsl {
            total: 1000,
            performance: 100,
        },
    );
    let issued = sut.issued.lock().unwrap();
    assert_eq!(issued.len(), 1);
    // 1.1 × 0.2 s × 50 000 = 11 000 samples: the loaded set repeated.
    assert_eq!(issued[0].1.len(), 11_000);
    let perf = out.performance.unwrap();
    assert_eq!(perf.sample_count(), 11_000);
    let distinct: std::collections::HashSet<usize> = issued[0].1.iter().map(|s| s.index).collect();
    assert_eq!(distinct.len(), 100);
}

#[test]
fn accuracy_mode_issues_every_sample_once_and_logs_responses() {
    let sut = RecordingNull {
        data: true,
        ..Default::default()
    };
    for scenario in [Scenario::Offline, Scenario::SingleStream, Scenario::Server] {
        let settings = TestSettings {
            scenario,
            mode: loadgen::Mode::AccuracyOnly,
            server_target_qps: 50_000.0,
            single_stream_expected_latency_ns: 1e4,
            ..Default::default()
        };
        let (out, dir) = run(
            &sut,
            &settings,
            &Qsl {
                total: 300,
                performance: 128,
            },
        );
        assert!(out.performance.is_none());
        let acc = out.accuracy.unwrap();
        assert_eq!(
            (acc.samples_issued, acc.samples_logged),
            (300, 300),
            "{scenario}"
        );
        let log: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("mlperf_log_accuracy.json")).unwrap(),
        )
        .unwrap();
        let mut seen: Vec<u64> = log
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["qsl_idx"].as_u64().unwrap())
            .collect();
        for e in log.as_array().unwrap() {
            // The SUT answered each sample with its index as 4 LE bytes.
            let idx = e["qsl_idx"].as_u64().unwrap() as u32;
            let hex: String = idx
                .to_le_bytes()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect();
            assert_eq!(e["data"], hex);
        }
        seen.sort();
        assert_eq!(seen, (0..300).collect::<Vec<u64>>(), "{scenario}");
    }
}

#[test]
fn submission_run_is_accuracy_then_performance() {
    let sut = RecordingNull {
        data: true,
        ..Default::default()
    };
    let settings = TestSettings {
        scenario: Scenario::Offline,
        mode: loadgen::Mode::SubmissionRun,
        offline_expected_qps: 10_000.0,
        min_duration_ms: 100,
        ..Default::default()
    };
    let (out, dir) = run(
        &sut,
        &settings,
        &Qsl {
            total: 50,
            performance: 50,
        },
    );
    assert_eq!(out.accuracy.unwrap().samples_logged, 50);
    assert!(out.performance.is_some());
    let detail = std::fs::read_to_string(dir.path().join("mlperf_log_detail.txt")).unwrap();
    let keys = common::detail_keys(&detail);
    let acc = keys.iter().position(|k| k == "generic_message").unwrap();
    assert!(
        detail.contains("Starting accuracy mode") && detail.contains("Starting performance mode")
    );
    assert_eq!(keys.iter().filter(|k| *k == "power_begin").count(), 2);
    assert!(acc < keys.iter().rposition(|k| k == "result_validity").unwrap());
}

#[test]
fn find_peak_performance_brackets_the_sut_capacity() {
    // Two workers × 1 ms: capacity 2000 QPS. With a 20 ms p99 bound the peak
    // lies below that and well above a quarter of it.
    let sut = Sleeper::new(Duration::from_millis(1), 2);
    let settings = TestSettings {
        scenario: Scenario::Server,
        mode: loadgen::Mode::FindPeakPerformance,
        server_target_qps: 250.0,
        server_target_latency_ns: 20_000_000,
        server_find_peak_qps_decimals_of_precision: -2,
        min_duration_ms: 300,
        min_query_count: 1,
        ..Default::default()
    };
    let (out, _dir) = run(
        &sut,
        &settings,
        &Qsl {
            total: 64,
            performance: 64,
        },
    );
    let peak = out.performance.unwrap().settings.target_qps;
    assert!(out.peak_search.len() >= 3, "{:?}", out.peak_search);
    assert!(
        (500.0..=2100.0).contains(&peak),
        "peak {peak}; steps {:?}",
        out.peak_search
    );
}

/// Counts samples open at once (issued, not yet completed) and the most
/// ever open; each sample takes `service`.
struct Gauge {
    service: Duration,
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl loadgen::SystemUnderTest for Gauge {
    fn name(&self) -> &str {
        "gauge"
    }
    fn issue_query(&self, samples: &[loadgen::QuerySample], responder: &loadgen::Responder) {
        use std::sync::atomic::Ordering;
        for s in samples {
            let now = self.open.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            let (open, responder, id, service) =
                (self.open.clone(), responder.clone(), s.id, self.service);
            std::thread::spawn(move || {
                std::thread::sleep(service);
                open.fetch_sub(1, Ordering::SeqCst);
                responder.complete_ids([id]);
            });
        }
    }
}

#[test]
fn a_closed_loop_keeps_exactly_its_streams_open_and_says_so_in_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sut = Gauge {
        service: Duration::from_millis(20),
        open: Default::default(),
        most: most.clone(),
    };
    let settings = TestSettings {
        scenario: Scenario::SingleStream,
        closed_loop_streams: 4,
        single_stream_expected_latency_ns: 20e6,
        min_duration_ms: 500,
        min_query_count: 10,
        ..Default::default()
    };
    let started = Instant::now();
    let out = start_test(
        &sut,
        &Qsl {
            total: 16,
            performance: 16,
        },
        &settings,
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &RunControl::default(),
    )
    .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 4);
    let perf = out.performance.unwrap();
    // Four loops of 20 ms samples: about 200 queries a second.
    let rate = perf.result.queries_issued as f64 / elapsed;
    assert!((120.0..=210.0).contains(&rate), "{rate} queries/s");
    assert!(perf.validity.min_duration_met, "{:?}", perf.validity);
    let detail = std::fs::read_to_string(dir.path().join("mlperf_log_detail.txt")).unwrap();
    assert!(detail.contains("\"effective_closed_loop_streams\", \"value\": 4"));
    let summary = std::fs::read_to_string(dir.path().join("mlperf_log_summary.txt")).unwrap();
    assert!(summary.contains("Streams  : 4"), "{summary}");
    // Anything but SingleStream is refused.
    let err = start_test(
        &sut,
        &Qsl {
            total: 16,
            performance: 16,
        },
        &TestSettings {
            scenario: Scenario::Server,
            ..settings
        },
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &RunControl::default(),
    );
    assert!(err.is_err());
}
