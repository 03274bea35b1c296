//! Max pooling that trains: forward and backward for any window, stride
//! and padding, with PyTorch's semantics (padding counts as −∞; a tie goes
//! to the first maximum in row-major order).
//!
//! candle's own max-pool backward needs the window to equal the stride, so
//! ResNet's 3×3/2 stem pool was built from differentiable pieces; on an H100
//! its two strided max reductions took 11.7 ms each per bf16 batch of 64,
//! more than all the convolutions. Here it is one pass each way: our kernels
//! on GPUs (`cuda/pool.cu`, compiled to PTX by build.rs), loops on CPUs.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

/// `x` `[N, C, H, W]` max-pooled with a `kernel`×`kernel` window.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let op = MaxPool::new(x, kernel, stride, padding)?;
    x.contiguous()?.apply_op1(op)
}

/// The input gradient of [`max_pool2d`] (same `kernel`, `stride` and
/// `padding`) for the output gradient `dy`, recorded nowhere: for callers
/// that run the backward pass themselves.
pub fn max_pool2d_backward(
    x: &Tensor,
    dy: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let op = MaxPool::new(x, kernel, stride, padding)?;
    x.contiguous()?.apply_op2_no_bwd(&dy.contiguous()?, &op)
}

#[derive(Clone, Copy)]
struct MaxPool {
    kernel: usize,
    stride: usize,
    padding: usize,
}

/// One pooling's sizes, as the kernels take them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Geometry {
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    s: u32,
    pad: u32,
}

impl MaxPool {
    /// The pooling of `x` `[N, C, H, W]`, if the window fits it.
    fn new(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<MaxPool> {
        let (_, _, h, w) = x.dims4()?;
        if kernel == 0 || stride == 0 || padding >= kernel || h + 2 * padding < kernel {
            candle_core::bail!(
                "max pool: window {kernel}, stride {stride}, padding {padding} do not fit {h}×{w}"
            );
        }
        // The GPU backward keeps a window's maximum as one byte.
        if kernel > 15 {
            candle_core::bail!("max pool: window {kernel} is over 15, the most it serves");
        }
        Ok(MaxPool {
            kernel,
            stride,
            padding,
        })
    }

    /// Planes (N·C) and the sizes, from the input's layout.
    fn geometry(&self, l: &Layout) -> Result<(usize, Geometry)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let out = |side: usize| (side + 2 * self.padding - self.kernel) / self.stride + 1;
        let u = |v: usize| {
            u32::try_from(v).map_err(|_| candle_core::Error::msg("max pool: side over 2³²"))
        };
        Ok((
            n * c,
            Geometry {
                h: u(h)?,
                w: u(w)?,
                oh: u(out(h))?,
                ow: u(out(w))?,
                k: u(self.kernel)?,
                s: u(self.stride)?,
                pad: u(self.padding)?,
            },
        ))
    }

    fn out_shape(&self, l: &Layout) -> Result<Shape> {
        let (n, c, _, _) = l.shape().dims4()?;
        let (_, g) = self.geometry(l)?;
        Ok((n, c, g.oh as usize, g.ow as usize).into())
    }
}

impl Geometry {
    /// Window (oy, ox)'s maximum and its index in the plane (the first
    /// strict maximum in row-major order, as the kernels pick).
    fn argmax(&self, plane: &[f32], oy: usize, ox: usize) -> (usize, f32) {
        let (k, s, pad) = (self.k as isize, self.s as isize, self.pad as isize);
        let (y0, x0) = (oy as isize * s - pad, ox as isize * s - pad);
        let mut best = (usize::MAX, f32::NEG_INFINITY);
        for iy in (y0..y0 + k).filter(|&y| y >= 0 && y < self.h as isize) {
            for ix in (x0..x0 + k).filter(|&x| x >= 0 && x < self.w as isize) {
                let at = iy as usize * self.w as usize + ix as usize;
                if best.0 == usize::MAX || plane[at] > best.1 {
                    best = (at, plane[at]);
                }
            }
        }
        best
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, g) = self.geometry(l)?;
        let x = crate::op_values::cpu_values(s, l)?;
        let (hw, ohw) = ((g.h * g.w) as usize, (g.oh * g.ow) as usize);
        let mut y = Vec::with_capacity(planes * ohw);
        for p in 0..planes {
            let plane = &x[p * hw..(p + 1) * hw];
            for oy in 0..g.oh as usize {
                for ox in 0..g.ow as usize {
                    y.push(g.argmax(plane, oy, ox).1);
                }
            }
        }
        Ok((
            crate::op_values::cpu_storage(y, s.dtype())?,
            self.out_shape(l)?,
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (planes, g) = self.geometry(l)?;
        let y = gpu::forward(s, l, planes, g)?;
        Ok((y, self.out_shape(l)?))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&dy.contiguous()?, self)?))
    }
}

