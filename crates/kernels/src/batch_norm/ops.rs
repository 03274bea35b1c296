//! Batch norm's passes as candle ops: what each computes, its operands,
//! and which runs it (the CPU loops in `cpu`, our kernels in `gpu`); the
//! apply pass's backward.

use super::cpu;
#[cfg(feature = "cuda")]
use super::gpu;
use crate::op_values::{cpu_storage, cpu_values, cpu_write};
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};

/// Per channel `(Σx, Σx²)` as f32 `[2, C]`.
pub(super) struct ChannelSums {
    pub(super) plane: usize,
}

/// Per channel `(Σdy·m, Σdy·m·x)` of `(dy, x, mask)` as f32 `[2, C]`,
/// `m = [mask > 0]` when `masked` (else 1, and the third operand is unused).
struct DotSums {
    plane: usize,
    masked: bool,
}

/// Batch norm applied from its statistics `[4, C]` (`(x, stats, residual)`;
/// without a residual the third operand is unused): `x·scale + shift`, plus
/// the residual, then ReLU when asked. Its input gradient includes the path
/// through the batch statistics when `batch_statistics` (training).
pub(super) struct BnApply {
    pub(super) plane: usize,
    pub(super) relu: bool,
    pub(super) residual: bool,
    pub(super) batch_statistics: bool,
    pub(super) count: f32,
    pub(super) eps: f32,
}

/// `(stats [4, C], (Σdy, Σdy·x) [2, C]) → (A, B, C) [3, C]`: the input
/// gradient `dx = A·dy + B·x + C` of batch norm with batch statistics.
struct Coefficients {
    count: f32,
    eps: f32,
}

/// `(dy, x, coef) → A·dy + B·x + C` per channel.
struct BnDx {
    plane: usize,
}

/// `dy·scale[c]·m` of `(dy, scale, mask)`, `m` as in [`DotSums`]: the
/// input gradient of `x·scale` (and of [`BnApply`] with constant statistics).
struct MaskedScale {
    plane: usize,
    masked: bool,
}

/// From the sums `[2, C]`, γ and β: `[scale | shift | mean | biased var]`,
/// f32 `[4, C]` (scale = γ/√(var + ε), shift = β − mean·scale).
pub(super) struct Finalize {
    pub(super) count: f32,
    pub(super) eps: f32,
}

/// The gradients of [`Finalize`]'s inputs from those of its scale and
/// shift: `(sums, γ, grad) → [dΣx | dΣx² | dγ | dβ]`, f32 `[4, C]`.
pub(super) struct FinalizeGrad {
    pub(super) count: f32,
    pub(super) eps: f32,
    /// `grad` is the apply pass's `(Σdy, Σdy·x)` = (dshift, dscale), as
    /// [`DotSums`] leaves it (saves building `[dscale | dshift]`), not
    /// candle's gradient of the statistics.
    pub(super) from_dot: bool,
}

/// `running ← (1 − momentum)·running + momentum·unbias·stat` (f32 `[C]`).
pub(super) struct Running {
    pub(super) momentum: f32,
    pub(super) unbias: f32,
}

/// `[N, C, plane]` of a contiguous operand.
pub(super) struct Geometry {
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(super) n: usize,
    pub(super) channels: usize,
    pub(super) plane: usize,
}

impl Geometry {
    pub(super) fn of(layout: &Layout, plane: usize) -> Result<Geometry> {
        let dims = layout.dims();
        let channels = *dims.get(1).unwrap_or(&0);
        if channels == 0 || plane == 0 || layout.shape().elem_count() != dims[0] * channels * plane
        {
            candle_core::bail!("batch norm: unexpected operand shape {:?}", layout.shape());
        }
        Ok(Geometry {
            n: dims[0],
            channels,
            plane,
        })
    }

    pub(super) fn channel(&self, i: usize) -> usize {
        (i / self.plane) % self.channels
    }
}

