//! AdamW in two passes per variable, for training on GPUs.
//!
//! candle's `AdamW` updates each variable with about a dozen tensor ops; a
//! ResNet-50 step thus launched some 2,000 small kernels for the optimiser
//! alone, and at batch 64 on an H100 the step was bound by launching them.
//! Here each variable takes two: the moments (kept in f32 whatever the
//! variable's type) and the step. Same formula as candle's and PyTorch's
//! AdamW (decoupled weight decay, bias-corrected moments). GPUs run our
//! kernels (`cuda/adamw.cu`, compiled to PTX by build.rs); CPUs run loops.

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Result, Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW};

/// A variable and its moments `[m | v]` (f32, twice the variable's size).
struct Slot {
    var: Var,
    state: Tensor,
}

pub struct FusedAdamW {
    slots: Vec<Slot>,
    params: ParamsAdamW,
    steps: u32,
}

impl Optimizer for FusedAdamW {
    type Config = ParamsAdamW;

    fn new(vars: Vec<Var>, params: ParamsAdamW) -> Result<FusedAdamW> {
        let slots = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .map(|var| {
                let state = Tensor::zeros(2 * var.elem_count(), DType::F32, var.device())?;
                Ok(Slot { var, state })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FusedAdamW {
            slots,
            params,
            steps: 0,
        })
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.steps += 1;
        let p = &self.params;
        let t = self.steps as i32;
        let update = Update {
            beta1: p.beta1 as f32,
            beta2: p.beta2 as f32,
            lr: p.lr as f32,
            decay: (1.0 - p.lr * p.weight_decay) as f32,
            c1: (1.0 / (1.0 - p.beta1.powi(t))) as f32,
            c2: (1.0 / (1.0 - p.beta2.powi(t))) as f32,
            eps: p.eps as f32,
        };
        for slot in &self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let g = g.contiguous()?;
            slot.state.inplace_op2(&g, &Moments(update))?;
            slot.var
                .as_tensor()
                .inplace_op2(&slot.state, &Step(update))?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }
}

/// One step's constants, as the kernels take them.
#[derive(Clone, Copy)]
struct Update {
    beta1: f32,
    beta2: f32,
    lr: f32,
    decay: f32,
    c1: f32,
    c2: f32,
    eps: f32,
}

/// `state ← moments(state, g)`: dst the state, src the gradient.
struct Moments(Update);

/// `θ ← step(θ, state)`: dst the variable, src the state.
struct Step(Update);

fn contiguous(l: &Layout) -> Result<(usize, usize)> {
    l.contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg("AdamW: operand not contiguous"))
}

