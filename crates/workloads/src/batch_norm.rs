//! Batch normalisation for training, in few passes over the activations.
//!
//! candle's `BatchNorm::forward_train` takes a dozen broadcast ops per layer
//! (on an H100 they were about half of a ResNet-50 training step) and fails
//! on bf16 inputs (its f32 batch mean meets bf16 running statistics). Here a
//! layer in training mode is three differentiable pieces:
//!
//! 1. `(Σx, Σx²)` per channel, f32 `[2, C]` (one reduction; its gradient is
//!    `g₀ + 2·g₁·x`, one elementwise pass);
//! 2. mean, variance, `scale = γ/√(var+ε)`, `shift = β − mean·scale`: candle
//!    ops on `C` values, so autograd carries the gradient back to γ, β and
//!    the sums;
//! 3. `y = x·scale + shift` per channel (one pass; its gradients are
//!    `dy·scale` and the per-channel `Σdy·x` and `Σdy`, one reduction).
//!    A ReLU after the layer rides on this pass: `max(y, 0)` forward, and
//!    `dy` masked by `y > 0` inside the two backward passes.
//!
//! The running statistics are f32 whatever the model's type, updated as
//! PyTorch does (momentum 0.1, unbiased variance). On GPUs the passes are
//! our kernels (`kernels/batch_norm.cu`, committed as PTX); on CPUs plain
//! loops. Both sum in f32 and accumulate blocks in f64.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, ModuleT, Result, Shape, Tensor,
    Var, WithDType,
};
use candle_nn::{Init, VarBuilder};

/// PyTorch's default: running = (1 − m)·running + m·batch.
const MOMENTUM: f64 = 0.1;

/// A batch-norm layer with torchvision's variable names (`weight`, `bias`,
/// `running_mean`, `running_var`).
pub struct TrainBatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
}

impl TrainBatchNorm {
    pub fn new(channels: usize, eps: f64, vb: VarBuilder) -> Result<TrainBatchNorm> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let stat = |name, init| vb.get_with_hints_dtype(channels, name, init, DType::F32);
        Ok(TrainBatchNorm {
            weight,
            bias,
            running_mean: Var::from_tensor(&stat("running_mean", Init::Const(0.0))?)?,
            running_var: Var::from_tensor(&stat("running_var", Init::Const(1.0))?)?,
            eps,
        })
    }

    /// Normalises with the batch's statistics and updates the running ones.
    pub fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        self.train(x, false)
    }

    /// `relu(batch norm(x))` in the same passes (the ReLU and its gradient
    /// ride on the affine pass and its backward), training or not.
    pub fn forward_t_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.train(x, true)
        } else {
            self.eval(x, true)
        }
    }

    fn train(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let x = x.contiguous()?;
        let (scale, shift, plane) = self.scale_shift(&x, true)?;
        x.apply_op3(&scale, &shift, ChannelAffine { plane, relu })
    }

    /// `relu(batch norm(x) + residual)` (a ResNet block's end) in the same
    /// passes: the residual's gradient is `dy` masked by the output.
    pub fn forward_t_add_relu(&self, x: &Tensor, residual: &Tensor, train: bool) -> Result<Tensor> {
        let x = x.contiguous()?;
        if residual.dims() != x.dims() {
            candle_core::bail!(
                "batch norm: residual {:?} does not match {:?}",
                residual.shape(),
                x.shape()
            );
        }
        let (scale, shift, plane) = self.scale_shift(&x, train)?;
        let scale_shift = Tensor::cat(&[scale, shift], 0)?;
        x.apply_op3(
            &scale_shift,
            &residual.contiguous()?,
            AffineAddRelu { plane },
        )
    }

    /// The per-channel `scale` and `shift` (f32 `[C]`) that normalise `x`:
    /// from its batch statistics (and the running ones updated) in training,
    /// from the running ones otherwise; and `x`'s plane.
    fn scale_shift(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor, usize)> {
        let (channels, plane) = channels_and_plane(x)?;
        if !train {
            let gamma = self.weight.to_dtype(DType::F32)?;
            let beta = self.bias.to_dtype(DType::F32)?;
            let inv_std = (self.running_var.as_tensor() + self.eps)?.sqrt()?.recip()?;
            let scale = (gamma * inv_std)?;
            let shift = (beta - (self.running_mean.as_tensor() * &scale)?)?;
            return Ok((scale, shift, plane));
        }
        let count = (x.elem_count() / channels) as f64;
        if count < 2.0 {
            candle_core::bail!("batch norm in training needs more than one value per channel");
        }
        let sums = x.apply_op1(ChannelSums { plane })?;
        let finalize = Finalize {
            count: count as f32,
            eps: self.eps as f32,
        };
        // [scale | shift | mean | var], f32 [4, C].
        let stats = sums.apply_op3(&self.weight, &self.bias, finalize)?;
        let blend = |running: &Var, row: usize, unbias: f64| {
            let update = Running {
                momentum: MOMENTUM as f32,
                unbias: unbias as f32,
            };
            running.as_tensor().inplace_op2(&stats.get(row)?, &update)
        };
        blend(&self.running_mean, 2, 1.0)?;
        blend(&self.running_var, 3, count / (count - 1.0))?;
        Ok((stats.get(0)?, stats.get(1)?, plane))
    }

    /// Normalises with the running statistics (evaluation).
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        self.eval(x, false)
    }

    fn eval(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let x = x.contiguous()?;
        let (scale, shift, plane) = self.scale_shift(&x, false)?;
        x.apply_op3(&scale, &shift, ChannelAffine { plane, relu })
    }
}

