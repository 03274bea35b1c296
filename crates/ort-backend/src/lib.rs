//! Any ONNX model as a system under test, run by ONNX Runtime: the
//! runtime people deploy, loaded at run time (`ort` with `load-dynamic`), so
//! the default build stays one binary that starts anywhere.
//!
//! - [`library`]: finding and loading the runtime's shared library;
//! - [`model_io`]: the model's inputs and outputs from its own metadata;
//! - [`samples`]: seeded synthetic inputs of those shapes and types;
//! - [`npy`]: or the user's own, from `.npy` files;
//! - [`images`]: or an ImageNet-layout folder, preprocessed as MLPerf does;
//! - [`tokens`]: or a text data set, tokenized, fed by input name;
//! - [`model`]: sessions answering batches behind `workloads`' batching SUT.
//!
//! [`build`] puts them together the way `workloads::builtin` builds the
//! built-in models: everything checked before anything is timed, then a
//! short untimed calibration.

pub mod images;
pub mod library;
pub mod model;
pub mod model_io;
pub mod npy;
pub mod samples;
pub mod tokens;

use model_io::{Batching, ModelIo};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use workloads::batcher::BatchingSut;
use workloads::builtin::{calibrate, BuildError, Built, ModelOptions, SharedQsl};
use workloads::device::DeviceSpec;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OrtError {
    #[error(
        "ONNX Runtime's library was not found; tried:\n  {}\n\
         `pip install onnxruntime` provides one (or set ORT_DYLIB_PATH to a libonnxruntime.so)",
        tried.join("\n  ")
    )]
    NoLibrary { tried: Vec<String> },
    #[error("ORT_DYLIB_PATH={}: {reason}", path.display())]
    LoadLibrary { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Model { path: PathBuf, reason: String },
    #[error("`{name}`: {reason}")]
    Unsupported { name: String, reason: String },
    #[error("--batch-size {asked}: the model's inputs take batches of exactly {fixed}")]
    FixedBatch { asked: usize, fixed: usize },
    #[error("--device {device}: {reason}")]
    Provider { device: String, reason: String },
    #[error("{0}")]
    Build(String),
}

impl From<BuildError> for OrtError {
    fn from(e: BuildError) -> Self {
        OrtError::Build(e.to_string())
    }
}

/// How ONNX Runtime runs the model.
#[derive(Debug, Clone)]
pub struct OrtOptions {
    pub model: PathBuf,
    /// Threads inside one session (ONNX Runtime's intra-op threads);
    /// `None`: its default (one per core).
    pub threads: Option<usize>,
    /// Graph optimisation: 0 none, 1 basic, 2 extended, 3 all (default).
    pub optimization: u8,
    /// Sizes of the model's named dynamic dimensions (`--dim sequence=128`).
    pub dims: BTreeMap<String, usize>,
    /// Synthetic integer inputs are drawn from [0, int_max).
    pub int_max: i64,
    /// A folder of `<input>.npy` files; `None`: seeded synthetic inputs.
    pub inputs: Option<PathBuf>,
    /// An ImageNet-layout folder for an image classifier (`folder: None`:
    /// not used). Its samples are answered with their top-1 class.
    pub images: workloads::builtin::image::ImageOptions,
    /// A text data set and the tokenizer.json that tokenizes it.
    pub text: Option<(PathBuf, PathBuf)>,
    /// On a GPU, TensorRT instead of CUDA (CUDA keeps the nodes TensorRT
    /// does not take, as ONNX Runtime intends); its engines are cached in
    /// this folder, since building one takes minutes.
    pub tensorrt_cache: Option<PathBuf>,
}

/// The execution provider a session of `ort` runs on `device`, as ONNX
/// Runtime names it.
pub fn provider_name(ort: &OrtOptions, device: DeviceSpec) -> &'static str {
    match (device, &ort.tensorrt_cache) {
        (DeviceSpec::Cuda(_), Some(_)) => "TensorrtExecutionProvider",
        (DeviceSpec::Cuda(_), None) => "CUDAExecutionProvider",
        _ => "CPUExecutionProvider",
    }
}

