//! Systems under test for joulebench.
//!
//! - Harness SUTs: [`null::NullSut`] answers at once (it measures the load
//!   generator itself) and [`sleep::SleepSut`] takes a set service time with
//!   a set concurrency; [`synthetic::SyntheticQsl`] is their data set.
//! - Real networks on CPU and NVIDIA GPU through candle: image
//!   classification ([`vision`]), run in batches by [`batcher::BatchingSut`]
//!   over preprocessed samples ([`image_qsl`]). Weights come from
//!   safetensors or seeded random numbers ([`weights`]).
//! - Real data and accuracy ([`datasets`]): image folders in ImageNet
//!   layout preprocessed like MLPerf's reference, and the scorers of
//!   `mlperf_log_accuracy.json` (top-1, SQuAD EM/F1, ROUGE, perplexity).
//! - Language models ([`text`]): a BERT sentence encoder (all-MiniLM-L6-v2)
//!   and a GPT-2 decoder reporting token latencies, over JSON/JSONL/SQuAD
//!   text tokenized with `tokenizer.json`.

pub mod batcher;
pub mod builtin;
pub mod conv;
#[cfg(feature = "cudnn")]
mod cudnn_conv;
pub mod datasets;
pub mod device;
pub mod image_qsl;
pub mod null;
pub mod onnx;
pub mod resnet;
mod rng;
pub mod sleep;
#[cfg(feature = "cuda")]
pub mod staging;
pub mod synthetic;
pub mod text;
pub mod vision;
pub mod weights;

use std::path::PathBuf;

/// Why a workload could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("weights {}: {reason}", path.display())]
    Weights { path: PathBuf, reason: String },
    #[error(transparent)]
    Device(#[from] device::DeviceError),
    #[error("model {model}: {reason}")]
    Model { model: String, reason: String },
    /// The model's configuration describes no network we can build.
    #[error("model {model}: {error}")]
    Config {
        model: &'static str,
        error: text::ModelConfigError,
    },
    #[error("model {model}: inference failed: {reason}")]
    Inference { model: String, reason: String },
}
