//! Image classifiers (ResNet-50 v1.5, ResNet-18) as systems under test: one
//! model copy per device behind a batching SUT, on synthetic images or a
//! folder in ImageNet validation layout.

use super::{calibrate, BuildError, Built, ModelOptions, SharedQsl};
use crate::batcher::{BatchModel, BatchingSut, DeviceGroup, ModelError};
use crate::datasets::image_folder::ImageFolder;
use crate::datasets::preprocess::ImagePreprocess;
use crate::device::DeviceSpec;
use crate::image_qsl::{ImageSource, SyntheticImages};
use crate::vision::{Arch, ImageClassifier};
use loadgen::QuerySampleIndex;
use std::path::PathBuf;
use std::sync::Arc;

/// MLPerf's two ResNet-50 reference preprocessings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preprocessing {
    /// MLPerf's PyTorch reference (what torchvision-layout weights expect):
    /// Pillow bilinear resize, ImageNet mean/std on [0, 1] pixels.
    Torchvision,
    /// MLPerf's ONNX/TensorFlow reference: OpenCV INTER_AREA resize, channel
    /// means subtracted from 0-255 pixels.
    Opencv,
}

impl Preprocessing {
    pub fn parameters(self) -> ImagePreprocess {
        match self {
            Preprocessing::Torchvision => ImagePreprocess::mlperf_resnet50_pytorch(),
            Preprocessing::Opencv => ImagePreprocess::mlperf_resnet50_onnx(),
        }
    }
}

/// Where the images come from.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// A folder in ImageNet validation layout; `None`: synthetic images.
    pub folder: Option<PathBuf>,
    pub preprocessing: Preprocessing,
}

/// A classifier answering with the top-1 class of each image as a
/// little-endian f32, the response MLPerf's ImageNet accuracy script reads.
struct ClassifierModel {
    classifier: ImageClassifier,
    images: Arc<dyn ImageSource>,
}

impl BatchModel for ClassifierModel {
    fn infer(&self, samples: &[QuerySampleIndex]) -> Result<Vec<Vec<u8>>, ModelError> {
        let classes = self.classifier.classify_samples(&*self.images, samples)?;
        Ok(classes
            .iter()
            .map(|&c| (c as f32).to_le_bytes().to_vec())
            .collect())
    }
    fn warm_up(&self, max_batch: usize) -> Result<(), ModelError> {
        Ok(self.classifier.warm_up(max_batch)?)
    }
}

/// Worker threads per device: as given, else two per GPU (one gathers and
/// copies its batch while the other's runs: 1.56× on an H100,
/// docs/runtime-choice.md) and one on CPUs (where candle already spreads one
/// batch over every core).
fn workers(options: &ModelOptions, devices: &[DeviceSpec]) -> usize {
    let on_gpu = devices.iter().any(|d| *d != DeviceSpec::Cpu);
    options.workers.unwrap_or(if on_gpu { 2 } else { 1 })
}

pub fn build(arch: Arch, options: &ModelOptions, data: &ImageOptions) -> Result<Built, BuildError> {
    options.check()?;
    let weights = options.weight_source()?;
    let devices = options.device_list()?;
    let workers = workers(options, &devices);
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
    let images: Arc<dyn ImageSource> = match &data.folder {
        Some(dir) => {
            let folder = ImageFolder::open(dir, data.preprocessing.parameters())
                .map_err(|source| BuildError::ImageFolder {
                    path: dir.clone(),
                    source,
                })?
                .with_performance_count(options.performance_samples);
            eprintln!(
                "image folder {}: {} images ({:?} preprocessing); --samples does not apply",
                dir.display(),
                folder.len(),
                data.preprocessing
            );
            Arc::new(folder)
        }
        None => Arc::new(SyntheticImages::new(
            options.samples,
            options.performance_samples,
            options.seed,
        )),
    };
    // One model copy per device; calibration runs on the first.
    let mut classifiers = devices
        .iter()
        .map(|&d| ImageClassifier::load(arch, weights.clone(), d, d.default_dtype()))
        .collect::<Result<Vec<_>, _>>()?;
    let classifier = classifiers.remove(0);
    let qsl = SharedQsl(Arc::clone(&images));
    let (batch_rate, single_s) = calibrate(&qsl, options.batch_size, |indices| {
        classifier.classify_samples(&*images, indices).map(|_| ())
    })?;
    // Planning target for the whole node: the first device's rate times the devices.
    let capacity_per_s = batch_rate * devices.len() as f64;
    eprintln!(
        "calibrated: {batch_rate:.1} samples/s at batch {} on {}, {:.2} ms for one image",
        options.batch_size.min(images.total_sample_count()),
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
        "batch_size": options.batch_size,
        "max_wait_ns": options.max_wait.as_nanos() as u64,
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
            options.batch_size
        );
    }
    let sut = Arc::new(BatchingSut::across(name, groups, options.policy(workers)));
    Ok(Built {
        sut: Box::new(Arc::clone(&sut)),
        qsl: Box::new(qsl),
        parameters,
        capacity_per_s,
        // A second worker per device overlaps its host work with the other's
        // GPU work (ResNet-50 on an H100 ran 1.6 to 2.1 times the one-worker rate).
        offline_capacity_per_s: capacity_per_s * workers as f64,
        latency_ns: single_s * 1e9,
        batching: Some(sut),
    })
}
