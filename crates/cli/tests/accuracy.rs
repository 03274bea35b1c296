//! `joulebench accuracy` on hand-made accuracy logs: MLPerf's output line,
//! duplicates and missing samples, `accuracy.json`, the score recorded in a
//! real `result.json`, and the errors that name what is wrong.

use std::path::Path;
use std::process::Output;

mod common;

fn joulebench(args: &[&str]) -> Output {
    common::joulebench()
        .args(args)
        .output()
        .expect("joulebench runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A LoadGen accuracy log of (qsl_idx, response bytes).
fn write_log(path: &Path, entries: &[(usize, Vec<u8>)]) {
    let lines: Vec<String> = entries
        .iter()
        .enumerate()
        .map(|(seq, (idx, data))| {
            format!(
                "{{ \"seq_id\" : {seq}, \"qsl_idx\" : {idx}, \"data\" : \"{}\" }}",
                hex(data)
            )
        })
        .collect();
    std::fs::write(path, format!("[\n{}\n]\n", lines.join(",\n"))).unwrap();
}

fn class(c: f32) -> Vec<u8> {
    c.to_le_bytes().to_vec()
}

#[test]
fn top1_prints_mlperfs_line_and_writes_the_scores() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("val_map.txt"),
        "a.JPEG 3\nb.JPEG 1\nc.JPEG 4\nd.JPEG 1\n",
    )
    .unwrap();
    // 0 right, 1 wrong, 2 right, 0 again (ignored), 3 missing.
    write_log(
        &d.join("mlperf_log_accuracy.json"),
        &[
            (0, class(3.0)),
            (1, class(2.0)),
            (2, class(4.0)),
            (0, class(7.0)),
        ],
    );
    let labels = d.join("val_map.txt");
    let out = joulebench(&[
        "accuracy",
        d.to_str().unwrap(),
        "--kind",
        "top1",
        "--labels",
        labels.to_str().unwrap(),
        "--show-wrong",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("accuracy=66.667%, good=2, total=3\n"),
        "{stdout}"
    );
    assert!(stdout.contains("1 duplicates ignored"), "{stdout}");
    assert!(
        stdout.contains("wrong: sample 1 (b.JPEG): expected 1, found 2"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 samples have no response in the log (first: 3)"),
        "{stderr}"
    );

    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("accuracy.json")).unwrap()).unwrap();
    assert_eq!(scores["kind"], "top1");
    assert_eq!(scores["complete"], false);
    assert_eq!(scores["coverage"]["missing_examples"][0], 3);
    let accuracy = scores["metrics"]["accuracy_percent"].as_f64().unwrap();
    assert!((accuracy - 200.0 / 3.0).abs() < 1e-9);
    assert_eq!(scores["mlperf_line"], "accuracy=66.667%, good=2, total=3");
}

