//! `joulebench run --workload minilm|gpt2` end to end: random weights with
//! synthetic tokens, a weights folder with its config.json and
//! tokenizer.json over a JSONL data set, token latencies in result.json,
//! and bad input refused before the timed run with the file named.

use std::path::{Path, PathBuf};
use std::process::Output;
use workloads::text::decoder::{Gpt2, Gpt2Config};
use workloads::text::encoder::{minilm_l6_v2_config, BertConfig, SentenceEncoder};

mod common;
use common::joulebench;

fn run(args: &[&str], out: &Path) -> Output {
    joulebench()
        .arg("run")
        .args(args)
        .args(["--quiet", "-o"])
        .arg(out)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn result_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap()).unwrap()
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

const TINY_BERT: &str = r#"{"model_type": "bert", "vocab_size": 100, "hidden_size": 32,
  "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1, "max_position_embeddings": 64, "type_vocab_size": 2,
  "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0}"#;

const TINY_GPT2: &str = r#"{"model_type": "gpt2", "vocab_size": 100, "n_positions": 64,
  "n_embd": 32, "n_layer": 2, "n_head": 4}"#;

fn tiny_bert() -> BertConfig {
    BertConfig {
        vocab_size: 100,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 64,
        ..minilm_l6_v2_config()
    }
}

/// A WordLevel tokenizer of 15 tokens with `[CLS] … [SEP]` framing.
const TOKENIZER_JSON: &str = r#"{
  "version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [
    {"id": 0, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 2, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": {"type": "Lowercase"},
  "pre_tokenizer": {"type": "Whitespace"},
  "post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
             {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
    "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}},
  "decoder": null,
  "model": {"type": "WordLevel", "unk_token": "[UNK]",
    "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "the": 3, "quick": 4, "brown": 5, "fox": 6,
              "jumps": 7, "over": 8, "lazy": 9, "dog": 10, "who": 11, "jumped": 12, "?": 13, "a": 14}}
}"#;

/// A model folder as Hugging Face lays it out: weights, config, tokenizer.
fn bert_folder(dir: &Path) -> PathBuf {
    let folder = dir.join("tiny-bert");
    std::fs::create_dir_all(&folder).unwrap();
    SentenceEncoder::export_random_weights(&tiny_bert(), 5, &folder.join("model.safetensors"))
        .unwrap();
    write(&folder, "config.json", TINY_BERT);
    write(&folder, "tokenizer.json", TOKENIZER_JSON);
    folder
}

#[test]
fn minilm_offline_runs_on_random_weights_with_synthetic_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "--workload",
            "minilm",
            "--scenario",
            "offline",
            "--duration",
            "1",
            "--samples",
            "16",
            "--seq-len",
            "32",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = result_json(dir.path());
    let p = &r["workload"]["parameters"];
    assert_eq!(p["model"], "minilm");
    assert_eq!(p["random_weights"], true);
    assert_eq!(p["weights"], "random (seed 1)");
    assert_eq!(p["tokenizer"], "none: synthetic token stream");
    assert_eq!(p["config"], "built-in all-MiniLM-L6-v2");
    assert!(p["data"].as_str().unwrap().contains("32 tokens a sample"));
    assert_eq!(p["seq_len"], 32);
    assert_eq!(r["performance"]["valid"], true);
    assert!(r["performance"]["first_token_latency"].is_null());
}

