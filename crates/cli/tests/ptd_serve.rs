//! `joulebench ptd-serve` as PTDaemon: its command line, replies, LOGFILE,
//! stdout status lines and SIGTERM; and `joulebench run --power ptd://`
//! against it.

mod common_power;

use common_power::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn ptd_serve_speaks_ptdaemon_logs_samples_and_ends_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let trace = trace(dir.path(), 250.0, 0.0);
    let log = dir.path().join("ptd.log");
    let port = free_port();
    let child = Command::new(joulebench())
        .args(["ptd-serve", "--read-period", "50ms", "--power"])
        .arg(format!("replay:{}", trace.display()))
        .arg("-l")
        .arg(&log)
        .args(["-p", &port.to_string(), "49", "/dev/usbtmc0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_port(port, Duration::from_secs(20));
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let read = |r: &mut BufReader<TcpStream>| {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        assert!(l.ends_with("\r\n"), "{l:?}");
        l.trim_end().to_string()
    };
    let mut cmd = |c: &str, r: &mut BufReader<TcpStream>| {
        w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        read(r)
    };
    assert_eq!(cmd("Hello", &mut r), "Hello, PTDaemon here!");
    let id = cmd("Identify", &mut r);
    assert!(
        id.starts_with("joulebench-virtual,") && id.contains("replay"),
        "{id}"
    );
    assert_eq!(cmd("RR", &mut r), "Ranges,1,20.000000,1,600.000000");
    assert_eq!(cmd("SR,V,Auto", &mut r), "Range V changed");
    assert_eq!(
        cmd("Go,1000,0,t_ranging", &mut r),
        "Starting untimed measurement, maximum 500000 samples at 1000ms with 0 rampup samples"
    );
    std::thread::sleep(Duration::from_millis(2300));
    assert_eq!(cmd("Stop", &mut r), "Stopping untimed measurement");
    assert_eq!(cmd("RL,*,*", &mut r), "Error: Invalid number of parameters");
    let header = cmd("RL", &mut r);
    let n: usize = header
        .strip_prefix("Last ")
        .and_then(|h| h.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(n >= 2, "{header}");
    for _ in 0..n {
        let line = read(&mut r);
        let s = power::meter::ptd::parse_sample_line(&line).unwrap();
        assert_eq!(s.mark, "t_ranging");
    }
    drop(r);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let go = stdout
        .lines()
        .find(|l| l.ends_with(": Go with mark 't_ranging'"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        power::meter::ptd::PtdTime::parse(&go[..23]).is_some(),
        "{go}"
    );
    assert!(stdout.contains(": Completed test"), "{stdout}");
    assert!(
        !stdout.contains("Uncertainty checking for Yokogawa"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("# joulebench virtual analyzer (not a power analyzer)"));
    let (samples, _) = power::meter::ptd::parse_sample_log(&text);
    assert_eq!(samples.len(), n);
    for s in samples {
        assert_eq!(s.mark, "t_ranging");
        assert!((s.watts - 250.0).abs() < 1e-6, "{}", s.watts);
        assert_eq!(s.volts, Some(230.0));
    }
}

#[test]
fn joulebench_run_measures_through_ptd_serve() {
    let dir = tempfile::tempdir().unwrap();
    let trace = trace(dir.path(), 180.0, 10.0);
    let port = free_port();
    let mut child = Command::new(joulebench())
        .args([
            "ptd-serve",
            "--rehearsal-model",
            "WT310",
            "--read-period",
            "50ms",
            "--power",
        ])
        .arg(format!("replay:{}", trace.display()))
        .arg("-l")
        .arg(dir.path().join("ptd.log"))
        .args(["-p", &port.to_string(), "49", "/dev/null"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, Duration::from_secs(20));
    let out = Command::new(joulebench())
        .args([
            "run",
            "--workload",
            "sleep",
            "--duration",
            "2",
            "--quiet",
            "--power",
        ])
        .arg(format!("ptd://127.0.0.1:{port}"))
        .arg("-o")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    stop_gracefully(&mut child);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/result.json")).unwrap())
            .unwrap();
    assert!(result.to_string().contains("ptd"), "{result}");
}

#[test]
fn a_bad_ptdaemon_command_line_is_refused_with_the_reason() {
    let out = Command::new(joulebench())
        .args(["ptd-serve", "--power", "none", "-p", "8888", "49", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no -l LOGFILE"));
    let out = Command::new(joulebench())
        .args([
            "ptd-serve",
            "--rehearsal-model",
            "WT9",
            "--power",
            "estimate",
            "--tdp",
            "100",
        ])
        .args(["-l", "/tmp/x", "-p", "8888", "49", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WT9") || err.contains("no meter"), "{err}");
}
