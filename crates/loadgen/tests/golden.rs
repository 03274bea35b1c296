//! Compatibility with MLPerf LoadGen 6.0.17, checked against files its own
//! Python package wrote (tests/golden/, copied from shared/reference/).

mod common;

use common::{detail_keys, detail_value, Qsl, RecordingNull};
use loadgen::{start_test, LogSettings, RunControl, Scenario, TestSettings};
use std::time::Instant;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

/// The settings of the reference runs (shared/reference/loadgen_null_sut.py).
fn reference_settings(scenario: Scenario) -> TestSettings {
    let mut s = TestSettings {
        scenario,
        min_duration_ms: 1000,
        min_query_count: 1,
        ..Default::default()
    };
    match scenario {
        Scenario::Offline => s.offline_expected_qps = 100_000.0,
        Scenario::Server => {
            s.server_target_qps = 20_000.0;
            s.server_target_latency_ns = 100_000_000;
        }
        Scenario::SingleStream => s.single_stream_expected_latency_ns = 10_000.0,
        Scenario::MultiStream => {
            s.multi_stream_expected_latency_ns = 10_000.0;
            s.multi_stream_samples_per_query = 8;
        }
    }
    s
}

fn reference_file(scenario: Scenario, name: &str) -> String {
    let path = format!("{GOLDEN}/loadgen-6.0.17_{scenario}_{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Replaces every number in a summary with `#`, keeping its layout.
fn layout(summary: &str) -> Vec<String> {
    summary
        .lines()
        .map(|line| {
            let mut out = String::new();
            let mut in_number = false;
            let chars: Vec<char> = line.chars().collect();
            for (i, &c) in chars.iter().enumerate() {
                let exponent = in_number
                    && (c == 'e' && matches!(chars.get(i + 1), Some('+' | '-'))
                        || (c == '+' || c == '-') && chars.get(i.wrapping_sub(1)) == Some(&'e'));
                if c.is_ascii_digit() || (in_number && c == '.') || exponent {
                    if !in_number {
                        out.push('#');
                    }
                    in_number = true;
                } else {
                    in_number = false;
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

fn run_reference(scenario: Scenario) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = reference_settings(scenario);
    // Our null SUT is far faster than LoadGen's Python one: expect ~1 µs
    // queries so the generated plan outlasts the minimum duration.
    settings.single_stream_expected_latency_ns = 1_000.0;
    settings.multi_stream_expected_latency_ns = 2_000.0;
    let out = start_test(
        &RecordingNull::default(),
        &Qsl {
            total: 1024,
            performance: 1024,
        },
        &settings,
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &RunControl::default(),
    )
    .unwrap();
    assert!(out.performance.is_some());
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    (
        read("mlperf_log_summary.txt"),
        read("mlperf_log_detail.txt"),
    )
}

#[test]
fn summaries_have_loadgens_layout() {
    for scenario in [
        Scenario::Offline,
        Scenario::Server,
        Scenario::SingleStream,
        Scenario::MultiStream,
    ] {
        let (ours, _) = run_reference(scenario);
        let theirs = reference_file(scenario, "summary.txt");
        let (mut ours, mut theirs) = (layout(&ours), layout(&theirs));
        // Names and the warning count are the runs', not the format's.
        for lines in [&mut ours, &mut theirs] {
            for line in lines.iter_mut() {
                if line.starts_with("SUT name :") {
                    *line = "SUT name : *".into();
                }
                if line.contains("warning") {
                    *line = "<warnings>".into();
                }
                if line.contains("ERROR") || line.contains("errors encountered") {
                    *line = "<errors>".into();
                }
            }
            // The reference Offline run was too short (INVALID); ours is valid
            // or not depending on speed: drop the verdict- and speed-dependent
            // recommendation lines.
            lines.retain(|l| {
                !l.starts_with("Recommendations:")
                    && !l.starts_with(" * Increase")
                    && !l.starts_with(" * Decrease")
                    && !l.starts_with(" * Reduce")
            });
            for line in lines.iter_mut() {
                if line.starts_with("Result is :") {
                    *line = "Result is : *".into();
                }
                if line.starts_with("  Min duration satisfied") {
                    *line = "  Min duration satisfied : *".into();
                }
            }
        }
        assert_eq!(ours, theirs, "{scenario} summary layout differs");
    }
}

/// LoadGen's own keys that describe its build and internal logger, not the run.
fn is_loadgen_internal(key: &str) -> bool {
    key.starts_with("loadgen_") && key != "loadgen_version"
        || key.starts_with("logger_")
        || key == "warning_generic_message"
}

#[test]
fn detail_logs_have_loadgens_keys_in_order() {
    for scenario in [
        Scenario::Offline,
        Scenario::Server,
        Scenario::SingleStream,
        Scenario::MultiStream,
    ] {
        let (_, ours) = run_reference(scenario);
        let theirs = reference_file(scenario, "detail.txt");
        let strip = |keys: Vec<String>| -> Vec<String> {
            keys.into_iter()
                .filter(|k| !is_loadgen_internal(k))
                // Validity-dependent keys.
                .filter(|k| k != "result_invalid_reason")
                .collect()
        };
        // How an issuing loop ends (generic_message "Ending naturally" or an
        // error_runtime for max count) depends on speed, not on the format.
        let comparable = |keys: Vec<String>| -> Vec<String> {
            keys.into_iter()
                .filter(|k| k != "generic_message" && k != "error_runtime")
                .collect()
        };
        let ours_keys = comparable(strip(detail_keys(&ours)));
        let theirs_keys = comparable(strip(detail_keys(&theirs)));
        assert_eq!(ours_keys, theirs_keys, "{scenario} detail keys differ");
        // Values a checker reads have LoadGen's types.
        assert!(detail_value(&ours, "effective_target_qps")
            .unwrap()
            .is_number());
        assert!(detail_value(&ours, "result_validity").unwrap().is_string());
        assert!(detail_value(&ours, "loaded_qsl_set").unwrap().is_array());
        let power_begin = detail_value(&ours, "power_begin").unwrap();
        let text = power_begin.as_str().unwrap();
        assert_eq!(text.len(), "11-23-2026 08:52:09.366".len(), "{text}");
    }
}
