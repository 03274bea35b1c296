//! Bad SUTs, bad settings and interrupts: the run ends, logs are complete
//! and readable, and the result says why it is invalid.

mod common;

use common::{detail_value, Qsl, RecordingNull, Silent, Sloppy};
use loadgen::run::RunError;
use loadgen::{start_test, LogSettings, RunControl, Scenario, TestSettings};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn logs_are_readable(dir: &std::path::Path) {
    let detail = std::fs::read_to_string(dir.join("mlperf_log_detail.txt")).unwrap();
    assert!(!detail.is_empty());
    for line in detail.lines() {
        let json = line.strip_prefix(":::MLLOG ").unwrap();
        serde_json::from_str::<serde_json::Value>(json).unwrap();
    }
    let acc = std::fs::read_to_string(dir.join("mlperf_log_accuracy.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&acc).unwrap();
    assert!(std::fs::read_to_string(dir.join("mlperf_log_summary.txt"))
        .unwrap()
        .contains("encountered"));
}

#[test]
fn a_sut_that_never_answers_ends_at_the_timeout_invalid() {
    for scenario in [Scenario::SingleStream, Scenario::Server, Scenario::Offline] {
        let dir = tempfile::tempdir().unwrap();
        let control = RunControl {
            sut_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let settings = TestSettings {
            scenario,
            min_duration_ms: 200,
            server_target_qps: 100.0,
            offline_expected_qps: 100.0,
            ..Default::default()
        };
        let started = Instant::now();
        let out = start_test(
            &Silent,
            &Qsl {
                total: 10,
                performance: 10,
            },
            &settings,
            &LogSettings::in_dir(dir.path().to_path_buf()),
            Instant::now(),
            &control,
        )
        .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{scenario} took {:?}",
            started.elapsed()
        );
        let perf = out.performance.unwrap();
        assert!(!perf.validity.valid);
        assert!(
            perf.validity
                .reasons
                .iter()
                .any(|r| r.contains("stopped answering")),
            "{:?}",
            perf.validity.reasons
        );
        logs_are_readable(dir.path());
        let detail = std::fs::read_to_string(dir.path().join("mlperf_log_detail.txt")).unwrap();
        assert_eq!(detail_value(&detail, "result_validity").unwrap(), "INVALID");
        assert!(detail_value(&detail, "result_invalid_reason")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("stopped answering"));
    }
}

#[test]
fn unknown_and_repeated_completions_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let settings = TestSettings {
        scenario: Scenario::Offline,
        offline_expected_qps: 1000.0,
        min_duration_ms: 10,
        ..Default::default()
    };
    let out = start_test(
        &Sloppy,
        &Qsl {
            total: 20,
            performance: 20,
        },
        &settings,
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &RunControl::default(),
    )
    .unwrap();
    let perf = out.performance.unwrap();
    assert!(!perf.validity.valid);
    assert!(
        perf.run_problems
            .iter()
            .any(|p| p.contains("invalid completions") && p.contains("1 × unknown response id")),
        "{:?}",
        perf.run_problems
    );
    assert!(out.log_errors >= 2);
    let summary = std::fs::read_to_string(dir.path().join("mlperf_log_summary.txt")).unwrap();
    assert!(summary.contains("ERRORS encountered"), "{summary}");
    let detail = std::fs::read_to_string(dir.path().join("mlperf_log_detail.txt")).unwrap();
    assert!(detail.contains("more than once") && detail.contains("did not issue"));
    // Every sample still counted once.
    assert_eq!(perf.result.samples_completed, perf.result.samples_issued);
    logs_are_readable(dir.path());
}

#[test]
fn interrupt_ends_the_run_with_logs_and_marks_it() {
    let dir = tempfile::tempdir().unwrap();
    let control = RunControl::default();
    let flag = control.interrupt.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::SeqCst);
    });
    let settings = TestSettings {
        scenario: Scenario::Server,
        server_target_qps: 1000.0,
        min_duration_ms: 60_000,
        ..Default::default()
    };
    let started = Instant::now();
    let out = start_test(
        &RecordingNull::default(),
        &Qsl {
            total: 10,
            performance: 10,
        },
        &settings,
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &control,
    )
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(out.interrupted);
    let perf = out.performance.unwrap();
    assert!(!perf.validity.valid);
    assert!(perf.run_problems.iter().any(|p| p.contains("interrupted")));
    assert!(perf.result.queries_issued > 50);
    logs_are_readable(dir.path());
}

