//! ResNet-50 v1.5 for training: the network of `workloads::vision` (same
//! layers, same torchvision weight names, so a trained model loads there for
//! inference), with batch normalisation that uses the batch's statistics and
//! updates its running averages while training, as PyTorch's `train()` mode
//! does. candle-transformers' ResNet always normalises with the running
//! statistics (inference), which would make "training" steps that do not
//! train the way anyone trains a ResNet. The layer is
//! `kernels::batch_norm::TrainBatchNorm` (few passes, our GPU kernels,
//! f32 running statistics so bf16 training works).
//!
//! Training steps do not use candle's autograd:
//! [`ResNet50::loss_and_gradients`] runs the forward pass keeping what each
//! layer's backward needs, then walks the layers back by hand. candle's
//! backward adds every gradient onto a zero-filled tensor of its own, two
//! passes over each activation for nothing (about a quarter of an H100
//! step); here each activation's gradient is written once, and only a
//! block's two branches are added. The classifier head (pooling, the fully
//! connected layer, the loss) stays with candle's autograd: it is small.

use candle_core::backprop::GradStore;
use candle_core::{Module, ModuleT, Result, Tensor, Var, D};
use candle_nn::{Linear, VarBuilder};
use kernels::batch_norm::{BnTape, TrainBatchNorm as BatchNorm};
use workloads::conv::InputGradient;

/// A convolution without bias (the batch norm after it has one), run by
/// `workloads::conv`: cuDNN on GPUs in `cudnn` builds, candle elsewhere.
/// Same weight name, shape and initialiser as `candle_nn::conv2d_no_bias`.
struct Conv2d {
    weight: Tensor,
    stride: usize,
    padding: usize,
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        workloads::conv::conv2d(x, &self.weight, self.stride, self.padding)
    }
}

impl Conv2d {
    /// The forward pass outside candle's autograd (for the backward pass
    /// by hand, the caller keeps `x`).
    fn forward_untracked(&self, x: &Tensor) -> Result<Tensor> {
        workloads::conv::conv2d(x, &self.weight.detach(), self.stride, self.padding)
    }

    /// The weight's gradient into `grads`; `x`'s as `input_gradient` asks.
    fn backward(
        &self,
        x: &Tensor,
        dy: &Tensor,
        input_gradient: InputGradient,
        grads: &mut GradStore,
    ) -> Result<Option<Tensor>> {
        let (dx, dw) = workloads::conv::conv2d_backward(
            x,
            &self.weight,
            dy,
            self.stride,
            self.padding,
            input_gradient,
        )?;
        grads.insert(&self.weight, dw);
        Ok(dx)
    }

    fn input_gradient(&self, x: &Tensor, dy: &Tensor, grads: &mut GradStore) -> Result<Tensor> {
        Ok(self
            .backward(x, dy, InputGradient::New, grads)?
            .expect("asked for the input gradient"))
    }
}

fn conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    padding: usize,
    stride: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let weight = vb.get_with_hints(
        (c_out, c_in, k, k),
        "weight",
        candle_nn::init::DEFAULT_KAIMING_NORMAL,
    )?;
    Ok(Conv2d {
        weight,
        stride,
        padding,
    })
}

struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    bn3: BatchNorm,
    downsample: Option<(Conv2d, BatchNorm)>,
}

impl Bottleneck {
    fn new(c_in: usize, width: usize, stride: usize, vb: VarBuilder) -> Result<Bottleneck> {
        let out = 4 * width;
        // v1.5: the stride is on the 3×3 convolution, not the first 1×1.
        Ok(Bottleneck {
            conv1: conv(c_in, width, 1, 0, 1, vb.pp("conv1"))?,
            bn1: BatchNorm::new(width, 1e-5, vb.pp("bn1"))?,
            conv2: conv(width, width, 3, 1, stride, vb.pp("conv2"))?,
            bn2: BatchNorm::new(width, 1e-5, vb.pp("bn2"))?,
            conv3: conv(width, out, 1, 0, 1, vb.pp("conv3"))?,
            bn3: BatchNorm::new(out, 1e-5, vb.pp("bn3"))?,
            downsample: if stride != 1 || c_in != out {
                Some((
                    conv(c_in, out, 1, 0, stride, vb.pp("downsample").pp(0))?,
                    BatchNorm::new(out, 1e-5, vb.pp("downsample").pp(1))?,
                ))
            } else {
                None
            },
        })
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        // Batch norm and ReLU in one pass each way (kernels::batch_norm).
        let ys = self.bn1.forward_t_relu(&xs.apply(&self.conv1)?, train)?;
        let ys = self.bn2.forward_t_relu(&ys.apply(&self.conv2)?, train)?;
        let shortcut = match &self.downsample {
            Some((c, bn)) => xs.apply(c)?.apply_t(bn, train)?,
            None => xs.clone(),
        };
        // bn3, the residual add and the ReLU in one pass each way.
        self.bn3
            .forward_t_add_relu(&ys.apply(&self.conv3)?, &shortcut, train)
    }

