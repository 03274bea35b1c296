//! The built-in models as systems under test, built from plain options (the
//! CLI's flags, or any other front end's): every input read and checked
//! against the others before anything is timed, then a short untimed
//! calibration that says what the model really does on this device, so a
//! run can pick sensible default targets.
//!
//! - [`image`]: ResNet-50/18 classifiers behind a batching SUT, on synthetic
//!   images or an ImageNet-layout folder;
//! - [`text`]: the MiniLM sentence encoder and the GPT-2 decoder.

pub mod image;
pub mod text;

use crate::batcher::{BatchPolicy, BatchingSut};
use crate::device::DeviceSpec;
use crate::weights::WeightSource;
use crate::WorkloadError;
use loadgen::{QuerySampleIndex, QuerySampleLibrary, SystemUnderTest};
use std::sync::Arc;
use std::time::Duration;

/// How a model is loaded and batched.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    pub device: DeviceSpec,
    /// Several devices serving one queue: `all`, GPU indices or device names.
    pub devices: Option<String>,
    /// A weights file or folder, `hf:ORG/NAME`; `None`: seeded random weights.
    pub weights: Option<String>,
    pub batch_size: usize,
    pub max_wait: Duration,
    /// Worker threads per device; `None`: the model's default.
    pub workers: Option<usize>,
    /// Seed of random weights and synthetic data.
    pub seed: u64,
    /// Samples in a synthetic data set, and how many fit in memory at once.
    pub samples: usize,
    pub performance_samples: usize,
    /// Accuracy is scored: real weights and real data are required.
    pub accuracy: bool,
}

impl ModelOptions {
    /// The devices a run uses: `devices` when given, else `device`.
    pub fn device_list(&self) -> Result<Vec<DeviceSpec>, BuildError> {
        match self.devices.as_deref() {
            Some(list) => device_list(list),
            None => Ok(vec![self.device]),
        }
    }

    fn weight_source(&self) -> Result<WeightSource, BuildError> {
        let weights = match &self.weights {
            Some(arg) => WeightSource::from_arg(arg)?,
            None => WeightSource::Random { seed: self.seed },
        };
        if self.accuracy && weights.is_random() {
            return Err(BuildError::RandomWeightsForAccuracy);
        }
        Ok(weights)
    }

    fn policy(&self, workers: usize) -> BatchPolicy {
        BatchPolicy {
            max_batch: self.batch_size,
            max_wait: self.max_wait,
            workers,
        }
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.batch_size == 0 {
            return Err(BuildError::AtLeastOne("--batch-size"));
        }
        if self.workers == Some(0) {
            return Err(BuildError::AtLeastOne("--workers"));
        }
        Ok(())
    }
}