impl CustomOp1 for ChannelSums {
    fn name(&self) -> &'static str {
        "channel-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::of(l, self.plane)?;
        let sums = cpu::sums(&g, &cpu_values(s, l)?, None, None);
        Ok((CpuStorage::F32(sums), (2, g.channels).into()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::sums(self.plane, (s, l), None, None)
    }
}

impl CustomOp3 for DotSums {
    fn name(&self) -> &'static str {
        "channel-dot-sums"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::of(l1, self.plane)?;
        let x = cpu_values(s2, l2)?;
        let mask = self.masked.then(|| cpu_values(s3, l3)).transpose()?;
        let sums = cpu::sums(&g, &cpu_values(s1, l1)?, Some(&x), mask.as_deref());
        Ok((CpuStorage::F32(sums), (2, g.channels).into()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let mask = self.masked.then_some((s3, l3));
        gpu::sums(self.plane, (s1, l1), Some((s2, l2)), mask)
    }
}

impl CustomOp3 for MaskedScale {
    fn name(&self) -> &'static str {
        "channel-masked-scale"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::of(l1, self.plane)?;
        let scale = cpu_values(s2, l2)?;
        let mask = self.masked.then(|| cpu_values(s3, l3)).transpose()?;
        let ops = (scale.as_slice(), None, None);
        let dx = cpu::affine(&g, cpu_values(s1, l1)?, ops, mask.as_deref(), false);
        Ok((cpu_storage(dx, s1.dtype())?, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let mask = self.masked.then_some((s3, l3));
        gpu::affine(self.plane, (s1, l1), ((s2, l2), None, None), mask, false)
    }
}

impl CustomOp3 for BnApply {
    fn name(&self) -> &'static str {
        "batch-norm-apply"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::of(l1, self.plane)?;
        let stats = cpu_values(s2, l2)?;
        let (scale, rest) = stats.split_at(g.channels);
        let residual = self.residual.then(|| cpu_values(s3, l3)).transpose()?;
        let ops = (scale, Some(&rest[..g.channels]), residual.as_deref());
        let y = cpu::affine(&g, cpu_values(s1, l1)?, ops, None, self.relu);
        Ok((cpu_storage(y, s1.dtype())?, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        // Rows 0 and 1 of the statistics: views of the same buffer.
        let scale = l2.narrow(0, 0, 1)?;
        let shift = l2.narrow(0, 1, 1)?;
        let residual = self.residual.then_some((s3, l3));
        let ops = ((s2, &scale), Some((s2, &shift)), residual);
        gpu::affine(self.plane, (s1, l1), ops, None, self.relu)
    }

    fn bwd(
        &self,
        x: &Tensor,
        stats: &Tensor,
        _third: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dot, d_residual) = self.gradients(x, stats, y, dy)?;
        // ∂/∂scale = Σdy·x, ∂/∂shift = Σdy; the mean and variance rows are
        // used only through scale and shift here.
        let zeros = Tensor::zeros((2, stats.dim(1)?), DType::F32, dy.device())?;
        let d_stats = Tensor::cat(
            &[dot.get(1)?.unsqueeze(0)?, dot.get(0)?.unsqueeze(0)?, zeros],
            0,
        )?;
        Ok((Some(dx), Some(d_stats), d_residual))
    }
}

impl BnApply {
    /// For the output gradient `dy`: the input's gradient, `(Σdy, Σdy·x)`
    /// per channel (`dy` after the ReLU's mask; the gradients of shift and
    /// scale) and the residual's gradient when there is one.
    pub(super) fn gradients(
        &self,
        x: &Tensor,
        stats: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let plane = self.plane;
        let channels = stats.dim(1)?;
        let dy = dy.contiguous()?;
        // After the ReLU only where the output is positive does dy pass;
        // that masked dy is also the residual's gradient.
        let dy = if self.relu {
            let ones = Tensor::ones(channels, DType::F32, dy.device())?;
            let masked = true;
            dy.apply_op3_no_bwd(&ones, y, &MaskedScale { plane, masked })?
        } else {
            dy
        };
        let masked = false;
        let dot = dy.apply_op3_no_bwd(x, x, &DotSums { plane, masked })?;
        let dx = if self.batch_statistics {
            let op = Coefficients {
                count: self.count,
                eps: self.eps,
            };
            let coef = stats.apply_op2_no_bwd(&dot, &op)?;
            dy.apply_op3_no_bwd(x, &coef, &BnDx { plane })?
        } else {
            // Constant statistics: dx = dy·scale (MaskedScale reads row 0).
            dy.apply_op3_no_bwd(stats, stats, &MaskedScale { plane, masked })?
        };
        Ok((dx, dot, self.residual.then_some(dy)))
    }
}

impl CustomOp2 for Coefficients {
    fn name(&self) -> &'static str {
        "batch-norm-coefficients"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (stats, dot) = (cpu_values(s1, l1)?, cpu_values(s2, l2)?);
        let coef = cpu::coefficients(&stats, &dot, self.count, self.eps);
        Ok((CpuStorage::F32(coef), (3, dot.len() / 2).into()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let channels = l2.shape().elem_count() / 2;
        let coef = gpu::coefficients((s1, l1), (s2, l2), self.count, self.eps)?;
        Ok((coef, (3, channels).into()))
    }
}

impl CustomOp3 for BnDx {
    fn name(&self) -> &'static str {
        "batch-norm-dx"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::of(l1, self.plane)?;
        let (x, coef) = (cpu_values(s2, l2)?, cpu_values(s3, l3)?);
        let dx = cpu::bn_dx(&g, cpu_values(s1, l1)?, &x, &coef);
        Ok((cpu_storage(dx, s1.dtype())?, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let dx = gpu::bn_dx(self.plane, (s1, l1), (s2, l2), (s3, l3))?;
        Ok((dx, l1.shape().clone()))
    }
}

impl CustomOp3 for Finalize {
    fn name(&self) -> &'static str {
        "batch-norm-finalize"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (sums, gamma, beta) = (
            cpu_values(s1, l1)?,
            cpu_values(s2, l2)?,
            cpu_values(s3, l3)?,
        );
        let out = cpu::finalize((self.count, self.eps), &sums, &gamma, &beta);
        Ok((CpuStorage::F32(out), (4, gamma.len()).into()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let channels = l2.shape().elem_count();
        let out = gpu::finalize(None, (self.count, self.eps), (s1, l1), (s2, l2), (s3, l3))?;
        Ok((out, (4, channels).into()))
    }

    fn bwd(
        &self,
        sums: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = FinalizeGrad {
            count: self.count,
            eps: self.eps,
            from_dot: false,
        };
        let d = sums.apply_op3_no_bwd(gamma, &grad.contiguous()?, &op)?;
        let d_sums = d.narrow(0, 0, 2)?;
        let d_gamma = d.get(2)?.to_dtype(gamma.dtype())?;
        let d_beta = d.get(3)?.to_dtype(gamma.dtype())?;
        Ok((Some(d_sums), Some(d_gamma), Some(d_beta)))
    }
}

impl CustomOp3 for FinalizeGrad {
    fn name(&self) -> &'static str {
        "batch-norm-finalize-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (sums, gamma, grad) = (
            cpu_values(s1, l1)?,
            cpu_values(s2, l2)?,
            cpu_values(s3, l3)?,
        );
        let consts = (self.count, self.eps);
        let out = cpu::finalize_grad(consts, self.from_dot, &sums, &gamma, &grad);
        Ok((CpuStorage::F32(out), (4, gamma.len()).into()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let channels = l2.shape().elem_count();
        let out = gpu::finalize(
            Some(self.from_dot),
            (self.count, self.eps),
            (s1, l1),
            (s2, l2),
            (s3, l3),
        )?;
        Ok((out, (4, channels).into()))
    }
}

impl candle_core::InplaceOp2 for Running {
    fn name(&self) -> &'static str {
        "batch-norm-running"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (running, stat) = (cpu_values(s1, l1)?, cpu_values(s2, l2)?);
        let blended = cpu::running(&running, &stat, self.momentum, self.unbias);
        cpu_write(s1, l1, &blended)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<()> {
        gpu::running((s1, l1), (s2, l2), self.momentum, self.unbias)
    }
}
