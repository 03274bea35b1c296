//! Real networks as systems under test: the classifier behind a batching
//! SUT, its data set, and a short untimed calibration that sets default
//! targets (expected QPS, expected latency) from what the model really does
//! on this device.

use anyhow::{Context, Result};
use clap::Args;
use loadgen::QuerySampleIndex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::batcher::{BatchModel, BatchPolicy, BatchingSut};
use workloads::device::DeviceSpec;
use workloads::image_qsl::SyntheticImages;
use workloads::vision::{Arch, ImageClassifier};
use workloads::weights::WeightSource;

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Where the model runs: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceSpec,

    /// Weights: a .safetensors file, a folder with model.safetensors, or hf:ORG/NAME (local
    /// Hugging Face cache). Default: seeded random weights (performance and energy only).
    #[arg(long, value_name = "PATH")]
    pub weights: Option<String>,

    /// Largest batch a worker runs.
    #[arg(long, default_value = "32")]
    pub batch_size: usize,

    /// Longest a sample waits for its batch to fill (dynamic batching, Server).
    #[arg(long, default_value = "2ms", value_parser = crate::run::parse_duration)]
    pub max_wait: Duration,

    /// Inference worker threads (each runs whole batches).
    #[arg(long, default_value = "1")]
    pub workers: usize,
}

fn parse_device(s: &str) -> std::result::Result<DeviceSpec, String> {
    s.parse()
}

/// A classifier answering with the top-1 class of each image as a
/// little-endian f32, the response MLPerf's ImageNet accuracy script reads.
struct ClassifierModel {
    classifier: ImageClassifier,
    images: Arc<SyntheticImages>,
}

impl BatchModel for ClassifierModel {
    fn infer(&self, samples: &[QuerySampleIndex]) -> std::result::Result<Vec<Vec<u8>>, String> {
        let batch = self.images.batch(samples)?;
        let classes = self
            .classifier
            .classify(&batch)
            .map_err(|e| e.to_string())?;
        Ok(classes
            .iter()
            .map(|&c| (c as f32).to_le_bytes().to_vec())
            .collect())
    }
}

pub struct ModelWorkload {
    pub sut: BatchingSut,
    pub qsl: Arc<SyntheticImages>,
    pub parameters: serde_json::Value,
    pub capacity_per_s: f64,
    pub latency_ns: f64,
}

pub fn build(
    arch: Arch,
    args: &ModelArgs,
    seed: u64,
    samples: usize,
    performance_samples: usize,
) -> Result<ModelWorkload> {
    anyhow::ensure!(args.batch_size >= 1, "--batch-size must be at least 1");
    anyhow::ensure!(args.workers >= 1, "--workers must be at least 1");
    let weights = match &args.weights {
        Some(arg) => WeightSource::from_arg(arg)?,
        None => WeightSource::Random { seed },
    };
    let dtype = args.device.default_dtype();
    eprintln!(
        "loading {} on {} ({:?}, weights: {})",
        arch.name(),
        args.device,
        dtype,
        weights.describe()
    );
    let classifier = ImageClassifier::load(arch, weights.clone(), args.device, dtype)?;
    let images = Arc::new(SyntheticImages::new(samples, performance_samples, seed));
    // Calibration (untimed): a warm-up batch, then one full batch and one single image.
    let calibration: Vec<QuerySampleIndex> = (0..args.batch_size.min(samples)).collect();
    use loadgen::QuerySampleLibrary;
    images
        .load_samples_to_ram(&calibration)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let batch = images.batch(&calibration).map_err(anyhow::Error::msg)?;
    classifier.classify(&batch).context("warm-up inference")?;
    let t = Instant::now();
    classifier
        .classify(&batch)
        .context("calibration inference")?;
    let batch_s = t.elapsed().as_secs_f64();
    let one = images
        .batch(&calibration[..1])
        .map_err(anyhow::Error::msg)?;
    classifier.classify(&one).context("calibration inference")?;
    let t = Instant::now();
    classifier.classify(&one).context("calibration inference")?;
    let single_s = t.elapsed().as_secs_f64();
    images.unload_samples_from_ram(&calibration);
    let capacity_per_s = calibration.len() as f64 / batch_s;
    eprintln!(
        "calibrated: {capacity_per_s:.1} samples/s at batch {}, {:.2} ms for one image",
        calibration.len(),
        single_s * 1e3
    );
    let parameters = serde_json::json!({
        "model": arch.name(),
        "device": args.device.to_string(),
        "dtype": format!("{dtype:?}").to_lowercase(),
        "weights": weights.describe(),
        "random_weights": weights.is_random(),
        "batch_size": args.batch_size,
        "max_wait_ns": args.max_wait.as_nanos() as u64,
        "workers": args.workers,
        "data": "synthetic images (seeded), preprocessed at load",
        "calibrated_samples_per_s": capacity_per_s,
    });
    let name = format!("joulebench-{}-{}", arch.name(), args.device);
    let model = Arc::new(ClassifierModel {
        classifier,
        images: Arc::clone(&images),
    });
    let policy = BatchPolicy {
        max_batch: args.batch_size,
        max_wait: args.max_wait,
        workers: args.workers,
    };
    Ok(ModelWorkload {
        sut: BatchingSut::new(name, model, policy),
        qsl: images,
        parameters,
        capacity_per_s,
        latency_ns: single_s * 1e9,
    })
}
