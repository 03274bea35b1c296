//! Attention at inference in one kernel per layer on GPUs
//! (`cuda/attention.cu`, compiled to PTX by build.rs).
//!
//! The encoder's attention was a head-major copy of q/k/v, two batched
//! matrix products, a mask add and a softmax over `[batch, heads, len, len]`
//! scores in memory, then a copy back to `[batch, len, hidden]`. A kernel
//! reads the fused projection's output as it is and writes the context as
//! the next layer wants it; the scores never leave the chip. Two kernels
//! ([`Kernel`]):
//!
//! - on tensor cores, for bf16 and f16: a warp per 16 query rows, k and v of
//!   the head in shared memory as they are, scores and an online softmax in
//!   registers (sums in f32), the probabilities rounded to 16 bits for the
//!   product with v;
//! - on CUDA cores, for f32 and the shapes the first does not serve: a thread
//!   per query row, k and v in shared memory as f32, an online softmax.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

/// Which kernel computes the attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// bf16 and f16 on tensor cores (`attention_tc_*`).
    TensorCores,
    /// bf16, f16 and f32 on CUDA cores (`attention_*`).
    CudaCores,
}

/// The kernel [`fused`] runs for these tensors; `None`: candle's ops.
pub fn kernel_for(qkv: &Tensor, mask: Option<&Tensor>, heads: usize) -> Option<Kernel> {
    Attention::fits(qkv, mask, heads).map(|op| op.kernel)
}

/// `softmax(q·kᵀ + mask)·v` for `qkv` `[batch, len, 3·hidden]` (q, k, v
/// side by side, q already scaled by 1/√d) and an additive `mask`
/// `[batch, 1, 1, len]`: the context `[batch, len, hidden]`. `None` when no
/// kernel serves these tensors (not on a GPU, a head size other than 32 or
/// 64, too long for shared memory, another type): use the unfused ops.
pub fn fused(qkv: &Tensor, mask: Option<&Tensor>, heads: usize) -> Result<Option<Tensor>> {
    match kernel_for(qkv, mask, heads) {
        Some(kernel) => fused_on(kernel, qkv, mask, heads),
        None => Ok(None),
    }
}

