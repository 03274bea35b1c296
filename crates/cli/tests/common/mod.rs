//! What the CLI's end-to-end tests share: the binary under test and reading
//! its JSON. Meters are faked at the OS boundary by `power::testing`.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

#[allow(unused_imports)]
pub use power::testing::FakeRapl;

/// Power-dev, PTDaemon and NTP stand-ins for the MLPerf Power tests.
pub mod power_dev;

/// The `joulebench` binary this test run built.
pub const BIN: &str = env!("CARGO_BIN_EXE_joulebench");

pub fn joulebench() -> Command {
    Command::new(BIN)
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A test that cannot run here says so: a loud banner on stderr, or a
/// failure when `CI` is set, where everything it needs can be installed.
pub fn skip(test: &str, reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {reason} (CI is set: this test must run, not skip)");
    }
    eprintln!(
        "\n{bar}\nSKIPPED: {test} did NOT run: {reason}\n{bar}\n",
        bar = "!".repeat(78)
    );
}

/// A Python with `packages` from PyPI: `$env_var` when set, else a
/// virtualenv at `venv` (made once: a `ready` file inside says it is
/// complete). `None` after [`skip`] says why not.
pub fn python_with(
    test: &str,
    env_var: &str,
    venv: &Path,
    packages: &[&str],
) -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        return Some(std::path::PathBuf::from(p));
    }
    let python = venv.join("bin/python");
    let ready = venv.join("ready");
    if ready.is_file() {
        return Some(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        skip(test, "cannot create a Python virtualenv (python3 -m venv)");
        return None;
    }
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages)
        .status();
    if !installed.is_ok_and(|s| s.success()) {
        skip(
            test,
            &format!("pip could not install {} (no PyPI?)", packages.join(", ")),
        );
        return None;
    }
    std::fs::write(&ready, b"").ok()?;
    Some(python)
}
