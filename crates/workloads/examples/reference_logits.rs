//! Runs a classifier on a batch of the built-in synthetic images and writes
//! the inputs and joulebench's logits to safetensors (`input`, `logits`), so
//! another runtime can be checked against the same numbers and timed on the
//! same batch (bench/models/check_onnx.py).
//!
//!   cargo run --release -p workloads --example reference_logits -- resnet50 WEIGHTS BATCH OUT [REPEATS]

use candle_core::{DType, Tensor};
use loadgen::QuerySampleLibrary;
use std::collections::HashMap;
use std::time::Instant;
use workloads::device::DeviceSpec;
use workloads::image_qsl::SyntheticImages;
use workloads::vision::{Arch, ImageClassifier};
use workloads::weights::WeightSource;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err("usage: reference_logits ARCH WEIGHTS BATCH OUT [REPEATS]".into());
    }
    let arch: Arch = args[1].parse()?;
    let weights = WeightSource::from_arg(&args[2])?;
    let batch: usize = args[3].parse()?;
    let repeats: usize = args.get(5).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let device: DeviceSpec = std::env::var("JB_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse()?;
    let dtype = if device == DeviceSpec::Cpu {
        DType::F32
    } else {
        DType::BF16
    };
    let model = ImageClassifier::load(arch, weights, device, dtype)?;
    let images = SyntheticImages::new(batch, batch, 7);
    let indices: Vec<usize> = (0..batch).collect();
    images
        .load_samples_to_ram(&indices)
        .map_err(|e| e.to_string())?;
    let input = images.batch(&indices)?;
    let logits = model.logits(&input)?; // also the warm-up
    let start = Instant::now();
    for _ in 0..repeats {
        model.logits(&input)?;
    }
    let per_s = (repeats * batch) as f64 / start.elapsed().as_secs_f64();
    println!(
        "joulebench/candle {} {device} batch {batch}: {per_s:.2} samples/s",
        arch.name()
    );
    let out: HashMap<String, Tensor> =
        [("input".to_string(), input), ("logits".to_string(), logits)].into();
    candle_core::safetensors::save(&out, &args[4])?;
    Ok(())
}
