//! With the `cuda` feature, compiles each kernel source in `cuda/` to PTX
//! in `OUT_DIR` (`src/*` load it with `include_str!`), as candle compiles its
//! own kernels: nvcc must be in PATH, which the `cuda` feature needs anyway
//! (candle-core's CUDA back end builds with it). Without the feature this
//! does nothing and the crate holds no GPU code.
//!
//! The target is `compute_80` (Ampere), the oldest with a bf16 conversion
//! instruction; the driver compiles the PTX for the GPU it finds, Hopper
//! included. `CUDA_COMPUTE_CAP` (candle's choice of GPU) is not followed,
//! so our kernels' PTX stays the one their timings were taken with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The kernel sources in `cuda/`, each `NAME.cu` compiled to `NAME.ptx`.
const KERNELS: [&str; 5] = ["adamw", "attention", "batch_norm", "epilogue", "pool"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cuda");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=NVCC");
    let nvcc = std::env::var_os("NVCC").unwrap_or_else(|| "nvcc".into());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda");
    // All at once: nvcc runs single-threaded and attention.cu alone takes
    // most of the time.
    let children: Vec<(&str, Child)> = KERNELS
        .iter()
        .map(|&name| {
            let child = Command::new(&nvcc)
                .args(["-ptx", "-O3", "-arch=compute_80"])
                .arg(sources.join(format!("{name}.cu")))
                .arg("-o")
                .arg(out.join(format!("{name}.ptx")))
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "the `cuda` feature compiles crates/kernels/cuda/*.cu with nvcc, \
                         which could not be run ({}: {e}); put CUDA 13's nvcc in PATH \
                         (on our machines: eval \"$(../shared/tools/cuda-build-env)\") \
                         or name it in NVCC",
                        Path::new(&nvcc).display()
                    )
                });
            (name, child)
        })
        .collect();
    let mut failed = Vec::new();
    for (name, mut child) in children {
        match child.wait() {
            Ok(status) if status.success() => {}
            Ok(status) => failed.push(format!("{name}.cu ({status})")),
            Err(e) => failed.push(format!("{name}.cu ({e})")),
        }
    }
    if !failed.is_empty() {
        panic!(
            "nvcc failed on {} (its messages are above)",
            failed.join(", ")
        );
    }
}