fn model_err(path: &Path, e: impl std::fmt::Display) -> OrtError {
    OrtError::Model {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// One session on `device` with `ort`'s options.
fn session(ort: &OrtOptions, device: DeviceSpec) -> Result<Session, OrtError> {
    let runtime = library::runtime()?;
    let err = |e: ort::Error| model_err(&ort.model, e);
    let level = match ort.optimization {
        0 => GraphOptimizationLevel::Disable,
        1 => GraphOptimizationLevel::Level1,
        2 => GraphOptimizationLevel::Level2,
        _ => GraphOptimizationLevel::All,
    };
    let mut builder = Session::builder(&runtime.environment)
        .map_err(err)?
        .with_optimization_level(level)
        .map_err(|e| err(e.into()))?;
    if let Some(n) = ort.threads {
        builder = builder.with_intra_threads(n).map_err(|e| err(e.into()))?;
    }
    if let DeviceSpec::Cuda(i) = device {
        use ort::ep::ExecutionProvider;
        let refused = |reason: String| OrtError::Provider {
            device: device.to_string(),
            reason,
        };
        let cuda = ort::ep::CUDA::default().with_device_id(i as i32);
        if ort.tensorrt_cache.is_some() && !ort::ep::TensorRT::is_available().unwrap_or(false) {
            return Err(refused(format!(
                "--ort-provider tensorrt: the ONNX Runtime at {} has no TensorRT execution \
                 provider (onnxruntime-gpu has one)",
                runtime.library.display()
            )));
        }
        // Refuse rather than fall back to the CPU in silence.
        if !ort::ep::CUDA::is_available().unwrap_or(false) {
            return Err(refused(format!(
                "the ONNX Runtime at {} has no CUDA execution provider \
                 (pip install onnxruntime-gpu provides one)",
                runtime.library.display()
            )));
        }
        let mut providers = Vec::new();
        if let Some(cache) = &ort.tensorrt_cache {
            let trt = ort::ep::TensorRT::default()
                .with_device_id(i as i32)
                .with_engine_cache(true)
                .with_engine_cache_path(cache.display());
            providers.push(trt.build().error_on_failure());
        }
        providers.push(cuda.build().error_on_failure());
        builder = builder.with_execution_providers(providers).map_err(|e| {
            let hint = if ort.tensorrt_cache.is_some() {
                " (TensorRT needs its libnvinfer on the library path)"
            } else {
                ""
            };
            refused(format!(
                "{} could not start: {e}{hint}",
                provider_name(ort, device)
            ))
        })?;
    }
    builder.commit_from_file(&ort.model).map_err(err)
}

/// Where the samples come from, and what each answer holds.
fn sample_source(
    options: &ModelOptions,
    ort: &OrtOptions,
    io: &ModelIo,
) -> Result<(Arc<dyn samples::SampleSource>, model::Answer), OrtError> {
    if let Some(dir) = &ort.images.folder {
        let folder = workloads::datasets::image_folder::ImageFolder::open(
            dir,
            ort.images.preprocessing.parameters(),
        )
        .map_err(|e| model_err(dir, e))?
        .with_performance_count(options.performance_samples);
        let inputs = images::ImageInputs::new(Arc::new(folder), io)?;
        return Ok((Arc::new(inputs), model::Answer::top1(io)?));
    }
    if let Some((dataset, tokenizer)) = &ort.text {
        let inputs = tokens::TokenInputs::new(dataset, tokenizer, io, options.performance_samples)?;
        // A question-answering model answers with its best span.
        let answer = model::Answer::span(io).unwrap_or(model::Answer::Outputs);
        return Ok((Arc::new(inputs), answer));
    }
    let source: Arc<dyn samples::SampleSource> = match &ort.inputs {
        Some(dir) => Arc::new(npy::NpyFolder::open(dir, io, options.performance_samples)?),
        None => Arc::new(samples::SyntheticSamples::new(
            io.clone(),
            options.samples,
            options.performance_samples,
            options.seed,
            ort.int_max,
        )),
    };
    Ok((source, model::Answer::Outputs))
}

/// Builds the SUT for `ort.model` on `options.device`.
pub fn build(options: &ModelOptions, ort: &OrtOptions) -> Result<Built, OrtError> {
    if options.batch_size == 0 {
        return Err(BuildError::AtLeastOne("--batch-size").into());
    }
    if options.workers == Some(0) {
        return Err(BuildError::AtLeastOne("--workers").into());
    }
    // Flags of the built-in models that mean nothing here: refused, not ignored.
    if options.weights.is_some() {
        return Err(OrtError::Build(
            "--weights: an ONNX file holds its own weights (give the file with --model-file)"
                .into(),
        ));
    }
    if options.devices.is_some() {
        return Err(OrtError::Build(
            "--devices: the onnx workload runs on one device; choose it with --device".into(),
        ));
    }
    let sources = [
        ort.inputs.is_some(),
        ort.images.folder.is_some(),
        ort.text.is_some(),
    ];
    if sources.iter().filter(|&&s| s).count() > 1 {
        return Err(OrtError::Build(
            "--inputs, --image-folder and --dataset each give the samples: choose one".into(),
        ));
    }
    if options.accuracy && !sources.contains(&true) {
        return Err(OrtError::Build(
            "accuracy mode needs real inputs (--inputs DIR of .npy files, --image-folder or \
             --dataset): synthetic inputs have no answers"
                .into(),
        ));
    }
    if !ort.model.is_file() {
        return Err(model_err(&ort.model, "no such file"));
    }
    let device = options.device;
    let runtime = library::runtime()?;
    eprintln!(
        "loading {} with ONNX Runtime {} ({}, found by {}) on {device}",
        ort.model.display(),
        runtime.version,
        runtime.library.display(),
        runtime.found_by
    );
    // On a GPU one session leaves it idle while the next batch is gathered
    // and copied in: ResNet-50, batch 32, on an H100 ran at 0.75× ONNX
    // Runtime's own Python loop with one session and 1.33× with four
    // (docs/measurements.md). Two by default, as for the built-in image
    // models; each session holds its own copy of the weights.
    let workers = options.workers.unwrap_or(match device {
        DeviceSpec::Cuda(_) => 2,
        _ => 1,
    });
    let first = session(ort, device)?;
    let io = ModelIo::resolve(&first, &ort.dims)?;
    if let Batching::Fixed(fixed) = io.batching {
        if options.batch_size != fixed {
            return Err(OrtError::FixedBatch {
                asked: options.batch_size,
                fixed,
            });
        }
    }
    for spec in &io.inputs {
        eprintln!("  input  {}", spec.describe());
    }
    for spec in &io.outputs {
        eprintln!("  output {}", spec.describe());
    }
    let mut sessions = vec![first];
    for _ in 1..workers {
        sessions.push(session(ort, device)?);
    }
    let (samples, answer) = sample_source(options, ort, &io)?;
    let model = Arc::new(model::OrtModel::new(
        sessions,
        io.clone(),
        Arc::clone(&samples),
        answer,
    ));
    let qsl = SharedQsl(Arc::clone(&samples));
    let (batch_rate, single_s) = calibrate(&qsl, options.batch_size, |indices| {
        model
            .run(indices)
            .map(|_| ())
            .map_err(|e| workloads::WorkloadError::Model {
                model: "onnx".into(),
                reason: e.to_string(),
            })
    })?;
    eprintln!(
        "calibrated: {batch_rate:.1} samples/s at batch {}, {:.2} ms for one sample",
        options.batch_size,
        single_s * 1e3
    );
    let parameters = serde_json::json!({
        "model": ort.model.file_stem().map(|s| s.to_string_lossy().into_owned()),
        "model_file": ort.model.display().to_string(),
        "engine": "onnxruntime",
        "onnxruntime_version": runtime.version,
        "onnxruntime_library": runtime.library.display().to_string(),
        "execution_provider": provider_name(ort, device),
        "device": device.to_string(),
        "intra_op_threads": ort.threads,
        "graph_optimization_level": ort.optimization.min(3),
        "inputs": io.inputs.iter().map(|s| s.describe()).collect::<Vec<_>>(),
        "outputs": io.outputs.iter().map(|s| s.describe()).collect::<Vec<_>>(),
        "batch_size": options.batch_size,
        "max_wait_ns": options.max_wait.as_nanos() as u64,
        "workers": workers,
        "data": samples.describe(),
        "answer": answer.describe(),
        "dataset_samples": samples.total_sample_count(),
        "calibrated_samples_per_s": batch_rate,
    });
    let name = format!("joulebench-onnxruntime-{device}");
    let policy = workloads::batcher::BatchPolicy {
        max_batch: options.batch_size,
        max_wait: options.max_wait,
        workers,
    };
    let sut = Arc::new(BatchingSut::new(name, model, policy));
    Ok(Built {
        sut: Box::new(Arc::clone(&sut)),
        qsl: Box::new(qsl),
        parameters,
        capacity_per_s: batch_rate,
        offline_capacity_per_s: batch_rate * workers as f64,
        latency_ns: single_s * 1e9,
        batching: Some(sut),
    })
}
