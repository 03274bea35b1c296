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
//!
//! Here is the layer; its passes are candle ops (`ops`), run by CPU loops
//! (`cpu`) or by the GPU launchers of our kernels (`gpu`).

mod cpu;
#[cfg(feature = "cuda")]
mod gpu;
mod ops;

use candle_core::backprop::GradStore;
use candle_core::{DType, ModuleT, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use ops::{BnApply, ChannelSums, Finalize, FinalizeGrad, Running};

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