#[test]
fn gpt2_reports_time_to_first_token_and_per_output_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "gpt2.json", TINY_GPT2);
    for scenario in ["offline", "server"] {
        let out_dir = dir.path().join(scenario);
        let out = run(
            &[
                "--workload",
                "gpt2",
                "--scenario",
                scenario,
                "--duration",
                "0.5",
                "--samples",
                "16",
                "--seq-len",
                "8",
                "--max-new-tokens",
                "4",
                "--model-config",
                config.to_str().unwrap(),
            ],
            &out_dir,
        );
        assert!(
            matches!(out.status.code(), Some(0) | Some(1)),
            "{}",
            text(&out)
        );
        let r = result_json(&out_dir);
        let perf = &r["performance"];
        let ttft = &perf["first_token_latency"];
        let tpot = &perf["time_per_output_token"];
        assert!(ttft["count"].as_u64().unwrap() > 0, "{scenario}: {perf}");
        assert!(tpot["count"].as_u64().unwrap() > 0, "{scenario}: {perf}");
        assert!(
            ttft["mean_ns"].as_i64().unwrap() < perf["sample_latency"]["mean_ns"].as_i64().unwrap(),
            "{scenario}: the first token comes before the sample completes"
        );
        let p = &r["workload"]["parameters"];
        assert_eq!(p["max_new_tokens"], 4);
        assert_eq!(p["random_weights"], true);
        assert!(p["config"].as_str().unwrap().ends_with("gpt2.json"));
        let summary = std::fs::read_to_string(out_dir.join("mlperf_log_summary.txt")).unwrap();
        assert!(summary.to_lowercase().contains("token"), "{summary}");
    }
}