impl ModuleT for TrainBatchNorm {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.forward_train(x)
        } else {
            self.forward_eval(x)
        }
    }
}

/// `[N, C, …]`: channels, and elements per channel per sample.
fn channels_and_plane(x: &Tensor) -> Result<(usize, usize)> {
    let dims = x.dims();
    if dims.len() < 2 || dims[1] == 0 {
        candle_core::bail!("batch norm wants [N, C, …] input, got {:?}", x.shape());
    }
    Ok((dims[1], dims[2..].iter().product()))
}

/// Per channel `(Σx, Σx²)` as f32 `[2, C]`.
struct ChannelSums {
    plane: usize,
}

/// Per channel `(Σdy·m, Σdy·m·x)` of `(dy, x, mask)` as f32 `[2, C]`,
/// `m = [mask > 0]` when `masked` (else 1, and the third operand is unused).
struct DotSums {
    plane: usize,
    masked: bool,
}

/// `x·scale[c] + shift[c]` (scale and shift f32 `[C]`), then `max(·, 0)`
/// when `relu`, in `x`'s type.
struct ChannelAffine {
    plane: usize,
    relu: bool,
}

/// `relu(x·scale[c] + shift[c] + residual)` of `(x, [scale | shift], residual)`.
struct AffineAddRelu {
    plane: usize,
}

/// `dy·scale[c]·m` of `(dy, scale, mask)`, `m` as in [`DotSums`]: the
/// input gradient of [`ChannelAffine`].
struct MaskedScale {
    plane: usize,
    masked: bool,
}

/// From the sums `[2, C]`, γ and β: `[scale | shift | mean | biased var]`,
/// f32 `[4, C]` (scale = γ/√(var + ε), shift = β − mean·scale).
struct Finalize {
    count: f32,
    eps: f32,
}

/// The gradients of [`Finalize`]'s inputs from those of its scale and
/// shift: `(sums, γ, grad) → [dΣx | dΣx² | dγ | dβ]`, f32 `[4, C]`.
struct FinalizeGrad {
    count: f32,
    eps: f32,
}

/// `running ← (1 − momentum)·running + momentum·unbias·stat` (f32 `[C]`).
struct Running {
    momentum: f32,
    unbias: f32,
}

/// The gradient of [`ChannelSums`]: `g[0,c] + 2·g[1,c]·x`.
struct SumsGrad {
    plane: usize,
}

/// `[N, C, plane]` of a contiguous operand.
struct Geometry {
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    n: usize,
    channels: usize,
    plane: usize,
}

impl Geometry {
    fn of(layout: &Layout, plane: usize) -> Result<Geometry> {
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

    fn channel(&self, i: usize) -> usize {
        (i / self.plane) % self.channels
    }
}

// ---------------------------------------------------------------- CPU

/// The contiguous values of an operand as f32.
pub(crate) fn cpu_values(s: &CpuStorage, l: &Layout) -> Result<Vec<f32>> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("batch norm: operand not contiguous");
    };
    Ok(match s {
        CpuStorage::F32(v) => v[a..b].to_vec(),
        CpuStorage::BF16(v) => v[a..b].iter().map(|x| x.to_f32()).collect(),
        CpuStorage::F16(v) => v[a..b].iter().map(|x| x.to_f32()).collect(),
        CpuStorage::F64(v) => v[a..b].iter().map(|&x| x as f32).collect(),
        other => candle_core::bail!("batch norm: no CPU path for {:?}", other.dtype()),
    })
}

