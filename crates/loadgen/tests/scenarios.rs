//! Each scenario's query pattern, observed from the SUT's side.

mod common;

use common::{Qsl, RecordingNull, Sleeper};
use loadgen::effective::EffectiveSettings;
use loadgen::schedule::{generate_queries, loadable_sets, Purpose, SequenceGen};
use loadgen::{start_test, LogSettings, RunControl, Scenario, TestOutput, TestSettings};
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
        &LogSettings {
            outdir: dir.path().to_path_buf(),
        },
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
    let qsl = Qsl {
        total: 256,
        performance: 256,
    };
    let (out, _dir) = run(&sut, &settings, &qsl);
    let e = EffectiveSettings::new(&settings, 256, 256).unwrap();
    let loaded = loadable_sets(&e, 256, 256).remove(0).set;
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

#[test]
fn server_arrivals_are_poisson_at_the_target_rate() {
    // The schedule: for several seeds, the count over 2 s is within 4σ of
    // λT, gaps have the exponential's coefficient of variation (1) and median
    // (mean × ln 2).
    let lambda = 5_000.0;
    for seed in 1..=5u64 {
        let s = TestSettings {
            scenario: Scenario::Server,
            server_target_qps: lambda,
            min_duration_ms: 2000,
            min_query_count: 1,
            schedule_rng_seed: seed,
            ..Default::default()
        };
        let e = EffectiveSettings::new(&s, 64, 64).unwrap();
        let set = loadable_sets(&e, 64, 64).remove(0);
        let plan = generate_queries(&e, Purpose::Performance, &set, &mut SequenceGen::new(false));
        let n = plan.query_count() as f64;
        let expected = lambda * 2.0;
        assert!(
            (n - expected).abs() < 4.0 * expected.sqrt(),
            "seed {seed}: {n} arrivals"
        );
        let mut gaps: Vec<f64> = plan
            .scheduled_delta_ns
            .windows(2)
            .map(|w| (w[1] - w[0]) as f64)
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean;
        assert!(
            (mean - 1e9 / lambda).abs() < 0.05 * 1e9 / lambda,
            "seed {seed}: mean gap {mean}"
        );
        assert!((cv - 1.0).abs() < 0.05, "seed {seed}: cv {cv}");
        gaps.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = gaps[gaps.len() / 2];
        assert!(
            (median / mean - std::f64::consts::LN_2).abs() < 0.05,
            "seed {seed}: median/mean {}",
            median / mean
        );
    }
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
