//! `joulebench train` end to end: result.json (kind training), the MLPerf
//! logs, power logs and trained weights; report and compare read the result;
//! a run that cannot reach its target, a NaN loss and a bad data file each
//! end the way the docs say.
//!
//! The digits data set comes from scikit-learn's wheel through
//! bench/data/fetch_digits.sh; without it (no Python or no PyPI) the tests
//! that need it skip, saying so.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::joulebench;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The digits file, fetched when missing; `None` (after saying why) when it cannot be had.
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
        let script = repo().join("bench/data/fetch_digits.sh");
        let ok = Command::new("bash")
            .arg(&script)
            .status()
            .is_ok_and(|s| s.success());
        if !ok || !path.is_file() {
            eprintln!(
                "SKIPPED: digits data set not in {} and {} could not fetch it",
                path.display(),
                script.display()
            );
            return None;
        }
    }
    Some(path)
}

fn train(dir: &Path, data: &Path, extra: &[&str]) -> Output {
    let out = joulebench()
        .args([
            "train",
            "--quiet",
            "--power",
            "estimate",
            "--tdp",
            "40",
            "--power-interval",
            "20ms",
        ])
        .arg("--data")
        .arg(data)
        .arg("-o")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn result(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap()
}

fn run_accuracy(training: &Value) -> f64 {
    training["runs"][0]["final_accuracy"].as_f64().unwrap()
}

fn mllog(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l.strip_prefix(":::MLLOG ").unwrap()).unwrap())
        .collect()
}

#[test]
fn trains_to_the_target_and_writes_result_logs_and_weights() {
    let Some(data) = digits_file() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("digits");
    let out = train(
        &dir,
        &data,
        &["--target-accuracy", "0.95", "--eval-every", "1"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("time to train"), "{stdout}");

    let r = result(&dir);
    assert_eq!(r["kind"], "training");
    assert_eq!(r["status"], "completed");
    let t = &r["training"];
    assert_eq!(t["task"], "digits");
    assert_eq!(t["synthetic_data"], false);
    assert_eq!(t["converged"], true);
    assert_eq!(t["target_accuracy"], 0.95);
    let run = &t["runs"][0];
    assert_eq!(run["status"], "converged");
    assert!(run["final_accuracy"].as_f64().unwrap() >= 0.95);
    let ttt = run["time_to_train_s"].as_f64().unwrap();
    assert!(ttt > 0.0);
    assert_eq!(t["time_to_train_s"]["value"].as_f64().unwrap(), ttt);
    // Energy to train over run_start → run_stop, split into train and eval.
    let energy = run["energy_j"].as_f64().unwrap();
    assert!(energy > 0.0);
    assert_eq!(run["energy_provenance"], "estimated");
    let phase = |name: &str| {
        run["phase_totals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} phase"))
            .clone()
    };
    let split = phase("train")["estimated_j"].as_f64().unwrap()
        + phase("eval")["estimated_j"].as_f64().unwrap();
    assert!(
        split <= energy * 1.0001 && split > energy * 0.9,
        "phases {split} J of {energy} J"
    );
    assert!(!run["curve"].as_array().unwrap().is_empty());
    // The top level is the representative run, as `measure` would report it.
    assert!((r["timed_window"]["duration_s"].as_f64().unwrap() - ttt).abs() < 1e-9);
    assert!(
        r["power"]["total"]["estimated"]["energy_j"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let names: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"train") && names.contains(&"eval"),
        "{names:?}"
    );

    // The MLPerf log ends with success; the power log and weights are there.
    let log = mllog(&dir.join("result_0.txt"));
    assert_eq!(log[0]["key"], "submission_benchmark");
    assert_eq!(log[0]["value"], "joulebench_digits");
    assert_eq!(log.last().unwrap()["key"], "run_stop");
    assert_eq!(log.last().unwrap()["metadata"]["status"], "success");
    let power = mllog(&dir.join("power/result_0/node_0.txt"));
    assert_eq!(power[0]["key"], "power_measurement_start");
    assert!(power.iter().any(|l| l["key"] == "power_reading"));
    assert!(dir.join("power/result_0/sw_0.txt").is_file());
    let weights = dir.join("model.safetensors");
    assert!(weights.is_file());
    let classifier = training::DigitsClassifier::load(&weights, &training::Device::Cpu).unwrap();
    let x = training::Tensor::zeros((1, 1, 8, 8), training::DType::F32, &training::Device::Cpu)
        .unwrap();
    assert_eq!(classifier.classify(&x).unwrap().len(), 1);

    // `joulebench run` serves the trained weights; accuracy mode scores them
    // on the held-out images, end to end through LoadGen's accuracy log.
    let served = tmp.path().join("served");
    let run = joulebench()
        .args([
            "run",
            "--workload",
            "digits",
            "--mode",
            "accuracy",
            "--quiet",
            "--power",
            "none",
            "--weights",
        ])
        .arg(&weights)
        .arg("-o")
        .arg(&served)
        .env("JOULEBENCH_DIGITS", &data)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let digits = std::sync::Arc::new(training::digits::Digits::load(&data).unwrap());
    let labels = training::serve::DigitsQsl::new(digits, usize::MAX).labels();
    let (correct, scored) =
        training::serve::accuracy(&served.join("mlperf_log_accuracy.json"), &labels).unwrap();
    assert_eq!(scored, 359);
    let served_accuracy = correct as f64 / scored as f64;
    let trained_accuracy = run_accuracy(t);
    assert!(
        (served_accuracy - trained_accuracy).abs() < 1e-9,
        "served {served_accuracy} vs evaluated in training {trained_accuracy}"
    );

    // report and compare show it, next to an inference run.
    let rep = joulebench()
        .args(["report", "--format", "md"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&rep.stdout);
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    assert!(
        text.contains("digits training") && text.contains("| train |"),
        "{text}"
    );
    let inference = tmp.path().join("null");
    let inf = joulebench()
        .args([
            "run",
            "--workload",
            "null",
            "--duration",
            "0.2",
            "--quiet",
            "--power",
            "estimate",
            "--tdp",
            "40",
            "-o",
        ])
        .arg(&inference)
        .output()
        .unwrap();
    assert!(inf.status.code().is_some_and(|c| c <= 1));
    let cmp = joulebench()
        .args(["compare", "--format", "md"])
        .arg(&inference)
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cmp.stdout);
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stderr)
    );
    assert!(
        text.contains("| training |") && text.contains("| inference |"),
        "{text}"
    );
}

