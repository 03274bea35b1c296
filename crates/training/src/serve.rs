//! The trained digits classifier as a system under test for `joulebench run
//! --workload digits --weights model.safetensors`: real weights on real
//! images, so inference accuracy can be checked end to end.
//!
//! The sample set is the held-out split (359 images the model never trained
//! on), in split order: sample `i` is held-out image `i`. Each response is
//! the predicted digit as a little-endian f32, like the image classifiers'
//! responses MLPerf's accuracy script reads; [`accuracy`] scores an
//! `mlperf_log_accuracy.json` against the held-out labels.

use crate::digits::Digits;
use crate::model::DigitsClassifier;
use crate::TrainingError;
use loadgen::{QuerySampleIndex, QuerySampleLibrary};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use workloads::batcher::{BatchModel, BatchPolicy, BatchingSut, ModelError};
use workloads::device::DeviceSpec;

/// The held-out images; everything is in memory already, so loading is free.
pub struct DigitsQsl {
    data: Arc<Digits>,
    held_out: Vec<usize>,
    performance: usize,
}

impl DigitsQsl {
    pub fn new(data: Arc<Digits>, performance_samples: usize) -> DigitsQsl {
        let (_, held_out) = data.split();
        let performance = performance_samples.clamp(1, held_out.len().max(1));
        DigitsQsl {
            data,
            held_out,
            performance,
        }
    }

    /// The true digit of each sample.
    pub fn labels(&self) -> Vec<u32> {
        self.held_out.iter().map(|&i| self.data.labels[i]).collect()
    }
}

impl QuerySampleLibrary for DigitsQsl {
    fn name(&self) -> &str {
        "digits-held-out"
    }
    fn total_sample_count(&self) -> usize {
        self.held_out.len()
    }
    fn performance_sample_count(&self) -> usize {
        self.performance
    }
    fn load_samples_to_ram(&self, _: &[QuerySampleIndex]) -> Result<(), loadgen::qsl::QslError> {
        Ok(())
    }
    fn unload_samples_from_ram(&self, _: &[QuerySampleIndex]) {}
}

struct DigitsModel {
    classifier: DigitsClassifier,
    data: Arc<Digits>,
    held_out: Vec<usize>,
}

impl DigitsModel {
    fn classify(&self, samples: &[QuerySampleIndex]) -> Result<Vec<u32>, TrainingError> {
        let indices: Vec<usize> = samples
            .iter()
            .map(|&sample| {
                self.held_out
                    .get(sample)
                    .copied()
                    .ok_or(TrainingError::NotHeldOut { sample })
            })
            .collect::<Result<_, _>>()?;
        let model = |source| TrainingError::Model {
            what: "classifying digits".into(),
            source,
        };
        let (x, _) = self
            .data
            .batch(&indices, &self.classifier.device)
            .map_err(model)?;
        self.classifier.classify(&x).map_err(model)
    }
}

impl BatchModel for DigitsModel {
    fn infer(&self, samples: &[QuerySampleIndex]) -> Result<Vec<Vec<u8>>, ModelError> {
        Ok(self
            .classify(samples)?
            .iter()
            .map(|&c| (c as f32).to_le_bytes().to_vec())
            .collect())
    }
}

/// A digits workload ready for LoadGen.
pub struct DigitsWorkload {
    pub sut: BatchingSut,
    pub qsl: Arc<DigitsQsl>,
    pub parameters: serde_json::Value,
    pub capacity_per_s: f64,
    pub latency_ns: f64,
}

/// Loads the weights and the data set, and times one batch and one image
/// (untimed calibration for LoadGen's default targets).
pub fn build(
    weights: &Path,
    data: &Path,
    device: DeviceSpec,
    policy: BatchPolicy,
    performance_samples: usize,
) -> Result<DigitsWorkload, TrainingError> {
    let dev = device.open()?;
    let classifier = DigitsClassifier::load(weights, &dev)?;
    let data = Arc::new(Digits::load(data)?);
    let qsl = Arc::new(DigitsQsl::new(Arc::clone(&data), performance_samples));
    let model = DigitsModel {
        classifier,
        data,
        held_out: qsl.held_out.clone(),
    };
    let calibrate = |n: usize| -> Result<f64, TrainingError> {
        let samples: Vec<usize> = (0..n.min(qsl.held_out.len())).collect();
        model.classify(&samples)?;
        let t = Instant::now();
        model.classify(&samples)?;
        Ok(t.elapsed().as_secs_f64())
    };
    let batch = policy.max_batch.max(1).min(qsl.held_out.len());
    let batch_s = calibrate(batch)?;
    let single_s = calibrate(1)?;
    let parameters = serde_json::json!({
        "model": crate::model::MODEL_NAME,
        "device": device.to_string(),
        "weights": weights.display().to_string(),
        "random_weights": false,
        "data": format!("{} (held-out split: {} images)", model.data.path.display(), qsl.held_out.len()),
        "batch_size": policy.max_batch,
        "max_wait_ns": policy.max_wait.as_nanos() as u64,
        "workers": policy.workers,
    });
    Ok(DigitsWorkload {
        sut: BatchingSut::new(
            format!("joulebench-{}-{device}", crate::model::MODEL_NAME),
            Arc::new(model),
            policy,
        ),
        qsl,
        parameters,
        capacity_per_s: batch as f64 / batch_s.max(1e-9),
        latency_ns: single_s * 1e9,
    })
}

/// Top-1 accuracy of an `mlperf_log_accuracy.json` (entries with `qsl_idx`
/// and `data`, the response bytes in hex) against `labels`: (correct, scored).
pub fn accuracy(log: &Path, labels: &[u32]) -> Result<(usize, usize), TrainingError> {
    let bad = |reason: String| TrainingError::DataFile {
        path: log.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(log).map_err(|e| bad(e.to_string()))?;
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| bad(format!("not an accuracy log: {e}")))?;
    let mut correct = 0;
    for (n, e) in entries.iter().enumerate() {
        let idx = e["qsl_idx"]
            .as_u64()
            .ok_or_else(|| bad(format!("entry {n}: no qsl_idx")))? as usize;
        let hex = e["data"]
            .as_str()
            .ok_or_else(|| bad(format!("entry {n}: no data")))?;
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .map_err(|_| bad(format!("entry {n}: data is not hex")))?;
        let class: [u8; 4] = bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad(format!("entry {n}: a response is 4 bytes (f32)")))?;
        let label = labels
            .get(idx)
            .ok_or_else(|| bad(format!("entry {n}: qsl_idx {idx} out of range")))?;
        if f32::from_le_bytes(class) == *label as f32 {
            correct += 1;
        }
    }
    Ok((correct, entries.len()))
}
