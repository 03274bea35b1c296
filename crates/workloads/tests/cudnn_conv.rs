//! The cuDNN convolution against candle's CPU convolution: outputs and both
//! gradients, for every kind of layer ResNet has, in f32 and bf16. Runs on
//! the GPU machine (`cargo test -p workloads --features cudnn`); without a
//! GPU it says so and passes nothing off as checked.
#![cfg(feature = "cudnn")]

use candle_core::{DType, Device, Tensor, Var};
use workloads::conv::conv2d;

mod gpu_common;
use gpu_common::relative_error;

/// (input NCHW, kernel OIHW, stride, padding): the stem, 3×3 with and
/// without stride, 1×1 with and without stride (the downsample shortcut).
const LAYERS: &[([usize; 4], [usize; 4], usize, usize)] = &[
    ([2, 3, 23, 23], [8, 3, 7, 7], 2, 3),
    ([2, 16, 9, 9], [16, 16, 3, 3], 1, 1),
    ([2, 16, 9, 9], [32, 16, 3, 3], 2, 1),
    ([3, 32, 7, 7], [64, 32, 1, 1], 1, 0),
    ([3, 32, 7, 7], [64, 32, 1, 1], 2, 0),
];

#[test]
fn cudnn_matches_candle_forward_and_backward() {
    let gpu = match Device::new_cuda(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIPPED: no CUDA device ({e}); the cuDNN convolution was not checked");
            return;
        }
    };
    // TF32 for f32 (as PyTorch allows it) and bf16 storage: tolerances are
    // relative to the largest value of each tensor.
    for (dtype, tolerance) in [(DType::F32, 5e-3), (DType::BF16, 3e-2)] {
        for &(xs, ws, stride, padding) in LAYERS {
            let cpu = Device::Cpu;
            let x = Tensor::randn(0f32, 1.0, xs.to_vec(), &cpu).unwrap();
            let w = Tensor::randn(0f32, 0.2, ws.to_vec(), &cpu).unwrap();
            // Reference on the CPU, in f32, with gradients of sum(y · r).
            let (xv, wv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap());
            let y_ref = xv.conv2d(&wv, padding, stride, 1, 1).unwrap();
            let r = Tensor::randn(0f32, 1.0, y_ref.shape(), &cpu).unwrap();
            let grads = (&y_ref * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let (dx_ref, dw_ref) = (grads.get(&xv).unwrap(), grads.get(&wv).unwrap());

            let on_gpu = |t: &Tensor| t.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();
            let (xg, wg) = (
                Var::from_tensor(&on_gpu(&x)).unwrap(),
                Var::from_tensor(&on_gpu(&w)).unwrap(),
            );
            let y = conv2d(&xg, &wg, stride, padding).unwrap();
            assert_eq!(y.dims(), y_ref.dims(), "{xs:?} * {ws:?}");
            let grads = (&y * on_gpu(&r))
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let what =
                format!("{dtype:?} input {xs:?} kernel {ws:?} stride {stride} padding {padding}");
            for (name, got, want) in [
                ("y", &y, &y_ref),
                ("dx", grads.get(&xg).unwrap(), dx_ref),
                ("dw", grads.get(&wg).unwrap(), dw_ref),
            ] {
                let err = relative_error(got, want);
                println!("{what}: {name} max relative error {err:.2e}");
                assert!(
                    err < tolerance,
                    "{what}: {name} off by {err:.2e} (tolerance {tolerance:.0e})"
                );
            }
        }
    }
}
