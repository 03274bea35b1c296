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

/// A device name that is none of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device '{given}': use cpu, cuda or cuda:N")]
pub struct UnknownDevice {
    pub given: String,
}

/// Why a device cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "device cuda:{index}: this joulebench was built without GPU support; \
         build with `cargo build --release -p cli --features cuda` (see README)"
    )]
    NoGpuSupport { index: usize },
    #[error("device cuda:{index}: cannot open the GPU: {error}")]
    Open {
        index: usize,
        error: candle_core::Error,
    },
    /// The driver refused a setting the GPU's memory pool needs.
    #[cfg(feature = "cuda")]
    #[error("device cuda:{index}: {error}")]
    Tune { index: usize, error: TuneError },
}

/// What the driver refused while setting a GPU up for repeated batches.
#[cfg(feature = "cuda")]
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("cannot make the GPU's context current: {0}")]
    Bind(cudarc::driver::DriverError),
    #[error("cannot keep freed memory in the pool: {0:?}")]
    Pool(cudarc::driver::sys::CUresult),
}

impl FromStr for DeviceSpec {
    type Err = UnknownDevice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .or_else(|| other.strip_prefix("gpu:"))
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| UnknownDevice { given: s.into() }),
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
    pub fn open(self) -> Result<Device, DeviceError> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(index) => {
                if !cfg!(feature = "cuda") {
                    return Err(DeviceError::NoGpuSupport { index });
                }
                let device =
                    Device::new_cuda(index).map_err(|error| DeviceError::Open { index, error })?;
                #[cfg(feature = "cuda")]
                tune_for_repeated_batches(&device)
                    .map_err(|error| DeviceError::Tune { index, error })?;
                Ok(device)
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

/// What a GPU that runs the same batch shapes over and over wants, as
/// PyTorch's caching allocator gives it (ResNet-50, batch 64, H100: the
/// network 12.8 → 10.8 ms, median of 20, `examples/image_step_times.rs`).
///
/// - Freed memory stays in the device's pool: by default the pool hands it
///   back to the driver at every synchronisation, and each batch (which ends
///   in one) maps it in again.
/// - No per-buffer events: cudarc records an event on every kernel argument
///   and makes two per allocation, to order work across streams. Each thread
///   here has one stream (candle's per-thread stream), and the only tensors
///   that cross threads are the weights, whose loading ends in a
///   synchronisation before any batch runs (the models' `load`).
#[cfg(feature = "cuda")]
fn tune_for_repeated_batches(device: &Device) -> Result<(), TuneError> {
    use cudarc::driver::sys;
    let Device::Cuda(cuda) = device else {
        return Ok(());
    };
    let context = cuda.cuda_stream().context().clone();
    // SAFETY: set before any buffer is allocated on this device by us; see above.
    unsafe { cuda.disable_event_tracking() };
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut keep_bytes = u64::MAX;
    // SAFETY: plain driver calls on this context's device with valid pointers.
    let status = unsafe {
        context.bind_to_thread().map_err(TuneError::Bind)?;
        match sys::cuDeviceGetDefaultMemPool(&mut pool, context.cu_device()) {
            sys::CUresult::CUDA_SUCCESS => sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut keep_bytes as *mut u64 as *mut std::ffi::c_void,
            ),
            other => other,
        }
    };
    if status != sys::CUresult::CUDA_SUCCESS {
        return Err(TuneError::Pool(status));
    }
    Ok(())
}
