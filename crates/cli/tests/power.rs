//! `joulebench run --power …` and `joulebench power …` end to end, with
//! hardware faked at the OS boundary: a sysfs tree whose RAPL counter a
//! thread advances at a known rate, and a loopback peer speaking PTDaemon's
//! protocol.

mod common;

use common::{joulebench, read_json, FakeRapl};

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn run_reports_energy_from_a_rapl_counter_over_the_timed_window() {
    let rapl_sys = tempfile::tempdir().unwrap();
    let rapl = FakeRapl::start(rapl_sys.path(), 40.0);
    let out_dir = tempfile::tempdir().unwrap();
    let out = joulebench()
        .args([
            "run",
            "--workload",
            "null",
            "--scenario",
            "server",
            "--set",
            "target_qps=20000",
            "--duration",
            "1",
            "--quiet",
        ])
        .args([
            "--power",
            "rapl",
            "--power-interval",
            "10ms",
            "--sysfs-root",
        ])
        .arg(rapl.root.as_path())
        .arg("-o")
        .arg(out_dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("rapl-package-0") && stdout.contains("samples/J"),
        "{stdout}"
    );
    let result = read_json(&out_dir.path().join("result.json"));
    let power = &result["power"];
    let meter = &power["meters"][0];
    assert_eq!(meter["meter_id"], "rapl-package-0");
    let avg_w = meter["avg_w"].as_f64().unwrap();
    assert!((avg_w - 40.0).abs() < 4.0, "avg {avg_w} W, expected 40 W");
    let window_s = result["timed_window"]["duration_s"].as_f64().unwrap();
    let energy = meter["energy_j"].as_f64().unwrap();
    assert!(
        (energy / (40.0 * window_s) - 1.0).abs() < 0.1,
        "{energy} J over {window_s} s"
    );
    assert_eq!(power["total"]["measured"]["meter_ids"][0], "rapl-package-0");
    assert_eq!(power["efficiency"]["name"], "samples_per_joule");
    assert_eq!(power["efficiency"]["provenance"], "measured");
    let samples = result["performance"]["samples_completed"].as_f64().unwrap();
    let eff = power["efficiency"]["value"].as_f64().unwrap();
    assert!((eff - samples / energy).abs() / eff < 1e-9);
    // The log streams every sample at ~100 Hz on the run clock.
    let log = std::fs::read_to_string(out_dir.path().join("power/rapl-package-0.csv")).unwrap();
    assert!(log.starts_with("t_ns,counter_uj"), "{log:.100}");
    assert!(log.lines().count() > 80, "{} rows", log.lines().count());
}

#[test]
fn a_named_meter_that_is_not_there_fails_before_the_run() {
    let empty = tempfile::tempdir().unwrap();
    let out_dir = empty.path().join("never");
    let out = joulebench()
        .args([
            "run",
            "--workload",
            "sleep",
            "--power",
            "rapl",
            "--sysfs-root",
        ])
        .arg(empty.path())
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--power rapl: no usable meter") && stderr.contains("powercap"),
        "{stderr}"
    );
    assert!(!out_dir.join("result.json").exists());
    let out = joulebench()
        .args(["run", "--workload", "sleep", "--power", "estimate"])
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --tdp"));
}

#[test]
fn power_list_explains_what_is_missing_and_watch_logs_readings() {
    let rapl_sys = tempfile::tempdir().unwrap();
    let rapl = FakeRapl::start(rapl_sys.path(), 25.0);
    let out = joulebench()
        .args(["power", "list", "--sysfs-root"])
        .arg(rapl.root.as_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("rapl-package-0") && stdout.contains("usable"),
        "{stdout}"
    );
    assert!(
        stdout.contains("nvml") && stdout.contains("install the NVIDIA driver"),
        "{stdout}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = joulebench()
        .args([
            "power",
            "watch",
            "--power",
            "rapl",
            "--duration",
            "1.2",
            "--refresh",
            "300ms",
            "--sysfs-root",
        ])
        .arg(rapl.root.as_path())
        .arg("-o")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" W"), "{stdout}");
    let watch = read_json(&dir.path().join("watch.json"));
    let avg = watch["meters"][0]["avg_w"].as_f64().unwrap();
    assert!((avg - 25.0).abs() < 3.0, "{avg}");
}

