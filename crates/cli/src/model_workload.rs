//! Real networks as systems under test: the classifier behind a batching
//! SUT, its data set (synthetic images, or a real folder in ImageNet layout
//! with `--image-folder`), and a short untimed calibration that sets default
//! targets (expected QPS, expected latency) from what the model really does
//! on this device.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use loadgen::{QuerySampleIndex, QuerySampleLibrary};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::batcher::{BatchModel, BatchPolicy, BatchingSut, DeviceGroup, ModelError};
use workloads::datasets::image_folder::ImageFolder;
use workloads::datasets::preprocess::ImagePreprocess;
use workloads::device::DeviceSpec;
use workloads::image_qsl::{ImageSource, SyntheticImages};
use workloads::vision::{Arch, ImageClassifier};
use workloads::weights::WeightSource;

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Where the model runs: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceSpec,

    /// Several devices serving one queue (image models): `all` (every GPU), GPU indices
    /// (`0,2`), or device names (`cuda:0,cuda:1`; `cpu,cpu` runs two CPU model copies). Each
    /// device gets its own model copy and --workers threads; whichever is free takes the next
    /// batch, and a device that fails hands its work to the others. Overrides --device.
    #[arg(long, value_name = "LIST")]
    pub devices: Option<String>,

    /// Weights: a .safetensors or .onnx file, a folder with model.safetensors, or hf:ORG/NAME
    /// (local Hugging Face cache). Default: seeded random weights (performance and energy only).
    #[arg(long, value_name = "PATH")]
    pub weights: Option<String>,

    /// Largest batch a worker runs.
    #[arg(long, default_value = "32")]
    pub batch_size: usize,

    /// Longest a sample waits for its batch to fill (dynamic batching, Server).
    #[arg(long, default_value = "2ms", value_parser = crate::run::parse_duration)]
    pub max_wait: Duration,

    /// Inference worker threads per device (each runs whole batches). Default: 1, and 2 per
    /// GPU for the image models, so that one worker gathers and copies its batch while the
    /// other's runs (1.56× on an H100: docs/runtime-choice.md).
    #[arg(long)]
    pub workers: Option<usize>,

    /// Real images: a folder in ImageNet validation layout (val_map.txt with `FILE LABEL`
    /// lines, JPEG/PNG files), preprocessed when loaded, before the timed run; its size replaces
    /// --samples. Score the accuracy log with `joulebench accuracy --kind top1`. Default:
    /// synthetic images.
    #[arg(long, value_name = "DIR", help_heading = IMAGE_HEADING)]
    pub image_folder: Option<PathBuf>,

    /// How --image-folder images are preprocessed (resize shorter side to 256, centre 224).
    #[arg(
        long,
        value_enum,
        default_value = "torchvision",
        help_heading = IMAGE_HEADING
    )]
    pub image_preprocess: ImagePreprocessing,
}

impl ModelArgs {
    /// --workers as given, or the text models' default (one per device).
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or(1)
    }

    /// --workers as given, or the image models' default: two per GPU, one on CPUs (where
    /// candle already spreads one batch over every core).
    fn image_workers(&self, devices: &[DeviceSpec]) -> usize {
        let on_gpu = devices.iter().any(|d| *d != DeviceSpec::Cpu);
        self.workers.unwrap_or(if on_gpu { 2 } else { 1 })
    }
}

/// Where `joulebench run --help` lists the image data options.
const IMAGE_HEADING: &str = "Image models (resnet50, resnet18)";

/// MLPerf's two ResNet-50 reference preprocessings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImagePreprocessing {
    /// MLPerf's PyTorch reference (what torchvision-layout weights expect): Pillow bilinear
    /// resize, ImageNet mean/std on [0, 1] pixels.
    Torchvision,
    /// MLPerf's ONNX/TensorFlow reference: OpenCV INTER_AREA resize, channel means subtracted
    /// from 0-255 pixels.
    Opencv,
}

