//! The peer: MLCommons' `mlperf-logging` package reads what `joulebench
//! train` writes. Its compliance checker passes our logs (its common rules,
//! then our benchmark's rules file, through bench/training/mlperf_check.py)
//! under the newest training ruleset the installed package ships (found at
//! run time: its `compliance_checker/training_<version>` folders) and, for a
//! run with `--ruleset 5.1.0`, under 5.1.0; its result summarizer reads the
//! same time to train, energy and olympic average as result.json says.
//!
//! The package is installed into a temporary virtualenv (pip's cache makes a
//! second time quick); set JOULEBENCH_MLPERF_LOGGING_PYTHON to a Python that
//! already has it to skip that. Without Python, venv or PyPI, the test skips
//! with a loud banner; with `CI` set in the environment it fails instead.

mod common;

use common::skip;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python with mlperf-logging, or `None` after saying why not.
fn python_with_mlperf_logging(venv: &Path) -> Option<PathBuf> {
    common::python_with(
        "train_mlperf_logging",
        "JOULEBENCH_MLPERF_LOGGING_PYTHON",
        venv,
        &["mlperf-logging"],
    )
}

fn digits_file() -> Option<PathBuf> {
    let cache = std::env::var_os("JOULEBENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/joulebench")
        });
    let path = std::env::var_os("JOULEBENCH_DIGITS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("digits/digits.csv"));
    if !path.is_file() {
        let ok = Command::new("bash")
            .arg(repo().join("bench/data/fetch_digits.sh"))
            .status()
            .is_ok_and(|s| s.success());
        if !ok || !path.is_file() {
            skip(
                "train_mlperf_logging",
                "the digits data set could not be fetched (bench/data/fetch_digits.sh)",
            );
            return None;
        }
    }
    Some(path)
}

/// The newest MLPerf Training ruleset the installed package ships: the
/// highest version among its `compliance_checker/training_<version>`
/// folders that hold a `common.yaml`.
fn newest_installed_ruleset(python: &Path) -> String {
    let out = Command::new(python)
        .args([
            "-c",
            "import os, mlperf_logging.compliance_checker as c; print(os.path.dirname(c.__file__))",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut versions: Vec<(Vec<u64>, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix("training_")?.to_string();
            let parts = version
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<Vec<u64>>>()?;
            e.path()
                .join("common.yaml")
                .is_file()
                .then_some((parts, version))
        })
        .collect();
    versions.sort();
    let (_, newest) = versions
        .pop()
        .unwrap_or_else(|| panic!("no training_<version>/common.yaml in {}", dir.display()));
    newest
}

/// The compliance checker under `ruleset` over `logs`: its output, after
/// asserting that every log passes.
fn check_passes(python: &Path, ruleset: &str, logs: &[PathBuf]) -> String {
    let check = Command::new(python)
        .arg(repo().join("bench/training/mlperf_check.py"))
        .args(["check", "--ruleset", ruleset])
        .args(logs)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        check.status.success(),
        "ruleset {ruleset}:\n{text}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(text.starts_with(&format!("ruleset {ruleset}\n")), "{text}");
    assert_eq!(text.matches(": PASS").count(), logs.len(), "{text}");
    text
}

/// Keys the common rules require from 6.1.0 on, exactly one of each.
const DISCLOSURE_KEYS: [&str; 9] = [
    "lowest_numerical_precision_in_linear",
    "lowest_numerical_precision_in_attn",
    "lowest_numerical_precision_in_comm",
    "tensor_parallelism",
    "pipeline_parallelism",
    "context_parallelism",
    "expert_parallelism",
    "micro_batch_size",
    "config_filename",
];

/// Every `:::MLLOG` line of a log, parsed.
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(":::MLLOG "))
        .map(|j| serde_json::from_str(j).unwrap())
        .collect()
}