pub(crate) fn cpu_storage(values: Vec<f32>, dtype: DType) -> Result<CpuStorage> {
    fn convert<T: WithDType>(v: Vec<f32>) -> Vec<T> {
        v.into_iter().map(|x| T::from_f64(f64::from(x))).collect()
    }
    Ok(match dtype {
        DType::F32 => CpuStorage::F32(values),
        DType::BF16 => CpuStorage::BF16(convert(values)),
        DType::F16 => CpuStorage::F16(convert(values)),
        DType::F64 => CpuStorage::F64(convert(values)),
        other => candle_core::bail!("batch norm: no CPU path for {other:?}"),
    })
}

/// Writes f32 `values` over a contiguous operand, in its type.
pub(crate) fn cpu_write(dst: &mut CpuStorage, l: &Layout, values: &[f32]) -> Result<()> {
    fn put<T: WithDType>(d: &mut [T], v: &[f32]) {
        for (d, v) in d.iter_mut().zip(v) {
            *d = T::from_f64(f64::from(*v));
        }
    }
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("operand not contiguous");
    };
    match dst {
        CpuStorage::F32(d) => d[a..b].copy_from_slice(values),
        CpuStorage::BF16(d) => put(&mut d[a..b], values),
        CpuStorage::F16(d) => put(&mut d[a..b], values),
        CpuStorage::F64(d) => put(&mut d[a..b], values),
        other => candle_core::bail!("no CPU path for {:?}", other.dtype()),
    }
    Ok(())
}

/// `(Σa·m, Σa·m·b)` per channel (`b` = `a·m` when absent, `m` = 1 when no mask).
fn cpu_sums(g: &Geometry, a: &[f32], b: Option<&[f32]>, mask: Option<&[f32]>) -> CpuStorage {
    let mut sums = vec![0f64; 2 * g.channels];
    for (i, &va) in a.iter().enumerate() {
        let va = if mask.is_some_and(|m| m[i] <= 0.0) {
            0.0
        } else {
            va
        };
        let c = g.channel(i);
        sums[c] += f64::from(va);
        sums[g.channels + c] += f64::from(va * b.map_or(va, |b| b[i]));
    }
    CpuStorage::F32(sums.into_iter().map(|s| s as f32).collect())
}

/// `x·scale + shift`, zeroed where the mask is not positive, then ReLU.
fn cpu_affine(
    g: &Geometry,
    x: Vec<f32>,
    (scale, shift, residual): (&[f32], Option<&[f32]>, Option<&[f32]>),
    mask: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    x.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let c = g.channel(i);
            let mut v = v * scale[c] + shift.map_or(0.0, |s| s[c]) + residual.map_or(0.0, |r| r[i]);
            if mask.is_some_and(|m| m[i] <= 0.0) {
                v = 0.0;
            }
            if relu {
                v = v.max(0.0);
            }
            v
        })
        .collect()
}