#[test]
fn settings_that_cannot_run_fail_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("never");
    for bad in [
        TestSettings {
            scenario: Scenario::Server,
            server_target_qps: 0.0,
            ..Default::default()
        },
        TestSettings {
            scenario: Scenario::Offline,
            offline_expected_qps: -1.0,
            ..Default::default()
        },
        TestSettings {
            min_duration_ms: 10,
            max_duration_ms: 5,
            ..Default::default()
        },
        TestSettings {
            scenario: Scenario::MultiStream,
            multi_stream_samples_per_query: 0,
            ..Default::default()
        },
    ] {
        let err = start_test(
            &RecordingNull::default(),
            &Qsl {
                total: 10,
                performance: 10,
            },
            &bad,
            &LogSettings::in_dir(out_dir.clone()),
            Instant::now(),
            &RunControl::default(),
        )
        .unwrap_err();
        assert!(matches!(err, RunError::Settings(_)), "{err}");
        assert!(
            !out_dir.exists(),
            "files written for settings that cannot run"
        );
    }
}

#[test]
fn too_many_outstanding_queries_ends_a_server_run() {
    let dir = tempfile::tempdir().unwrap();
    let settings = TestSettings {
        scenario: Scenario::Server,
        server_target_qps: 2000.0,
        server_max_async_queries: 5,
        min_duration_ms: 2000,
        ..Default::default()
    };
    let control = RunControl {
        sut_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let out = start_test(
        &Silent,
        &Qsl {
            total: 10,
            performance: 10,
        },
        &settings,
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &control,
    )
    .unwrap();
    let perf = out.performance.unwrap();
    assert_eq!(perf.result.queries_issued, 6);
    let detail = std::fs::read_to_string(dir.path().join("mlperf_log_detail.txt")).unwrap();
    assert!(detail.contains("Too many outstanding queries"));
}

#[test]
fn max_query_count_and_duration_stop_issuing() {
    let dir = tempfile::tempdir().unwrap();
    let settings = TestSettings {
        scenario: Scenario::SingleStream,
        single_stream_expected_latency_ns: 1e4,
        min_duration_ms: 10_000,
        max_query_count: 500,
        ..Default::default()
    };
    let out = start_test(
        &RecordingNull::default(),
        &Qsl {
            total: 10,
            performance: 10,
        },
        &settings,
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &RunControl::default(),
    )
    .unwrap();
    assert_eq!(out.performance.unwrap().result.queries_issued, 500);
    let detail = std::fs::read_to_string(dir.path().join("mlperf_log_detail.txt")).unwrap();
    assert!(detail.contains("Max query count reached"));
}

/// Fails every third sample it is given (as a network SUT whose server
/// refused some requests) and completes the rest.
struct FailsSome;

impl loadgen::SystemUnderTest for FailsSome {
    fn name(&self) -> &str {
        "fails-some"
    }
    fn issue_query(&self, samples: &[loadgen::QuerySample], responder: &loadgen::Responder) {
        for s in samples {
            if s.id.0 % 3 == 0 {
                let kind = if s.id.0 % 2 == 0 {
                    "refused"
                } else {
                    "http_503"
                };
                responder.fail(
                    s.id,
                    loadgen::SampleFailure {
                        kind: kind.into(),
                        message: format!("{kind} for sample {}", s.index),
                    },
                );
            } else {
                responder.complete_ids([s.id]);
            }
        }
    }
}

#[test]
fn failed_samples_end_the_run_normally_but_make_it_invalid_by_kind() {
    for scenario in [Scenario::SingleStream, Scenario::Server, Scenario::Offline] {
        let dir = tempfile::tempdir().unwrap();
        let settings = TestSettings {
            scenario,
            min_duration_ms: 50,
            min_query_count: 30,
            server_target_qps: 1000.0,
            offline_expected_qps: 30.0,
            single_stream_expected_latency_ns: 10_000.0,
            ..Default::default()
        };
        let out = start_test(
            &FailsSome,
            &Qsl {
                total: 10,
                performance: 10,
            },
            &settings,
            &LogSettings::in_dir(dir.path().to_path_buf()),
            Instant::now(),
            &RunControl::default(),
        )
        .unwrap();
        let perf = out.performance.unwrap();
        let r = &perf.result;
        assert!(r.samples_failed > 0, "{scenario}");
        assert_eq!(
            r.samples_completed + r.samples_failed,
            r.samples_issued,
            "{scenario}: every issued sample ended one way or the other"
        );
        assert_eq!(r.sample_latencies_ns.len() as u64, r.samples_completed);
        assert!(!perf.validity.valid, "{scenario}");
        let reason = perf
            .validity
            .reasons
            .iter()
            .find(|r| r.contains("failed in the SUT"))
            .unwrap_or_else(|| panic!("{scenario}: {:?}", perf.validity.reasons));
        assert!(
            reason.contains("× refused") && reason.contains("× http_503"),
            "{reason}"
        );
        assert!(
            !reason.contains("never completed"),
            "failed samples are not missing ones: {reason}"
        );
        logs_are_readable(dir.path());
        let detail = std::fs::read_to_string(dir.path().join("mlperf_log_detail.txt")).unwrap();
        assert!(detail.contains("refused for sample"), "{scenario}");
        assert_eq!(detail_value(&detail, "result_validity").unwrap(), "INVALID");
    }
}
