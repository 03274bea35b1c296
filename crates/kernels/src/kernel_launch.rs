//! What the launchers of our GPU kernels share (`batch_norm`, `max_pool`,
//! `adamw`, `attention`): which kernel serves an element type, sizes as the kernels'
//! 32-bit counts, views of contiguous operands, and a grid-stride launch.

use candle_core::cuda_backend::CudaDType;
use candle_core::{CudaStorage, DType, Layout, Result};
use cudarc::driver::{CudaView, LaunchConfig};

/// Threads per block of every launch here.
pub(crate) const THREADS: u32 = 256;

/// A tensor's storage and layout, as custom ops receive them.
pub(crate) type Operand<'a> = (&'a CudaStorage, &'a Layout);

/// The suffix of the kernel for `dtype` (`name_bf16`, `name_f16`, `name_f32`).
pub(crate) fn suffix(dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        DType::F32 => "f32",
        other => candle_core::bail!("no GPU kernel of ours for {other:?}"),
    })
}

/// A count as the kernels take it.
pub(crate) fn u32_of(count: usize) -> Result<u32> {
    u32::try_from(count).map_err(|_| candle_core::Error::msg("tensor over 2³² elements"))
}

/// The element range of a contiguous operand.
pub(crate) fn span(l: &Layout) -> Result<(usize, usize)> {
    l.contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg("kernel operand not contiguous"))
}

/// A contiguous operand's elements.
pub(crate) fn view<'a, T: CudaDType>((s, l): Operand<'a>) -> Result<CudaView<'a, T>> {
    let (a, b) = span(l)?;
    Ok(s.as_cuda_slice::<T>()?.slice(a..b))
}

/// Enough blocks for one thread per element, at most 65,536 (the kernels
/// loop with a grid stride past that).
pub(crate) fn grid_stride(total: usize) -> LaunchConfig {
    let blocks = total.div_ceil(THREADS as usize).clamp(1, 1 << 16) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `$f::<T>(args…)` with `T` the Rust type of `$dtype` among the types our
/// kernels exist for (bf16, f16, f32); any other type is an error.
macro_rules! by_element_type {
    ($dtype:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $dtype {
            candle_core::DType::BF16 => $f::<half::bf16>($($arg),*),
            candle_core::DType::F16 => $f::<half::f16>($($arg),*),
            candle_core::DType::F32 => $f::<f32>($($arg),*),
            other => candle_core::bail!("no GPU kernel of ours for {other:?}"),
        }
    };
}
pub(crate) use by_element_type;
