//! Training on the real digits data set: converges to the target, stops as
//! aborted when the target is out of reach, catches a NaN loss, and writes
//! an MLPerf log whose keys come in MLPerf's order.
//!
//! The data set is scikit-learn's, fetched by bench/data/fetch_digits.sh into
//! the joulebench cache; these tests fetch it when it is missing and skip,
//! saying why, when it cannot be had (no Python or no PyPI).

use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use training::clock::RunClock;
use training::digits::Digits;
use training::mllog::{parse_line, MlLog};
use training::trainer::{train_digits, DigitsConfig, Ending};

fn digits() -> Option<Digits> {
    let path = training::digits::default_path();
    if !path.is_file() {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/data/fetch_digits.sh");
        let status = std::process::Command::new("bash").arg(&script).status();
        if !matches!(status, Ok(s) if s.success()) || !path.is_file() {
            eprintln!(
                "SKIPPED: the digits data set is not in {} and {} could not fetch it",
                path.display(),
                script.display()
            );
            return None;
        }
    }
    Some(Digits::load(&path).expect("the fetched digits file parses"))
}

fn log_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("not an MLLOG line: {l}")))
        .collect()
}

fn keys(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_real_data_set_has_scikit_learns_shape() {
    let Some(d) = digits() else { return };
    assert_eq!(d.len(), training::digits::EXPECTED_IMAGES);
    let (train, held) = d.split();
    assert_eq!((train.len(), held.len()), (1438, 359));
    // Every class is in the held-out set.
    for class in 0..10u32 {
        assert!(held.iter().any(|&i| d.labels[i] == class), "class {class}");
    }
}

#[test]
fn converges_to_the_target_and_logs_it_the_mlperf_way() {
    let Some(d) = digits() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("result_0.txt");
    let mut log = MlLog::create(&path, RunClock::start()).unwrap();
    let cfg = DigitsConfig {
        target_accuracy: 0.95,
        max_epochs: 30,
        eval_every: 2,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let o = train_digits(&d, &cfg, &mut log, &AtomicBool::new(false), &mut ()).unwrap();
    eprintln!(
        "converged={:?} after {} epochs, {:.3} s to train ({:.3} s in all), accuracy {:?}",
        o.ending,
        o.epochs,
        o.time_to_train_s(),
        t.elapsed().as_secs_f64(),
        o.final_accuracy()
    );
    assert_eq!(o.ending, Ending::Converged);
    assert!(o.final_accuracy().unwrap() >= 0.95);
    assert_eq!(o.epochs % 2, 0, "evaluated every 2 epochs");
    assert!(o.curve.iter().all(|p| p.epoch % 2 == 0));
    // The curve rises: the last point is the best so far or near it.
    assert!(o.curve.last().unwrap().accuracy >= o.curve[0].accuracy);

    let lines = log_lines(&path);
    let k = keys(&lines);
    let pos = |key: &str| {
        k.iter()
            .position(|x| x == key)
            .unwrap_or_else(|| panic!("{key} missing: {k:?}"))
    };
    // MLPerf's order: caches, init (hyperparameters inside), run, blocks, evals, stop.
    assert!(pos("cache_clear") < pos("init_start"));
    for hp in [
        "seed",
        "global_batch_size",
        "opt_name",
        "opt_base_learning_rate",
        "opt_adamw_beta_1",
        "opt_adamw_weight_decay",
        "train_samples",
        "eval_samples",
    ] {
        assert!(
            pos("init_start") < pos(hp) && pos(hp) < pos("init_stop"),
            "{hp}"
        );
    }
    assert!(pos("init_stop") < pos("run_start"));
    assert!(pos("run_start") < pos("block_start"));
    assert!(pos("block_start") < pos("epoch_start"));
    assert!(pos("epoch_stop") < pos("block_stop"));
    assert!(pos("block_stop") < pos("eval_start"));
    assert!(pos("eval_start") < pos("eval_accuracy"));
    assert!(pos("eval_accuracy") < pos("eval_stop"));
    assert_eq!(k.last().unwrap(), "run_stop");
    let stop = lines.last().unwrap();
    assert_eq!(stop["metadata"]["status"], "success");
    assert_eq!(
        k.iter().filter(|x| *x == "eval_accuracy").count(),
        o.curve.len()
    );
    assert_eq!(k.iter().filter(|x| *x == "epoch_start").count(), o.epochs);
    let last_eval = lines
        .iter()
        .rev()
        .find(|l| l["key"] == "eval_accuracy")
        .unwrap();
    assert_eq!(last_eval["metadata"]["epoch_num"], o.epochs);
    assert!(last_eval["value"].as_f64().unwrap() >= 0.95);
    // Time to train in the log is the run's, to the millisecond.
    let ms = |key: &str| lines[pos(key)]["time_ms"].as_f64().unwrap();
    let logged_s = (ms("run_stop") - ms("run_start")) / 1e3;
    assert!(
        (logged_s - o.time_to_train_s()).abs() < 0.002,
        "{logged_s} vs {}",
        o.time_to_train_s()
    );
    // Train and eval phases alternate inside the run window.
    let names: Vec<&str> = o.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names[0], "init");
    assert!(
        names[1..].chunks(2).all(|c| c == ["train", "eval"]),
        "{names:?}"
    );
    assert!(o.phases[1].begin_ns >= o.run_start_ns);
    assert!(o.phases.last().unwrap().end_ns <= o.run_stop_ns);
}

#[test]
fn an_unreachable_target_stops_at_max_epochs_as_aborted() {
    let Some(d) = digits() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("result_0.txt");
    let mut log = MlLog::create(&path, RunClock::start()).unwrap();
    let cfg = DigitsConfig {
        target_accuracy: 1.0,
        max_epochs: 3,
        eval_every: 2,
        ..Default::default()
    };
    let o = train_digits(&d, &cfg, &mut log, &AtomicBool::new(false), &mut ()).unwrap();
    assert_eq!(o.ending, Ending::NotConverged);
    assert_eq!(o.epochs, 3);
    // Evaluated after epoch 2 and after the last epoch (3).
    let epochs: Vec<usize> = o.curve.iter().map(|p| p.epoch).collect();
    assert_eq!(epochs, [2, 3]);
    let lines = log_lines(&path);
    let stop = lines.last().unwrap();
    assert_eq!(stop["key"], "run_stop");
    assert_eq!(stop["metadata"]["status"], "aborted");
}

#[test]
fn a_nan_loss_is_an_error_and_the_log_ends_aborted() {
    let Some(d) = digits() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("result_0.txt");
    let mut log = MlLog::create(&path, RunClock::start()).unwrap();
    let cfg = DigitsConfig {
        max_epochs: 2,
        inject_nan_at_step: Some(5),
        ..Default::default()
    };
    let err = train_digits(&d, &cfg, &mut log, &AtomicBool::new(false), &mut ())
        .err()
        .expect("a NaN loss must fail the run");
    let text = err.to_string();
    assert!(
        text.contains("loss became NaN") && text.contains("step 5"),
        "{text}"
    );
    let lines = log_lines(&path);
    let stop = lines.last().unwrap();
    assert_eq!(stop["key"], "run_stop");
    assert_eq!(stop["metadata"]["status"], "aborted");
    assert!(!lines.iter().any(|l| l["key"] == "eval_accuracy"));
}

#[test]
fn a_stop_request_ends_the_run_as_interrupted() {
    let Some(d) = digits() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("result_0.txt");
    let mut log = MlLog::create(&path, RunClock::start()).unwrap();
    let o = train_digits(
        &d,
        &DigitsConfig::default(),
        &mut log,
        &AtomicBool::new(true),
        &mut (),
    )
    .unwrap();
    assert_eq!(o.ending, Ending::Interrupted);
    assert_eq!(
        log_lines(&path).last().unwrap()["metadata"]["status"],
        "aborted"
    );
}