#[test]
fn an_unreachable_target_is_not_converged_and_exits_1() {
    let Some(data) = digits_file() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hard");
    let out = train(
        &dir,
        &data,
        &["--target-accuracy", "1.0", "--max-epochs", "1"],
    );
    assert_eq!(out.status.code(), Some(1));
    let t = result(&dir)["training"].clone();
    assert_eq!(t["converged"], false);
    assert_eq!(t["runs"][0]["status"], "not_converged");
    assert!(
        t["time_to_train_s"].is_null(),
        "no time to train without convergence"
    );
    let log = mllog(&dir.join("result_0.txt"));
    assert_eq!(log.last().unwrap()["metadata"]["status"], "aborted");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("not_converged"), "{stdout}");
}

#[test]
fn a_nan_loss_fails_the_run_with_a_complete_log() {
    let Some(data) = digits_file() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nan");
    let out = train(&dir, &data, &["--inject-nan-at-step", "3"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("loss became NaN") && stderr.contains("result_0.txt"),
        "{stderr}"
    );
    assert!(
        !dir.join("result.json").exists(),
        "a diverged run is not a result"
    );
    let log = mllog(&dir.join("result_0.txt"));
    assert_eq!(log.last().unwrap()["key"], "run_stop");
    assert_eq!(log.last().unwrap()["metadata"]["status"], "aborted");
}

#[test]
fn a_bad_data_file_is_named_with_its_line_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("digits.csv");
    let good: Vec<String> = (0..65).map(|i| (i % 10).to_string()).collect();
    std::fs::write(&bad, format!("{}\n0,1,2\n", good.join(","))).unwrap();
    let dir = tmp.path().join("out");
    let out = train(&dir, &bad, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: expected 65", bad.display())),
        "{stderr}"
    );
    assert!(
        !dir.exists(),
        "nothing is written before the input is checked"
    );
}

