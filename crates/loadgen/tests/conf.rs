//! The mlperf.conf / user.conf parser: good files, bad files, precedence.

use loadgen::conf::{apply_override, ConfError, ConfFile};
use loadgen::{Mode, Scenario, TestSettings};
use std::path::Path;

fn parse(text: &str) -> Result<ConfFile, ConfError> {
    ConfFile::parse(Path::new("test.conf"), text)
}

fn applied(texts: &[&str], model: &str, scenario: Scenario) -> TestSettings {
    let mut s = TestSettings {
        scenario,
        ..Default::default()
    };
    for text in texts {
        parse(text).unwrap().apply(model, &mut s).unwrap();
    }
    s
}

/// Lines in the shapes MLCommons' own mlperf.conf uses.
const MLPERF_STYLE: &str = "\
# The format of this config file is 'key = value'.
resnet50.*.performance_sample_count_override = 1024
bert.*.performance_sample_count_override = 10833
3d-unet.*.performance_sample_count_override = 0
*.*.qsl_rng_seed = 2085463073848966840
*.*.sample_index_rng_seed = 2747215439041700203
*.*.schedule_rng_seed = 16159082839903944936
*.SingleStream.target_latency_percentile = 90
pointpainting.SingleStream.target_latency_percentile = 99.9
*.SingleStream.min_duration = 600000
*.MultiStream.target_latency_percentile = 99
*.MultiStream.samples_per_query = 8
*.MultiStream.min_duration = 600000
*.MultiStream.min_query_count = 662
retinanet.MultiStream.target_latency = 528
*.Server.target_latency = 10
*.Server.target_latency_percentile = 99
*.Server.target_duration = 0
*.Server.min_duration = 600000
resnet50.Server.target_latency = 15
*.Offline.target_latency_percentile = 90
*.Offline.min_duration = 600000
*.Offline.min_query_count = 1
llama2-70b.*.use_token_latencies = 1
llama2-70b.Server.ttft_latency = 2000
llama2-70b.Server.tpot_latency = 200
gptj.*.infer_token_latencies = 1
gptj.*.token_latency_scaling_factor = 69
";

#[test]
fn mlperf_style_file_applies_with_loadgens_precedence_and_units() {
    let s = applied(&[MLPERF_STYLE], "resnet50", Scenario::Server);
    assert_eq!(s.performance_sample_count_override, 1024);
    assert_eq!(s.qsl_rng_seed, 2085463073848966840);
    assert_eq!(s.schedule_rng_seed, 16159082839903944936);
    // model-specific beats the wildcard; ms → ns.
    assert_eq!(s.server_target_latency_ns, 15_000_000);
    assert_eq!(s.server_target_latency_percentile, 0.99);
    assert_eq!(s.min_duration_ms, 600_000);
    // Scenario-bound keys are read whatever scenario runs.
    assert_eq!(s.single_stream_target_latency_percentile, 0.9);
    assert_eq!(s.multi_stream_samples_per_query, 8);

    let s = applied(&[MLPERF_STYLE], "bert", Scenario::Server);
    assert_eq!(s.server_target_latency_ns, 10_000_000);
    assert_eq!(s.performance_sample_count_override, 10833);

    let s = applied(&[MLPERF_STYLE], "pointpainting", Scenario::SingleStream);
    assert!((s.single_stream_target_latency_percentile - 0.999).abs() < 1e-12);

    let s = applied(&[MLPERF_STYLE], "retinanet", Scenario::MultiStream);
    assert_eq!(s.multi_stream_expected_latency_ns, 528_000_000.0);
    assert_eq!(s.min_query_count, 662);

    let s = applied(&[MLPERF_STYLE], "llama2-70b", Scenario::Server);
    assert!(s.use_token_latencies);
    assert_eq!(
        (s.server_ttft_latency, s.server_tpot_latency),
        (2_000_000_000, 200_000_000)
    );

    let s = applied(&[MLPERF_STYLE], "gptj", Scenario::Offline);
    assert!(s.infer_token_latencies);
    assert_eq!(s.token_latency_scaling_factor, 69);
    assert_eq!(s.min_query_count, 1);
}

