//! The peer: MLCommons' `mlperf-logging` package reads what `joulebench
//! train` writes. Its compliance checker passes our logs (its common rules,
//! then our benchmark's rules file, through bench/training/mlperf_check.py),
//! and its result summarizer reads the same time to train, energy and
//! olympic average as result.json says.
//!
//! The package is installed into a temporary virtualenv (pip's cache makes a
//! second time quick); set JOULEBENCH_MLPERF_LOGGING_PYTHON to a Python that
//! already has it to skip that. Without Python, venv or PyPI, the test skips
//! and says so.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python with mlperf-logging, or `None` after saying why not.
fn python_with_mlperf_logging(venv: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("JOULEBENCH_MLPERF_LOGGING_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: cannot create a Python virtualenv (python3 -m venv)");
        return None;
    }
    let python = venv.join("bin/python");
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "mlperf-logging",
        ])
        .status();
    if !installed.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: pip could not install mlperf-logging (no PyPI?)");
        return None;
    }
    Some(python)
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
            eprintln!("SKIPPED: the digits data set could not be fetched");
            return None;
        }
    }
    Some(path)
}

#[test]
fn mlperf_loggings_checker_and_summarizer_read_our_training_logs() {
    let Some(data) = digits_file() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(python) = python_with_mlperf_logging(&tmp.path().join("venv")) else {
        return;
    };
    let dir = tmp.path().join("digits");
    let out = Command::new(env!("CARGO_BIN_EXE_joulebench"))
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

    // The compliance checker: common rules, then ours, for every run's log.
    let logs: Vec<PathBuf> = (0..3)
        .map(|i| dir.join(format!("result_{i}.txt")))
        .collect();
    let check = Command::new(&python)
        .arg(&script)
        .arg("check")
        .args(&logs)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(text.matches(": PASS").count(), 3, "{text}");

    // The result summarizer: time to train, energy and olympic average.
    let summary = Command::new(&python)
        .arg(&script)
        .args(["summarize", "--json"])
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

    // A run that never reached the target is no compliant result.
    let hard = tmp.path().join("hard");
    let out = Command::new(env!("CARGO_BIN_EXE_joulebench"))
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
        .arg("check")
        .arg(hard.join("result_0.txt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL") && text.contains("status"), "{text}");
}