/// [`fused`] on the given kernel, `None` where it does not serve these
/// tensors: for tests and timings that compare the two.
#[doc(hidden)]
pub fn fused_on(
    kernel: Kernel,
    qkv: &Tensor,
    mask: Option<&Tensor>,
    heads: usize,
) -> Result<Option<Tensor>> {
    let Some(op) = Attention::on(kernel, qkv, mask, heads) else {
        return Ok(None);
    };
    let qkv = qkv.contiguous()?;
    let second = match mask {
        Some(m) => m.contiguous()?,
        None => qkv.clone(),
    };
    Ok(Some(qkv.apply_op2_no_bwd(&second, &op)?))
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct Attention {
    kernel: Kernel,
    heads: usize,
    head_dim: usize,
    masked: bool,
}

/// Shared memory a block may take without opting in.
const SHARED_BYTES: usize = 48 * 1024;

/// 16-bit elements of padding after each k and v row in the tensor-core
/// kernel's shared memory (`TC_PAD` in the kernel).
const TENSOR_CORE_PAD: usize = 8;

impl Kernel {
    /// Shared memory of one block for `len` keys of `head_dim`.
    fn shared_bytes(self, len: usize, head_dim: usize) -> usize {
        match self {
            // k and v as f32.
            Kernel::CudaCores => 2 * len * head_dim * 4,
            // k and v as they are on padded rows, the mask as f32, for len
            // rounded up to 16 keys.
            Kernel::TensorCores => {
                len.next_multiple_of(16) * (2 * (head_dim + TENSOR_CORE_PAD) * 2 + 4)
            }
        }
    }
}

impl Attention {
    /// The preferred kernel that serves these tensors.
    fn fits(qkv: &Tensor, mask: Option<&Tensor>, heads: usize) -> Option<Attention> {
        [Kernel::TensorCores, Kernel::CudaCores]
            .into_iter()
            .find_map(|kernel| Attention::on(kernel, qkv, mask, heads))
    }

    /// `kernel` for these tensors, if it serves them.
    fn on(kernel: Kernel, qkv: &Tensor, mask: Option<&Tensor>, heads: usize) -> Option<Attention> {
        let (b, len, width) = qkv.dims3().ok()?;
        let hidden = width / 3;
        let head_dim = hidden.checked_div(heads)?;
        let shaped = width == 3 * hidden && hidden == heads * head_dim && len > 0;
        let mask_fits = mask.is_none_or(|m| {
            m.dtype() == qkv.dtype() && m.dims() == [b, 1, 1, len] && m.is_contiguous()
        });
        let serves = match kernel {
            // k and v travel in 16-byte copies: a view that starts off the
            // allocation's alignment stays with the other kernel.
            Kernel::TensorCores => {
                matches!(qkv.dtype(), DType::BF16 | DType::F16)
                    && (!qkv.is_contiguous() || qkv.layout().start_offset().is_multiple_of(8))
            }
            Kernel::CudaCores => matches!(qkv.dtype(), DType::BF16 | DType::F16 | DType::F32),
        };
        (qkv.device().is_cuda()
            && cfg!(feature = "cuda")
            && shaped
            && mask_fits
            && serves
            && matches!(head_dim, 32 | 64)
            && kernel.shared_bytes(len, head_dim) <= SHARED_BYTES)
            .then_some(Attention {
                kernel,
                heads,
                head_dim,
                masked: mask.is_some(),
            })
    }
}

impl CustomOp2 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("{}: CPU tensors use candle's ops", self.name())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (b, len, width) = l1.shape().dims3()?;
        let mask = self.masked.then_some((s2, l2));
        let dims = (b, len, self.heads, self.head_dim);
        let out = gpu::attention(self.kernel, (s1, l1), mask, dims)?;
        Ok((out, (b, len, width / 3).into()))
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::Kernel;
    use crate::kernel_launch::{by_element_type, suffix, u32_of, view, Operand};
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::CudaDType;
    use candle_core::{CudaStorage, Result};
    use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention.ptx"));
    const MODULE: &str = "joulebench_attention";

    pub(super) fn attention(
        kernel: Kernel,
        qkv: Operand,
        mask: Option<Operand>,
        dims: (usize, usize, usize, usize),
    ) -> Result<CudaStorage> {
        by_element_type!(qkv.0.dtype(), typed(kernel, qkv, mask, dims))
    }

    /// Blocks, threads and shared memory of `kernel` for these sizes.
    fn config(
        kernel: Kernel,
        b: usize,
        len: usize,
        heads: usize,
        d: usize,
    ) -> Result<LaunchConfig> {
        let (grid_dim, threads) = match kernel {
            // One thread per query row (a block loops past 256 rows).
            Kernel::CudaCores => (
                (u32_of(b * heads)?, 1, 1),
                len.div_ceil(32).clamp(1, 8) * 32,
            ),
            // One warp per 16 query rows, at most 8 warps a block (4 warps
            // were no faster on an H100); past 128 rows, more blocks of the
            // same head, side by side.
            Kernel::TensorCores => {
                let warps = len.div_ceil(16).min(8);
                let tiles = len.div_ceil(16 * warps);
                ((u32_of(b * heads * tiles)?, 1, 1), warps * 32)
            }
        };
        Ok(LaunchConfig {
            grid_dim,
            block_dim: (u32_of(threads)?, 1, 1),
            shared_mem_bytes: u32_of(kernel.shared_bytes(len, d))?,
        })
    }

    fn typed<T: CudaDType + DeviceRepr>(
        kernel: Kernel,
        qkv: Operand,
        mask: Option<Operand>,
        (b, len, heads, d): (usize, usize, usize, usize),
    ) -> Result<CudaStorage> {
        let device = qkv.0.device().clone();
        let prefix = match kernel {
            Kernel::TensorCores => "attention_tc",
            Kernel::CudaCores => "attention",
        };
        let func = device.get_or_load_custom_func(
            &format!("{prefix}_{}_d{d}", suffix(qkv.0.dtype())?),
            MODULE,
            PTX,
        )?;
        let qkv = view::<T>(qkv)?;
        let mask = mask.map(view::<T>).transpose()?;
        let total = b * len * heads * d;
        // SAFETY: the kernel writes every element of the context.
        let mut out: CudaSlice<T> = unsafe { device.alloc(total)? };
        let config = config(kernel, b, len, heads, d)?;
        let (len, heads) = (u32_of(len)?, u32_of(heads)?);
        let null = 0u64;
        let mut args = func.builder();
        args.arg(&qkv);
        match &mask {
            Some(m) => args.arg(m),
            None => args.arg(&null),
        };
        args.arg(&mut out).arg(&len).arg(&heads);
        // SAFETY: both kernels take (const T* [b, len, 3, heads, D], const T*
        // [b, len] or null, T* [b, len, heads, D], len, heads); the shared
        // memory is `Kernel::shared_bytes`, checked against the default limit
        // by `Attention::on`, and the tensor-core kernel's 16-byte copies
        // start aligned (checked there too).
        unsafe { args.launch(config) }.map_err(candle_core::Error::wrap)?;
        Ok(CudaStorage::wrap_cuda_slice(out, device))
    }
}
