//! Training benchmarks for joulebench, the MLPerf Training way.
//!
//! - [`trainer`]: time to quality. A small convolutional classifier
//!   ([`model::DigitsNet`]) is trained on the real 8×8 handwritten digits
//!   scikit-learn ships ([`digits`]) until its held-out accuracy reaches a
//!   target, evaluated every N epochs; a run that never gets there stops at a
//!   maximum number of epochs and is marked aborted, never converged.
//! - [`throughput`]: training steps per second of ResNet-50
//!   ([`resnet::ResNet50`], batch norm in training mode) on ImageNet-shaped
//!   synthetic inputs, with no quality target.
//! - [`data_parallel`]: the throughput task on several devices at once
//!   (gradients averaged through NCCL, or host memory), one replica each.
//! - [`mllog`]: the MLPerf Training log (`:::MLLOG` lines) and MLPerf Power's
//!   per-node power logs, in the format the `mlperf-logging` package reads.
//! - [`serve`]: the trained digits classifier as a system under test for
//!   `joulebench run --workload digits`, and its accuracy check.
//! - [`olympic`]: MLPerf's score over several runs (drop the fastest and the
//!   slowest).
//!
//! Nothing here knows about power meters: callers get every phase's window on
//! the run's one clock ([`clock::RunClock`]) and compute energy over it.

pub mod clock;
pub mod data_parallel;
pub mod digits;
pub mod init;
pub mod mllog;
pub mod model;
pub mod olympic;
pub mod resnet;
pub mod serve;
pub mod throughput;
pub mod trainer;

use std::path::PathBuf;

/// Why training could not start, or stopped without a result.
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    /// A line of the data set that does not parse.
    #[error("{}:{line}: {reason}", path.display())]
    DataLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// The data set as a whole (missing, unreadable, empty, compressed).
    #[error("data set {}: {reason}", path.display())]
    DataFile { path: PathBuf, reason: String },
    /// The loss stopped being a number: the run diverged.
    #[error(
        "the training loss became {loss} at epoch {epoch}, step {step}: training diverged \
         (try a lower --learning-rate); the run is logged as aborted and is not a result"
    )]
    NonFiniteLoss { epoch: usize, step: u64, loss: f32 },
    #[error(
        "{device}: out of GPU memory while {what} ({detail}); try a smaller --batch-size; \
         the run is logged as aborted and is not a result"
    )]
    OutOfMemory {
        device: String,
        what: String,
        detail: String,
    },
    #[error(transparent)]
    Device(#[from] workloads::device::DeviceError),
    #[cfg(feature = "nccl")]
    #[error("NCCL: cannot make the run's id ({error:?}); is libnccl.so.2 on LD_LIBRARY_PATH?")]
    NcclId {
        error: cudarc::nccl::result::NcclError,
    },
    #[cfg(feature = "nccl")]
    #[error("NCCL rank {rank} was given a CPU device")]
    NcclOnCpu { rank: usize },
    #[cfg(feature = "nccl")]
    #[error("NCCL: rank {rank} of {ranks} cannot join ({error:?})")]
    NcclJoin {
        rank: usize,
        ranks: usize,
        error: cudarc::nccl::result::NcclError,
    },
    #[error("a rank panicked")]
    RankPanicked,
    #[error("{what}: {source}")]
    Model {
        what: String,
        source: candle_core::Error,
    },
    #[error("MLPerf log {}: {source}", path.display())]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("weights {}: {reason}", path.display())]
    Weights { path: PathBuf, reason: String },
    /// A setting below its minimum (`minimum` with its unit, if any).
    #[error("{flag} must be at least {minimum}")]
    AtLeast {
        flag: &'static str,
        minimum: &'static str,
    },
    #[error("--batch-size and --steps must be at least 1, and --image-size at least 32")]
    ThroughputSizes,
    #[error("--target-accuracy {value}: give a fraction in (0, 1], e.g. 0.97")]
    TargetAccuracy { value: f64 },
    #[error("--learning-rate {value}: must be a positive number")]
    LearningRate { value: f64 },
    #[error("no device to train on")]
    NoDevice,
    #[error(
        "--batch-size {batch_size} is the global batch and must split evenly across the \
         {devices} devices: give a multiple of {devices}, e.g. {}",
        batch_size.div_ceil(*devices) * devices
    )]
    UnevenBatch { batch_size: usize, devices: usize },
    /// A served sample index beyond the held-out set.
    #[error("sample {sample} is not in the held-out set")]
    NotHeldOut { sample: usize },
    /// A data-parallel rank stopped because another one failed; that
    /// rank's own error is the one to report.
    #[error("stopped: another device failed")]
    PeerFailed,
    /// The data-parallel replicas did not end with the same weights.
    #[error(
        "the data-parallel replicas ended with different weights (sums {0:?}): gradients \
         were not averaged consistently; this is a joulebench bug"
    )]
    ReplicasDiverged(Vec<f64>),
}

impl TrainingError {
    /// A runtime error while doing `what` on `device`; out-of-memory errors
    /// become [`TrainingError::OutOfMemory`] so the user is told what to change.
    pub fn model(what: &str, device: &str, source: candle_core::Error) -> TrainingError {
        let text = source.to_string();
        let lower = text.to_ascii_lowercase();
        if lower.contains("out of memory") || lower.contains("out_of_memory") {
            TrainingError::OutOfMemory {
                device: device.to_string(),
                what: what.to_string(),
                detail: text,
            }
        } else {
            TrainingError::Model {
                what: format!("{what} on {device}"),
                source,
            }
        }
    }
}

/// Element types and trained weights, so callers need no candle dependency.
pub use candle_core::{DType, Device, Tensor};
pub use candle_nn::VarMap;
/// The classifier on the digits data set: what `joulebench run` can load.
pub use model::DigitsClassifier;
