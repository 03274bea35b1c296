//! ResNet for inference with each batch norm folded into the convolution
//! before it, at load time.
//!
//! In eval mode a batch norm is a per-channel affine map, so
//! `bn(conv(x, w)) = conv(x, w·s) + (β − μ·s)` with `s = γ / √(σ² + ε)`.
//! Folding turns four broadcast passes over every activation (subtract,
//! divide, multiply, add) into one bias add, which matters on a GPU where
//! those passes cost as much memory traffic as the convolutions. Weight names
//! and shapes are torchvision's (and candle-transformers'), and random
//! weights are drawn with the same initialisers, so this network computes
//! what `candle_transformers::models::resnet` computes (checked in a test).

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

const BN_EPS: f64 = 1e-5;

/// A convolution with its batch norm folded in.
struct ConvBn {
    weight: Tensor,
    /// `[1, C, 1, 1]`, added after the convolution.
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl ConvBn {
    /// Loads `conv.weight` and the batch norm's four tensors, folding in f32.
    fn load(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        conv: VarBuilder,
        bn: VarBuilder,
    ) -> Result<ConvBn> {
        let dtype = conv.dtype();
        let w = conv
            .get_with_hints(
                (c_out, c_in, kernel, kernel),
                "weight",
                candle_nn::init::DEFAULT_KAIMING_NORMAL,
            )?
            .to_dtype(DType::F32)?;
        // An exporter may have folded the batch norm already (ONNX files
        // from torch.onnx.export): then the convolution has a bias instead.
        if conv.contains_tensor("bias") && !bn.contains_tensor("running_mean") {
            let bias = conv.get(c_out, "bias")?.reshape((1, c_out, 1, 1))?;
            return Ok(ConvBn {
                weight: w.to_dtype(dtype)?,
                bias: bias.to_dtype(dtype)?,
                stride,
                padding,
            });
        }
        let f32_of = |name: &str, init: f64| -> Result<Tensor> {
            bn.get_with_hints(c_out, name, Init::Const(init))?
                .to_dtype(DType::F32)
        };
        let gamma = f32_of("weight", 1.0)?;
        let beta = f32_of("bias", 0.0)?;
        let mean = f32_of("running_mean", 0.0)?;
        let var = f32_of("running_var", 1.0)?;
        let scale = (gamma / (var + BN_EPS)?.sqrt()?)?;
        let weight = w
            .broadcast_mul(&scale.reshape((c_out, 1, 1, 1))?)?
            .to_dtype(dtype)?;
        let bias = (beta - (mean * &scale)?)?
            .reshape((1, c_out, 1, 1))?
            .to_dtype(dtype)?;
        Ok(ConvBn {
            weight,
            bias,
            stride,
            padding,
        })
    }

    /// `conv(x) + bias`, plus `residual` when given, then ReLU when `relu`
    /// (one pass on a GPU: [`kernels::epilogue`]).
    fn forward(&self, x: &Tensor, residual: Option<&Tensor>, relu: bool) -> Result<Tensor> {
        let y = self.conv(x)?;
        kernels::epilogue::conv_bias_residual_relu(y, &self.bias, residual, relu)
    }

    fn conv(&self, x: &Tensor) -> Result<Tensor> {
        let (c_out, c_in, kh, kw) = self.weight.dims4()?;
        // cuDNN takes every convolution: 1×1 ones as the matrix product
        // below measured the same on the H100 (1,011 against 1,023 samples/s).
        if crate::conv::backend(x.device()) == "cudnn" {
            crate::conv::conv2d(x, &self.weight, self.stride, self.padding)
        } else if (kh, kw, self.stride, self.padding) == (1, 1, 1, 0) {
            // A 1×1 convolution is a matrix product per image: `[c_out, c_in]`
            // times `[c_in, h·w]`. Done as one, it skips the im2col copy and
            // the layout copy that candle's convolution makes, and its output
            // is already NCHW. Two thirds of ResNet-50's convolutions are 1×1.
            let (b, _, h, w) = x.dims4()?;
            let w2 = self
                .weight
                .reshape((1, c_out, c_in))?
                .broadcast_as((b, c_out, c_in))?;
            w2.matmul(&x.reshape((b, c_in, h * w))?)?
                .reshape((b, c_out, h, w))
        } else {
            crate::conv::conv2d(x, &self.weight, self.stride, self.padding)
        }
    }
}

enum Block {
    /// ResNet-18/34: two 3×3 convolutions.
    Basic { a: ConvBn, b: ConvBn },
    /// ResNet-50 v1.5: 1×1, 3×3 (carrying the stride), 1×1.
    Bottleneck { a: ConvBn, b: ConvBn, c: ConvBn },
}

struct Residual {
    block: Block,
    shortcut: Option<ConvBn>,
}

impl Residual {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let skip = match &self.shortcut {
            Some(s) => s.forward(x, None, false)?,
            None => x.clone(),
        };
        match &self.block {
            Block::Basic { a, b } => b.forward(&a.forward(x, None, true)?, Some(&skip), true),
            Block::Bottleneck { a, b, c } => {
                let y = b.forward(&a.forward(x, None, true)?, None, true)?;
                c.forward(&y, Some(&skip), true)
            }
        }
    }
}