/// The backward pass: `(x, dy) → dx`.
impl CustomOp2 for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (planes, g) = self.geometry(l1)?;
        let x = crate::op_values::cpu_values(s1, l1)?;
        let dy = crate::op_values::cpu_values(s2, l2)?;
        let (hw, ohw) = ((g.h * g.w) as usize, (g.oh * g.ow) as usize);
        let mut dx = vec![0f32; planes * hw];
        for p in 0..planes {
            let plane = &x[p * hw..(p + 1) * hw];
            for oy in 0..g.oh as usize {
                for ox in 0..g.ow as usize {
                    let (at, _) = g.argmax(plane, oy, ox);
                    dx[p * hw + at] += dy[p * ohw + oy * g.ow as usize + ox];
                }
            }
        }
        Ok((
            crate::op_values::cpu_storage(dx, s1.dtype())?,
            l1.shape().clone(),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (planes, g) = self.geometry(l1)?;
        let dx = gpu::backward((s1, l1), (s2, l2), planes, g)?;
        Ok((dx, l1.shape().clone()))
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::Geometry;
    use crate::kernel_launch::{by_element_type, grid_stride, span, suffix};
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::CudaDType;
    use candle_core::{CudaStorage, Layout, Result};
    use cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/pool.ptx"));
    const MODULE: &str = "joulebench_pool";

    // SAFETY: #[repr(C)] of seven u32, the kernels' `struct Pool`.
    unsafe impl DeviceRepr for Geometry {}

    pub(super) fn forward(
        s: &CudaStorage,
        l: &Layout,
        planes: usize,
        g: Geometry,
    ) -> Result<CudaStorage> {
        by_element_type!(s.dtype(), typed_forward(s, l, planes, g))
    }

    fn typed_forward<T: CudaDType + DeviceRepr>(
        s: &CudaStorage,
        l: &Layout,
        planes: usize,
        g: Geometry,
    ) -> Result<CudaStorage> {
        let device = s.device().clone();
        let (a, b) = span(l)?;
        let x = s.as_cuda_slice::<T>()?.slice(a..b);
        let total = planes * (g.oh * g.ow) as usize;
        // SAFETY: the kernel writes every output element.
        let mut y: CudaSlice<T> = unsafe { device.alloc(total)? };
        let func = device.get_or_load_custom_func(
            &format!("max_pool_{}", suffix(s.dtype())?),
            MODULE,
            PTX,
        )?;
        let planes = planes as u32;
        let mut args = func.builder();
        args.arg(&x).arg(&mut y).arg(&planes).arg(&g);
        // SAFETY: max_pool_T(const T*, T*, unsigned planes, Pool) over
        // planes·H·W inputs and planes·OH·OW outputs.
        unsafe { args.launch(grid_stride(total)) }.map_err(candle_core::Error::wrap)?;
        Ok(CudaStorage::wrap_cuda_slice(y, device))
    }

    pub(super) fn backward(
        x: (&CudaStorage, &Layout),
        dy: (&CudaStorage, &Layout),
        planes: usize,
        g: Geometry,
    ) -> Result<CudaStorage> {
        by_element_type!(x.0.dtype(), typed_backward(x, dy, planes, g))
    }

    fn typed_backward<T: CudaDType + DeviceRepr>(
        (xs, xl): (&CudaStorage, &Layout),
        (dys, dyl): (&CudaStorage, &Layout),
        planes: usize,
        g: Geometry,
    ) -> Result<CudaStorage> {
        let device = xs.device().clone();
        let (a, b) = span(xl)?;
        let x = xs.as_cuda_slice::<T>()?.slice(a..b);
        let (a, b) = span(dyl)?;
        let dy = dys.as_cuda_slice::<T>()?.slice(a..b);
        let windows = planes * (g.oh * g.ow) as usize;
        // SAFETY: the first kernel writes every window's byte.
        let mut arg: CudaSlice<u8> = unsafe { device.alloc(windows)? };
        let suffix = suffix(xs.dtype())?;
        let func =
            device.get_or_load_custom_func(&format!("max_pool_arg_{suffix}"), MODULE, PTX)?;
        let planes_u32 = planes as u32;
        let mut args = func.builder();
        args.arg(&x).arg(&mut arg).arg(&planes_u32).arg(&g);
        // SAFETY: max_pool_arg_T(const T*, unsigned char*, unsigned, Pool)
        // over planes·OH·OW windows.
        unsafe { args.launch(grid_stride(windows)) }.map_err(candle_core::Error::wrap)?;
        let total = planes * (g.h * g.w) as usize;
        // SAFETY: the second kernel writes every input-gradient element.
        let mut dx: CudaSlice<T> = unsafe { device.alloc(total)? };
        let func =
            device.get_or_load_custom_func(&format!("max_pool_grad_{suffix}"), MODULE, PTX)?;
        let mut args = func.builder();
        args.arg(&arg)
            .arg(&dy)
            .arg(&mut dx)
            .arg(&planes_u32)
            .arg(&g);
        // SAFETY: max_pool_grad_T(const unsigned char*, const T*, T*,
        // unsigned, Pool): windows' bytes and gradients, planes·H·W outputs.
        unsafe { args.launch(grid_stride(total)) }.map_err(candle_core::Error::wrap)?;
        Ok(CudaStorage::wrap_cuda_slice(dx, device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Against a by-hand pool: each window's output is its maximum (padding
    /// never wins) and sends its gradient to that maximum.
    #[test]
    fn pools_and_routes_gradients_to_the_maxima() {
        let dev = Device::Cpu;
        let (n, c, h, w) = (2, 3, 9, 8);
        let (oh, ow) = (5, 4);
        let v: Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i as f64 * 0.917).sin() * 3.0 - 4.0) as f32)
            .collect();
        let x = Var::from_vec(v.clone(), (n, c, h, w), &dev).unwrap();
        let y = max_pool2d(x.as_tensor(), 3, 2, 1).unwrap();
        assert_eq!(y.dims4().unwrap(), (n, c, oh, ow));
        let weights: Vec<f32> = (0..y.elem_count()).map(|i| 1.0 + i as f32).collect();
        let wt = Tensor::from_vec(weights.clone(), y.shape(), &dev).unwrap();
        let grads = (&y * &wt).unwrap().sum_all().unwrap().backward().unwrap();
        let got_dx = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap();
        let mut want_y = Vec::new();
        let mut want_dx = vec![0f32; v.len()];
        for p in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best = (usize::MAX, f32::NEG_INFINITY);
                    for iy in (oy * 2).saturating_sub(1)..(oy * 2 + 2).min(h) {
                        for ix in (ox * 2).saturating_sub(1)..(ox * 2 + 2).min(w) {
                            let at = p * h * w + iy * w + ix;
                            if v[at] > best.1 {
                                best = (at, v[at]);
                            }
                        }
                    }
                    want_y.push(best.1);
                    want_dx[best.0] += weights[(p * oh + oy) * ow + ox];
                }
            }
        }
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want_y);
        assert_eq!(got_dx.to_vec1::<f32>().unwrap(), want_dx);
    }

    #[test]
    fn a_window_that_does_not_fit_is_refused() {
        let x = Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool2d(&x, 5, 2, 1).is_err());
    }
}
