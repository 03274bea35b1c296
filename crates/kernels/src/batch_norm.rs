//! Batch normalisation for training, in few passes over the activations.
//!
//! candle's `BatchNorm::forward_train` takes a dozen broadcast ops per layer
//! (on an H100 they were about half of a ResNet-50 training step) and fails
//! on bf16 inputs (its f32 batch mean meets bf16 running statistics). Here a
//! layer in training mode is:
//!
//! 1. `(Σx, Σx²)` per channel (one reduction), then in one small kernel the
//!    statistics `[scale | shift | mean | var]` (scale = γ/√(var+ε), shift =
//!    β − mean·scale) — differentiable with respect to γ and β;
//! 2. `y = x·scale + shift` per channel, plus a residual and a ReLU when the
//!    layer ends a block (one pass). Its backward is batch norm's whole input
//!    gradient, `dx = A·dy + B·x + C` (the path through the batch statistics
//!    included), so `x` gets one gradient: candle's backward adds every
//!    gradient onto a zero-filled tensor, a pass each.
//!
//! The running statistics are f32 whatever the model's type, updated in place
//! as PyTorch does (momentum 0.1, unbiased variance). On GPUs the passes are
//! our kernels (`cuda/batch_norm.cu`, compiled to PTX by build.rs); on CPUs
//! plain loops. Sums are f32 per thread and f64 across blocks.