/// A PTDaemon on loopback: single-channel WT310, samples at 230 V whose
/// current depends on the mark (ranging 0.40 A, testing 0.42 A).
fn fake_ptd() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let commands = Arc::clone(&log);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut writer = stream.try_clone().unwrap();
            let mut mark: Option<String> = None;
            let mut tick = 0u32;
            for line in BufReader::new(stream).lines() {
                let Ok(cmd) = line else { break };
                commands.lock().unwrap().push(cmd.clone());
                let f: Vec<&str> = cmd.split(',').collect();
                let reply: Vec<String> = match f.as_slice() {
                    ["Hello"] => vec!["Hello, PTDaemon here!".into()],
                    ["Identify"] => vec!["WT310,Loopback PTDaemon,version=1.11.1-test".into()],
                    ["RR"] => vec!["Ranges,1,-1.000000,1,-1.000000".into()],
                    ["SR", q, _] => vec![format!("Range {q} changed")],
                    ["Go", _, _, m] => {
                        mark = Some(m.to_string());
                        vec!["Starting untimed measurement, maximum 500000 samples at 1000ms with 0 rampup samples".into()]
                    }
                    ["Stop"] => match mark.take() {
                        Some(_) => vec!["Stopping untimed measurement".into()],
                        None => vec!["Error: no measurement to stop".into()],
                    },
                    ["Watts"] => vec!["Watts,90.000000".into()],
                    ["RL", "*", "*"] => vec!["Error: Invalid number of parameters".into()],
                    ["RL"] => match &mark {
                        Some(m) => {
                            tick += 1;
                            let amps = if m.ends_with("_ranging") { 0.40 } else { 0.42 };
                            vec![
                                "Last 1 samples".into(),
                                format!(
                                    "Time,11-24-2026 10:00:{:02}.000,Watts,{:.6},Volts,230.000000,Amps,{amps:.6},PF,0.980000,Mark,{m}",
                                    tick % 60,
                                    230.0 * amps * 0.98
                                ),
                            ]
                        }
                        None => vec!["Last 0 samples".into()],
                    },
                    _ => vec!["Error: Unknown command".into()],
                };
                for r in reply {
                    if writeln!(writer, "{r}").is_err() {
                        break;
                    }
                }
            }
        }
    });
    (port, log)
}