impl InplaceOp2 for Moments {
    fn name(&self) -> &'static str {
        "adamw-moments"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> Result<()> {
        let u = self.0;
        let g = crate::op_values::cpu_values(g, gl)?;
        let (a, _) = contiguous(dst_l)?;
        let CpuStorage::F32(state) = dst else {
            candle_core::bail!("AdamW: the moments must be f32");
        };
        let n = g.len();
        let (m, v) = state[a..a + 2 * n].split_at_mut(n);
        for i in 0..n {
            m[i] = u.beta1 * m[i] + (1.0 - u.beta1) * g[i];
            v[i] = u.beta2 * v[i] + (1.0 - u.beta2) * g[i] * g[i];
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        dst: &mut candle_core::CudaStorage,
        dst_l: &Layout,
        g: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> Result<()> {
        gpu::moments(self.0, (dst, dst_l), (g, gl))
    }
}

impl InplaceOp2 for Step {
    fn name(&self) -> &'static str {
        "adamw-step"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        state: &CpuStorage,
        sl: &Layout,
    ) -> Result<()> {
        let u = self.0;
        let state = crate::op_values::cpu_values(state, sl)?;
        let theta = crate::op_values::cpu_values(dst, dst_l)?;
        let n = theta.len();
        let updated: Vec<f32> = (0..n)
            .map(|i| {
                let step = (state[i] * u.c1) / ((state[n + i] * u.c2).sqrt() + u.eps);
                theta[i] * u.decay - u.lr * step
            })
            .collect();
        crate::op_values::cpu_write(dst, dst_l, &updated)?;
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        dst: &mut candle_core::CudaStorage,
        dst_l: &Layout,
        state: &candle_core::CudaStorage,
        sl: &Layout,
    ) -> Result<()> {
        gpu::step(self.0, (dst, dst_l), (state, sl))
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::{contiguous, Update};
    use crate::kernel_launch::{by_element_type, grid_stride, suffix, u32_of};
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::CudaDType;
    use candle_core::{CudaStorage, Layout, Result};
    use cudarc::driver::{DeviceRepr, PushKernelArg};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/adamw.ptx"));
    const MODULE: &str = "joulebench_adamw";

    pub(super) fn moments(
        u: Update,
        (state, sl): (&mut CudaStorage, &Layout),
        (g, gl): (&CudaStorage, &Layout),
    ) -> Result<()> {
        by_element_type!(g.dtype(), typed_moments(u, (state, sl), (g, gl)))
    }

    fn typed_moments<T: CudaDType + DeviceRepr>(
        u: Update,
        (state, sl): (&mut CudaStorage, &Layout),
        (g, gl): (&CudaStorage, &Layout),
    ) -> Result<()> {
        let device = g.device().clone();
        let n = u32_of(gl.shape().elem_count())?;
        if sl.shape().elem_count() != 2 * n as usize {
            candle_core::bail!("AdamW: moments of the wrong size");
        }
        let func = device.get_or_load_custom_func(
            &format!("adamw_moments_{}", suffix(g.dtype())?),
            MODULE,
            PTX,
        )?;
        let (a, b) = contiguous(gl)?;
        let g = g.as_cuda_slice::<T>()?.slice(a..b);
        let (a, b) = contiguous(sl)?;
        let mut state = state.as_cuda_slice_mut::<f32>()?.slice_mut(a..b);
        let mut args = func.builder();
        args.arg(&mut state)
            .arg(&g)
            .arg(&n)
            .arg(&u.beta1)
            .arg(&u.beta2);
        // SAFETY: adamw_moments_T(float*, const T*, n, β₁, β₂); state holds 2·n.
        unsafe { args.launch(grid_stride(n as usize)) }.map_err(candle_core::Error::wrap)?;
        Ok(())
    }

    pub(super) fn step(
        u: Update,
        (theta, tl): (&mut CudaStorage, &Layout),
        (state, sl): (&CudaStorage, &Layout),
    ) -> Result<()> {
        by_element_type!(theta.dtype(), typed_step(u, (theta, tl), (state, sl)))
    }

    fn typed_step<T: CudaDType + DeviceRepr>(
        u: Update,
        (theta, tl): (&mut CudaStorage, &Layout),
        (state, sl): (&CudaStorage, &Layout),
    ) -> Result<()> {
        let device = theta.device().clone();
        let n = u32_of(tl.shape().elem_count())?;
        if sl.shape().elem_count() != 2 * n as usize {
            candle_core::bail!("AdamW: moments of the wrong size");
        }
        let func = device.get_or_load_custom_func(
            &format!("adamw_step_{}", suffix(theta.dtype())?),
            MODULE,
            PTX,
        )?;
        let (a, b) = contiguous(sl)?;
        let state = state.as_cuda_slice::<f32>()?.slice(a..b);
        let (a, b) = contiguous(tl)?;
        let mut theta = theta.as_cuda_slice_mut::<T>()?.slice_mut(a..b);
        let mut args = func.builder();
        args.arg(&mut theta)
            .arg(&state)
            .arg(&n)
            .arg(&u.lr)
            .arg(&u.decay)
            .arg(&u.c1)
            .arg(&u.c2)
            .arg(&u.eps);
        // SAFETY: adamw_step_T(T*, const float*, n, lr, decay, c1, c2, eps).
        unsafe { args.launch(grid_stride(n as usize)) }.map_err(candle_core::Error::wrap)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::AdamW;

    /// Three steps of ours and of candle's AdamW from the same start on the
    /// same gradients end at the same weights.
    #[test]
    fn steps_like_candles_adamw() {
        let dev = Device::Cpu;
        let start: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin()).collect();
        let params = ParamsAdamW {
            lr: 0.01,
            weight_decay: 0.1,
            ..ParamsAdamW::default()
        };
        let run = |fused: bool| {
            let w = Var::from_vec(start.clone(), (4, 6), &dev).unwrap();
            let mut opt: Box<dyn FnMut(&GradStore)> = if fused {
                let mut o = FusedAdamW::new(vec![w.clone()], params.clone()).unwrap();
                Box::new(move |g| o.step(g).unwrap())
            } else {
                let mut o = AdamW::new(vec![w.clone()], params.clone()).unwrap();
                Box::new(move |g| o.step(g).unwrap())
            };
            for k in 1..=3 {
                let target = Tensor::full(k as f32, (4, 6), &dev).unwrap();
                let loss = (w.as_tensor() - &target)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap();
                opt(&loss.backward().unwrap());
            }
            w.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (ours, theirs) = (run(true), run(false));
        assert_ne!(ours, start, "the weights moved");
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
