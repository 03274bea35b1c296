//! Where one classifier batch spends its time on a GPU: stacking the host
//! samples, the copy in, the cast, the network, the copy out; medians over
//! repeats. For finding what to speed up, next to PyTorch's figures
//! (bench/models/torch_step_times.py); ncu can wrap it for per-kernel times.
//!
//!   cargo run --release -p workloads --features cudnn --example image_step_times -- [ARCH] [BATCH] [REPEATS]
//!
//! JB_DEVICE picks the device (default cuda:0; cpu works too).

use candle_core::{DType, Device};
use loadgen::QuerySampleLibrary;
use std::time::Instant;
use workloads::device::DeviceSpec;
use workloads::image_qsl::SyntheticImages;
use workloads::vision::{Arch, ImageClassifier};
use workloads::weights::WeightSource;

fn median_ms(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2] * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arch: Arch = args.get(1).map_or("resnet50", |s| s).parse()?;
    let batch: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let repeats: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(20);
    let spec: DeviceSpec = std::env::var("JB_DEVICE")
        .unwrap_or_else(|_| "cuda:0".into())
        .parse()?;
    let model = ImageClassifier::load(
        arch,
        WeightSource::Random { seed: 0 },
        spec,
        spec.default_dtype(),
    )?;
    let dev = model.device.clone();
    let images = SyntheticImages::new(4 * batch, 4 * batch, 1);
    let all: Vec<usize> = (0..4 * batch).collect();
    images
        .load_samples_to_ram(&all)
        .map_err(|e| e.to_string())?;
    let pick =
        |r: usize| -> Vec<usize> { (0..batch).map(|i| (r * 7 + i * 3) % (4 * batch)).collect() };
    let timed = |f: &mut dyn FnMut() -> candle_core::Result<()>| -> candle_core::Result<f64> {
        dev.synchronize()?;
        let t = Instant::now();
        f()?;
        dev.synchronize()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let mut rows: Vec<(&str, Vec<f64>)> = [
        "stack",
        "copy in",
        "cast",
        "network",
        "copy out",
        "classify, pageable",
        "classify, staged",
    ]
    .into_iter()
    .map(|n| (n, Vec::new()))
    .collect();
    for r in 0..repeats + 3 {
        let indices = pick(r);
        let mut host = None;
        let t_stack = timed(&mut || {
            host = Some(images.batch(&indices).map_err(candle_core::Error::msg)?);
            Ok(())
        })?;
        let host = host.unwrap();
        let mut x32 = None;
        let t_in = timed(&mut || {
            x32 = Some(host.to_device(&dev)?);
            Ok(())
        })?;
        let mut x = None;
        let t_cast = timed(&mut || {
            x = Some(x32.as_ref().unwrap().to_dtype(model.dtype)?);
            Ok(())
        })?;
        let mut logits = None;
        let t_net = timed(&mut || {
            logits = Some(model.forward_on_device(x.as_ref().unwrap())?);
            Ok(())
        })?;
        let t_out = timed(&mut || {
            logits
                .as_ref()
                .unwrap()
                .to_dtype(DType::F32)?
                .to_device(&Device::Cpu)?;
            Ok(())
        })?;
        let t_all = timed(&mut || {
            model.classify(&host).map_err(candle_core::Error::msg)?;
            Ok(())
        })?;
        let t_staged = timed(&mut || {
            model
                .classify_samples(&images, &indices)
                .map_err(candle_core::Error::msg)?;
            Ok(())
        })?;
        if r >= 3 {
            for (row, t) in rows
                .iter_mut()
                .zip([t_stack, t_in, t_cast, t_net, t_out, t_all, t_staged])
            {
                row.1.push(t);
            }
        }
    }
    println!(
        "{} batch {batch} on {spec} ({:?}), median of {repeats}:",
        arch.name(),
        model.dtype
    );
    for (name, times) in rows {
        let ms = median_ms(times);
        println!(
            "  {name:<19} {ms:>8.2} ms  {:>9.0} samples/s",
            batch as f64 / ms * 1e3
        );
    }
    Ok(())
}
