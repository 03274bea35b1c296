//! `joulebench run` end to end: the binary, its files and its exit codes.

mod common;
use common::joulebench;

#[test]
fn the_default_run_is_resnet50_with_random_weights_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    // Only the batch is made small (CI time); the workload is the default.
    let out = joulebench()
        .args([
            "run",
            "--duration",
            "0.2",
            "--batch-size",
            "2",
            "--samples",
            "8",
            "--quiet",
            "-o",
        ])
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
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("result.json")).unwrap())
            .unwrap();
    let w = &r["workload"];
    assert_eq!(w["name"], "resnet50", "{w}");
    assert_eq!(w["parameters"]["random_weights"], true, "{w}");
    assert_eq!(w["parameters"]["device"], "cpu", "{w}");
    assert_eq!(r["performance"]["valid"], true, "{}", r["performance"]);
}

#[test]
fn sleep_run_writes_logs_and_a_valid_result() {
    let dir = tempfile::tempdir().unwrap();
    let out = joulebench()
        .args([
            "run",
            "--workload",
            "sleep",
            "--duration",
            "0.5",
            "--quiet",
            "-o",
        ])
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
    assert!(
        stdout.contains("VALID") && stdout.contains("samples/s"),
        "{stdout}"
    );
    for f in [
        "mlperf_log_summary.txt",
        "mlperf_log_detail.txt",
        "mlperf_log_accuracy.json",
        "result.json",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("result.json")).unwrap())
            .unwrap();
    assert_eq!(result["schema_version"], 1);
    assert_eq!(result["status"], "completed");
    assert_eq!(result["settings"]["scenario"], "Offline");
    assert_eq!(result["performance"]["valid"], true);
    assert!(result["performance"]["metric"]["value"].as_f64().unwrap() > 1000.0);
    assert!(result["timed_window"]["duration_s"].as_f64().unwrap() >= 0.5);
    assert_eq!(result["settings"]["applied"][0]["origin"], "--duration:0");
}

#[test]
fn scenarios_in_every_spelling_and_conf_files() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("user.conf");
    // 2000 QPS for 0.5 s: enough queries (~1000) for early stopping at p99 (459).
    std::fs::write(
        &conf,
        "sleep.Server.target_qps = 2000 # half the capacity\n*.*.min_duration = 500\n",
    )
    .unwrap();
    let out = joulebench()
        .args([
            "run",
            "--workload",
            "sleep",
            "--scenario",
            "server",
            "--quiet",
            "--conf",
        ])
        .arg(&conf)
        .arg("-o")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/result.json")).unwrap())
            .unwrap();
    assert_eq!(result["settings"]["effective"]["target_qps"], 2000.0);
    let applied = result["settings"]["applied"].as_array().unwrap();
    let qps = applied
        .iter()
        .find(|a| a["field"] == "server_target_qps")
        .unwrap();
    assert!(
        qps["origin"].as_str().unwrap().ends_with("user.conf:1"),
        "{qps}"
    );
    for spelling in ["single-stream", "SingleStream", "singlestream"] {
        let out = joulebench()
            .args([
                "run",
                "--workload",
                "null",
                "--duration",
                "0.05",
                "--quiet",
                "--scenario",
                spelling,
                "-o",
            ])
            .arg(dir.path().join(spelling))
            .output()
            .unwrap();
        assert!(
            out.status.code() == Some(0) || out.status.code() == Some(1),
            "{spelling}"
        );
    }
}

#[test]
fn bad_input_fails_before_running_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bad.conf");
    std::fs::write(&conf, "# header\n*.Offline.target_qsp = 10\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--scenario".into(), "batch".into()], "unknown scenario 'batch'"),
        (vec!["--conf".into(), conf.display().to_string()], "bad.conf:2: key '*.Offline.target_qsp': unknown setting 'target_qsp' (did you mean 'target_qps'?)"),
        (vec!["--conf".into(), "/no/such.conf".into()], "/no/such.conf: cannot read conf file"),
        (vec!["--set".into(), "offline_expected_qps=0".into()], "offline_expected_qps = 0: must be a positive number"),
        (vec!["--set".into(), "min_duration_ms=5".into(), "--set".into(), "max_duration_ms=1".into()], "greater than max_duration_ms"),
        (vec!["--service-time".into(), "fast".into()], "not a duration"),
    ];
    for (args, expect) in cases {
        let out_dir = dir.path().join("never");
        let out = joulebench()
            .args(["run", "--workload", "sleep"])
            .args(&args)
            .arg("-o")
            .arg(&out_dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(!out_dir.exists(), "{args:?} wrote files");
    }
}

#[test]
fn sigint_and_sigterm_write_logs_and_mark_the_result_interrupted() {
    // Ctrl-C from a user, SIGTERM from a batch scheduler: the same clean end.
    for (name, signal) in [("SIGINT", 2), ("SIGTERM", 15)] {
        let dir = tempfile::tempdir().unwrap();
        let child = joulebench()
            .args([
                "run",
                "--workload",
                "sleep",
                "--duration",
                "60",
                "--quiet",
                "-o",
            ])
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(800));
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc_kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130), "{name}");
        let result: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("result.json")).unwrap())
                .unwrap();
        assert_eq!(result["status"], "interrupted", "{name}");
        assert_eq!(result["performance"]["valid"], false, "{name}");
        let detail = std::fs::read_to_string(dir.path().join("mlperf_log_detail.txt")).unwrap();
        assert!(detail.contains("\"result_validity\""), "{name}");
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