    /// [`Self::forward_t`] in training, keeping what [`Self::backward`] needs.
    fn forward_recorded(&self, xs: &Tensor) -> Result<(Tensor, BlockTape)> {
        let (_, bn1) = self
            .bn1
            .forward_recorded(&self.conv1.forward_untracked(xs)?, None, true)?;
        let (_, bn2) =
            self.bn2
                .forward_recorded(&self.conv2.forward_untracked(bn1.output())?, None, true)?;
        let (shortcut, downsample) = match &self.downsample {
            Some((c, bn)) => {
                let (s, tape) = bn.forward_recorded(&c.forward_untracked(xs)?, None, false)?;
                (s, Some(tape))
            }
            None => (xs.clone(), None),
        };
        let a3 = self.conv3.forward_untracked(bn2.output())?;
        let (ys, bn3) = self.bn3.forward_recorded(&a3, Some(&shortcut), true)?;
        let tape = BlockTape {
            xs: xs.clone(),
            bn1,
            bn2,
            bn3,
            downsample,
        };
        Ok((ys, tape))
    }

    /// The block's weight gradients into `grads`; its input's returned.
    fn backward(&self, tape: BlockTape, dy: &Tensor, grads: &mut GradStore) -> Result<Tensor> {
        let (d_a3, d_shortcut) = self.bn3.backward(&tape.bn3, dy, grads)?;
        let d_shortcut = d_shortcut.expect("bn3 adds the shortcut");
        // The shortcut's gradient first: the main branch's last convolution
        // adds its input gradient onto it (no pass of its own on cuDNN).
        let d_side = match (&self.downsample, &tape.downsample) {
            (Some((c, bn)), Some(bn_tape)) => {
                let (d, _) = bn.backward(bn_tape, &d_shortcut, grads)?;
                c.input_gradient(&tape.xs, &d, grads)?
            }
            _ => d_shortcut,
        };
        let d_y2 = self.conv3.input_gradient(tape.bn2.output(), &d_a3, grads)?;
        let (d_a2, _) = self.bn2.backward(&tape.bn2, &d_y2, grads)?;
        let d_y1 = self.conv2.input_gradient(tape.bn1.output(), &d_a2, grads)?;
        let (d_a1, _) = self.bn1.backward(&tape.bn1, &d_y1, grads)?;
        let sum = InputGradient::AddedTo(d_side);
        let d_x = self.conv1.backward(&tape.xs, &d_a1, sum, grads)?;
        Ok(d_x.expect("asked for the input gradient"))
    }
}

/// What one block's recorded forward pass keeps: its input, and each batch
/// norm's tape (which holds the convolution's output before it and its own
/// output, the next convolution's input).
struct BlockTape {
    xs: Tensor,
    bn1: BnTape,
    bn2: BnTape,
    bn3: BnTape,
    downsample: Option<BnTape>,
}

pub struct ResNet50 {
    conv1: Conv2d,
    bn1: BatchNorm,
    blocks: Vec<Bottleneck>,
    fc: Linear,
}

/// Blocks per stage and their widths (ResNet-50: 3, 4, 6, 3).
const STAGES: [(usize, usize, usize); 4] = [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)];

impl ResNet50 {
    pub fn new(classes: usize, vb: VarBuilder) -> Result<ResNet50> {
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (stage, &(count, width, stride)) in STAGES.iter().enumerate() {
            let layer = vb.pp(format!("layer{}", stage + 1));
            for i in 0..count {
                let s = if i == 0 { stride } else { 1 };
                blocks.push(Bottleneck::new(c_in, width, s, layer.pp(i))?);
                c_in = 4 * width;
            }
        }
        Ok(ResNet50 {
            conv1: conv(3, 64, 7, 3, 2, vb.pp("conv1"))?,
            bn1: BatchNorm::new(64, 1e-5, vb.pp("bn1"))?,
            blocks,
            fc: candle_nn::linear(c_in, classes, vb.pp("fc"))?,
        })
    }
}

