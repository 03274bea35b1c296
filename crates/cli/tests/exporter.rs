//! `joulebench exporter` scraped over loopback, with a RAPL package faked at
//! the OS boundary (a sysfs tree whose counter rises at a known power).

mod common;

use common::{joulebench, FakeRapl};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of the first sample of `metric` in a text exposition.
fn value(body: &str, metric: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(&format!("{metric}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {metric} in\n{body}"))
}

#[test]
fn scraping_over_loopback_gives_watts_and_a_rising_joules_counter() {
    let sys = tempfile::tempdir().unwrap();
    let _rapl = FakeRapl::start(sys.path(), 40.0);
    let mut child = joulebench()
        .args(["exporter", "--listen", "127.0.0.1:0", "--power", "rapl"])
        .args(["--power-interval", "50ms", "--sysfs-root"])
        .arg(sys.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = common::exporter_address(child.stderr.take().unwrap());
    let exporter = Exporter(child);
    assert!(addr.starts_with("127.0.0.1:"), "loopback: {addr}");

    std::thread::sleep(Duration::from_millis(600));
    let (code, first) = common::http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    assert!(
        first.contains("# TYPE joulebench_power_watts gauge"),
        "{first}"
    );
    assert!(
        first.contains("# TYPE joulebench_energy_joules_total counter"),
        "{first}"
    );
    assert!(first.contains(
        "joulebench_power_watts{host=\"") && first.contains("\",meter=\"rapl-package-0\",source=\"rapl\",device=\"package-0\",domain=\"cpu_package\",provenance=\"measured\"}"
    ), "{first}");
    let t0 = Instant::now();
    let j0 = value(&first, "joulebench_energy_joules_total");
    let w = value(&first, "joulebench_power_watts");
    assert!((w - 40.0).abs() < 10.0, "{w} W from one 50 ms interval");
    assert_eq!(value(&first, "joulebench_meter_up"), 1.0);

    std::thread::sleep(Duration::from_millis(1000));
    let (_, second) = common::http_get(&addr, "/metrics");
    let dt = t0.elapsed().as_secs_f64();
    let j1 = value(&second, "joulebench_energy_joules_total");
    let rate = (j1 - j0) / dt;
    assert!(
        (rate / 40.0 - 1.0).abs() < 0.15,
        "{rate} W from the counter"
    );

    let (code, _) = common::http_get(&addr, "/nothing");
    assert_eq!(code, 404);
    drop(exporter);
}