#[test]
fn ptdaemon_runs_ranging_then_testing_with_fixed_ranges() {
    let (port, commands) = fake_ptd();
    let dir = tempfile::tempdir().unwrap();
    let out = joulebench()
        .args([
            "run",
            "--workload",
            "null",
            "--scenario",
            "offline",
            "--set",
            "offline_expected_qps=1000000",
            "--duration",
            "0.3",
            "--quiet",
        ])
        .args([
            "--power",
            &format!("ptd://127.0.0.1:{port}"),
            "--power-interval",
            "50ms",
            "-o",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = commands.lock().unwrap().clone();
    let position = |prefix: &str| {
        sent.iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {sent:?}"))
    };
    let ranging_go = sent
        .iter()
        .position(|c| c.starts_with("Go,1000,0,") && c.ends_with("_ranging"))
        .unwrap();
    let testing_go = sent
        .iter()
        .position(|c| c.starts_with("Go,1000,0,") && c.ends_with("_testing"))
        .unwrap();
    assert_eq!(&sent[..3], ["Hello", "Identify", "RR"]);
    assert!(position("SR,V,Auto") < ranging_go);
    // Testing ranges: volts = max V seen, amps = 1.1 × max A seen while ranging.
    let sr_v = sent
        .iter()
        .position(|c| c == "SR,V,230")
        .unwrap_or_else(|| panic!("{sent:?}"));
    let sr_a = sent
        .iter()
        .position(|c| c == "SR,A,0.44")
        .unwrap_or_else(|| panic!("{sent:?}"));
    assert!(ranging_go < sr_v && sr_a < testing_go);
    assert_eq!(sent.iter().filter(|c| *c == "Stop").count(), 2);
    let result = read_json(&dir.path().join("result.json"));
    assert_eq!(result["power"]["ptd"]["analyzer_model"], "WT310");
    assert!((result["power"]["ptd"]["testing_amps_a"].as_f64().unwrap() - 0.44).abs() < 1e-9);
    assert!(dir.path().join("ranging/mlperf_log_detail.txt").exists());
    assert!(dir.path().join("ranging/power/ptd.csv").exists());
    // The node meter is the total, measured.
    assert_eq!(result["power"]["total"]["measured"]["meter_ids"][0], "ptd");
}

#[test]
fn a_meter_that_vanishes_mid_run_is_reported_and_the_run_goes_on() {
    let steady_sys = tempfile::tempdir().unwrap();
    let steady = FakeRapl::start(steady_sys.path(), 30.0);
    // A second package whose zone disappears 400 ms into the run.
    let zone = steady.root.as_path().join("class/powercap/intel-rapl:1");
    std::fs::create_dir_all(&zone).unwrap();
    std::fs::write(zone.join("name"), "package-1\n").unwrap();
    std::fs::write(zone.join("max_energy_range_uj"), "262143328850\n").unwrap();
    std::fs::write(zone.join("energy_uj"), "5000\n").unwrap();
    let doomed = zone.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        std::fs::remove_dir_all(doomed).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let out = joulebench()
        .args([
            "run",
            "--workload",
            "null",
            "--scenario",
            "server",
            "--set",
            "target_qps=20000",
            "--duration",
            "1.2",
            "--quiet",
        ])
        .args([
            "--power",
            "rapl",
            "--power-interval",
            "20ms",
            "--total",
            "rapl-package-0,rapl-package-1",
            "--sysfs-root",
        ])
        .arg(steady.root.as_path())
        .arg("-o")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("INCOMPLETE"), "{stdout}");
    let result = read_json(&dir.path().join("result.json"));
    let power = &result["power"];
    assert_eq!(power["complete"], false);
    let meters = power["meters"].as_array().unwrap();
    let by_id = |id: &str| meters.iter().find(|m| m["meter_id"] == id).unwrap().clone();
    assert_eq!(
        by_id("rapl-package-0")["completeness"]["status"],
        "complete"
    );
    assert_eq!(
        by_id("rapl-package-1")["completeness"]["status"],
        "incomplete"
    );
    let logs = power["logs"].as_array().unwrap();
    let faults = &logs
        .iter()
        .find(|l| l["meter_id"] == "rapl-package-1")
        .unwrap()["faults"];
    assert!(faults["read_errors"].as_u64().unwrap() > 0, "{faults}");
    // The chosen total names both; it is incomplete and says why.
    assert_eq!(
        power["total"]["measured"]["meter_ids"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        power["total"]["measured"]["completeness"]["status"],
        "incomplete"
    );
    assert!(power["total"]["rule"].as_str().unwrap().contains("--total"));
    // The load generator's result is unaffected.
    assert_eq!(result["performance"]["valid"], true);
}

#[test]
fn total_must_name_selected_meters() {
    let rapl_sys = tempfile::tempdir().unwrap();
    let rapl = FakeRapl::start(rapl_sys.path(), 10.0);
    let out = joulebench()
        .args([
            "run",
            "--workload",
            "sleep",
            "--power",
            "rapl",
            "--total",
            "nvml-gpu0",
            "--sysfs-root",
        ])
        .arg(rapl.root.as_path())
        .arg("-o")
        .arg(rapl.root.as_path().join("never"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("--total nvml-gpu0: not among the selected meters (rapl-package-0)"),
        "{stderr}"
    );
}
