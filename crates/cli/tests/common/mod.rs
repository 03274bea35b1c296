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

/// `../shared/tools/slurm-two-nodes` (or JOULEBENCH_SLURM_TOOL), for the
/// tests on a real two-node Slurm cluster.
pub fn slurm_tool() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("JOULEBENCH_SLURM_TOOL") {
        return Some(std::path::PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/slurm-two-nodes");
    p.is_file().then_some(p)
}

/// The address `joulebench exporter` says it serves on (its first stderr line).
pub fn exporter_address(stderr: impl std::io::Read) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(stderr)
        .read_line(&mut line)
        .unwrap();
    line.split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string()
}

/// An HTTP/1.0 GET: the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}