impl ResNet50 {
    /// One training step's loss (mean cross-entropy of `labels` `[n]`, f32)
    /// and the gradients of every trainable variable, with batch norm in
    /// training mode (running statistics updated), as `forward_t(x, true)`,
    /// `cross_entropy` and candle's `backward` give them, in fewer passes.
    pub fn loss_and_gradients(
        &self,
        images: &Tensor,
        labels: &Tensor,
    ) -> Result<(Tensor, GradStore)> {
        let a1 = self.conv1.forward_untracked(images)?;
        let (_, stem) = self.bn1.forward_recorded(&a1, None, true)?;
        let mut xs = kernels::max_pool::max_pool2d(stem.output(), 3, 2, 1)?;
        let mut tapes = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            let (ys, tape) = b.forward_recorded(&xs)?;
            tapes.push(tape);
            xs = ys;
        }
        // The head under candle's autograd, from the pooled features as a
        // variable of their own so that their gradient comes out.
        let (n, c, h, w) = xs.dims4()?;
        let features = Var::from_tensor(&xs.mean(D::Minus1)?.mean(D::Minus1)?)?;
        let logits = features.as_tensor().apply(&self.fc)?;
        let loss =
            candle_nn::loss::cross_entropy(&logits.to_dtype(candle_core::DType::F32)?, labels)?;
        let mut grads = loss.backward()?;
        let d_features = grads
            .remove(features.as_tensor())
            .expect("the features take part in the loss");
        let mut dy = (d_features / (h * w) as f64)?
            .reshape((n, c, 1, 1))?
            .broadcast_as((n, c, h, w))?
            .contiguous()?;
        for (b, tape) in self.blocks.iter().zip(tapes).rev() {
            dy = b.backward(tape, &dy, &mut grads)?;
        }
        let dy = kernels::max_pool::max_pool2d_backward(stem.output(), &dy, 3, 2, 1)?;
        let (d_a1, _) = self.bn1.backward(&stem, &dy, &mut grads)?;
        // The images need no gradient.
        self.conv1
            .backward(images, &d_a1, InputGradient::Skip, &mut grads)?;
        Ok((loss, grads))
    }
}

impl ModuleT for ResNet50 {
    /// Logits `[n, classes]` for images `[n, 3, H, W]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut xs = self.bn1.forward_t_relu(&xs.apply(&self.conv1)?, train)?;
        // torchvision's MaxPool2d(3, stride 2, padding 1), with a backward pass.
        xs = kernels::max_pool::max_pool2d(&xs, 3, 2, 1)?;
        for b in &self.blocks {
            xs = b.forward_t(&xs, train)?;
        }
        xs.mean(D::Minus1)?.mean(D::Minus1)?.apply(&self.fc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::SeededVarMap;
    use candle_core::{DType, Device};

    #[test]
    fn has_resnet50s_parameters_and_names() {
        let m = SeededVarMap::new(1);
        let net = ResNet50::new(1000, m.var_builder(DType::F32, &Device::Cpu)).unwrap();
        // torchvision's resnet50: 25,557,032 parameters.
        assert_eq!(m.parameter_count(), 25_557_032);
        let names: Vec<String> = m.map.data().lock().unwrap().keys().cloned().collect();
        for n in [
            "conv1.weight",
            "bn1.running_mean",
            "layer1.0.downsample.0.weight",
            "layer4.2.conv3.weight",
            "fc.bias",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing");
        }
        let x = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward_t(&x, false).unwrap().dims(), [2, 1000]);
    }

    /// The hand-run backward pass against candle's autograd on the same
    /// network and batch: the same loss and, for every variable, the same
    /// gradient (both are sums of the same terms in nearly the same order).
    #[test]
    fn hand_run_gradients_equal_candles_autograd() {
        let m = SeededVarMap::new(3);
        let net = ResNet50::new(10, m.var_builder(DType::F32, &Device::Cpu)).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 3, 32, 32), &Device::Cpu).unwrap();
        let labels = Tensor::new(&[1u32, 7, 4], &Device::Cpu).unwrap();
        let logits = net.forward_t(&x, true).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
        let want = loss.backward().unwrap();
        let (got_loss, got) = net.loss_and_gradients(&x, &labels).unwrap();
        let scalar = |t: &Tensor| t.to_scalar::<f32>().unwrap();
        assert!((scalar(&loss) - scalar(&got_loss)).abs() < 1e-6);
        let trainable = m.trainable();
        assert_eq!(
            trainable.len(),
            161,
            "53 convolutions and batch norms' γ, β, fc's two"
        );
        for v in &trainable {
            let (w, g) = (want.get(v.as_tensor()), got.get(v.as_tensor()));
            let (w, g) = (w.expect("autograd has it"), g.expect("a hand-run gradient"));
            let diff = (w - g).unwrap().abs().unwrap().max_all().unwrap();
            let scale = w.abs().unwrap().max_all().unwrap();
            let (diff, scale) = (scalar(&diff), scalar(&scale));
            assert!(
                scale > 0.0,
                "{:?}: a zero gradient proves nothing",
                v.shape()
            );
            assert!(
                diff <= 1e-4 * scale,
                "{:?}: off by {diff} of {scale}",
                v.shape()
            );
        }
    }
}
