//! Attention at inference in one kernel per layer on GPUs
//! (`kernels/attention.cu`, committed as PTX).
//!
//! The encoder's attention was a head-major copy of q/k/v, two batched
//! matrix products, a mask add and a softmax over `[batch, heads, len, len]`
//! scores in memory, then a copy back to `[batch, len, hidden]`. The kernel
//! reads the fused projection's output as it is and writes the context as
//! the next layer wants it; the scores never leave the chip (an online
//! softmax per query row, k and v of the head in shared memory, sums in f32).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// `softmax(q·kᵀ + mask)·v` for `qkv` `[batch, len, 3·hidden]` (q, k, v
/// side by side, q already scaled by 1/√d) and an additive `mask`
/// `[batch, 1, 1, len]`: the context `[batch, len, hidden]`. `None` when the
/// kernel does not serve these tensors (not on a GPU, a head size other than
/// 32 or 64, too long for shared memory, another type): use the unfused ops.
pub fn fused(qkv: &Tensor, mask: Option<&Tensor>, heads: usize) -> Result<Option<Tensor>> {
    let Some(op) = Attention::fits(qkv, mask, heads) else {
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
    heads: usize,
    head_dim: usize,
    masked: bool,
}

/// Shared memory a block may take without opting in (k and v as f32).
const SHARED_BYTES: usize = 48 * 1024;

impl Attention {
    fn fits(qkv: &Tensor, mask: Option<&Tensor>, heads: usize) -> Option<Attention> {
        let (b, len, width) = qkv.dims3().ok()?;
        let hidden = width / 3;
        let head_dim = hidden.checked_div(heads)?;
        let shaped = width == 3 * hidden && hidden == heads * head_dim && len > 0;
        let mask_fits = mask.is_none_or(|m| {
            m.dtype() == qkv.dtype() && m.dims() == [b, 1, 1, len] && m.is_contiguous()
        });
        let supported = matches!(
            qkv.dtype(),
            candle_core::DType::BF16 | candle_core::DType::F16 | candle_core::DType::F32
        );
        let fits_shared = 2 * len * head_dim * 4 <= SHARED_BYTES;
        (qkv.device().is_cuda()
            && cfg!(feature = "cuda")
            && shaped
            && mask_fits
            && supported
            && matches!(head_dim, 32 | 64)
            && fits_shared)
            .then_some(Attention {
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
        let out = gpu::attention((s1, l1), mask, (b, len, self.heads, self.head_dim))?;
        Ok((out, (b, len, width / 3).into()))
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use crate::kernel_launch::{by_element_type, suffix, u32_of, view, Operand};
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::CudaDType;
    use candle_core::{CudaStorage, Result};
    use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};

    const PTX: &str = include_str!("../kernels/attention.ptx");
    const MODULE: &str = "joulebench_attention";

    pub(super) fn attention(
        qkv: Operand,
        mask: Option<Operand>,
        dims: (usize, usize, usize, usize),
    ) -> Result<CudaStorage> {
        by_element_type!(qkv.0.dtype(), typed(qkv, mask, dims))
    }

    fn typed<T: CudaDType + DeviceRepr>(
        qkv: Operand,
        mask: Option<Operand>,
        (b, len, heads, d): (usize, usize, usize, usize),
    ) -> Result<CudaStorage> {
        let device = qkv.0.device().clone();
        let func = device.get_or_load_custom_func(
            &format!("attention_{}_d{d}", suffix(qkv.0.dtype())?),
            MODULE,
            PTX,
        )?;
        let qkv = view::<T>(qkv)?;
        let mask = mask.map(view::<T>).transpose()?;
        let total = b * len * heads * d;
        // SAFETY: the kernel writes every element of the context.
        let mut out: CudaSlice<T> = unsafe { device.alloc(total)? };
        // One thread per query row (a block loops past 256 rows).
        let threads = len.div_ceil(32).clamp(1, 8) as u32 * 32;
        let config = LaunchConfig {
            grid_dim: (u32_of(b * heads)?, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: u32_of(2 * len * d * 4)?,
        };
        let (len, heads) = (u32_of(len)?, u32_of(heads)?);
        let null = 0u64;
        let mut args = func.builder();
        args.arg(&qkv);
        match &mask {
            Some(m) => args.arg(m),
            None => args.arg(&null),
        };
        args.arg(&mut out).arg(&len).arg(&heads);
        // SAFETY: attention_T_dD(const T* [b, len, 3, heads, D], const T* [b, len]
        // or null, T* [b, len, heads, D], len, heads); shared memory 2·len·D f32,
        // checked against the default limit by `Attention::fits`.
        unsafe { args.launch(config) }.map_err(candle_core::Error::wrap)?;
        Ok(CudaStorage::wrap_cuda_slice(out, device))
    }
}
