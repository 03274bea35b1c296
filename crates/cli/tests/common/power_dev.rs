//! Shared pieces of the MLPerf Power tests: an SNTP responder of the test's
//! own, a replayed power trace, a `ptd-serve` wrapper script (what power-dev's
//! `ptd:` entry needs) and free loopback ports.
#![allow(dead_code)]

use mlperf_power::ntp::SntpResponder;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The address of this test process's SNTP responder (our clock, unshifted):
/// 127.0.0.1:123 when this process may bind it (the tests run as root here,
/// and power-dev's tools can only use port 123), else a free port, which
/// our tools accept as HOST:PORT. Says which on stderr.
pub fn sntp() -> String {
    static RESPONDER: std::sync::OnceLock<(SntpResponder, String)> = std::sync::OnceLock::new();
    RESPONDER
        .get_or_init(|| match SntpResponder::bind("127.0.0.1:123", 0.0) {
            Ok(r) => {
                eprintln!("SNTP responder on 127.0.0.1:123");
                (r, "127.0.0.1".to_string())
            }
            Err(e) => {
                let r = SntpResponder::bind("127.0.0.1:0", 0.0).unwrap();
                let addr = r.addr().to_string();
                eprintln!("SNTP responder on {addr} (127.0.0.1:123: {e})");
                (r, addr)
            }
        })
        .1
        .clone()
}

/// A port nothing listens on now, and one no other test of this process
/// was given: tests run in parallel, and two servers handed the same
/// port (one failing to bind, its test then talking to the other's
/// server) made a test fail once in CI.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A 1 Hz sine of ±`swing_w` around `mean_w`, 300 s long, every 50 ms.
pub fn trace(dir: &Path, mean_w: f64, swing_w: f64) -> PathBuf {
    let mut text = String::from("t_s,watts\n");
    for i in 0..6000 {
        let t = i as f64 * 0.05;
        let w = mean_w + swing_w * (2.0 * std::f64::consts::PI * t).sin();
        text.push_str(&format!("{t:.2},{w:.4}\n"));
    }
    let p = dir.join("trace.csv");
    std::fs::write(&p, text).unwrap();
    p
}

/// The wrapper power-dev's `[ptd] ptd:` entry needs: PTDaemon's arguments
/// are passed through, the meter choice is added.
pub fn wrapper(dir: &Path, trace: &Path, extra: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("ptd-wrapper.sh");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nexec {} ptd-serve --power replay:{} --read-period 50ms {extra} \"$@\"\n",
            super::BIN,
            trace.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port} after {timeout:?}");
}

/// SIGTERM to a child we started, then SIGKILL if it is still there after 15 s.
pub fn stop_gracefully(child: &mut std::process::Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A `joulebench power-server` process on a free loopback port with one
/// virtual analyzer (`wrapper`), sessions under `dir/server`; dropped with
/// SIGTERM so that it stops its PTDaemon child (SIGKILL would leave that
/// child behind).
pub struct PowerServer {
    pub child: std::process::Child,
    pub port: u16,
}

impl PowerServer {
    pub fn start(
        dir: &Path,
        wrapper: &Path,
        ntp: &str,
        settle: &str,
        extra: &[&str],
    ) -> PowerServer {
        let port = free_port();
        let child = super::joulebench()
            .args([
                "power-server",
                "--device-type",
                "49",
                "--device-port",
                "/dev/null",
            ])
            .arg("--ptd")
            .arg(wrapper)
            .args([
                "--ptd-port",
                &free_port().to_string(),
                "--ntp",
                ntp,
                "--settle",
                settle,
            ])
            .args(["--listen", &format!("127.0.0.1:{port}"), "--out-dir"])
            .arg(dir.join("server"))
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, Duration::from_secs(30));
        PowerServer { child, port }
    }
}

impl Drop for PowerServer {
    fn drop(&mut self) {
        stop_gracefully(&mut self.child);
    }
}