use candle_core::backend::BackendStorage;
use candle_core::backprop::GradStore;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, ModuleT, Result, Shape, Tensor, Var,
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
        self.apply(x, None, relu, true)
    }

    /// `relu(batch norm(x) + residual)` (a ResNet block's end) in the same
    /// passes: the residual's gradient is `dy` masked by the output.
    pub fn forward_t_add_relu(&self, x: &Tensor, residual: &Tensor, train: bool) -> Result<Tensor> {
        check_residual(x, Some(residual))?;
        self.apply(x, Some(residual), true, train)
    }

    /// Normalises with the running statistics (evaluation).
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        self.eval(x, false)
    }

    fn eval(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        self.apply(x, None, relu, false)
    }

    fn apply(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
        train: bool,
    ) -> Result<Tensor> {
        let x = x.contiguous()?;
        let (op, stats, _) = self.prepare(&x, residual.is_some(), relu, train, true)?;
        x.apply_op3(&stats, &Self::third(residual, &stats)?, op)
    }

    /// The operand after the statistics: the residual, or a stand-in.
    fn third(residual: Option<&Tensor>, stats: &Tensor) -> Result<Tensor> {
        match residual {
            Some(r) => r.contiguous(),
            None => Ok(stats.clone()),
        }
    }

    /// The apply pass and the statistics it takes (see [`Self::statistics`]),
    /// and in training the sums they came from.
    fn prepare(
        &self,
        x: &Tensor,
        residual: bool,
        relu: bool,
        train: bool,
        tracked: bool,
    ) -> Result<(BnApply, Tensor, Option<Tensor>)> {
        let (stats, sums, plane, count) = self.statistics(x, train, tracked)?;
        let op = BnApply {
            plane,
            relu,
            residual,
            batch_statistics: train,
            count: count as f32,
            eps: self.eps as f32,
        };
        Ok((op, stats, sums))
    }

    /// `[scale | shift | mean | var]`, f32 `[4, C]` (scale = γ/√(var + ε),
    /// shift = β − mean·scale): the batch's in training (and the running
    /// statistics updated), the running ones otherwise; in training also
    /// the sums `(Σx, Σx²)` they came from; and `x`'s plane and values per
    /// channel. `tracked`: differentiable with respect to γ and β for
    /// candle's autograd.
    fn statistics(
        &self,
        x: &Tensor,
        train: bool,
        tracked: bool,
    ) -> Result<(Tensor, Option<Tensor>, usize, f64)> {
        let (channels, plane) = channels_and_plane(x)?;
        let count = (x.elem_count() / channels) as f64;
        let (mean, var) = (self.running_mean.as_tensor(), self.running_var.as_tensor());
        if !train {
            let scale = (self.weight.to_dtype(DType::F32)? * (var + self.eps)?.sqrt()?.recip()?)?;
            let shift = (self.bias.to_dtype(DType::F32)? - (mean * &scale)?)?;
            let stats = Tensor::stack(&[&scale, &shift, mean, var], 0)?;
            return Ok((stats, None, plane, count));
        }
        if count < 2.0 {
            candle_core::bail!("batch norm in training needs more than one value per channel");
        }
        // Not differentiated: the gradient through the statistics is part of
        // BnApply's input gradient (bn_coefficients), so x gets one gradient.
        let sums = x.apply_op1_no_bwd(&ChannelSums { plane })?;
        let finalize = Finalize {
            count: count as f32,
            eps: self.eps as f32,
        };
        let stats = if tracked {
            sums.apply_op3(&self.weight, &self.bias, finalize)?
        } else {
            sums.apply_op3_no_bwd(&self.weight, &self.bias, &finalize)?
        };
        let blend = |running: &Var, row: usize, unbias: f64| {
            let update = Running {
                momentum: MOMENTUM as f32,
                unbias: unbias as f32,
            };
            running.as_tensor().inplace_op2(&stats.get(row)?, &update)
        };
        blend(&self.running_mean, 2, 1.0)?;
        blend(&self.running_var, 3, count / (count - 1.0))?;
        Ok((stats, Some(sums), plane, count))
    }

    /// A training-mode pass (batch statistics, running ones updated) that
    /// candle's autograd does not record: `relu(batch norm(x) + residual)`
    /// (either part optional), and what [`Self::backward`] needs. For
    /// networks that run their backward pass themselves: candle's adds every
    /// gradient onto a zero-filled tensor, two passes over each activation.
    pub fn forward_recorded(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
    ) -> Result<(Tensor, BnTape)> {
        check_residual(x, residual)?;
        let x = x.contiguous()?;
        let (op, stats, sums) = self.prepare(&x, residual.is_some(), relu, true, false)?;
        let sums = sums.expect("training computes the sums");
        let y = x.apply_op3_no_bwd(&stats, &Self::third(residual, &stats)?, &op)?;
        let tape = BnTape {
            x,
            y: y.clone(),
            stats,
            sums,
            op,
        };
        Ok((y, tape))
    }

    /// The gradients of a [`Self::forward_recorded`] pass for its output
    /// gradient `dy`: γ's and β's go into `grads` (keyed by the variables),
    /// `x`'s is returned, with the residual's when there was one.
    pub fn backward(
        &self,
        tape: &BnTape,
        dy: &Tensor,
        grads: &mut GradStore,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (dx, dot, d_residual) = tape.op.gradients(&tape.x, &tape.stats, &tape.y, dy)?;
        let op = FinalizeGrad {
            count: tape.op.count,
            eps: tape.op.eps,
            from_dot: true,
        };
        let d = tape.sums.apply_op3_no_bwd(&self.weight, &dot, &op)?;
        grads.insert(&self.weight, d.get(2)?.to_dtype(self.weight.dtype())?);
        grads.insert(&self.bias, d.get(3)?.to_dtype(self.bias.dtype())?);
        Ok((dx, d_residual))
    }
}

/// What a [`TrainBatchNorm::forward_recorded`] pass keeps for its backward.
pub struct BnTape {
    x: Tensor,
    y: Tensor,
    stats: Tensor,
    sums: Tensor,
    op: BnApply,
}