#[test]
fn later_files_and_later_lines_win() {
    let user = "resnet50.Offline.target_qps = 5000\n*.Offline.min_duration = 1000 # short\n";
    let s = applied(&[MLPERF_STYLE, user], "resnet50", Scenario::Offline);
    assert_eq!(s.offline_expected_qps, 5000.0);
    assert_eq!(s.min_duration_ms, 1000);
    let s = applied(
        &["*.*.min_query_count = 5\n*.*.min_query_count = 7\n"],
        "m",
        Scenario::Offline,
    );
    assert_eq!(s.min_query_count, 7);
}

#[test]
fn mode_key_and_flags() {
    let s = applied(
        &["*.*.mode = 1\n*.*.performance_issue_unique = 1\n*.Server.coalesce_queries = 1\n"],
        "m",
        Scenario::Server,
    );
    assert_eq!(s.mode, Mode::AccuracyOnly);
    assert!(s.performance_issue_unique);
    assert!(s.server_coalesce_queries);
    let mut t = TestSettings::default();
    let err = parse("*.*.mode = 7\n")
        .unwrap()
        .apply("m", &mut t)
        .unwrap_err();
    assert!(err.to_string().contains("test.conf:1"), "{err}");
}

#[test]
fn bad_lines_name_file_line_and_key() {
    for (text, line, expect) in [
        (
            "*.*.min_duraton = 10\n",
            1,
            "unknown setting 'min_duraton' (did you mean 'min_duration'?)",
        ),
        (
            "# ok\n\n*.Sever.target_qps = 10\n",
            3,
            "unknown scenario 'Sever'",
        ),
        (
            "*.*.min_duration = ten\n",
            1,
            "value 'ten' is not a non-negative integer",
        ),
        (
            "*.*.min_duration = -5\n",
            1,
            "is not a non-negative integer",
        ),
        (
            "*.Server.target_qps = fast\n",
            1,
            "value 'fast' is not a number",
        ),
        ("*.*.performance_issue_same = 2\n", 1, "is not 0 or 1"),
        (
            "min_duration = 10\n",
            1,
            "must have the form model.Scenario.key",
        ),
        (
            "*.*.min_duration 10\n",
            1,
            "expected 'model.Scenario.key = value'",
        ),
        ("*.*.min_duration = 1 2\n", 1, "expected one value"),
        (".Offline.target_qps = 1\n", 1, "empty model name"),
    ] {
        let err = parse(text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("test.conf:{line}: ")), "{msg}");
        assert!(msg.contains(expect), "{text:?}: {msg}");
    }
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let err = ConfFile::load(Path::new("/definitely/not/here/user.conf")).unwrap_err();
    assert!(
        err.to_string().contains("/definitely/not/here/user.conf"),
        "{err}"
    );
}

#[test]
fn hex_and_comments() {
    let s = applied(
        &["*.*.qsl_rng_seed = 0x10 # hex as strtoull reads it\n   # indented comment\n"],
        "m",
        Scenario::Offline,
    );
    assert_eq!(s.qsl_rng_seed, 16);
}

#[test]
fn set_overrides_take_conf_keys_and_field_names() {
    let mut s = TestSettings {
        scenario: Scenario::Server,
        ..Default::default()
    };
    apply_override(&mut s, "m", "target_qps=1234.5").unwrap();
    assert_eq!(s.server_target_qps, 1234.5);
    apply_override(&mut s, "m", "target_latency = 7").unwrap();
    assert_eq!(s.server_target_latency_ns, 7_000_000);
    apply_override(&mut s, "m", "min_duration_ms=250").unwrap();
    assert_eq!(s.min_duration_ms, 250);
    apply_override(&mut s, "m", "m.Server.min_query_count=9").unwrap();
    assert_eq!(s.min_query_count, 9);
    apply_override(&mut s, "m", "server_coalesce_queries=true").unwrap();
    assert!(s.server_coalesce_queries);
    assert!(apply_override(&mut s, "m", "min_duration_ms=soon")
        .unwrap_err()
        .to_string()
        .contains("min_duration_ms=soon"));
    assert!(apply_override(&mut s, "m", "bogus=1")
        .unwrap_err()
        .to_string()
        .contains("unknown setting 'bogus'"));
    assert!(apply_override(&mut s, "m", "noequals")
        .unwrap_err()
        .to_string()
        .contains("expected key=value"));
    // A key for another model does not apply, and says so.
    assert!(apply_override(&mut s, "m", "other.Server.target_qps=1")
        .unwrap_err()
        .to_string()
        .contains("does not apply"));
}