#[test]
fn a_weights_folder_brings_its_config_and_tokenizer_for_a_jsonl_data_set() {
    let dir = tempfile::tempdir().unwrap();
    let folder = bert_folder(dir.path());
    let data = write(
        dir.path(),
        "sentences.jsonl",
        "{\"text\": \"the quick brown fox\"}\n{\"text\": \"the lazy dog\"}\n{\"question\": \"who jumped ?\", \"context\": \"the fox\"}\n",
    );
    let out_dir = dir.path().join("acc");
    let out = run(
        &[
            "--workload",
            "minilm",
            "--mode",
            "accuracy",
            "--weights",
            folder.to_str().unwrap(),
            "--dataset",
            data.to_str().unwrap(),
            "--batch-size",
            "2",
        ],
        &out_dir,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = result_json(&out_dir);
    let p = &r["workload"]["parameters"];
    assert_eq!(p["random_weights"], false);
    assert!(p["config"]
        .as_str()
        .unwrap()
        .ends_with("tiny-bert/config.json"));
    assert!(p["tokenizer"]
        .as_str()
        .unwrap()
        .ends_with("tiny-bert/tokenizer.json"));
    assert!(p["data"].as_str().unwrap().contains("3 records"));
    let log: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("mlperf_log_accuracy.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(log.len(), 3, "every sentence answered once");
    for entry in &log {
        assert_eq!(
            entry["data"].as_str().unwrap().len(),
            32 * 4 * 2,
            "32 f32 in hex"
        );
    }
}

#[test]
fn gpt2_weights_from_a_file_run_a_data_set_and_stop_at_end_of_text() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("tiny-gpt2");
    std::fs::create_dir_all(&folder).unwrap();
    let config = Gpt2Config {
        vocab_size: 100,
        n_positions: 64,
        n_embd: 32,
        n_layer: 2,
        n_head: 4,
        ..Gpt2Config::gpt2_small()
    };
    Gpt2::export_random_weights(&config, 3, &folder.join("model.safetensors")).unwrap();
    write(&folder, "config.json", TINY_GPT2);
    let tokenizer = write(dir.path(), "tokenizer.json", TOKENIZER_JSON);
    let data = write(
        dir.path(),
        "prompts.jsonl",
        "{\"prompt\": \"the quick brown fox\"}\n{\"prompt\": \"the lazy dog\"}\n",
    );
    let out_dir = dir.path().join("acc");
    let out = run(
        &[
            "--workload",
            "gpt2",
            "--mode",
            "accuracy",
            "--weights",
            folder.join("model.safetensors").to_str().unwrap(),
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--dataset",
            data.to_str().unwrap(),
            "--max-new-tokens",
            "5",
        ],
        &out_dir,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("mlperf_log_accuracy.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(log.len(), 2);
    for entry in &log {
        let tokens = entry["data"].as_str().unwrap().len() / 8;
        assert!((1..=5).contains(&tokens), "{entry}");
        assert_eq!(entry["token_count"].as_u64().unwrap() as usize, tokens);
    }
}

/// Each bad input fails with exit status 2 before the timed run, saying
/// what is wrong and where.
#[test]
fn bad_input_is_refused_before_the_run_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let folder = bert_folder(d);
    let tiny_bert = write(d, "bert.json", TINY_BERT);
    let tiny_gpt2 = write(d, "gpt2.json", TINY_GPT2);
    let corrupt = write(d, "corrupt.safetensors", "not safetensors at all");
    let bad_data = write(
        d,
        "bad.jsonl",
        "{\"text\": \"the fox\"}\n{\"txt\": \"typo\"}\n",
    );
    let bad_tokenizer = write(d, "bad-tokenizer.json", "{\"model\": 1}");
    let big_vocab = write(d, "big-vocab-tokenizer.json", TOKENIZER_JSON);
    let small_vocab_bert = write(
        d,
        "small.json",
        &TINY_BERT.replace("\"vocab_size\": 100", "\"vocab_size\": 10"),
    );
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (folder_s, weights_s) = (s(&folder), s(&folder.join("model.safetensors")));
    let (bert, gpt2, corrupt) = (s(&tiny_bert), s(&tiny_gpt2), s(&corrupt));
    let (bad_data_s, bad_tok) = (s(&bad_data), s(&bad_tokenizer));
    let (missing, big_vocab, small_bert) = (
        s(&d.join("missing.json")),
        s(&big_vocab),
        s(&small_vocab_bert),
    );
    let bad_line = format!("{bad_data_s}:2:");
    // (arguments, what the error must say)
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["minilm", "--tokenizer", &missing, "--model-config", &bert],
            vec!["missing.json", "no such file"],
        ),
        (
            vec!["minilm", "--tokenizer", &bad_tok, "--model-config", &bert],
            vec![&bad_tok, "not a valid tokenizer.json"],
        ),
        (
            vec!["gpt2", "--weights", &corrupt, "--model-config", &gpt2],
            vec!["corrupt.safetensors", "not a valid safetensors"],
        ),
        // BERT weights under a GPT-2 architecture: a shape/name mismatch.
        (
            vec!["gpt2", "--weights", &weights_s, "--model-config", &gpt2],
            vec!["tiny-bert/model.safetensors", "wte"],
        ),
        // A GPT-2 config for the BERT workload: an unknown architecture.
        (
            vec!["minilm", "--model-config", &gpt2],
            vec!["gpt2.json", "not a BERT"],
        ),
        (
            vec!["minilm", "--weights", &folder_s, "--dataset", &bad_data_s],
            vec![&bad_line, "no text"],
        ),
        (
            vec!["minilm", "--model-config", &bert, "--dataset", &bad_data_s],
            vec!["needs a tokenizer"],
        ),
        (
            vec![
                "minilm",
                "--model-config",
                &small_bert,
                "--tokenizer",
                &big_vocab,
            ],
            vec!["big-vocab-tokenizer.json", "15 tokens", "10"],
        ),
        (
            vec!["minilm", "--model-config", &bert, "--seq-len", "65"],
            vec!["--seq-len 65", "64"],
        ),
        (
            vec![
                "gpt2",
                "--model-config",
                &gpt2,
                "--seq-len",
                "60",
                "--max-new-tokens",
                "5",
            ],
            vec!["n_positions"],
        ),
        (
            vec!["gpt2", "--model-config", &gpt2, "--mode", "accuracy"],
            vec!["accuracy mode needs real weights"],
        ),
        (
            vec!["minilm", "--weights", &folder_s, "--mode", "accuracy"],
            vec!["accuracy mode needs real data"],
        ),
    ];
    for (i, (args, expected)) in cases.iter().enumerate() {
        let out_dir = d.join(format!("case{i}"));
        let mut all = vec!["--workload"];
        all.extend(args);
        let out = run(&all, &out_dir);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "case {i}: {said}");
        for e in expected {
            assert!(said.contains(e), "case {i}: {said:?} should contain {e:?}");
        }
        assert!(
            !out_dir.join("mlperf_log_detail.txt").exists(),
            "case {i}: refused before the timed run"
        );
    }
}
