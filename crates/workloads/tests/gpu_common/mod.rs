//! What the GPU tests share.

use candle_core::{DType, Device, Tensor};

/// Largest |got − want| over the largest |want|, compared on the CPU in f32.
pub fn relative_error(got: &Tensor, want: &Tensor) -> f32 {
    let f32_on_cpu = |t: &Tensor| {
        t.to_device(&Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
    };
    let (got, want) = (f32_on_cpu(got), f32_on_cpu(want));
    let scale = want
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
    diff.to_scalar::<f32>().unwrap() / scale.max(1e-6)
}