impl CustomOp1 for ChannelSums {
    fn name(&self) -> &'static str {
        "channel-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::of(l, self.plane)?;
        let sums = cpu_sums(&g, &cpu_values(s, l)?, None, None);
        Ok((sums, (2, g.channels).into()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::sums(self.plane, (s, l), None, None)
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let plane = self.plane;
        Ok(Some(x.apply_op2_no_bwd(&grad, &SumsGrad { plane })?))
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
        let sums = cpu_sums(&g, &cpu_values(s1, l1)?, Some(&x), mask.as_deref());
        Ok((sums, (2, g.channels).into()))
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

impl CustomOp3 for ChannelAffine {
    fn name(&self) -> &'static str {
        "channel-affine"
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
        let (scale, shift) = (cpu_values(s2, l2)?, cpu_values(s3, l3)?);
        let ops = (scale.as_slice(), Some(shift.as_slice()), None);
        let y = cpu_affine(&g, cpu_values(s1, l1)?, ops, None, self.relu);
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
        let ops = ((s2, l2), Some((s3, l3)), None);
        gpu::affine(self.plane, (s1, l1), ops, None, self.relu)
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        _shift: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (plane, masked) = (self.plane, self.relu);
        // After a ReLU, only where the output is positive does dy pass.
        let dx = dy.apply_op3_no_bwd(scale, y, &MaskedScale { plane, masked })?;
        let sums = dy.apply_op3_no_bwd(x, y, &DotSums { plane, masked })?;
        Ok((Some(dx), Some(sums.get(1)?), Some(sums.get(0)?)))
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
        let dx = cpu_affine(&g, cpu_values(s1, l1)?, ops, mask.as_deref(), false);
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

impl CustomOp3 for AffineAddRelu {
    fn name(&self) -> &'static str {
        "channel-affine-add-relu"
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
        let scale_shift = cpu_values(s2, l2)?;
        let (scale, shift) = scale_shift.split_at(g.channels);
        let residual = cpu_values(s3, l3)?;
        let ops = (scale, Some(shift), Some(residual.as_slice()));
        let y = cpu_affine(&g, cpu_values(s1, l1)?, ops, None, true);
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
        // [scale | shift] is [2·C]: each half a view of the same buffer.
        let channels = l2.shape().elem_count() / 2;
        let scale = l2.narrow(0, 0, channels)?;
        let shift = l2.narrow(0, channels, channels)?;
        let ops = ((s2, &scale), Some((s2, &shift)), Some((s3, l3)));
        gpu::affine(self.plane, (s1, l1), ops, None, true)
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale_shift: &Tensor,
        _residual: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (plane, masked) = (self.plane, true);
        let channels = scale_shift.elem_count() / 2;
        // MaskedScale reads the first C values: the scale.
        let dx = dy.apply_op3_no_bwd(scale_shift, y, &MaskedScale { plane, masked })?;
        let ones = Tensor::ones(channels, DType::F32, dy.device())?;
        let d_residual = dy.apply_op3_no_bwd(&ones, y, &MaskedScale { plane, masked })?;
        let sums = dy.apply_op3_no_bwd(x, y, &DotSums { plane, masked })?;
        let d_scale_shift = Tensor::cat(&[sums.get(1)?, sums.get(0)?], 0)?;
        Ok((Some(dx), Some(d_scale_shift), Some(d_residual)))
    }
}

/// Per channel: mean, biased variance, and 1/√(var + ε) from the sums.
fn moments(sums: &[f32], c: usize, channels: usize, count: f32, eps: f32) -> (f32, f32, f32, f32) {
    let mean = sums[c] / count;
    let raw_var = sums[channels + c] / count - mean * mean;
    let var = raw_var.max(0.0);
    (mean, raw_var, var, 1.0 / (var + eps).sqrt())
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
        let channels = gamma.len();
        let mut out = vec![0f32; 4 * channels];
        for c in 0..channels {
            let (mean, _, var, inv) = moments(&sums, c, channels, self.count, self.eps);
            let scale = gamma[c] * inv;
            out[c] = scale;
            out[channels + c] = beta[c] - mean * scale;
            out[2 * channels + c] = mean;
            out[3 * channels + c] = var;
        }
        Ok((CpuStorage::F32(out), (4, channels).into()))
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
        let out = gpu::finalize(false, (self.count, self.eps), (s1, l1), (s2, l2), (s3, l3))?;
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
        let channels = gamma.len();
        let mut out = vec![0f32; 4 * channels];
        for c in 0..channels {
            let (mean, raw_var, _, inv) = moments(&sums, c, channels, self.count, self.eps);
            let (g, g_scale, g_shift) = (gamma[c], grad[c], grad[channels + c]);
            // scale = γ·inv, shift = β − mean·γ·inv, inv = (var + ε)^(−1/2),
            // var = Σx²/n − mean², mean = Σx/n.
            let d_inv = g_scale * g - g_shift * mean * g;
            let d_var = if raw_var > 0.0 {
                -0.5 * d_inv * inv * inv * inv
            } else {
                0.0
            };
            let d_mean = -g_shift * g * inv - 2.0 * mean * d_var;
            out[c] = d_mean / self.count;
            out[channels + c] = d_var / self.count;
            out[2 * channels + c] = g_scale * inv - g_shift * mean * inv;
            out[3 * channels + c] = g_shift;
        }
        Ok((CpuStorage::F32(out), (4, channels).into()))
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
        let out = gpu::finalize(true, (self.count, self.eps), (s1, l1), (s2, l2), (s3, l3))?;
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
        let blended: Vec<f32> = running
            .iter()
            .zip(&stat)
            .map(|(r, s)| (1.0 - self.momentum) * r + self.momentum * s * self.unbias)
            .collect();
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

impl CustomOp2 for SumsGrad {
    fn name(&self) -> &'static str {
        "channel-sums-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::of(l1, self.plane)?;
        let grad = cpu_values(s2, l2)?;
        let dx = cpu_values(s1, l1)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let c = g.channel(i);
                grad[c] + 2.0 * grad[g.channels + c] * v
            })
            .collect();
        Ok((cpu_storage(dx, s1.dtype())?, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::sums_grad(self.plane, (s1, l1), (s2, l2))
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::Geometry;
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::CudaDType;
    use candle_core::{CudaStorage, DType, Layout, Result, Shape};
    use cudarc::driver::{CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg};
    use half::{bf16, f16};

    const PTX: &str = include_str!("../kernels/batch_norm.ptx");
    const MODULE: &str = "joulebench_batch_norm";
    const THREADS: u32 = 256;
    /// Elements of one channel per reduction block.
    const PER_BLOCK: u32 = 4096;

    type Operand<'a> = (&'a CudaStorage, &'a Layout);

    fn view<'a, T: CudaDType>((s, l): Operand<'a>) -> Result<CudaView<'a, T>> {
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("batch norm: operand not contiguous");
        };
        Ok(s.as_cuda_slice::<T>()?.slice(a..b))
    }

    fn u32_of(v: usize) -> Result<u32> {
        u32::try_from(v)
            .map_err(|_| candle_core::Error::msg("batch norm: tensor over 2³² elements"))
    }

    fn suffix(dtype: DType) -> Result<&'static str> {
        Ok(match dtype {
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::F32 => "f32",
            other => candle_core::bail!("batch norm: no GPU kernel for {other:?}"),
        })
    }

