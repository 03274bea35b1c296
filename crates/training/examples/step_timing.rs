//! Where a ResNet-50 training step spends its time on this machine: forward,
//! backward, optimiser update, each timed separately (a diagnostic for the
//! throughput task; `cargo run --release -p training --example step_timing -- [BATCH] [SIDE]`).

use candle_core::{DType, Device, ModuleT, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use std::time::Instant;
use training::init::SeededVarMap;
use training::resnet::ResNet50;

fn main() -> candle_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let side: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let device = Device::Cpu;
    let vars = SeededVarMap::new(1);
    let t = Instant::now();
    let net = ResNet50::new(1000, vars.var_builder(DType::F32, &device))?;
    println!("build: {:.3} s", t.elapsed().as_secs_f64());
    let mut opt = AdamW::new(vars.trainable(), ParamsAdamW::default())?;
    let x = Tensor::randn(0f32, 1.0, (batch, 3, side, side), &device)?;
    let y = Tensor::zeros(batch, DType::U32, &device)?;
    for step in 0..3 {
        let t0 = Instant::now();
        let logits = net.forward_t(&x, true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        loss.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        opt.step(&grads)?;
        let t3 = Instant::now();
        println!(
            "step {step}: forward {:.3} s, backward {:.3} s, update {:.3} s",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64()
        );
    }
    Ok(())
}
