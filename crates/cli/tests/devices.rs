//! `--devices`: a bad list is refused before anything loads, with the reason.
//! (The spreading itself is tested in crates/workloads/tests/devices.rs.)

mod common;

fn run_with_devices(list: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = common::joulebench()
        .args([
            "run",
            "--workload",
            "resnet18",
            "--devices",
            list,
            "--power",
            "none",
            "--quiet",
            "-o",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_gpu_listed_twice_is_refused() {
    let (code, err) = run_with_devices("0,1,0");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cuda:0 is listed twice"), "{err}");
}

#[test]
fn an_unknown_device_is_named() {
    let (code, err) = run_with_devices("cuda:0,tpu");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("'tpu'"), "{err}");
}

#[test]
fn all_without_a_usable_gpu_says_why() {
    // The CI build has no GPU back end (and the CI machine no GPU).
    if cfg!(feature = "cuda") {
        eprintln!("skipped: a cuda build may find GPUs here");
        return;
    }
    let (code, err) = run_with_devices("all");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no GPU could be opened"), "{err}");
    assert!(err.contains("built without GPU support"), "{err}");
}

/// A small BERT (the encoder's code path, milliseconds a batch).
const TINY_BERT: &str = r#"{"model_type": "bert", "vocab_size": 100, "hidden_size": 32,
  "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1, "max_position_embeddings": 64, "type_vocab_size": 2,
  "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0}"#;

#[test]
fn two_cpu_model_copies_share_one_queue_and_the_result_says_who_did_what() {
    let per_device = two_copies("offline");
    assert!(per_device.iter().all(|&n| n > 0), "{per_device:?}");
}

/// Server: the same queue, batches formed as queries arrive (the
/// latency-bound path); whichever copy is free takes the next batch.
#[test]
fn two_cpu_model_copies_serve_the_server_scenario_from_one_queue() {
    two_copies("server");
}

/// Runs the tiny encoder on two CPU copies; returns each copy's samples,
/// checked to add up to the completed samples.
fn two_copies(scenario: &str) -> Vec<u64> {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bert.json");
    std::fs::write(&config, TINY_BERT).unwrap();
    let out_dir = dir.path().join("run");
    let out = common::joulebench()
        .args(["run", "--workload", "minilm", "--devices", "cpu,cpu"])
        .args([
            "--scenario",
            scenario,
            "--duration",
            "0.5",
            "--samples",
            "64",
        ])
        .args(["--seq-len", "16", "--batch-size", "4", "--power", "none"])
        .arg("--model-config")
        .arg(&config)
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("result.json")).unwrap())
            .unwrap();
    let p = &r["workload"]["parameters"];
    assert_eq!(p["devices"], serde_json::json!(["cpu", "cpu"]));
    let work = p["device_work"].as_array().unwrap();
    assert_eq!(work.len(), 2);
    let per_device: Vec<u64> = work
        .iter()
        .map(|w| w["samples"].as_u64().unwrap())
        .collect();
    assert_eq!(
        per_device.iter().sum::<u64>(),
        r["performance"]["samples_completed"].as_u64().unwrap()
    );
    assert!(work.iter().all(|w| w["failed"].is_null()));
    assert_eq!(p["inference_errors"], serde_json::json!([]));
    assert_eq!(
        r["settings"]["scenario"].as_str().map(str::to_lowercase),
        Some(scenario.into()),
        "{}",
        r["settings"]
    );
    per_device
}
