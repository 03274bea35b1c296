//! `joulebench run --workload onnx` against the peer: ONNX Runtime's own
//! Python API. `tests/data/onnx_models.py` builds small models with the
//! `onnx` package (a float MLP; an embedding with two int64 inputs and two
//! outputs of two types; a fixed batch; a string input), their inputs as
//! `.npy` files, and what ONNX Runtime answers on each sample. joulebench
//! runs the same files in accuracy mode and its logged outputs must be
//! those answers.
//!
//! Python with onnxruntime, onnx and numpy comes from a virtualenv made
//! under the target folder (pip's cache makes a second time quick), or from
//! JOULEBENCH_ORT_PYTHON. Without Python or PyPI the tests skip with a loud
//! banner; with `CI` set they fail instead. joulebench finds ONNX Runtime
//! the way a user's machine would: the `python3` on PATH has it.

mod common;

use common::{joulebench, read_json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// A Python with onnxruntime, onnx and numpy, made once per test process.
fn python() -> Option<&'static PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            common::python_with(
                "an onnx test",
                "JOULEBENCH_ORT_PYTHON",
                &Path::new(env!("CARGO_TARGET_TMPDIR")).join("ort-venv"),
                &["onnxruntime", "onnx", "numpy", "tokenizers"],
            )
        })
        .as_ref()
}

/// The models, inputs and ONNX Runtime's answers, made once per process.
fn models() -> Option<&'static Path> {
    static MODELS: OnceLock<Option<tempfile::TempDir>> = OnceLock::new();
    MODELS
        .get_or_init(|| {
            let python = python()?;
            let dir = tempfile::tempdir().unwrap();
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx_models.py");
            let status = Command::new(python)
                .arg(script)
                .arg(dir.path())
                .arg(tokenizer_json())
                .status()
                .unwrap();
            assert!(status.success(), "onnx_models.py failed");
            Some(dir)
        })
        .as_ref()
        .map(|d| d.path())
}

/// The small WordPiece tokenizer the workloads tests ship.
fn tokenizer_json() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/tests/data/wordpiece_tokenizer.json")
}

/// `joulebench run --workload onnx` with the test Python's folder first on
/// PATH, so that joulebench finds its onnxruntime.
fn run_onnx(args: &[&str]) -> Output {
    let bin_dir = python().unwrap().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    joulebench()
        .args(["run", "--workload", "onnx", "--quiet"])
        .args(args)
        .env("PATH", path)
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An `.npy` file's element kind, shape and data.
fn read_npy(path: &Path) -> (String, Vec<usize>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let h = ort_backend::npy::parse_header(&bytes).unwrap();
    (h.kind, h.shape, bytes[h.data_offset..].to_vec())
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Each sample's logged bytes, by sample index.
fn logged(dir: &Path) -> std::collections::BTreeMap<u64, Vec<u8>> {
    let log = read_json(&dir.join("mlperf_log_accuracy.json"));
    log.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["qsl_idx"].as_u64().unwrap(),
                hex_bytes(e["data"].as_str().unwrap()),
            )
        })
        .collect()
}

