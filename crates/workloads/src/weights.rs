//! Where a model's weights come from: a safetensors or ONNX file, a local Hugging
//! Face cache (`~/.cache/huggingface/hub/models--ORG--NAME/snapshots/REV/`),
//! or seeded random numbers — the built-in default, so performance and
//! energy runs work offline. Nothing is downloaded.
//!
//! Random weights are reproducible: each tensor is drawn from its own
//! generator seeded by the run's seed and the tensor's name, so the same
//! seed gives the same network whatever order the model asks in.

use crate::rng::Mt19937;
use crate::WorkloadError;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use std::path::{Path, PathBuf};

/// What a run says about its weights (in result.json).
#[derive(Debug, Clone, PartialEq)]
pub enum WeightSource {
    /// Seeded random weights: right shapes, meaningless outputs.
    Random { seed: u64 },
    /// A safetensors or ONNX file.
    File(PathBuf),
}

impl WeightSource {
    pub fn is_random(&self) -> bool {
        matches!(self, WeightSource::Random { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            WeightSource::Random { seed } => format!("random (seed {seed})"),
            WeightSource::File(p) => p.display().to_string(),
        }
    }

    /// A `--weights` argument: a safetensors or ONNX (`.onnx`) file, a
    /// folder holding `model.safetensors` or `model.onnx`, or `hf:ORG/NAME`
    /// for the local Hugging Face cache.
    pub fn from_arg(arg: &str) -> Result<WeightSource, WorkloadError> {
        if let Some(repo) = arg.strip_prefix("hf:") {
            return hf_cache_file(repo, "model.safetensors").map(WeightSource::File);
        }
        let path = PathBuf::from(arg);
        let file = if path.is_dir() {
            let onnx = path.join("model.onnx");
            if onnx.is_file() && !path.join("model.safetensors").is_file() {
                onnx
            } else {
                path.join("model.safetensors")
            }
        } else {
            path
        };
        if !file.is_file() {
            return Err(WorkloadError::Weights {
                path: file,
                reason: "no such file (give a .safetensors or .onnx file, a folder with model.safetensors, or hf:ORG/NAME)".into(),
            });
        }
        Ok(WeightSource::File(file))
    }

    /// A var builder for the model's layers.
    pub fn var_builder(
        &self,
        dtype: DType,
        device: &Device,
    ) -> Result<VarBuilder<'static>, WorkloadError> {
        match self {
            WeightSource::Random { seed } => Ok(VarBuilder::from_backend(
                Box::new(SeededWeights { seed: *seed }),
                dtype,
                device.clone(),
            )),
            WeightSource::File(path) if is_onnx(path) => {
                let tensors = crate::onnx::load(path)?;
                Ok(VarBuilder::from_tensors(tensors, dtype, device))
            }
            WeightSource::File(path) => {
                check_safetensors(path)?;
                // SAFETY: the file is memory-mapped read-only; joulebench does
                // not write it, and a user changing it during a run is outside
                // what any loader can guard against.
                unsafe { VarBuilder::from_mmaped_safetensors(&[path], dtype, device) }.map_err(
                    |e| WorkloadError::Weights {
                        path: path.clone(),
                        reason: e.to_string(),
                    },
                )
            }
        }
    }
}

/// ONNX files are told apart by their extension, as ONNX tools do.
fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Rejects a corrupt or truncated file before any model code sees it.
fn check_safetensors(path: &Path) -> Result<(), WorkloadError> {
    let bytes = std::fs::read(path).map_err(|e| WorkloadError::Weights {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    safetensors::SafeTensors::deserialize(&bytes)
        .map(|_| ())
        .map_err(|e| WorkloadError::Weights {
            path: path.to_path_buf(),
            reason: format!("not a valid safetensors file: {e}"),
        })
}

/// The newest snapshot's `file` for `repo` in the local Hugging Face cache.
pub fn hf_cache_file(repo: &str, file: &str) -> Result<PathBuf, WorkloadError> {
    let hub = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
        })
        .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
    let snapshots = hub
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .map_err(|e| WorkloadError::Weights {
            path: snapshots.clone(),
            reason: format!("{repo} is not in the local Hugging Face cache ({e}); nothing is downloaded at run time"),
        })?
        .filter_map(|e| e.ok().map(|e| e.path().join(file)))
        .filter(|p| p.is_file())
        .collect();
    candidates.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    candidates.pop().ok_or_else(|| WorkloadError::Weights {
        path: snapshots,
        reason: format!("no snapshot of {repo} has {file}"),
    })
}

