//! The CPU paths of our custom ops (batch norm, max pool, AdamW) work in
//! f32 whatever the tensor's type: these read a contiguous operand as f32
//! and write f32 values back in the operand's type.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Result, WithDType};

/// The contiguous values of an operand as f32.
pub(crate) fn cpu_values(s: &CpuStorage, l: &Layout) -> Result<Vec<f32>> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("operand not contiguous");
    };
    Ok(match s {
        CpuStorage::F32(v) => v[a..b].to_vec(),
        CpuStorage::BF16(v) => v[a..b].iter().map(|x| x.to_f32()).collect(),
        CpuStorage::F16(v) => v[a..b].iter().map(|x| x.to_f32()).collect(),
        CpuStorage::F64(v) => v[a..b].iter().map(|&x| x as f32).collect(),
        other => candle_core::bail!("no CPU path for {:?}", other.dtype()),
    })
}

/// f32 `values` as a storage of `dtype`.
pub(crate) fn cpu_storage(values: Vec<f32>, dtype: DType) -> Result<CpuStorage> {
    fn convert<T: WithDType>(v: Vec<f32>) -> Vec<T> {
        v.into_iter().map(|x| T::from_f64(f64::from(x))).collect()
    }
    Ok(match dtype {
        DType::F32 => CpuStorage::F32(values),
        DType::BF16 => CpuStorage::BF16(convert(values)),
        DType::F16 => CpuStorage::F16(convert(values)),
        DType::F64 => CpuStorage::F64(convert(values)),
        other => candle_core::bail!("no CPU path for {other:?}"),
    })
}

/// Writes f32 `values` over a contiguous operand, in its type.
pub(crate) fn cpu_write(dst: &mut CpuStorage, l: &Layout, values: &[f32]) -> Result<()> {
    fn put<T: WithDType>(d: &mut [T], v: &[f32]) {
        for (d, v) in d.iter_mut().zip(v) {
            *d = T::from_f64(f64::from(*v));
        }
    }
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("operand not contiguous");
    };
    match dst {
        CpuStorage::F32(d) => d[a..b].copy_from_slice(values),
        CpuStorage::BF16(d) => put(&mut d[a..b], values),
        CpuStorage::F16(d) => put(&mut d[a..b], values),
        CpuStorage::F64(d) => put(&mut d[a..b], values),
        other => candle_core::bail!("no CPU path for {:?}", other.dtype()),
    }
    Ok(())
}
