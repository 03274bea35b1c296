//! Runs the Python suite (`tests/python`, pytest) against this crate built
//! and installed the way users install it (`pip install crates/py-loadgen`),
//! with MLCommons' own module (PyPI `mlcommons-loadgen` 6.0.17) installed in
//! a second virtualenv as the judge. Part of `cargo test --workspace`.
//!
//! Environment: `JOULEBENCH_LOADGEN_PYTHON` (a Python where our module is
//! installed) and `JOULEBENCH_LOADGEN_REFERENCE_PYTHON` (one with
//! mlcommons-loadgen) skip building the virtualenvs; otherwise they are made
//! once under the target folder (pip needs PyPI; the examples need numpy,
//! onnx and onnxruntime in both). The module is reinstalled
//! on every run, so the suite tests the current source.

use std::path::{Path, PathBuf};
use std::process::Command;

const REFERENCE: &str = "mlcommons-loadgen==6.0.17";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn work_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("py-loadgen")
}

/// A virtualenv with `packages`, made once (a `ready` file marks it whole).
fn venv(name: &str, packages: &[&str]) -> PathBuf {
    let dir = work_dir().join(name);
    let python = dir.join("bin/python");
    if dir.join("ready").is_file() {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&dir),
        "python3 -m venv",
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages),
        &format!("pip install {} (needs PyPI)", packages.join(" ")),
    );
    std::fs::write(dir.join("ready"), b"").unwrap();
    python
}

fn run(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// Installs this crate into `python`'s environment with pip, building in its
/// own target folder (cargo's, in use by `cargo test`, stays untouched).
fn install_ours(python: &Path) {
    run(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--force-reinstall",
                "--no-deps",
                "--no-cache-dir",
            ])
            .arg(crate_dir())
            .env("CARGO_TARGET_DIR", work_dir().join("target")),
        "pip install crates/py-loadgen",
    );
}

#[test]
fn python_suite_against_mlcommons_loadgen() {
    let ours = match std::env::var_os("JOULEBENCH_LOADGEN_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let python = venv(
                "ours",
                &["maturin>=1.7,<2", "pytest", "numpy", "onnx", "onnxruntime"],
            );
            install_ours(&python);
            python
        }
    };
    let reference = match std::env::var_os("JOULEBENCH_LOADGEN_REFERENCE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => venv("reference", &[REFERENCE, "numpy", "onnx", "onnxruntime"]),
    };
    let output = Command::new(&ours)
        .args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"])
        .arg(crate_dir().join("tests/python"))
        .env("REFERENCE_PYTHON", &reference)
        .current_dir(crate_dir().join("tests/python"))
        .output()
        .expect("running pytest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{text}");
    assert!(output.status.success(), "the Python suite failed:\n{text}");
    // Nothing this suite needs is missing when it runs here: a skip is a failure.
    let summary = text
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or("");
    assert!(
        !summary.contains("skipped"),
        "Python tests skipped: {summary}"
    );
}
