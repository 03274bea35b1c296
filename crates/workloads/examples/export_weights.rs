//! Writes a classifier's seeded random weights (the built-in default) as
//! safetensors, for running the identical network elsewhere.
//!
//!   cargo run --release -p workloads --example export_weights -- resnet50 SEED OUT.safetensors

use workloads::vision::{Arch, CLASSES};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, arch, seed, out] = args.as_slice() else {
        return Err("usage: export_weights {resnet18,resnet50} SEED OUT.safetensors".into());
    };
    let arch: Arch = arch.parse()?;
    let seed: u64 = seed.parse()?;
    let n = workloads::weights::export_random(seed, std::path::Path::new(out), |vb| {
        match arch {
            Arch::ResNet18 => candle_transformers::models::resnet::resnet18(CLASSES, vb)?,
            Arch::ResNet50 => candle_transformers::models::resnet::resnet50(CLASSES, vb)?,
        };
        Ok(())
    })?;
    println!("wrote {n} tensors to {out}");
    Ok(())
}