/// A `--devices` list: `all` (every GPU this build can open), GPU indices
/// (`0,2`) or device names (`cuda:1`, `cpu`); a GPU listed twice is refused.
pub fn device_list(list: &str) -> Result<Vec<DeviceSpec>, BuildError> {
    if list.trim() == "all" {
        // Every GPU this build can open, in index order.
        let found: Vec<DeviceSpec> = (0..)
            .map(DeviceSpec::Cuda)
            .take_while(|d| d.open().is_ok())
            .collect();
        if found.is_empty() {
            return Err(BuildError::NoGpu(
                DeviceSpec::Cuda(0)
                    .open()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            ));
        }
        return Ok(found);
    }
    let parsed = list
        .split(',')
        .map(|item| {
            let item = item.trim();
            match item.parse::<usize>() {
                Ok(n) => Ok(DeviceSpec::Cuda(n)),
                Err(_) => item.parse::<DeviceSpec>(),
            }
            .map_err(|source| BuildError::Device {
                list: list.into(),
                item: item.into(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if parsed.is_empty() {
        return Err(BuildError::NoDevice);
    }
    let mut gpus: Vec<_> = parsed.iter().filter(|d| **d != DeviceSpec::Cpu).collect();
    gpus.sort_by_key(|d| d.to_string());
    if let Some(w) = gpus.windows(2).find(|w| w[0] == w[1]) {
        return Err(BuildError::ListedTwice {
            list: list.into(),
            device: w[0].to_string(),
        });
    }
    Ok(parsed)
}

/// A built system under test and what it can do.
pub struct Built {
    pub sut: Box<dyn SystemUnderTest>,
    pub qsl: Box<dyn QuerySampleLibrary>,
    /// What was built, for the result (model, devices, weights, data, ...).
    pub parameters: serde_json::Value,
    /// Samples per second the node can serve (calibrated; a planning figure).
    pub capacity_per_s: f64,
    /// What Offline should plan for: the capacity, or more where several
    /// workers per device overlap their work. Too low a target leaves an
    /// Offline run short of its minimum duration, hence INVALID; too high
    /// only runs longer.
    pub offline_capacity_per_s: f64,
    /// One sample alone, in ns.
    pub latency_ns: f64,
    /// A batching SUT's handle, read after the run for per-device work and
    /// inference errors.
    pub batching: Option<Arc<BatchingSut>>,
}

impl Built {
    /// What each device did, a line each, when several served the run.
    pub fn device_work_lines(&self) -> Vec<String> {
        let stats = self
            .batching
            .as_ref()
            .map(|s| s.device_stats())
            .unwrap_or_default();
        if stats.len() < 2 {
            return Vec::new();
        }
        stats
            .iter()
            .map(|s| {
                format!(
                    "  {:<10} {:>9} samples  {:>7} batches  busy {:.2} s{}",
                    s.device,
                    s.samples,
                    s.batches,
                    s.busy_s,
                    s.failed
                        .as_deref()
                        .map(|e| format!("  FAILED: {e}"))
                        .unwrap_or_default()
                )
            })
            .collect()
    }

    /// Every inference error the batching SUT recorded.
    pub fn inference_errors(&self) -> Vec<String> {
        self.batching
            .as_ref()
            .map(|s| s.errors())
            .unwrap_or_default()
    }

    /// The parameters, with what each device did and any inference errors.
    pub fn parameters_after_run(&self) -> serde_json::Value {
        let mut parameters = self.parameters.clone();
        if let (Some(sut), Some(map)) = (&self.batching, parameters.as_object_mut()) {
            map.insert("device_work".into(), serde_json::json!(sut.device_stats()));
            map.insert("inference_errors".into(), serde_json::json!(sut.errors()));
        }
        parameters
    }
}

/// Why a model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0} must be at least 1")]
    AtLeastOne(&'static str),
    #[error(
        "accuracy mode needs real weights (--weights): random weights make accuracy meaningless"
    )]
    RandomWeightsForAccuracy,
    #[error("accuracy mode needs real data (--dataset FILE): synthetic tokens have no answers")]
    SyntheticDataForAccuracy,
    #[error("--devices all: no GPU could be opened ({0})")]
    NoGpu(String),
    #[error("--devices {list}: '{item}': {source}")]
    Device {
        list: String,
        item: String,
        source: crate::device::UnknownDevice,
    },
    #[error("--devices: no device given")]
    NoDevice,
    #[error("--devices {list}: {device} is listed twice")]
    ListedTwice { list: String, device: String },
    #[error("--devices: gpt2 runs on one device; choose it with --device")]
    OneDeviceOnly,
    #[error("--seq-len {seq_len}: {reason}")]
    SeqLen { seq_len: usize, reason: String },
    #[error("--dataset {}: text needs a tokenizer (--tokenizer FILE, or --weights with a folder that has tokenizer.json)", .0.display())]
    DatasetWithoutTokenizer(std::path::PathBuf),
    #[error(
        "token id {max} in the samples is outside the model's vocabulary of {vocab_size}: \
         the tokenizer does not belong to this model (check --tokenizer and --model-config)"
    )]
    TokenOutsideVocabulary { max: u32, vocab_size: usize },
    #[error("tokenizer {}: {tokens} tokens, but the model's vocabulary has {vocab_size}: they do not belong together", path.display())]
    TokenizerTooLarge {
        path: std::path::PathBuf,
        tokens: usize,
        vocab_size: usize,
    },
    #[error("--image-folder {}: {source}", path.display())]
    ImageFolder {
        path: std::path::PathBuf,
        source: crate::datasets::DatasetError,
    },
    #[error(transparent)]
    Model(#[from] WorkloadError),
    #[error(transparent)]
    Text(#[from] crate::text::TextError),
    #[error("loading the calibration samples: {0}")]
    Samples(#[from] loadgen::qsl::QslError),
    #[error("{stage} inference: {source}")]
    Calibration {
        stage: &'static str,
        source: WorkloadError,
    },
}

/// Untimed: for each size (the full batch, then one sample), a warm-up run,
/// then timed runs ([`CALIBRATION_RUNS`], [`CALIBRATION_TIME`]), keeping the
/// fastest. A first batch of a new
/// shape pays one-time set-up: on an H100 MiniLM's first b64 batch measured
/// 5× slower than the run, and ONNX Runtime's CUDA provider (cuDNN's
/// algorithm search, its memory plan per shape) was still 6× slow on the
/// second ResNet-50 batch after a size change, which made Offline issue too
/// few samples and the run INVALID. Returns (samples/s at the full batch,
/// seconds for one sample).
pub fn calibrate(
    qsl: &dyn QuerySampleLibrary,
    batch_size: usize,
    run: impl Fn(&[QuerySampleIndex]) -> Result<(), WorkloadError>,
) -> Result<(f64, f64), BuildError> {
    let indices: Vec<QuerySampleIndex> = (0..batch_size.min(qsl.total_sample_count())).collect();
    qsl.load_samples_to_ram(&indices)?;
    let timed = |samples: &[QuerySampleIndex], stage| -> Result<f64, BuildError> {
        let t = std::time::Instant::now();
        run(samples).map_err(|source| BuildError::Calibration { stage, source })?;
        Ok(t.elapsed().as_secs_f64())
    };
    let settled = |samples: &[QuerySampleIndex]| -> Result<f64, BuildError> {
        timed(samples, "warm-up")?;
        let started = std::time::Instant::now();
        let mut best = f64::INFINITY;
        for run in 0..CALIBRATION_RUNS.1 {
            best = best.min(timed(samples, "calibration")?);
            if run + 1 >= CALIBRATION_RUNS.0 && started.elapsed() >= CALIBRATION_TIME {
                break;
            }
        }
        Ok(best)
    };
    let outcome = (|| {
        let batch_s = settled(&indices)?;
        let single_s = settled(&indices[..1])?;
        Ok((indices.len() as f64 / batch_s, single_s))
    })();
    qsl.unload_samples_from_ram(&indices);
    outcome
}

/// Timed calibration runs of one size: at least the first, at most the
/// second; between them, runs go on while less than [`CALIBRATION_TIME`]
/// has passed. The fastest counts.
pub const CALIBRATION_RUNS: (usize, usize) = (3, 10);
pub const CALIBRATION_TIME: std::time::Duration = std::time::Duration::from_millis(500);

/// A shared QSL behind the load generator's `&dyn` interface (the SUT holds
/// the same `Arc` to read its samples); `Q` may be a trait object, such as
/// either image source.
pub struct SharedQsl<Q: ?Sized>(pub Arc<Q>);

impl<Q: QuerySampleLibrary + ?Sized> QuerySampleLibrary for SharedQsl<Q> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn total_sample_count(&self) -> usize {
        self.0.total_sample_count()
    }
    fn performance_sample_count(&self) -> usize {
        self.0.performance_sample_count()
    }
    fn load_samples_to_ram(
        &self,
        samples: &[QuerySampleIndex],
    ) -> Result<(), loadgen::qsl::QslError> {
        self.0.load_samples_to_ram(samples)
    }
    fn unload_samples_from_ram(&self, samples: &[QuerySampleIndex]) {
        self.0.unload_samples_from_ram(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn calibration_waits_for_a_slow_start_to_settle() {
        // Like ONNX Runtime's CUDA provider: the first three batches are slow.
        let qsl = crate::synthetic::SyntheticQsl::new(8, 8);
        let batches = AtomicUsize::new(0);
        let (rate, single_s) = calibrate(&qsl, 8, |indices| {
            let slow = indices.len() > 1 && batches.fetch_add(1, Ordering::Relaxed) < 3;
            std::thread::sleep(Duration::from_millis(if slow { 80 } else { 8 }));
            Ok(())
        })
        .unwrap();
        assert!(rate > 600.0, "{rate} samples/s: timed before it settled");
        assert!(single_s < 0.05, "{single_s} s");
    }
}