/// Which blocks, and how many per stage.
#[derive(Debug, Clone, Copy)]
pub enum Depth {
    /// ResNet-18: basic blocks 2, 2, 2, 2.
    R18,
    /// ResNet-50: bottleneck blocks 3, 4, 6, 3.
    R50,
}

pub struct ResNet {
    stem: ConvBn,
    blocks: Vec<Residual>,
    fc_weight: Tensor,
    fc_bias: Tensor,
}

impl ResNet {
    pub fn load(depth: Depth, classes: usize, vb: VarBuilder) -> Result<ResNet> {
        let stem = ConvBn::load(3, 64, 7, 2, 3, vb.pp("conv1"), vb.pp("bn1"))?;
        let (counts, expansion) = match depth {
            Depth::R18 => ([2, 2, 2, 2], 1),
            Depth::R50 => ([3, 4, 6, 3], 4),
        };
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (stage, &count) in counts.iter().enumerate() {
            let width = 64 << stage;
            let c_out = width * expansion;
            for i in 0..count {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                let vb = vb.pp(format!("layer{}", stage + 1)).pp(i);
                let cb = |name: &str, ci, co, k, s, p| {
                    let n = &name[4..]; // "conv2" → "2"
                    ConvBn::load(ci, co, k, s, p, vb.pp(name), vb.pp(format!("bn{n}")))
                };
                let block = match depth {
                    Depth::R18 => Block::Basic {
                        a: cb("conv1", c_in, width, 3, stride, 1)?,
                        b: cb("conv2", width, width, 3, 1, 1)?,
                    },
                    Depth::R50 => Block::Bottleneck {
                        a: cb("conv1", c_in, width, 1, 1, 0)?,
                        b: cb("conv2", width, width, 3, stride, 1)?,
                        c: cb("conv3", width, c_out, 1, 1, 0)?,
                    },
                };
                let shortcut = if stride != 1 || c_in != c_out {
                    let d = vb.pp("downsample");
                    Some(ConvBn::load(c_in, c_out, 1, stride, 0, d.pp(0), d.pp(1))?)
                } else {
                    None
                };
                blocks.push(Residual { block, shortcut });
                c_in = c_out;
            }
        }
        let fc = vb.pp("fc");
        let fc_weight = fc.get_with_hints(
            (classes, c_in),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bound = 1.0 / (c_in as f64).sqrt();
        let fc_bias = fc.get_with_hints(
            classes,
            "bias",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        Ok(ResNet {
            stem,
            blocks,
            fc_weight,
            fc_bias,
        })
    }
}

impl Module for ResNet {
    /// Logits `[batch, classes]` for a `[batch, 3, H, W]` input.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // After the ReLU every value is ≥ 0, so zero padding before the max
        // pool gives what torchvision's −∞ padding gives.
        let mut x = self
            .stem
            .forward(x, None, true)?
            .pad_with_zeros(D::Minus1, 1, 1)?
            .pad_with_zeros(D::Minus2, 1, 1)?
            .max_pool2d_with_stride(3, 2)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        let pooled = x.mean((2, 3))?;
        pooled
            .matmul(&self.fc_weight.t()?)?
            .broadcast_add(&self.fc_bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::WeightSource;
    use candle_core::Device;

    /// Same seeded weights through both networks: the folded one must agree
    /// with candle-transformers' unfolded one.
    fn agree(depth: Depth) {
        let dev = Device::Cpu;
        let weights = WeightSource::Random { seed: 7 };
        let classes = 10;
        let folded = ResNet::load(
            depth,
            classes,
            weights.var_builder(DType::F32, &dev).unwrap(),
        )
        .unwrap();
        let vb = weights.var_builder(DType::F32, &dev).unwrap();
        let reference = match depth {
            Depth::R18 => candle_transformers::models::resnet::resnet18(classes, vb),
            Depth::R50 => candle_transformers::models::resnet::resnet50(classes, vb),
        }
        .unwrap();
        // 64×64 keeps the debug-build test fast; the network is size-agnostic.
        let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &dev).unwrap();
        let ours = folded.forward(&x).unwrap();
        let theirs = reference.forward(&x).unwrap();
        assert_eq!(ours.dims(), &[2, classes]);
        let diff = (&ours - &theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let scale = theirs
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(scale > 0.0);
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "{depth:?}: max |diff| {diff} (max |logit| {scale})"
        );
    }

    #[test]
    fn folded_resnet18_matches_the_unfolded_network() {
        agree(Depth::R18);
    }

    #[test]
    fn folded_resnet50_matches_the_unfolded_network() {
        agree(Depth::R50);
    }
}