    fn elementwise(total: u32) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (total.div_ceil(THREADS).clamp(1, 1 << 16), 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    pub(super) fn sums(
        plane: usize,
        a: Operand,
        b: Option<Operand>,
        mask: Option<Operand>,
    ) -> Result<(CudaStorage, Shape)> {
        let dtype = a.0.dtype();
        match dtype {
            DType::BF16 => typed_sums::<bf16>(plane, a, b, mask),
            DType::F16 => typed_sums::<f16>(plane, a, b, mask),
            DType::F32 => typed_sums::<f32>(plane, a, b, mask),
            other => candle_core::bail!("batch norm: no GPU kernel for {other:?}"),
        }
    }

    fn typed_sums<T: CudaDType + DeviceRepr>(
        plane: usize,
        a: Operand,
        b: Option<Operand>,
        mask: Option<Operand>,
    ) -> Result<(CudaStorage, Shape)> {
        let g = Geometry::of(a.1, plane)?;
        let device = a.0.device().clone();
        let per_channel = u32_of(g.n * g.plane)?;
        let channels = u32_of(g.channels)?;
        let mut wide: CudaSlice<f64> = device.alloc_zeros(2 * g.channels)?;
        let a_view = view::<T>(a)?;
        let b_view = b.map(view::<T>).transpose()?;
        let mask_view = mask.map(view::<T>).transpose()?;
        let null = 0u64;
        let func = device.get_or_load_custom_func(
            &format!("channel_sums_{}", suffix(a.0.dtype())?),
            MODULE,
            PTX,
        )?;
        let config = LaunchConfig {
            grid_dim: (channels, per_channel.div_ceil(PER_BLOCK).max(1), 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let (n, plane) = (u32_of(g.n)?, u32_of(g.plane)?);
        let mut args = func.builder();
        args.arg(&a_view);
        for operand in [&b_view, &mask_view] {
            match operand {
                Some(v) => args.arg(v),
                None => args.arg(&null),
            };
        }
        args.arg(&mut wide)
            .arg(&n)
            .arg(&plane)
            .arg(&channels)
            .arg(&PER_BLOCK);
        // SAFETY: arguments match channel_sums (batch_norm.cu); operands are
        // contiguous and as large as `a`; the grid
        // covers C channels and every element of each; `wide` holds 2·C.
        unsafe { args.launch(config) }.map_err(candle_core::Error::wrap)?;

        let count = 2 * channels;
        // SAFETY: every element is written by sums_to_f32 below.
        let mut narrow: CudaSlice<f32> = unsafe { device.alloc(count as usize)? };
        let func = device.get_or_load_custom_func("sums_to_f32", MODULE, PTX)?;
        let mut args = func.builder();
        args.arg(&wide).arg(&mut narrow).arg(&count);
        // SAFETY: sums_to_f32(const double*, float*, count) over 2·C values.
        unsafe { args.launch(elementwise(count)) }.map_err(candle_core::Error::wrap)?;
        Ok((
            CudaStorage::wrap_cuda_slice(narrow, device),
            (2, g.channels).into(),
        ))
    }

    /// `(scale, shift, residual)`.
    type Terms<'a> = (Operand<'a>, Option<Operand<'a>>, Option<Operand<'a>>);

    pub(super) fn affine(
        plane: usize,
        x: Operand,
        terms: Terms,
        mask: Option<Operand>,
        relu: bool,
    ) -> Result<(CudaStorage, Shape)> {
        let ops = (terms, mask);
        match x.0.dtype() {
            DType::BF16 => typed_affine::<bf16>(plane, x, ops, relu),
            DType::F16 => typed_affine::<f16>(plane, x, ops, relu),
            DType::F32 => typed_affine::<f32>(plane, x, ops, relu),
            other => candle_core::bail!("batch norm: no GPU kernel for {other:?}"),
        }
    }

    fn typed_affine<T: CudaDType + DeviceRepr>(
        plane: usize,
        x: Operand,
        ((scale, shift, residual), mask): (Terms, Option<Operand>),
        relu: bool,
    ) -> Result<(CudaStorage, Shape)> {
        let g = Geometry::of(x.1, plane)?;
        let device = x.0.device().clone();
        let total = u32_of(x.1.shape().elem_count())?;
        let x_view = view::<T>(x)?;
        let scale = view::<f32>(scale)?;
        let shift = shift.map(view::<f32>).transpose()?;
        let residual = residual.map(view::<T>).transpose()?;
        let mask = mask.map(view::<T>).transpose()?;
        // SAFETY: every element is written by the kernel.
        let mut y: CudaSlice<T> = unsafe { device.alloc(total as usize)? };
        let func = device.get_or_load_custom_func(
            &format!("channel_affine_{}", suffix(x.0.dtype())?),
            MODULE,
            PTX,
        )?;
        let null = 0u64;
        let (plane, channels) = (u32_of(g.plane)?, u32_of(g.channels)?);
        let mut args = func.builder();
        let relu = i32::from(relu);
        args.arg(&x_view).arg(&scale);
        match &shift {
            Some(s) => args.arg(s),
            None => args.arg(&null),
        };
        for operand in [&residual, &mask] {
            match operand {
                Some(v) => args.arg(v),
                None => args.arg(&null),
            };
        }
        args.arg(&mut y)
            .arg(&total)
            .arg(&plane)
            .arg(&channels)
            .arg(&relu);
        // SAFETY: arguments match channel_affine (batch_norm.cu); scale and
        // shift hold one f32 per channel (checked by the caller's shapes).
        unsafe { args.launch(elementwise(total)) }.map_err(candle_core::Error::wrap)?;
        Ok((wrap(y, device), x.1.shape().clone()))
    }

    pub(super) fn sums_grad(
        plane: usize,
        x: Operand,
        grad: Operand,
    ) -> Result<(CudaStorage, Shape)> {
        match x.0.dtype() {
            DType::BF16 => typed_sums_grad::<bf16>(plane, x, grad),
            DType::F16 => typed_sums_grad::<f16>(plane, x, grad),
            DType::F32 => typed_sums_grad::<f32>(plane, x, grad),
            other => candle_core::bail!("batch norm: no GPU kernel for {other:?}"),
        }
    }

    fn typed_sums_grad<T: CudaDType + DeviceRepr>(
        plane: usize,
        x: Operand,
        grad: Operand,
    ) -> Result<(CudaStorage, Shape)> {
        let g = Geometry::of(x.1, plane)?;
        let device = x.0.device().clone();
        let total = u32_of(x.1.shape().elem_count())?;
        let x_view = view::<T>(x)?;
        let grad = view::<f32>(grad)?;
        // SAFETY: every element is written by the kernel.
        let mut dx: CudaSlice<T> = unsafe { device.alloc(total as usize)? };
        let func = device.get_or_load_custom_func(
            &format!("sums_grad_{}", suffix(x.0.dtype())?),
            MODULE,
            PTX,
        )?;
        let (plane, channels) = (u32_of(g.plane)?, u32_of(g.channels)?);
        let mut args = func.builder();
        args.arg(&x_view)
            .arg(&grad)
            .arg(&mut dx)
            .arg(&total)
            .arg(&plane)
            .arg(&channels);
        // SAFETY: arguments match sums_grad (batch_norm.cu); grad holds 2·C f32.
        unsafe { args.launch(elementwise(total)) }.map_err(candle_core::Error::wrap)?;
        Ok((wrap(dx, device), x.1.shape().clone()))
    }

    /// bn_finalize (or its gradient when `grad`): `(sums, γ, β or grad)` → f32 `[4·C]`.
    pub(super) fn finalize(
        grad: bool,
        consts: (f32, f32),
        sums: Operand,
        gamma: Operand,
        third: Operand,
    ) -> Result<CudaStorage> {
        match gamma.0.dtype() {
            DType::BF16 => typed_finalize::<bf16>(grad, consts, sums, gamma, third),
            DType::F16 => typed_finalize::<f16>(grad, consts, sums, gamma, third),
            DType::F32 => typed_finalize::<f32>(grad, consts, sums, gamma, third),
            other => candle_core::bail!("batch norm: no GPU kernel for {other:?}"),
        }
    }

    fn typed_finalize<T: CudaDType + DeviceRepr>(
        grad: bool,
        (count, eps): (f32, f32),
        sums: Operand,
        gamma: Operand,
        third: Operand,
    ) -> Result<CudaStorage> {
        let device = gamma.0.device().clone();
        let channels = u32_of(gamma.1.shape().elem_count())?;
        let kernel = if grad {
            "bn_finalize_grad"
        } else {
            "bn_finalize"
        };
        let func = device.get_or_load_custom_func(
            &format!("{kernel}_{}", suffix(gamma.0.dtype())?),
            MODULE,
            PTX,
        )?;
        let sums = view::<f32>(sums)?;
        let gamma = view::<T>(gamma)?;
        // β in γ's type going forward; the f32 gradient of [scale | shift] back.
        let (beta, upstream);
        // SAFETY: the kernel writes all 4·C values.
        let mut out: CudaSlice<f32> = unsafe { device.alloc(4 * channels as usize)? };
        let mut args = func.builder();
        args.arg(&sums).arg(&gamma);
        if grad {
            upstream = view::<f32>(third)?;
            args.arg(&upstream);
        } else {
            beta = view::<T>(third)?;
            args.arg(&beta);
        }
        args.arg(&mut out).arg(&channels).arg(&count).arg(&eps);
        // SAFETY: arguments match bn_finalize_T / bn_finalize_grad_T
        // (batch_norm.cu): sums 2·C, γ and β C, grad 2·C (or more), out 4·C.
        unsafe { args.launch(elementwise(channels)) }.map_err(candle_core::Error::wrap)?;
        Ok(wrap(out, device))
    }

    /// bn_running over a running statistic (f32 `[C]`, updated in place).
    pub(super) fn running(
        (running, rl): (&mut CudaStorage, &Layout),
        stat: Operand,
        momentum: f32,
        unbias: f32,
    ) -> Result<()> {
        let device = stat.0.device().clone();
        let channels = u32_of(rl.shape().elem_count())?;
        if stat.1.shape().elem_count() != channels as usize {
            candle_core::bail!("batch norm: running statistic and batch statistic differ in size");
        }
        let func = device.get_or_load_custom_func("bn_running", MODULE, PTX)?;
        let stat = view::<f32>(stat)?;
        let Some((a, b)) = rl.contiguous_offsets() else {
            candle_core::bail!("batch norm: running statistic not contiguous");
        };
        let mut running = running.as_cuda_slice_mut::<f32>()?.slice_mut(a..b);
        let mut args = func.builder();
        args.arg(&mut running)
            .arg(&stat)
            .arg(&channels)
            .arg(&momentum)
            .arg(&unbias);
        // SAFETY: bn_running(float*, const float*, C, momentum, unbias), C each.
        unsafe { args.launch(elementwise(channels)) }.map_err(candle_core::Error::wrap)?;
        Ok(())
    }

    fn wrap<T: CudaDType>(slice: CudaSlice<T>, device: candle_core::CudaDevice) -> CudaStorage {
        CudaStorage::wrap_cuda_slice(slice, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};
    use candle_nn::VarMap;

    fn seeded(shape: &[usize], seed: u64, dev: &Device) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i as f64 * 0.7311 + seed as f64 * 1.37).sin() * 2.0 + 0.5) as f32)
            .collect();
        Tensor::from_vec(v, shape, dev).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(D::Minus1)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Ours against candle's BatchNorm in f32: output, the gradients of the
    /// input, γ and β under a loss that weighs every output differently, and
    /// the running statistics after one step.
    #[test]
    fn training_mode_matches_candles_batch_norm_and_its_gradients() {
        let dev = Device::Cpu;
        // Plain, then ReLU after it, then ReLU after adding a residual.
        for (shape, mode) in [
            ([4usize, 3, 5, 6].as_slice(), Tail::None),
            (&[4, 3, 5, 6], Tail::Relu),
            (&[4, 3, 5, 6], Tail::AddRelu),
            (&[8, 5], Tail::None),
        ] {
            let c = shape[1];
            let x = Var::from_tensor(&seeded(shape, 1, &dev)).unwrap();
            let w = seeded(shape, 2, &dev);
            let r = Var::from_tensor(&seeded(shape, 3, &dev)).unwrap();
            let run = |ours: bool| {
                let map = VarMap::new();
                let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
                let (x, r) = (x.as_tensor(), r.as_tensor());
                let y = if ours {
                    let bn = TrainBatchNorm::new(c, 1e-5, vb.clone()).unwrap();
                    match mode {
                        Tail::None => bn.forward_train(x),
                        Tail::Relu => bn.forward_t_relu(x, true),
                        Tail::AddRelu => bn.forward_t_add_relu(x, r, true),
                    }
                } else {
                    let bn = candle_nn::batch_norm(c, 1e-5, vb.clone()).unwrap();
                    let y = bn.forward_train(x).unwrap();
                    match mode {
                        Tail::None => Ok(y),
                        Tail::Relu => y.relu(),
                        Tail::AddRelu => (y + r).unwrap().relu(),
                    }
                }
                .unwrap();
                let loss = (&y * &w).unwrap().sum_all().unwrap();
                let grads = loss.backward().unwrap();
                let data = map.data().lock().unwrap();
                let get = |t: &Tensor| {
                    grads
                        .get(t)
                        .cloned()
                        .unwrap_or_else(|| t.zeros_like().unwrap())
                };
                [
                    y.clone(),
                    get(x),
                    get(r),
                    get(data["weight"].as_tensor()),
                    get(data["bias"].as_tensor()),
                    data["running_mean"].as_tensor().clone(),
                    data["running_var"].as_tensor().clone(),
                ]
            };
            let (ours, theirs) = (run(true), run(false));
            let names = [
                "output",
                "dx",
                "d residual",
                "dγ",
                "dβ",
                "running mean",
                "running var",
            ];
            let tolerances = [1e-4, 1e-3, 1e-5, 1e-3, 1e-4, 1e-5, 1e-4];
            for ((what, tol), (a, b)) in names.iter().zip(tolerances).zip(ours.iter().zip(&theirs))
            {
                let d = max_diff(a, b);
                assert!(d < tol, "{shape:?} {mode:?} {what}: max difference {d}");
            }
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Tail {
        None,
        Relu,
        AddRelu,
    }

    /// bf16 activations (what candle's layer refuses): the same output as
    /// f32 to bf16's precision, running statistics in f32.
    #[test]
    fn bf16_inputs_train_with_f32_statistics() {
        let dev = Device::Cpu;
        let x = seeded(&[4, 3, 5, 6], 1, &dev);
        let out = |dtype: DType| {
            let map = VarMap::new();
            let vb = VarBuilder::from_varmap(&map, dtype, &dev);
            let bn = TrainBatchNorm::new(3, 1e-5, vb).unwrap();
            let y = bn.forward_train(&x.to_dtype(dtype).unwrap()).unwrap();
            assert_eq!(y.dtype(), dtype);
            let stats = map.data().lock().unwrap()["running_var"].dtype();
            assert_eq!(stats, DType::F32);
            y.to_dtype(DType::F32).unwrap()
        };
        let d = max_diff(&out(DType::BF16), &out(DType::F32));
        assert!(d < 0.05, "bf16 against f32: {d}");
    }
}
