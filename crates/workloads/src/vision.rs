//! Image classification: ResNet-50 v1.5 (MLPerf's model) and ResNet-18 (an
//! edge-class network), in torchvision's layout and weight names.

use crate::device::DeviceSpec;
use crate::image_qsl::ImageSource;
use crate::resnet::{Depth, ResNet};
use crate::weights::WeightSource;
use crate::WorkloadError;
use candle_core::{DType, Device, Module, Tensor};
use loadgen::QuerySampleIndex;
use std::str::FromStr;

/// ImageNet's 1000 classes.
pub const CLASSES: usize = 1000;
/// Input side in pixels (224 × 224 RGB, NCHW).
pub const INPUT_SIDE: usize = 224;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    ResNet18,
    ResNet50,
}

/// An image classifier name that is none of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown image classifier '{given}' (resnet18, resnet50)")]
pub struct UnknownArch {
    pub given: String,
}

impl FromStr for Arch {
    type Err = UnknownArch;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "resnet18" => Ok(Arch::ResNet18),
            "resnet50" => Ok(Arch::ResNet50),
            _ => Err(UnknownArch { given: s.into() }),
        }
    }
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet50 => "resnet50",
        }
    }
}

/// A loaded classifier on one device.
pub struct ImageClassifier {
    pub arch: Arch,
    pub device: Device,
    pub device_spec: DeviceSpec,
    pub dtype: DType,
    pub weights: WeightSource,
    model: ResNet,
}

impl ImageClassifier {
    pub fn load(
        arch: Arch,
        weights: WeightSource,
        device_spec: DeviceSpec,
        dtype: DType,
    ) -> Result<Self, WorkloadError> {
        let device = device_spec.open()?;
        let vb = weights.var_builder(dtype, &device)?;
        let depth = match arch {
            Arch::ResNet18 => Depth::R18,
            Arch::ResNet50 => Depth::R50,
        };
        let model = ResNet::load(depth, CLASSES, vb)
            // Worker threads run on streams of their own: the weights must
            // be complete before the first of them reads them.
            .and_then(|model| device.synchronize().map(|()| model))
            .map_err(|e| WorkloadError::Model {
                model: arch.name().into(),
                reason: format!("{e} (weights: {})", weights.describe()),
            })?;
        Ok(ImageClassifier {
            arch,
            device,
            device_spec,
            dtype,
            weights,
            model,
        })
    }

    /// Logits `[batch, 1000]` in the model's type, on its device, for a
    /// batch already there in that type (for timing the network alone).
    pub fn forward_on_device(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.model.forward(x)
    }

    /// Logits `[batch, 1000]` (f32) for a `[batch, 3, 224, 224]` f32 batch on the host.
    pub fn logits(&self, batch: &Tensor) -> Result<Tensor, WorkloadError> {
        let run = || -> candle_core::Result<Tensor> {
            let x = batch.to_device(&self.device)?.to_dtype(self.dtype)?;
            self.forward_on_device(&x)?
                .to_dtype(DType::F32)?
                .to_device(&Device::Cpu)
        };
        run().map_err(|e| WorkloadError::Inference {
            model: self.arch.name().into(),
            reason: e.to_string(),
        })
    }

    /// Top-1 class per sample of `images`: the batch goes straight from the
    /// data set to the device (page-locked on a GPU, [`crate::staging`]),
    /// and only the classes come back.
    pub fn classify_samples(
        &self,
        images: &dyn ImageSource,
        indices: &[QuerySampleIndex],
    ) -> Result<Vec<u32>, WorkloadError> {
        let run = || -> candle_core::Result<Vec<u32>> {
            let x = self.input(images, indices)?.to_dtype(self.dtype)?;
            self.forward_on_device(&x)?.argmax(1)?.to_vec1::<u32>()
        };
        run().map_err(|e| WorkloadError::Inference {
            model: self.arch.name().into(),
            reason: e.to_string(),
        })
    }

    /// On a GPU, runs every batch size from 1 to `max_batch` once on zeros:
    /// cuDNN picks its algorithms per shape (and per thread, with our op),
    /// CUDA loads kernels on first use and the memory pool grows, each of
    /// which would otherwise land in the timed run the first time a batch of
    /// that size comes (a Server run's latency tail: p99 132 ms at 300 QPS on
    /// an H100 before this). Nothing to do on a CPU.
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn warm_up(&self, max_batch: usize) -> Result<(), WorkloadError> {
        #[cfg(feature = "cuda")]
        if let Device::Cuda(cuda) = &self.device {
            let run = |n: usize| -> candle_core::Result<Vec<u32>> {
                let shape = (n, 3, INPUT_SIDE, INPUT_SIDE);
                let x = crate::staging::upload_f32(cuda, shape, |out| {
                    out.fill(0.0);
                    Ok(())
                })?;
                let x = x.to_dtype(self.dtype)?;
                self.forward_on_device(&x)?.argmax(1)?.to_vec1::<u32>()
            };
            for n in (1..=max_batch).rev() {
                run(n).map_err(|e| WorkloadError::Inference {
                    model: self.arch.name().into(),
                    reason: format!("warm-up at batch {n}: {e}"),
                })?;
            }
        }
        Ok(())
    }

    /// The batch as f32 on the model's device.
    fn input(
        &self,
        images: &dyn ImageSource,
        indices: &[QuerySampleIndex],
    ) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Device::Cuda(cuda) = &self.device {
            let shape = (indices.len(), 3, INPUT_SIDE, INPUT_SIDE);
            return crate::staging::upload_f32(cuda, shape, |out| images.write_batch(indices, out));
        }
        images.batch(indices).map_err(candle_core::Error::wrap)
    }

    /// Top-1 class per image.
    pub fn classify(&self, batch: &Tensor) -> Result<Vec<u32>, WorkloadError> {
        let logits = self.logits(batch)?;
        logits
            .argmax(1)
            .and_then(|t| t.to_vec1::<u32>())
            .map_err(|e| WorkloadError::Inference {
                model: self.arch.name().into(),
                reason: e.to_string(),
            })
    }
}
