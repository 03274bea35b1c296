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

pub mod campaign;
pub mod clock;
pub mod data_parallel;
pub mod digits;
pub mod init;
pub mod mllog;
pub mod model;
pub mod olympic;
pub mod resnet;
pub mod results;
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
    /// An MLPerf Training ruleset whose logs joulebench cannot write.
    #[error("unknown MLPerf Training ruleset {given:?}: joulebench writes logs for {known}")]
    UnknownRuleset { given: String, known: String },
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
    /// Energy over a run, a phase or a power-log interval.
    #[error("energy: {0}")]
    Energy(#[from] harness::HarnessError),
    #[error("MLPerf power log: no meter counts in the system total")]
    NoCountedMeter,
    #[error(transparent)]
    Write(#[from] atomic_file::AtomicWriteError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
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

/// The lowest precision in which a model's matrix products and
/// convolutions compute when its weights and activations are `dtype` on
/// `devices`: bf16 and f16 as themselves; f32 as TF32 where a GPU may use it
/// (candle's f32 matrix products when reduced precision is switched on, and
/// [`workloads::conv`]'s cuDNN convolutions when `workloads_conv` says the
/// model's convolutions are those), else as f32.
pub fn linear_precision(
    dtype: DType,
    devices: &[workloads::device::DeviceSpec],
    workloads_conv: bool,
) -> mllog::Precision {
    use mllog::Precision;
    match dtype {
        DType::BF16 => Precision::Bfloat16,
        DType::F16 => Precision::Fp16,
        DType::F64 => Precision::Fp64,
        _ => {
            let on_gpu = devices
                .iter()
                .any(|d| matches!(d, workloads::device::DeviceSpec::Cuda(_)));
            let tf32 = workloads::conv::candle_f32_matmul_on_cuda_may_run_as_tf32()
                || (workloads_conv && workloads::conv::F32_ON_CUDA_MAY_RUN_AS_TF32);
            if on_gpu && tf32 {
                Precision::Tf32
            } else {
                Precision::Fp32
            }
        }
    }
}

/// Element types and trained weights, so callers need no candle dependency.
pub use candle_core::{DType, Device, Tensor};
pub use candle_nn::VarMap;
/// The classifier on the digits data set: what `joulebench run` can load.
pub use model::DigitsClassifier;

#[cfg(test)]
mod tests {
    use super::*;
    use mllog::Precision;
    use workloads::device::DeviceSpec;

    #[test]
    fn the_linear_precision_is_the_dtype_computed_in() {
        let gpu = [DeviceSpec::Cuda(0)];
        let cpu = [DeviceSpec::Cpu];
        assert_eq!(
            linear_precision(DType::BF16, &gpu, true),
            Precision::Bfloat16
        );
        assert_eq!(linear_precision(DType::F16, &cpu, true), Precision::Fp16);
        // f32 on a CPU is f32, whatever the build.
        assert_eq!(linear_precision(DType::F32, &cpu, true), Precision::Fp32);
        // On a GPU, TF32 only where cuDNN's convolutions may use it (candle's
        // f32 matrix products are f32 unless switched to reduced precision).
        assert!(!workloads::conv::candle_f32_matmul_on_cuda_may_run_as_tf32());
        let conv_tf32 = workloads::conv::F32_ON_CUDA_MAY_RUN_AS_TF32;
        assert_eq!(
            linear_precision(DType::F32, &gpu, true),
            if conv_tf32 {
                Precision::Tf32
            } else {
                Precision::Fp32
            }
        );
        assert_eq!(linear_precision(DType::F32, &gpu, false), Precision::Fp32);
    }

    #[test]
    fn runs_disclose_their_micro_batch_and_communication() {
        let two = throughput::ThroughputConfig {
            devices: vec![DeviceSpec::Cpu, DeviceSpec::Cpu],
            dtype: DType::BF16,
            batch_size: 8,
            ..Default::default()
        }
        .run_disclosure("c.json");
        assert_eq!(two.linear, Precision::Bfloat16);
        assert_eq!(two.attention, None);
        // Gradients are averaged in f32 whatever the dtype.
        assert_eq!(two.communication, Some(Precision::Fp32));
        assert_eq!(two.micro_batch_size, 4);
        assert_eq!(two.config_filename, "c.json");
        let one = throughput::ThroughputConfig {
            batch_size: 8,
            ..Default::default()
        }
        .run_disclosure("c.json");
        assert_eq!((one.communication, one.micro_batch_size), (None, 8));
        let digits = trainer::DigitsConfig {
            batch_size: 16,
            ..Default::default()
        }
        .run_disclosure("c.json");
        assert_eq!(digits.linear, Precision::Fp32);
        assert_eq!((digits.communication, digits.micro_batch_size), (None, 16));
    }
}