/// Writes the seeded random weights a model built by `build` would use to a
/// safetensors file, so other runtimes (the ONNX Runtime peer in bench/) run
/// the identical network.
pub fn export_random<F>(seed: u64, path: &Path, build: F) -> Result<usize, WorkloadError>
where
    F: FnOnce(VarBuilder<'static>) -> candle_core::Result<()>,
{
    let recorded = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let backend = Recording {
        inner: SeededWeights { seed },
        seen: std::sync::Arc::clone(&recorded),
    };
    let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu);
    let err = |reason: String| WorkloadError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    build(vb).map_err(|e| err(e.to_string()))?;
    let tensors = recorded.lock().map_err(|_| err("poisoned".into()))?.clone();
    candle_core::safetensors::save(&tensors, path).map_err(|e| err(e.to_string()))?;
    Ok(tensors.len())
}

/// Remembers every tensor handed out.
struct Recording {
    inner: SeededWeights,
    seen: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Tensor>>>,
}

impl SimpleBackend for Recording {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.inner.get(shape, name, init, dtype, dev)?;
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(name.to_string(), t.clone());
        }
        Ok(t)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.inner.get_unchecked(name, dtype, dev)
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(name)
    }
}

/// Seeded random weights, honouring each layer's initialisation hint.
struct SeededWeights {
    seed: u64,
}

impl SeededWeights {
    fn rng_for(&self, name: &str) -> Mt19937 {
        // FNV-1a of the name, mixed with the seed: one stream per tensor.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Mt19937::new(h ^ self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}

fn normal(rng: &mut Mt19937) -> f64 {
    // Box–Muller.
    let u1 = rng.canonical().max(f64::MIN_POSITIVE);
    let u2 = rng.canonical();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

impl SimpleBackend for SeededWeights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let n = shape.elem_count();
        let fan_in = shape.dims().iter().skip(1).product::<usize>().max(1) as f64;
        let mut rng = self.rng_for(name);
        let values: Vec<f32> = match init {
            Init::Const(v) => vec![v as f32; n],
            Init::Randn { mean, stdev } => (0..n)
                .map(|_| (mean + stdev * normal(&mut rng)) as f32)
                .collect(),
            Init::Uniform { lo, up } => (0..n)
                .map(|_| (lo + (up - lo) * rng.canonical()) as f32)
                .collect(),
            // He initialisation for ReLU networks: normal with std sqrt(2 / fan_in).
            Init::Kaiming { .. } => {
                let std = (2.0 / fan_in).sqrt();
                (0..n).map(|_| (std * normal(&mut rng)) as f32).collect()
            }
        };
        Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for '{name}'")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded weights as they were drawn before the engine came from
    /// `rand_mt` (pinned then): uniform, normal and He initialisations.
    #[test]
    fn seeded_weights_are_the_pinned_ones() {
        use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
        let weights = SeededWeights { seed: 7 };
        let kaiming = Init::Kaiming {
            dist: NormalOrUniform::Normal,
            fan: FanInOut::FanIn,
            non_linearity: NonLinearity::ReLU,
        };
        for (name, init, want) in [
            (
                "conv1.weight",
                Init::Uniform { lo: -0.5, up: 0.5 },
                [
                    0x3c8b0aa8u32,
                    0xbe4173ac,
                    0x3d1dbb03,
                    0x3e1b0135,
                    0x3e41118b,
                    0xbdb4bd6c,
                ],
            ),
            (
                "layer1.0.bn.weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
                [
                    0xb9111864, 0xbc8bb3b9, 0xbcc96640, 0xbaae0cac, 0xbc3d67b4, 0xbcab0f3c,
                ],
            ),
            (
                "fc.weight",
                kaiming,
                [
                    0xbe6d27b6, 0x3f5b2117, 0x3f17682f, 0xbed2494f, 0xbcf1ed8a, 0xbf16b0bf,
                ],
            ),
        ] {
            let t = weights
                .get(Shape::from((2, 3)), name, init, DType::F32, &Device::Cpu)
                .unwrap();
            let bits: Vec<u32> = t
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect();
            assert_eq!(bits, want, "{name}");
        }
    }
}
