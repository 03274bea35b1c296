//! Systems under test for joulebench.
//!
//! - Harness SUTs: [`null::NullSut`] answers at once (it measures the load
//!   generator itself) and [`sleep::SleepSut`] takes a set service time with
//!   a set concurrency; [`synthetic::SyntheticQsl`] is their data set.
//! - Real networks on CPU and NVIDIA GPU through candle: image
//!   classification ([`vision`]), run in batches by [`batcher::BatchingSut`]
//!   over preprocessed samples ([`image_qsl`]). Weights come from
//!   safetensors or seeded random numbers ([`weights`]).

pub mod batcher;
pub mod device;
pub mod image_qsl;
pub mod null;
pub mod sleep;
pub mod synthetic;
pub mod vision;
pub mod weights;

use std::path::PathBuf;

/// Why a workload could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("weights {}: {reason}", path.display())]
    Weights { path: PathBuf, reason: String },
    #[error("{0}")]
    Device(String),
    #[error("model {model}: {reason}")]
    Model { model: String, reason: String },
    #[error("model {model}: inference failed: {reason}")]
    Inference { model: String, reason: String },
}