#[test]
fn resnet50_throughput_on_synthetic_data_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rn50");
    let out = joulebench()
        .args([
            "train",
            "--quiet",
            "--task",
            "resnet50-synthetic",
            "--image-size",
            "32",
            "--batch-size",
            "2",
            "--steps",
            "1",
            "--warmup-steps",
            "0",
            "--power",
            "estimate",
            "--tdp",
            "40",
            "-o",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = result(&dir)["training"].clone();
    assert_eq!(t["task"], "resnet50-synthetic");
    assert_eq!(t["model"], "resnet50");
    assert_eq!(t["synthetic_data"], true);
    assert!(t["data"].as_str().unwrap().contains("synthetic"));
    assert!(t["target_accuracy"].is_null());
    let run = &t["runs"][0];
    assert_eq!(run["status"], "completed");
    assert_eq!(run["samples_trained"], 2);
    assert!(run["samples_per_s"].as_f64().unwrap() > 0.0);
    assert!(run["j_per_sample"].as_f64().unwrap() > 0.0);
    assert!(
        t["weights_file"].is_null(),
        "weights trained on noise are not saved"
    );
}

#[test]
fn data_parallel_resnet50_on_two_cpu_replicas() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dp");
    let args = [
        "train",
        "--quiet",
        "--task",
        "resnet50-synthetic",
        "--image-size",
        "32",
        "--steps",
        "1",
        "--warmup-steps",
        "0",
        "--power",
        "estimate",
        "--tdp",
        "40",
        "--devices",
        "cpu,cpu",
        "-o",
    ];
    let odd = joulebench()
        .args(args)
        .arg(&dir)
        .args(["--batch-size", "3"])
        .output()
        .unwrap();
    assert_eq!(odd.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&odd.stderr).contains("multiple of 2"));
    let out = joulebench()
        .args(args)
        .arg(&dir)
        .args(["--batch-size", "4"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = result(&dir)["training"].clone();
    assert_eq!(t["device"], "cpu,cpu");
    assert_eq!(t["devices"], serde_json::json!(["cpu", "cpu"]));
    let h = &t["hyperparameters"];
    assert_eq!(h["global_batch_size"], 4);
    assert_eq!(h["batch_per_device"], 2);
    assert_eq!(h["gradient_sync"], "all-reduce through host memory");
    assert_eq!(t["runs"][0]["samples_trained"], 4);
    // The log says how (ruleset 6.1.0's keys): each replica's batch, the
    // gradients averaged in f32, no other parallelism.
    let log = mllog(&dir.join("result_0.txt"));
    let value = |key: &str| {
        let found: Vec<&Value> = log.iter().filter(|l| l["key"] == key).collect();
        assert_eq!(found.len(), 1, "{key}");
        found[0]["value"].clone()
    };
    assert_eq!(value("micro_batch_size"), 2);
    assert_eq!(value("lowest_numerical_precision_in_linear"), "fp32");
    assert_eq!(value("lowest_numerical_precision_in_comm"), "fp32");
    assert_eq!(value("tensor_parallelism"), 1);
    assert_eq!(value("config_filename"), "train_config.json");
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.join("train_config.json")).unwrap()).unwrap();
    assert_eq!(config["devices"], serde_json::json!(["cpu", "cpu"]));
    assert_eq!(config["micro_batch_size"], 2);

    let digits = joulebench()
        .args(["train", "--devices", "cpu,cpu", "-o"])
        .arg(tmp.path().join("digits"))
        .output()
        .unwrap();
    assert_eq!(digits.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&digits.stderr).contains("digits task trains on one device"));
}

#[test]
fn an_unknown_ruleset_is_refused_with_the_known_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let out = joulebench()
        .args(["train", "--ruleset", "7.0.0", "-o"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("7.0.0") && err.contains("5.1.0, 6.0.0, 6.1.0"),
        "{err}"
    );
    assert!(!dir.exists(), "nothing is written for a bad --ruleset");
}
