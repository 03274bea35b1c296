//! The throughput task on several devices, with CPU replicas standing in
//! for GPUs (the code path is the same; only the gradient exchange differs:
//! host memory here, NCCL between GPUs): replicas stay identical, the
//! exchange really mixes their gradients, a device that fails ends the run
//! for every rank without a hang, and Ctrl-C stops all ranks at one step.

use std::sync::atomic::AtomicBool;
use training::clock::RunClock;
use training::mllog::{parse_line, MlLog};
use training::throughput::{train_resnet50_synthetic, ThroughputConfig, ThroughputOutcome};
use training::trainer::Ending;
use training::TrainingError;
use workloads::device::DeviceSpec;

fn small(devices: Vec<DeviceSpec>, batch_size: usize) -> ThroughputConfig {
    ThroughputConfig {
        devices,
        batch_size,
        steps: 2,
        warmup_steps: 1,
        image_side: 32,
        ..Default::default()
    }
}

/// Runs `cfg`; the outcome and the MLPerf log's keys.
fn run(
    cfg: &ThroughputConfig,
    stop: bool,
) -> (
    Result<ThroughputOutcome, TrainingError>,
    Vec<String>,
    Vec<u64>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("result_0.txt");
    let mut log = MlLog::create(&path, RunClock::start()).unwrap();
    let mut reported = Vec::new();
    let outcome =
        train_resnet50_synthetic(cfg, &mut log, &AtomicBool::new(stop), &mut |done, _| {
            reported.push(done)
        });
    drop(log);
    let keys = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| parse_line(l).unwrap()["key"].as_str().unwrap().to_string())
        .collect();
    (outcome, keys, reported)
}

#[test]
fn two_replicas_stay_identical_and_really_exchange_gradients() {
    let (two, keys, reported) = run(&small(vec![DeviceSpec::Cpu, DeviceSpec::Cpu], 4), false);
    let two = two.unwrap();
    assert_eq!(two.ending, Ending::Converged);
    assert_eq!((two.steps, two.samples), (2, 8), "the global batch counts");
    assert_eq!(reported, [1, 2]);
    assert_eq!(two.gradient_sync, "all-reduce through host memory");
    assert_eq!(two.weight_sums.len(), 2);
    assert_eq!(
        two.weight_sums[0], two.weight_sums[1],
        "replicas that take the same averaged steps hold the same weights"
    );
    assert!(two.mean_loss.is_finite());
    assert_eq!(keys.last().map(String::as_str), Some("run_stop"));
    // Rank 0 trains on what a one-device run of half the batch trains on;
    // had its gradients not been mixed with rank 1's, it would end the same.
    let (one, _, _) = run(&small(vec![DeviceSpec::Cpu], 2), false);
    let one = one.unwrap();
    assert_eq!(one.gradient_sync, "none (one device)");
    assert_ne!(one.weight_sums[0], two.weight_sums[0]);
}

#[test]
fn a_device_that_fails_ends_the_run_for_every_rank() {
    // No build or machine here has 64 GPUs: the second rank cannot start.
    let (outcome, keys, reported) = run(
        &small(vec![DeviceSpec::Cpu, DeviceSpec::Cuda(63)], 4),
        false,
    );
    let err = outcome.err().expect("the run fails").to_string();
    assert!(
        err.contains("cuda:63"),
        "the failing device's own error: {err}"
    );
    assert!(reported.is_empty());
    assert_eq!(keys.last().map(String::as_str), Some("run_stop"));
    assert!(!keys.contains(&"run_start".to_string()));
}

#[test]
fn ctrl_c_stops_every_rank_after_the_same_step() {
    let (outcome, keys, _) = run(&small(vec![DeviceSpec::Cpu, DeviceSpec::Cpu], 4), true);
    let o = outcome.unwrap();
    assert_eq!(o.ending, Ending::Interrupted);
    assert_eq!((o.steps, o.samples), (0, 0));
    assert_eq!(o.weight_sums[0], o.weight_sums[1]);
    assert_eq!(keys.last().map(String::as_str), Some("run_stop"));
}

#[test]
fn the_global_batch_must_split_evenly_across_devices() {
    let (outcome, _, _) = run(&small(vec![DeviceSpec::Cpu, DeviceSpec::Cpu], 3), false);
    let err = outcome.err().unwrap().to_string();
    assert!(
        err.contains("--batch-size 3") && err.contains("e.g. 4"),
        "{err}"
    );
}
