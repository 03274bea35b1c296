//! The digits classifier: two 3×3 convolutions (16 and 32 channels, ReLU),
//! a 2×2 max-pool, and two fully connected layers (64, then 10 classes):
//! 38 k parameters, small enough to train to the target in seconds on one
//! CPU core, real enough to have a learning curve.
//!
//! Weight names (`conv1.weight`, …, `fc2.bias`) are the safetensors keys of
//! a trained model, so [`DigitsClassifier::load`] reads back what training saved.

use crate::digits::{CLASSES, SIDE};
use crate::TrainingError;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder};
use std::path::{Path, PathBuf};

/// Name of the model in results and MLPerf logs.
pub const MODEL_NAME: &str = "digits-cnn";

#[derive(Debug, Clone)]
pub struct DigitsNet {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
}

const C1: usize = 16;
const C2: usize = 32;
const HIDDEN: usize = 64;

impl DigitsNet {
    pub fn new(vb: VarBuilder) -> candle_core::Result<DigitsNet> {
        let same = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let pooled = (SIDE / 2) * (SIDE / 2);
        Ok(DigitsNet {
            conv1: candle_nn::conv2d(1, C1, 3, same, vb.pp("conv1"))?,
            conv2: candle_nn::conv2d(C1, C2, 3, same, vb.pp("conv2"))?,
            fc1: candle_nn::linear(C2 * pooled, HIDDEN, vb.pp("fc1"))?,
            fc2: candle_nn::linear(HIDDEN, CLASSES, vb.pp("fc2"))?,
        })
    }
}

impl Module for DigitsNet {
    /// Logits `[n, 10]` for images `[n, 1, 8, 8]` scaled to 0..=1.
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.apply(&self.conv1)?
            .relu()?
            .apply(&self.conv2)?
            .relu()?
            .max_pool2d(2)?
            .flatten_from(1)?
            .apply(&self.fc1)?
            .relu()?
            .apply(&self.fc2)
    }
}

/// Top-1 accuracy of `logits` against `labels` (count of correct answers).
pub fn correct(logits: &Tensor, labels: &Tensor) -> candle_core::Result<usize> {
    let predicted = logits.argmax(1)?;
    let hits = predicted
        .eq(labels)?
        .to_dtype(DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()?;
    Ok(hits as usize)
}

/// A trained digits classifier, for inference.
pub struct DigitsClassifier {
    pub path: PathBuf,
    pub device: Device,
    net: DigitsNet,
}

impl DigitsClassifier {
    /// Loads weights a `joulebench train --task digits` run saved.
    pub fn load(path: &Path, device: &Device) -> Result<DigitsClassifier, TrainingError> {
        let weights_err = |reason: String| TrainingError::Weights {
            path: path.to_path_buf(),
            reason,
        };
        let tensors = candle_core::safetensors::load(path, device)
            .map_err(|e| weights_err(format!("not a readable safetensors file: {e}")))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let net = DigitsNet::new(vb).map_err(|e| {
            weights_err(format!(
                "not the weights of the {MODEL_NAME} model (joulebench train --task digits): {e}"
            ))
        })?;
        Ok(DigitsClassifier {
            path: path.to_path_buf(),
            device: device.clone(),
            net,
        })
    }

    /// Logits for a `[n, 1, 8, 8]` batch (pixels scaled to 0..=1).
    pub fn logits(&self, batch: &Tensor) -> candle_core::Result<Tensor> {
        self.net.forward(&batch.to_device(&self.device)?)
    }

    /// The predicted digit of each image.
    pub fn classify(&self, batch: &Tensor) -> candle_core::Result<Vec<u32>> {
        self.logits(batch)?.argmax(1)?.to_vec1::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::SeededVarMap;

    #[test]
    fn shapes_and_parameter_count() {
        let m = SeededVarMap::new(1);
        let net = DigitsNet::new(m.var_builder(DType::F32, &Device::Cpu)).unwrap();
        let x = Tensor::zeros((5, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward(&x).unwrap().dims(), [5, 10]);
        assert_eq!(
            m.parameter_count(),
            (16 * 9 + 16) + (32 * 16 * 9 + 32) + (512 * 64 + 64) + (64 * 10 + 10)
        );
    }

    #[test]
    fn saved_weights_load_back_and_wrong_files_are_refused() {
        let m = SeededVarMap::new(4);
        let net = DigitsNet::new(m.var_builder(DType::F32, &Device::Cpu)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        m.map.save(&path).unwrap();
        let loaded = DigitsClassifier::load(&path, &Device::Cpu).unwrap();
        let x = Tensor::ones((2, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let a: Vec<Vec<f32>> = net.forward(&x).unwrap().to_vec2().unwrap();
        let b: Vec<Vec<f32>> = loaded.logits(&x).unwrap().to_vec2().unwrap();
        assert_eq!(a, b);

        let other = SeededVarMap::new(4);
        candle_nn::linear(3, 3, other.var_builder(DType::F32, &Device::Cpu).pp("x")).unwrap();
        let wrong = dir.path().join("wrong.safetensors");
        other.map.save(&wrong).unwrap();
        let err = DigitsClassifier::load(&wrong, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not the weights of the digits-cnn"), "{err}");
        std::fs::write(&wrong, b"garbage").unwrap();
        let err = DigitsClassifier::load(&wrong, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("safetensors"), "{err}");
    }
}
