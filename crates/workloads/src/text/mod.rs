//! Language workloads: a BERT-family sentence encoder (all-MiniLM-L6-v2 by
//! default) answering with pooled embeddings, and a GPT-2 decoder that
//! generates tokens, reporting the first one to LoadGen so time to first
//! token and time per output token are measured.
//!
//! - [`tokens`]: `tokenizer.json`, and the synthetic token stream used with
//!   random weights and no tokenizer;
//! - [`dataset`]: JSON/JSONL prompts and SQuAD, tokenized into a
//!   [`dataset::TextQsl`] before the timed run;
//! - [`encoder`]: the sentence encoder (BERT layers in Hugging Face's weight
//!   names, mean pooling, L2 normalisation, as sentence-transformers runs
//!   MiniLM);
//! - [`decoder`]: GPT-2 with a key/value cache and batched greedy decoding;
//! - [`serve`]: the systems under test built on them.
//!
//! A model's architecture comes from its `config.json` (next to the weights
//! or given explicitly), or from the built-in one (all-MiniLM-L6-v2, GPT-2
//! small); it is checked against the weights and the data before the run.

pub mod dataset;
pub mod decoder;
pub mod encoder;
pub mod serve;
pub mod tokens;

use crate::WorkloadError;
use std::path::{Path, PathBuf};

/// Why a text workload could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("tokenizer {}: {reason}", path.display())]
    Tokenizer { path: PathBuf, reason: String },
    /// `line` is 1-based; 0 when the problem is with the whole file.
    #[error("data set {}: {reason}", location(path, *line))]
    Dataset {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("model config {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    /// A config.json that reads but describes no network we can build.
    #[error("model config {}: {error}", path.display())]
    Unbuildable {
        path: PathBuf,
        error: ModelConfigError,
    },
    #[error(transparent)]
    Workload(#[from] WorkloadError),
}

/// Why a model's config describes no network we can build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelConfigError {
    #[error("sizes, layer and head counts must be positive")]
    ZeroSize,
    /// The width does not split into heads (`width_key`, `heads_key`: the
    /// config's names for them).
    #[error("{width_key} {width} is not a multiple of {heads_key} {heads}")]
    HeadsDoNotDivide {
        width_key: &'static str,
        width: usize,
        heads_key: &'static str,
        heads: usize,
    },
    #[error("activation_function \"{name}\" is not supported (gelu_new, gelu, relu)")]
    Activation { name: String },
}

fn location(path: &Path, line: usize) -> String {
    if line == 0 {
        path.display().to_string()
    } else {
        format!("{}:{line}", path.display())
    }
}

/// Reads a model's `config.json` as `T`, with errors naming the file.
fn read_config<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TextError> {
    let err = |reason: String| TextError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

/// The `model_type` a `config.json` declares, if any.
fn model_type(path: &Path) -> Result<Option<String>, TextError> {
    #[derive(serde::Deserialize)]
    struct Head {
        model_type: Option<String>,
    }
    Ok(read_config::<Head>(path)?.model_type)
}
