//! Where a model runs: `cpu`, or `cuda` / `cuda:N` for an NVIDIA GPU.
//!
//! GPU support is the `cuda` cargo feature (it needs nvcc to build); the
//! CUDA libraries are loaded when a GPU is first asked for, so a binary built
//! with it still runs CPU work on machines without a GPU.

use candle_core::{DType, Device};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .or_else(|| other.strip_prefix("gpu:"))
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device '{s}': use cpu, cuda or cuda:N")),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device; a clear error when this build or machine has no GPU.
    pub fn open(self) -> Result<Device, String> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => {
                if !cfg!(feature = "cuda") {
                    return Err(format!(
                        "device cuda:{n}: this joulebench was built without GPU support; \
                         build with `cargo build --release -p cli --features cuda` (see README)"
                    ));
                }
                Device::new_cuda(n)
                    .map_err(|e| format!("device cuda:{n}: cannot open the GPU: {e}"))
            }
        }
    }

    /// The compute type a device runs best: bf16 on GPUs, f32 on CPUs.
    pub fn default_dtype(self) -> DType {
        match self {
            DeviceSpec::Cpu => DType::F32,
            DeviceSpec::Cuda(_) => DType::BF16,
        }
    }
}