impl BnTape {
    /// The pass's output.
    pub fn output(&self) -> &Tensor {
        &self.y
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

/// A residual must have the input's shape.
fn check_residual(x: &Tensor, residual: Option<&Tensor>) -> Result<()> {
    match residual {
        Some(r) if r.dims() != x.dims() => candle_core::bail!(
            "batch norm: residual {:?} does not match {:?}",
            r.shape(),
            x.shape()
        ),
        _ => Ok(()),
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

/// Batch norm applied from its statistics `[4, C]` (`(x, stats, residual)`;
/// without a residual the third operand is unused): `x·scale + shift`, plus
/// the residual, then ReLU when asked. Its input gradient includes the path
/// through the batch statistics when `batch_statistics` (training).
struct BnApply {
    plane: usize,
    relu: bool,
    residual: bool,
    batch_statistics: bool,
    count: f32,
    eps: f32,
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
    /// `grad` is the apply pass's `(Σdy, Σdy·x)` = (dshift, dscale), as
    /// [`DotSums`] leaves it (saves building `[dscale | dshift]`), not
    /// candle's gradient of the statistics.
    from_dot: bool,
}

/// `running ← (1 − momentum)·running + momentum·unbias·stat` (f32 `[C]`).
struct Running {
    momentum: f32,
    unbias: f32,
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

use crate::op_values::{cpu_storage, cpu_values, cpu_write};

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
    fn gradients(
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
        let channels = dot.len() / 2;
        let mut coef = vec![0f32; 3 * channels];
        for c in 0..channels {
            let (scale, mean, var) = (stats[c], stats[2 * channels + c], stats[3 * channels + c]);
            let inv = 1.0 / (var + self.eps).sqrt();
            let s1 = dot[c];
            let s2 = inv * (dot[channels + c] - mean * s1);
            let b = -scale * inv * s2 / self.count;
            coef[c] = scale;
            coef[channels + c] = b;
            coef[2 * channels + c] = -scale * s1 / self.count - b * mean;
        }
        Ok((CpuStorage::F32(coef), (3, channels).into()))
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
        let n = g.channels;
        let dx = cpu_values(s1, l1)?
            .into_iter()
            .enumerate()
            .map(|(i, dy)| {
                let c = g.channel(i);
                coef[c] * dy + coef[n + c] * x[i] + coef[2 * n + c]
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
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let dx = gpu::bn_dx(self.plane, (s1, l1), (s2, l2), (s3, l3))?;
        Ok((dx, l1.shape().clone()))
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
        let channels = gamma.len();
        let mut out = vec![0f32; 4 * channels];
        for c in 0..channels {
            let (mean, raw_var, _, inv) = moments(&sums, c, channels, self.count, self.eps);
            let (g_scale, g_shift) = if self.from_dot {
                (grad[channels + c], grad[c])
            } else {
                (grad[c], grad[channels + c])
            };
            let g = gamma[c];
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

#[cfg(feature = "cuda")]
mod gpu {
    use super::Geometry;
    use crate::kernel_launch::{
        by_element_type, grid_stride, suffix, u32_of, view, Operand, THREADS,
    };
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::CudaDType;
    use candle_core::{CudaStorage, Layout, Result, Shape};
    use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/batch_norm.ptx"));
    const MODULE: &str = "joulebench_batch_norm";
    /// Elements of one channel per reduction block.
    const PER_BLOCK: u32 = 4096;

    pub(super) fn sums(
        plane: usize,
        a: Operand,
        b: Option<Operand>,
        mask: Option<Operand>,
    ) -> Result<(CudaStorage, Shape)> {
        by_element_type!(a.0.dtype(), typed_sums(plane, a, b, mask))
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
        unsafe { args.launch(grid_stride(count as usize)) }.map_err(candle_core::Error::wrap)?;
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
        by_element_type!(x.0.dtype(), typed_affine(plane, x, ops, relu))
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
        unsafe { args.launch(grid_stride(total as usize)) }.map_err(candle_core::Error::wrap)?;
        Ok((wrap(y, device), x.1.shape().clone()))
    }

    /// bn_coefficients: `(stats [4·C], dot [2·C])` → f32 `[3·C]`.
    pub(super) fn coefficients(
        stats: Operand,
        dot: Operand,
        count: f32,
        eps: f32,
    ) -> Result<CudaStorage> {
        let device = stats.0.device().clone();
        let channels = u32_of(dot.1.shape().elem_count() / 2)?;
        let func = device.get_or_load_custom_func("bn_coefficients", MODULE, PTX)?;
        let (stats, dot) = (view::<f32>(stats)?, view::<f32>(dot)?);
        // SAFETY: the kernel writes all 3·C values.
        let mut coef: CudaSlice<f32> = unsafe { device.alloc(3 * channels as usize)? };
        let mut args = func.builder();
        args.arg(&stats)
            .arg(&dot)
            .arg(&mut coef)
            .arg(&channels)
            .arg(&count)
            .arg(&eps);
        // SAFETY: bn_coefficients(const float* 4·C, const float* 2·C, float* 3·C, C, n, ε).
        unsafe { args.launch(grid_stride(channels as usize)) }.map_err(candle_core::Error::wrap)?;
        Ok(wrap(coef, device))
    }

    /// bn_dx: `(dy, x, coef [3·C])` → dx in dy's type.
    pub(super) fn bn_dx(
        plane: usize,
        dy: Operand,
        x: Operand,
        coef: Operand,
    ) -> Result<CudaStorage> {
        by_element_type!(dy.0.dtype(), typed_bn_dx(plane, dy, x, coef))
    }

    fn typed_bn_dx<T: CudaDType + DeviceRepr>(
        plane: usize,
        dy: Operand,
        x: Operand,
        coef: Operand,
    ) -> Result<CudaStorage> {
        let g = Geometry::of(dy.1, plane)?;
        let device = dy.0.device().clone();
        let total = u32_of(dy.1.shape().elem_count())?;
        let func = device.get_or_load_custom_func(
            &format!("bn_dx_{}", suffix(dy.0.dtype())?),
            MODULE,
            PTX,
        )?;
        let (dy, x, coef) = (view::<T>(dy)?, view::<T>(x)?, view::<f32>(coef)?);
        // SAFETY: every element is written by the kernel.
        let mut dx: CudaSlice<T> = unsafe { device.alloc(total as usize)? };
        let (plane, channels) = (u32_of(g.plane)?, u32_of(g.channels)?);
        let mut args = func.builder();
        args.arg(&dy)
            .arg(&x)
            .arg(&coef)
            .arg(&mut dx)
            .arg(&total)
            .arg(&plane)
            .arg(&channels);
        // SAFETY: bn_dx_T(const T*, const T*, const float* 3·C, T*, total, plane, C).
        unsafe { args.launch(grid_stride(total as usize)) }.map_err(candle_core::Error::wrap)?;
        Ok(wrap(dx, device))
    }

    /// bn_finalize, or bn_finalize_grad when `grad` is `Some(from_dot)`:
    /// `(sums, γ, β or grad)` → f32 `[4·C]`.
    pub(super) fn finalize(
        grad: Option<bool>,
        consts: (f32, f32),
        sums: Operand,
        gamma: Operand,
        third: Operand,
    ) -> Result<CudaStorage> {
        by_element_type!(
            gamma.0.dtype(),
            typed_finalize(grad, consts, sums, gamma, third)
        )
    }

    fn typed_finalize<T: CudaDType + DeviceRepr>(
        grad: Option<bool>,
        (count, eps): (f32, f32),
        sums: Operand,
        gamma: Operand,
        third: Operand,
    ) -> Result<CudaStorage> {
        let device = gamma.0.device().clone();
        let channels = u32_of(gamma.1.shape().elem_count())?;
        let kernel = match grad {
            Some(_) => "bn_finalize_grad",
            None => "bn_finalize",
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
        let from_dot = i32::from(grad == Some(true));
        args.arg(&sums).arg(&gamma);
        if grad.is_some() {
            upstream = view::<f32>(third)?;
            args.arg(&upstream);
        } else {
            beta = view::<T>(third)?;
            args.arg(&beta);
        }
        args.arg(&mut out).arg(&channels).arg(&count).arg(&eps);
        if grad.is_some() {
            args.arg(&from_dot);
        }
        // SAFETY: arguments match bn_finalize_T / bn_finalize_grad_T
        // (batch_norm.cu): sums 2·C, γ and β C, grad 2·C (or more), out
        // 4·C, and for the gradient the from_dot flag.
        unsafe { args.launch(grid_stride(channels as usize)) }.map_err(candle_core::Error::wrap)?;
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
        unsafe { args.launch(grid_stride(channels as usize)) }.map_err(candle_core::Error::wrap)?;
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
