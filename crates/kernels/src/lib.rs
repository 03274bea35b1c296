//! joulebench's own GPU kernels and the candle ops that run them.
//!
//! Each op works on CPU and GPU tensors alike: on NVIDIA GPUs (the `cuda`
//! feature) it launches our kernels, written in `cuda/*.cu` and compiled to
//! PTX by `build.rs` with nvcc; on CPUs it runs plain loops, or candle's own
//! ops where an op is for inference on GPUs only.
//!
//! - Training: [`batch_norm::TrainBatchNorm`] (batch norm in few passes,
//!   its backward included), [`adamw::FusedAdamW`] (two passes per
//!   variable) and [`max_pool`] (forward and backward for any window).
//! - Inference: [`epilogue`] (bias, residual and activation in one pass)
//!   and [`attention`] (a transformer layer's attention in one kernel).

pub mod adamw;
pub mod attention;
pub mod batch_norm;
pub mod epilogue;
#[cfg(feature = "cuda")]
mod kernel_launch;
pub mod max_pool;
mod op_values;