#[test]
fn mlperf_loggings_checker_and_summarizer_read_our_training_logs() {
    let Some(data) = digits_file() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(python) = python_with_mlperf_logging(&tmp.path().join("venv")) else {
        return;
    };
    let dir = tmp.path().join("digits");
    let out = common::joulebench()
        .args([
            "train",
            "--quiet",
            "--runs",
            "3",
            "--power",
            "estimate",
            "--tdp",
            "40",
            "--power-interval",
            "20ms",
        ])
        .arg("--data")
        .arg(&data)
        .arg("-o")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = repo().join("bench/training/mlperf_check.py");
    let newest = newest_installed_ruleset(&python);

    // The compliance checker, under the newest ruleset the package ships:
    // common rules, then ours, for every run's log.
    let logs: Vec<PathBuf> = (0..3)
        .map(|i| dir.join(format!("result_{i}.txt")))
        .collect();
    let text = check_passes(&python, &newest, &logs);
    eprintln!("{text}");

    // The disclosure the newer rules require, with this run's true values:
    // f32 on the CPU, no parallelism but data parallelism (here one
    // replica), the whole batch per step, and the config file written.
    let lines = log_lines(&logs[0]);
    let value = |key: &str| {
        let found: Vec<&Value> = lines.iter().filter(|l| l["key"] == key).collect();
        assert_eq!(found.len(), 1, "{key} in {}", logs[0].display());
        found[0]["value"].clone()
    };
    for key in DISCLOSURE_KEYS {
        value(key);
    }
    for key in &DISCLOSURE_KEYS[..3] {
        assert_eq!(value(key), "fp32", "{key}");
    }
    for key in &DISCLOSURE_KEYS[3..7] {
        assert_eq!(value(key), 1, "{key}");
    }
    assert_eq!(value("micro_batch_size"), 32);
    let config_name = value("config_filename");
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.join(config_name.as_str().unwrap())).unwrap())
            .unwrap();
    assert_eq!(config["task"], "digits");
    assert_eq!(config["global_batch_size"], 32);
    assert_eq!(config["runs"], 3);

    // The result summarizer: time to train, energy and olympic average.
    let summary = Command::new(&python)
        .arg(&script)
        .args(["summarize", "--json", "--ruleset", &newest])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        summary.status.success(),
        "{}",
        String::from_utf8_lossy(&summary.stderr)
    );
    let theirs: Value = serde_json::from_slice(&summary.stdout).unwrap();
    let ours: Value =
        serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap();
    let runs = ours["training"]["runs"].as_array().unwrap();
    for (i, run) in runs.iter().enumerate() {
        let t = &theirs["runs"][i];
        assert_eq!(t["compliant"], true);
        // The log has millisecond timestamps.
        let ours_ms = run["time_to_train_s"].as_f64().unwrap() * 1e3;
        let theirs_ms = t["time_to_train_ms"].as_f64().unwrap();
        assert!(
            (ours_ms - theirs_ms).abs() <= 1.0,
            "run {i}: {ours_ms} ms vs {theirs_ms} ms"
        );
        let ours_j = run["energy_j"].as_f64().unwrap();
        let theirs_j = t["energy_j"].as_f64().unwrap();
        assert!(
            (ours_j - theirs_j).abs() <= ours_j * 0.01,
            "run {i}: {ours_j} J vs {theirs_j} J"
        );
    }
    let ours_s = ours["training"]["time_to_train_s"]["value"]
        .as_f64()
        .unwrap();
    let theirs_s = theirs["olympic_time_to_train_s"].as_f64().unwrap();
    assert!(
        (ours_s - theirs_s).abs() <= 0.002,
        "olympic {ours_s} s vs {theirs_s} s"
    );
    assert_eq!(ours["training"]["time_to_train_s"]["olympic"], true);
    let ours_e = ours["training"]["energy_to_train_j"]["value"]
        .as_f64()
        .unwrap();
    let theirs_e = theirs["olympic_energy_j"].as_f64().unwrap();
    assert!(
        (ours_e - theirs_e).abs() <= ours_e * 0.01,
        "olympic {ours_e} J vs {theirs_e} J"
    );

    // An older ruleset on request: 5.1.0's checker passes the log, which
    // carries none of the keys 5.1.0 does not define.
    let old = tmp.path().join("ruleset-5.1.0");
    let out = common::joulebench()
        .args(["train", "--quiet", "--power", "none", "--ruleset", "5.1.0"])
        .arg("--data")
        .arg(&data)
        .arg("-o")
        .arg(&old)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old_log = old.join("result_0.txt");
    eprintln!(
        "{}",
        check_passes(&python, "5.1.0", std::slice::from_ref(&old_log))
    );
    let lines = log_lines(&old_log);
    for key in DISCLOSURE_KEYS {
        assert!(
            lines.iter().all(|l| l["key"] != key),
            "{key} in a 5.1.0 log"
        );
    }

    // A run that never reached the target is no compliant result.
    let hard = tmp.path().join("hard");
    let out = common::joulebench()
        .args([
            "train",
            "--quiet",
            "--power",
            "none",
            "--target-accuracy",
            "1.0",
            "--max-epochs",
            "1",
        ])
        .arg("--data")
        .arg(&data)
        .arg("-o")
        .arg(&hard)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let check = Command::new(&python)
        .arg(&script)
        .args(["check", "--ruleset", &newest])
        .arg(hard.join("result_0.txt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL") && text.contains("status"), "{text}");
}
