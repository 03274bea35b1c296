//! The GPU launchers of batch norm's passes: one per kernel of
//! `cuda/batch_norm.cu`, taking the ops' operands as candle hands them over.

use super::ops::Geometry;
use crate::kernel_launch::{by_element_type, grid_stride, suffix, u32_of, view, Operand, THREADS};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::CudaDType;
use candle_core::{CudaStorage, Layout, Result, Shape};
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/batch_norm.ptx"));
const MODULE: &str = "joulebench_batch_norm";
/// Elements of one channel per reduction block.
const PER_BLOCK: u32 = 4096;

pub(super) fn sums(
    plane: usize,
    a: Operand,
    b: Option<Operand>,
    mask: Option<Operand>,
) -> Result<(CudaStorage, Shape)> {
    by_element_type!(a.0.dtype(), typed_sums(plane, a, b, mask))
}

fn typed_sums<T: CudaDType + DeviceRepr>(
    plane: usize,
    a: Operand,
    b: Option<Operand>,
    mask: Option<Operand>,
) -> Result<(CudaStorage, Shape)> {
    let g = Geometry::of(a.1, plane)?;
    let device = a.0.device().clone();
    let per_channel = u32_of(g.n * g.plane)?;
    let channels = u32_of(g.channels)?;
    let mut wide: CudaSlice<f64> = device.alloc_zeros(2 * g.channels)?;
    let a_view = view::<T>(a)?;
    let b_view = b.map(view::<T>).transpose()?;
    let mask_view = mask.map(view::<T>).transpose()?;
    let null = 0u64;
    let func = device.get_or_load_custom_func(
        &format!("channel_sums_{}", suffix(a.0.dtype())?),
        MODULE,
        PTX,
    )?;
    let config = LaunchConfig {
        grid_dim: (channels, per_channel.div_ceil(PER_BLOCK).max(1), 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let (n, plane) = (u32_of(g.n)?, u32_of(g.plane)?);
    let mut args = func.builder();
    args.arg(&a_view);
    for operand in [&b_view, &mask_view] {
        match operand {
            Some(v) => args.arg(v),
            None => args.arg(&null),
        };
    }
    args.arg(&mut wide)
        .arg(&n)
        .arg(&plane)
        .arg(&channels)
        .arg(&PER_BLOCK);
    // SAFETY: arguments match channel_sums (batch_norm.cu); operands are
    // contiguous and as large as `a`; the grid
    // covers C channels and every element of each; `wide` holds 2·C.
    unsafe { args.launch(config) }.map_err(candle_core::Error::wrap)?;

    let count = 2 * channels;
    // SAFETY: every element is written by sums_to_f32 below.
    let mut narrow: CudaSlice<f32> = unsafe { device.alloc(count as usize)? };
    let func = device.get_or_load_custom_func("sums_to_f32", MODULE, PTX)?;
    let mut args = func.builder();
    args.arg(&wide).arg(&mut narrow).arg(&count);
    // SAFETY: sums_to_f32(const double*, float*, count) over 2·C values.
    unsafe { args.launch(grid_stride(count as usize)) }.map_err(candle_core::Error::wrap)?;
    Ok((
        CudaStorage::wrap_cuda_slice(narrow, device),
        (2, g.channels).into(),
    ))
}

/// `(scale, shift, residual)`.
type Terms<'a> = (Operand<'a>, Option<Operand<'a>>, Option<Operand<'a>>);

pub(super) fn affine(
    plane: usize,
    x: Operand,
    terms: Terms,
    mask: Option<Operand>,
    relu: bool,
) -> Result<(CudaStorage, Shape)> {
    let ops = (terms, mask);
    by_element_type!(x.0.dtype(), typed_affine(plane, x, ops, relu))
}

fn typed_affine<T: CudaDType + DeviceRepr>(
    plane: usize,
    x: Operand,
    ((scale, shift, residual), mask): (Terms, Option<Operand>),
    relu: bool,
) -> Result<(CudaStorage, Shape)> {
    let g = Geometry::of(x.1, plane)?;
    let device = x.0.device().clone();
    let total = u32_of(x.1.shape().elem_count())?;
    let x_view = view::<T>(x)?;
    let scale = view::<f32>(scale)?;
    let shift = shift.map(view::<f32>).transpose()?;
    let residual = residual.map(view::<T>).transpose()?;
    let mask = mask.map(view::<T>).transpose()?;
    // SAFETY: every element is written by the kernel.
    let mut y: CudaSlice<T> = unsafe { device.alloc(total as usize)? };
    let func = device.get_or_load_custom_func(
        &format!("channel_affine_{}", suffix(x.0.dtype())?),
        MODULE,
        PTX,
    )?;
    let null = 0u64;
    let (plane, channels) = (u32_of(g.plane)?, u32_of(g.channels)?);
    let mut args = func.builder();
    let relu = i32::from(relu);
    args.arg(&x_view).arg(&scale);
    match &shift {
        Some(s) => args.arg(s),
        None => args.arg(&null),
    };
    for operand in [&residual, &mask] {
        match operand {
            Some(v) => args.arg(v),
            None => args.arg(&null),
        };
    }
    args.arg(&mut y)
        .arg(&total)
        .arg(&plane)
        .arg(&channels)
        .arg(&relu);
    // SAFETY: arguments match channel_affine (batch_norm.cu); scale and
    // shift hold one f32 per channel (checked by the caller's shapes).
    unsafe { args.launch(grid_stride(total as usize)) }.map_err(candle_core::Error::wrap)?;
    Ok((wrap(y, device), x.1.shape().clone()))
}

/// bn_coefficients: `(stats [4·C], dot [2·C])` → f32 `[3·C]`.
pub(super) fn coefficients(
    stats: Operand,
    dot: Operand,
    count: f32,
    eps: f32,
) -> Result<CudaStorage> {
    let device = stats.0.device().clone();
    let channels = u32_of(dot.1.shape().elem_count() / 2)?;
    let func = device.get_or_load_custom_func("bn_coefficients", MODULE, PTX)?;
    let (stats, dot) = (view::<f32>(stats)?, view::<f32>(dot)?);
    // SAFETY: the kernel writes all 3·C values.
    let mut coef: CudaSlice<f32> = unsafe { device.alloc(3 * channels as usize)? };
    let mut args = func.builder();
    args.arg(&stats)
        .arg(&dot)
        .arg(&mut coef)
        .arg(&channels)
        .arg(&count)
        .arg(&eps);
    // SAFETY: bn_coefficients(const float* 4·C, const float* 2·C, float* 3·C, C, n, ε).
    unsafe { args.launch(grid_stride(channels as usize)) }.map_err(candle_core::Error::wrap)?;
    Ok(wrap(coef, device))
}

/// bn_dx: `(dy, x, coef [3·C])` → dx in dy's type.
pub(super) fn bn_dx(plane: usize, dy: Operand, x: Operand, coef: Operand) -> Result<CudaStorage> {
    by_element_type!(dy.0.dtype(), typed_bn_dx(plane, dy, x, coef))
}

fn typed_bn_dx<T: CudaDType + DeviceRepr>(
    plane: usize,
    dy: Operand,
    x: Operand,
    coef: Operand,
) -> Result<CudaStorage> {
    let g = Geometry::of(dy.1, plane)?;
    let device = dy.0.device().clone();
    let total = u32_of(dy.1.shape().elem_count())?;
    let func =
        device.get_or_load_custom_func(&format!("bn_dx_{}", suffix(dy.0.dtype())?), MODULE, PTX)?;
    let (dy, x, coef) = (view::<T>(dy)?, view::<T>(x)?, view::<f32>(coef)?);
    // SAFETY: every element is written by the kernel.
    let mut dx: CudaSlice<T> = unsafe { device.alloc(total as usize)? };
    let (plane, channels) = (u32_of(g.plane)?, u32_of(g.channels)?);
    let mut args = func.builder();
    args.arg(&dy)
        .arg(&x)
        .arg(&coef)
        .arg(&mut dx)
        .arg(&total)
        .arg(&plane)
        .arg(&channels);
    // SAFETY: bn_dx_T(const T*, const T*, const float* 3·C, T*, total, plane, C).
    unsafe { args.launch(grid_stride(total as usize)) }.map_err(candle_core::Error::wrap)?;
    Ok(wrap(dx, device))
}

/// bn_finalize, or bn_finalize_grad when `grad` is `Some(from_dot)`:
/// `(sums, γ, β or grad)` → f32 `[4·C]`.
pub(super) fn finalize(
    grad: Option<bool>,
    consts: (f32, f32),
    sums: Operand,
    gamma: Operand,
    third: Operand,
) -> Result<CudaStorage> {
    by_element_type!(
        gamma.0.dtype(),
        typed_finalize(grad, consts, sums, gamma, third)
    )
}

fn typed_finalize<T: CudaDType + DeviceRepr>(
    grad: Option<bool>,
    (count, eps): (f32, f32),
    sums: Operand,
    gamma: Operand,
    third: Operand,
) -> Result<CudaStorage> {
    let device = gamma.0.device().clone();
    let channels = u32_of(gamma.1.shape().elem_count())?;
    let kernel = match grad {
        Some(_) => "bn_finalize_grad",
        None => "bn_finalize",
    };
    let func = device.get_or_load_custom_func(
        &format!("{kernel}_{}", suffix(gamma.0.dtype())?),
        MODULE,
        PTX,
    )?;
    let sums = view::<f32>(sums)?;
    let gamma = view::<T>(gamma)?;
    // β in γ's type going forward; the f32 gradient of [scale | shift] back.
    let (beta, upstream);
    // SAFETY: the kernel writes all 4·C values.
    let mut out: CudaSlice<f32> = unsafe { device.alloc(4 * channels as usize)? };
    let mut args = func.builder();
    let from_dot = i32::from(grad == Some(true));
    args.arg(&sums).arg(&gamma);
    if grad.is_some() {
        upstream = view::<f32>(third)?;
        args.arg(&upstream);
    } else {
        beta = view::<T>(third)?;
        args.arg(&beta);
    }
    args.arg(&mut out).arg(&channels).arg(&count).arg(&eps);
    if grad.is_some() {
        args.arg(&from_dot);
    }
    // SAFETY: arguments match bn_finalize_T / bn_finalize_grad_T
    // (batch_norm.cu): sums 2·C, γ and β C, grad 2·C (or more), out
    // 4·C, and for the gradient the from_dot flag.
    unsafe { args.launch(grid_stride(channels as usize)) }.map_err(candle_core::Error::wrap)?;
    Ok(wrap(out, device))
}

/// bn_running over a running statistic (f32 `[C]`, updated in place).
pub(super) fn running(
    (running, rl): (&mut CudaStorage, &Layout),
    stat: Operand,
    momentum: f32,
    unbias: f32,
) -> Result<()> {
    let device = stat.0.device().clone();
    let channels = u32_of(rl.shape().elem_count())?;
    if stat.1.shape().elem_count() != channels as usize {
        candle_core::bail!("batch norm: running statistic and batch statistic differ in size");
    }
    let func = device.get_or_load_custom_func("bn_running", MODULE, PTX)?;
    let stat = view::<f32>(stat)?;
    let Some((a, b)) = rl.contiguous_offsets() else {
        candle_core::bail!("batch norm: running statistic not contiguous");
    };
    let mut running = running.as_cuda_slice_mut::<f32>()?.slice_mut(a..b);
    let mut args = func.builder();
    args.arg(&mut running)
        .arg(&stat)
        .arg(&channels)
        .arg(&momentum)
        .arg(&unbias);
    // SAFETY: bn_running(float*, const float*, C, momentum, unbias), C each.
    unsafe { args.launch(grid_stride(channels as usize)) }.map_err(candle_core::Error::wrap)?;
    Ok(())
}

fn wrap<T: CudaDType>(slice: CudaSlice<T>, device: candle_core::CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(slice, device)
}
