//! ResNet-50 v1.5 for training: the network of `workloads::vision` (same
//! layers, same torchvision weight names, so a trained model loads there for
//! inference), with batch normalisation that uses the batch's statistics and
//! updates its running averages while training, as PyTorch's `train()` mode
//! does. candle-transformers' ResNet always normalises with the running
//! statistics (inference), which would make "training" steps that do not
//! train the way anyone trains a ResNet. The layer is
//! `workloads::batch_norm::TrainBatchNorm` (few passes, our GPU kernels,
//! f32 running statistics so bf16 training works).

use candle_core::{Module, ModuleT, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use workloads::batch_norm::TrainBatchNorm as BatchNorm;

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
        // Batch norm and ReLU in one pass each way (workloads::batch_norm).
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

impl ModuleT for ResNet50 {
    /// Logits `[n, classes]` for images `[n, 3, H, W]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut xs = self.bn1.forward_t_relu(&xs.apply(&self.conv1)?, train)?;
        // torchvision's MaxPool2d(3, stride 2, padding 1), with a backward pass.
        xs = workloads::max_pool::max_pool2d(&xs, 3, 2, 1)?;
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
}