#[test]
fn logged_outputs_are_onnx_runtimes_own_answers_on_the_same_inputs() {
    let Some(models) = models() else { return };
    let described = read_json(&models.join("models.json"));
    // Each model's samples as a folder of .npy files and as an .npz archive.
    for (name, inputs) in [("mlp", "mlp"), ("embed", "embed"), ("embed", "embed.npz")] {
        let out = tempfile::tempdir().unwrap();
        let o = run_onnx(&[
            "--model-file",
            models.join(format!("{name}.onnx")).to_str().unwrap(),
            "--inputs",
            models.join(inputs).to_str().unwrap(),
            "--dim",
            "sequence=7",
            // Batches of 5 over 12 samples: full and partial batches.
            "--batch-size",
            "5",
            "--mode",
            "accuracy",
            "-o",
            out.path().to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let outputs: Vec<String> = described[name]["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        assert_logged_outputs_are(
            out.path(),
            &models.join(format!("{name}.expected")),
            &outputs,
            12,
        );
    }
}

/// Each sample's logged bytes are its slice of every expected output (in
/// `expected/<output>.npy`), in order: floats within 1e-5, the rest exact.
fn assert_logged_outputs_are(run: &Path, expected: &Path, outputs: &[String], samples: usize) {
    let logged = logged(run);
    assert_eq!(
        logged.len(),
        samples,
        "{}: every sample logged once",
        run.display()
    );
    let outputs: Vec<(String, Vec<usize>, Vec<u8>)> = outputs
        .iter()
        .map(|n| read_npy(&expected.join(format!("{n}.npy"))))
        .collect();
    for (&i, got) in &logged {
        let mut at = 0;
        for (kind, shape, data) in &outputs {
            let per_sample = data.len() / shape[0];
            let want = &data[i as usize * per_sample..(i as usize + 1) * per_sample];
            let got = &got[at..at + per_sample];
            at += per_sample;
            if kind == "f4" {
                for (g, w) in got.chunks(4).zip(want.chunks(4)) {
                    let g = f32::from_le_bytes(g.try_into().unwrap());
                    let w = f32::from_le_bytes(w.try_into().unwrap());
                    assert!(
                        (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "sample {i}: {g} vs ONNX Runtime's {w}"
                    );
                }
            } else {
                assert_eq!(got, want, "sample {i} ({kind})");
            }
        }
        assert_eq!(at, got.len(), "sample {i}: nothing but the outputs");
    }
}

/// A text data set, tokenized by joulebench (our tokenizer.json reader) and
/// fed by input name, gives the answers ONNX Runtime gives on the same
/// texts as Hugging Face's tokenizers library encodes them.
#[test]
fn a_text_data_set_is_tokenized_and_fed_as_hugging_faces_library_does() {
    let Some(models) = models() else { return };
    let out = tempfile::tempdir().unwrap();
    let o = run_onnx(&[
        "--model-file",
        models.join("embed.onnx").to_str().unwrap(),
        "--dataset",
        models.join("texts.jsonl").to_str().unwrap(),
        "--tokenizer",
        tokenizer_json().to_str().unwrap(),
        "--dim",
        "sequence=7",
        "--batch-size",
        "4",
        "--mode",
        "accuracy",
        "-o",
        out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let outputs = ["pooled".to_string(), "tokens".to_string()];
    assert_logged_outputs_are(out.path(), &models.join("embed.text_expected"), &outputs, 6);
    // A model whose inputs are not named as tokens is refused.
    let o = run_onnx(&[
        "--model-file",
        models.join("mlp.onnx").to_str().unwrap(),
        "--dataset",
        models.join("texts.jsonl").to_str().unwrap(),
        "--tokenizer",
        tokenizer_json().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--dataset feeds inputs named input_ids"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_performance_run_on_synthetic_inputs_records_the_runtime_that_ran() {
    let Some(models) = models() else { return };
    let out = tempfile::tempdir().unwrap();
    let o = run_onnx(&[
        "--model-file",
        models.join("embed.onnx").to_str().unwrap(),
        "--dim",
        "sequence=16",
        "--int-max",
        "50",
        "--batch-size",
        "8",
        "--duration",
        "1",
        "-o",
        out.path().to_str().unwrap(),
    ]);
    let r = read_json(&out.path().join("result.json"));
    assert!(o.status.success(), "{}\n{r}", stderr(&o));
    let text = r.to_string();
    assert!(text.contains("\"engine\":\"onnxruntime\""), "{text}");
    assert!(text.contains("CPUExecutionProvider"), "{text}");
    let version = described_version(models);
    assert!(
        text.contains(&format!("\"onnxruntime_version\":\"{version}\"")),
        "{text}"
    );
    assert!(text.contains("input_ids: i64[batch, sequence]"), "{text}");
}

fn described_version(models: &Path) -> String {
    read_json(&models.join("models.json"))["mlp"]["onnxruntime"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn bad_models_and_inputs_are_refused_before_the_run_with_the_reason() {
    let Some(models) = models() else { return };
    let m = |name: &str| models.join(name).to_str().unwrap().to_string();
    let not_onnx = models.join("not-a-model.onnx");
    std::fs::write(&not_onnx, b"this is not protobuf").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--model-file".into(), not_onnx.display().to_string()],
            "not-a-model.onnx",
        ),
        (
            vec!["--model-file".into(), m("missing.onnx")],
            "no such file",
        ),
        (
            vec!["--model-file".into(), m("future_opset.onnx")],
            "future_opset.onnx",
        ),
        (
            vec![
                "--model-file".into(),
                m("mlp.onnx"),
                "--weights".into(),
                m("mlp.onnx"),
            ],
            "holds its own weights",
        ),
        (
            vec![
                "--model-file".into(),
                m("mlp.onnx"),
                "--devices".into(),
                "all".into(),
            ],
            "runs on one device",
        ),
        (
            vec![
                "--model-file".into(),
                m("mlp.onnx"),
                "--inputs".into(),
                m("mlp.compressed.npz"),
            ],
            "np.savez_compressed",
        ),
        (
            vec![
                "--model-file".into(),
                m("mlp.onnx"),
                "--inputs".into(),
                m("mlp.onnx"),
            ],
            "not an .npz",
        ),
        (vec![], "needs --model-file"),
        (
            vec![
                "--model-file".into(),
                m("fixed.onnx"),
                "--batch-size".into(),
                "5".into(),
            ],
            "batches of exactly 4",
        ),
        (
            vec!["--model-file".into(), m("strings.onnx")],
            "cannot feed",
        ),
        (
            vec!["--model-file".into(), m("embed.onnx")],
            "--dim sequence=N",
        ),
        (
            vec![
                "--model-file".into(),
                m("mlp.onnx"),
                "--inputs".into(),
                m("embed"),
            ],
            "x.npy",
        ),
        (
            vec![
                "--model-file".into(),
                m("embed.onnx"),
                "--dim".into(),
                "sequence=9".into(),
                "--inputs".into(),
                m("embed"),
            ],
            "takes [9] per sample",
        ),
        (
            vec![
                "--model-file".into(),
                m("mlp.onnx"),
                "--mode".into(),
                "accuracy".into(),
            ],
            "needs real inputs",
        ),
        (
            vec![
                "--model-file".into(),
                m("mlp.onnx"),
                "--device".into(),
                "cuda:0".into(),
            ],
            "no CUDA execution provider",
        ),
        (
            vec![
                "--model-file".into(),
                m("mlp.onnx"),
                "--device".into(),
                "cuda:0".into(),
                "--ort-provider".into(),
                "tensorrt".into(),
            ],
            "no TensorRT execution provider",
        ),
        (
            vec![
                "--model-file".into(),
                m("mlp.onnx"),
                "--ort-provider".into(),
                "tensorrt".into(),
            ],
            "--ort-provider is for a GPU",
        ),
    ];
    for (args, expect) in cases {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["--duration", "1", "-o"]);
        let out = tempfile::tempdir().unwrap();
        all.push(out.path().to_str().unwrap());
        let o = run_onnx(&all);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} ran");
        assert!(
            err.contains(expect),
            "{args:?}: expected {expect:?} in:\n{err}"
        );
        assert!(
            !out.path().join("result.json").exists(),
            "{args:?} wrote a result"
        );
    }
}

#[test]
fn a_missing_runtime_says_where_it_looked_and_how_to_get_one() {
    let Some(models) = models() else { return };
    let model = models.join("mlp.onnx");
    // ORT_DYLIB_PATH is the user's explicit choice: its failure is the answer.
    let o = joulebench()
        .args(["run", "--workload", "onnx", "--quiet", "--model-file"])
        .arg(&model)
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("/nonexistent/libonnxruntime.so"), "{err}");
    // No Python with onnxruntime on PATH and none in the system's folders.
    let o = joulebench()
        .args(["run", "--workload", "onnx", "--quiet", "--model-file"])
        .arg(&model)
        .env("PATH", "/nonexistent-bin")
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success());
    if err.contains("ONNX Runtime's library was not found") {
        assert!(err.contains("pip install onnxruntime"), "{err}");
        assert!(err.contains("/usr/lib"), "lists the folders tried: {err}");
    } else {
        // This machine has a system-wide ONNX Runtime: it was used.
        assert!(err.contains("found by system"), "{err}");
    }
}

/// An ONNX classifier on an ImageNet-layout folder, in both layouts:
/// preprocessed as MLPerf does, answered with the top-1 class, and scored
/// by `joulebench accuracy --kind top1`. The classifiers' scores are each
/// colour channel's mean, so solid red, green and blue images are classes
/// 0, 1 and 2: every answer right.
#[test]
fn an_image_classifier_on_an_image_folder_scores_with_joulebench_accuracy() {
    let Some(models) = models() else { return };
    let folder = models.join("colours");
    for (model, layout) in [("classify_nchw", "NCHW"), ("classify_nhwc", "NHWC")] {
        let out = tempfile::tempdir().unwrap();
        let o = run_onnx(&[
            "--model-file",
            models.join(format!("{model}.onnx")).to_str().unwrap(),
            "--image-folder",
            folder.to_str().unwrap(),
            "--batch-size",
            "4",
            "--mode",
            "accuracy",
            "-o",
            out.path().to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{model}: {}", stderr(&o));
        let r = read_json(&out.path().join("result.json")).to_string();
        assert!(
            r.contains(layout) && r.contains("top-1 class"),
            "{model}: {r}"
        );
        let scored = joulebench()
            .args(["accuracy"])
            .arg(out.path())
            .args(["--kind", "top1", "--labels"])
            .arg(folder.join("val_map.txt"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&scored.stdout);
        assert!(scored.status.success(), "{model}: {}", stderr(&scored));
        assert!(
            stdout.starts_with("accuracy=100.000%, good=6, total=6"),
            "{model}: {stdout}"
        );
    }
    // A model whose input is not an image is refused with the reason.
    let o = run_onnx(&[
        "--model-file",
        models.join("mlp.onnx").to_str().unwrap(),
        "--image-folder",
        folder.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--image-folder gives 3×224×224 images"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_question_answering_model_answers_with_spans_that_squad_scoring_reads() {
    let Some(models) = models() else { return };
    let out = tempfile::tempdir().unwrap();
    let squad = models.join("squad.json");
    let o = run_onnx(&[
        "--model-file",
        models.join("qa.onnx").to_str().unwrap(),
        "--dataset",
        squad.to_str().unwrap(),
        "--tokenizer",
        tokenizer_json().to_str().unwrap(),
        "--dim",
        "sequence=32",
        "--batch-size",
        "2",
        "--mode",
        "accuracy",
        "-o",
        out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Each answer is the span ONNX Runtime's Python API gives on the Hugging
    // Face tokenizer's own pair encoding (token types included).
    let expected: Vec<Vec<u32>> =
        serde_json::from_str(&std::fs::read_to_string(models.join("qa.expected.json")).unwrap())
            .unwrap();
    let got = logged(out.path());
    assert_eq!(got.len(), expected.len());
    for (i, ids) in expected.iter().enumerate() {
        let bytes: Vec<u8> = ids.iter().flat_map(|t| t.to_le_bytes()).collect();
        assert_eq!(got[&(i as u64)], bytes, "sample {i}");
    }
    let result = read_json(&out.path().join("result.json"));
    assert!(
        result["workload"]["parameters"]["answer"]
            .as_str()
            .unwrap()
            .contains("answer span"),
        "{result}"
    );
    // Scored as SQuAD: "lazy dog" and "lazy brown dog" right, "a" for "quick fox" wrong.
    let scored = joulebench()
        .args(["accuracy", out.path().to_str().unwrap(), "--kind", "squad"])
        .args(["--references", squad.to_str().unwrap()])
        .args(["--tokenizer", tokenizer_json().to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&scored.stdout);
    assert!(scored.status.success(), "{stdout}{}", stderr(&scored));
    assert!(
        stdout.starts_with("{\"exact_match\": 66.66666666666"),
        "{stdout}"
    );
}