#[test]
fn the_score_goes_into_a_real_result_json() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // An accuracy run of the null SUT: a real result.json with an accuracy
    // record, and responses with no data (the null SUT answers nothing).
    let out = joulebench(&[
        "run",
        "--workload",
        "null",
        "--mode",
        "accuracy",
        "--samples",
        "4",
        "--quiet",
        "-o",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = std::fs::read_to_string(run.join("result.json")).unwrap();
    let labels = dir.path().join("val_map.txt");
    std::fs::write(&labels, "a 0\nb 1\nc 2\nd 3\n").unwrap();
    let out = joulebench(&[
        "accuracy",
        run.to_str().unwrap(),
        "--kind",
        "top1",
        "--labels",
        labels.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("accuracy=0.000%, good=0, total=4"));
    assert!(text(&out.stderr).contains("4 responses are empty"));

    let after = std::fs::read_to_string(run.join("result.json")).unwrap();
    let result: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(result["accuracy"]["score"]["kind"], "top1");
    assert_eq!(result["accuracy"]["samples_logged"], 4);
    assert!(result["files"]
        .as_array()
        .unwrap()
        .contains(&serde_json::Value::from("accuracy.json")));
    // The rest of the file is untouched: the text before the accuracy record is identical.
    let head = |s: &str| s[..s.find("\"accuracy\"").unwrap()].to_string();
    assert_eq!(head(&before), head(&after));
    // Reports still read it.
    let out = joulebench(&[
        "report",
        run.to_str().unwrap(),
        "-o",
        dir.path().join("r.md").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn squad_rouge_and_perplexity() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A text data set in the layout `run --dataset` reads: it is its own reference.
    let refs = d.join("questions.jsonl");
    std::fs::write(
        &refs,
        "{\"question\": \"Who won?\", \"context\": \"...\", \"answers\": [\"Denver Broncos\"]}\n\
         {\"question\": \"Where?\", \"context\": \"...\", \"answers\": [{\"text\": \"Santa Clara\"}]}\n",
    )
    .unwrap();
    let log = d.join("mlperf_log_accuracy.json");
    write_log(
        &log,
        &[
            (0, b"the Denver Broncos".to_vec()),
            (1, b"in Santa Clara, California".to_vec()),
        ],
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["accuracy", log.to_str().unwrap()];
        args.extend_from_slice(extra);
        joulebench(&args)
    };
    let out = run(&["--kind", "squad", "--references", refs.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    // EM 1 of 2; F1: 1 and 2·(2/4)·1/(2/4+1) = 2/3.
    assert!(
        stdout.starts_with("{\"exact_match\": 50.0, \"f1\": 83.33333333333"),
        "{stdout}"
    );

    // ROUGE needs to be told how responses are encoded.
    let out = run(&["--kind", "rouge", "--references", refs.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--tokenizer FILE"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&[
        "--kind",
        "rouge",
        "--references",
        refs.to_str().unwrap(),
        "--text-responses",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("{'rouge1': "),
        "{}",
        text(&out.stdout)
    );

    // Perplexity: NLLs 1, 2 and 3 nats → exp(2).
    let nll = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let ppl_log = d.join("ppl.json");
    write_log(&ppl_log, &[(0, nll(&[1.0, 2.0])), (1, nll(&[3.0]))]);
    let out = joulebench(&[
        "accuracy",
        ppl_log.to_str().unwrap(),
        "--kind",
        "perplexity",
        "--output",
        d.join("ppl_scores.json").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("perplexity=7.3891, tokens=3, samples=2"),
        "{}",
        text(&out.stdout)
    );
    assert!(d.join("ppl_scores.json").is_file());
}

#[test]
fn errors_name_the_file_or_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let labels = d.join("val_map.txt");
    std::fs::write(&labels, "a.JPEG 3\nb.JPEG\n").unwrap();
    write_log(&d.join("mlperf_log_accuracy.json"), &[(0, class(3.0))]);
    let dir_arg = d.to_str().unwrap();

    let out = joulebench(&[
        "accuracy",
        dir_arg,
        "--kind",
        "top1",
        "--labels",
        labels.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("val_map.txt:2: expected `FILENAME LABEL`"),
        "{}",
        text(&out.stderr)
    );

    let out = joulebench(&["accuracy", dir_arg, "--kind", "top1"]);
    assert!(
        text(&out.stderr).contains("--kind top1 needs --labels"),
        "{}",
        text(&out.stderr)
    );

    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = joulebench(&["accuracy", empty.to_str().unwrap(), "--kind", "perplexity"]);
    assert!(
        text(&out.stderr).contains("no accuracy log"),
        "{}",
        text(&out.stderr)
    );

    // A log with a sample the labels do not have: the wrong labels.
    std::fs::write(&labels, "a.JPEG 3\n").unwrap();
    write_log(&d.join("mlperf_log_accuracy.json"), &[(5, class(3.0))]);
    let out = joulebench(&[
        "accuracy",
        dir_arg,
        "--kind",
        "top1",
        "--labels",
        labels.to_str().unwrap(),
    ]);
    assert!(
        text(&out.stderr).contains("has sample 5 but this reference has 1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn run_refuses_an_image_folder_with_a_missing_image_before_loading_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("val_map.txt"), "gone.JPEG 3\n").unwrap();
    let out = joulebench(&[
        "run",
        "--workload",
        "resnet18",
        "--image-folder",
        d.to_str().unwrap(),
        "--quiet",
        "-o",
        d.join("run").to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("gone.JPEG: image file is missing"),
        "{stderr}"
    );
    assert!(stderr.contains("val_map.txt:1"), "{stderr}");
}