impl ImagePreprocessing {
    fn parameters(self) -> ImagePreprocess {
        match self {
            ImagePreprocessing::Torchvision => ImagePreprocess::mlperf_resnet50_pytorch(),
            ImagePreprocessing::Opencv => ImagePreprocess::mlperf_resnet50_onnx(),
        }
    }
}

/// Either image source behind the load generator's QSL interface (a sized
/// type, so the run can share it as it shares any QSL).
pub struct Images(Arc<dyn ImageSource>);

impl QuerySampleLibrary for Images {
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
    ) -> std::result::Result<(), loadgen::qsl::QslError> {
        self.0.load_samples_to_ram(samples)
    }
    fn unload_samples_from_ram(&self, samples: &[QuerySampleIndex]) {
        self.0.unload_samples_from_ram(samples)
    }
}

fn parse_device(s: &str) -> std::result::Result<DeviceSpec, workloads::device::UnknownDevice> {
    s.parse()
}

/// The devices a run uses: --devices when given, else --device.
pub fn devices(args: &ModelArgs) -> Result<Vec<DeviceSpec>> {
    match args.devices.as_deref() {
        Some(list) => device_list(list),
        None => Ok(vec![args.device]),
    }
}

/// A `--devices` list: `all` (every GPU this build can open), GPU indices
/// (`0,2`) or device names (`cuda:1`, `cpu`); a GPU listed twice is refused.
pub fn device_list(list: &str) -> Result<Vec<DeviceSpec>> {
    if list.trim() == "all" {
        // Every GPU this build can open, in index order.
        let found: Vec<DeviceSpec> = (0..)
            .map(DeviceSpec::Cuda)
            .take_while(|d| d.open().is_ok())
            .collect();
        anyhow::ensure!(
            !found.is_empty(),
            "--devices all: no GPU could be opened ({})",
            DeviceSpec::Cuda(0)
                .open()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
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
            .map_err(|e| anyhow::anyhow!("--devices {list}: '{item}': {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    anyhow::ensure!(!parsed.is_empty(), "--devices: no device given");
    let mut gpus: Vec<_> = parsed.iter().filter(|d| **d != DeviceSpec::Cpu).collect();
    gpus.sort_by_key(|d| d.to_string());
    if let Some(w) = gpus.windows(2).find(|w| w[0] == w[1]) {
        anyhow::bail!("--devices {list}: {} is listed twice", w[0]);
    }
    Ok(parsed)
}

/// A classifier answering with the top-1 class of each image as a
/// little-endian f32, the response MLPerf's ImageNet accuracy script reads.
struct ClassifierModel {
    classifier: ImageClassifier,
    images: Arc<dyn ImageSource>,
}

impl BatchModel for ClassifierModel {
    fn infer(&self, samples: &[QuerySampleIndex]) -> std::result::Result<Vec<Vec<u8>>, ModelError> {
        let classes = self.classifier.classify_samples(&*self.images, samples)?;
        Ok(classes
            .iter()
            .map(|&c| (c as f32).to_le_bytes().to_vec())
            .collect())
    }
    fn warm_up(&self, max_batch: usize) -> std::result::Result<(), ModelError> {
        Ok(self.classifier.warm_up(max_batch)?)
    }
}

pub struct ModelWorkload {
    /// Shared so the run can read per-device counts and errors afterwards.
    pub sut: Arc<BatchingSut>,
    pub qsl: Arc<Images>,
    pub parameters: serde_json::Value,
    pub capacity_per_s: f64,
    /// What Offline should plan for: the capacity times the workers per
    /// device, since a second worker overlaps its host work with the other's
    /// GPU work (ResNet-50 on an H100 ran 1.6 to 2.1 times the one-worker
    /// rate). Too low a target leaves an Offline run short of its minimum
    /// duration, hence INVALID; too high only runs longer.
    pub offline_capacity_per_s: f64,
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
    let weights = match &args.weights {
        Some(arg) => WeightSource::from_arg(arg)?,
        None => WeightSource::Random { seed },
    };
    let devices = devices(args)?;
    let workers = args.image_workers(&devices);
    anyhow::ensure!(workers >= 1, "--workers must be at least 1");
    let device_names: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    let dtype = devices[0].default_dtype();
    eprintln!(
        "loading {} on {} ({:?}, weights: {})",
        arch.name(),
        device_names.join(", "),
        dtype,
        weights.describe()
    );
    // The data first: a missing or unreadable image fails before the model loads.
    let images: Arc<dyn ImageSource> = match &args.image_folder {
        Some(dir) => {
            let folder = ImageFolder::open(dir, args.image_preprocess.parameters())
                .with_context(|| format!("--image-folder {}", dir.display()))?
                .with_performance_count(performance_samples);
            eprintln!(
                "image folder {}: {} images ({:?} preprocessing); --samples does not apply",
                dir.display(),
                folder.len(),
                args.image_preprocess
            );
            Arc::new(folder)
        }
        None => Arc::new(SyntheticImages::new(samples, performance_samples, seed)),
    };
    // One model copy per device; calibration runs on the first.
    let mut classifiers = devices
        .iter()
        .map(|&d| ImageClassifier::load(arch, weights.clone(), d, d.default_dtype()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let classifier = classifiers.remove(0);
    // Calibration (untimed): a warm-up batch, then one full batch and one single image.
    let calibration: Vec<QuerySampleIndex> =
        (0..args.batch_size.min(images.total_sample_count())).collect();
    images
        .load_samples_to_ram(&calibration)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let infer = |indices: &[QuerySampleIndex]| {
        classifier
            .classify_samples(&*images, indices)
            .context("calibration inference")
    };
    infer(&calibration)?;
    let t = Instant::now();
    infer(&calibration)?;
    let batch_s = t.elapsed().as_secs_f64();
    infer(&calibration[..1])?;
    let t = Instant::now();
    infer(&calibration[..1])?;
    let single_s = t.elapsed().as_secs_f64();
    images.unload_samples_from_ram(&calibration);
    // Planning target for the whole node: the first device's rate times the devices.
    let capacity_per_s = calibration.len() as f64 / batch_s * devices.len() as f64;
    eprintln!(
        "calibrated: {:.1} samples/s at batch {} on {}, {:.2} ms for one image",
        calibration.len() as f64 / batch_s,
        calibration.len(),
        device_names[0],
        single_s * 1e3
    );
    let parameters = serde_json::json!({
        "model": arch.name(),
        "device": device_names.join(","),
        "devices": device_names,
        "dtype": format!("{dtype:?}").to_lowercase(),
        "weights": weights.describe(),
        "random_weights": weights.is_random(),
        "batch_size": args.batch_size,
        "max_wait_ns": args.max_wait.as_nanos() as u64,
        "workers": workers,
        "data": images.describe(),
        "dataset_samples": images.total_sample_count(),
        "calibrated_samples_per_s": capacity_per_s,
    });
    let name = format!("joulebench-{}-{}", arch.name(), device_names.join("+"));
    let groups = std::iter::once(classifier)
        .chain(classifiers)
        .zip(&device_names)
        .map(|(classifier, label)| DeviceGroup {
            label: label.clone(),
            model: Arc::new(ClassifierModel {
                classifier,
                images: Arc::clone(&images),
            }),
        })
        .collect();
    if devices.iter().any(|d| matches!(d, DeviceSpec::Cuda(_))) {
        eprintln!(
            "warming up: every batch size from 1 to {} on each of {workers} worker(s) per GPU",
            args.batch_size
        );
    }
    let policy = BatchPolicy {
        max_batch: args.batch_size,
        max_wait: args.max_wait,
        workers,
    };
    Ok(ModelWorkload {
        sut: Arc::new(BatchingSut::across(name, groups, policy)),
        qsl: Arc::new(Images(images)),
        parameters,
        capacity_per_s,
        offline_capacity_per_s: capacity_per_s * workers as f64,
        latency_ns: single_s * 1e9,
    })
}
