//! The end of a layer at inference: `act(y + bias + residual)`.
//!
//! Written as candle ops this is a broadcast add, an add and an activation,
//! three passes over every activation; on an H100 candle's strided
//! broadcast add alone took more time than all of ResNet-50's convolutions
//! (ncu: 12 of 22 ms a batch of 64). On an NVIDIA GPU it is one in-place
//! pass of our own kernel (`cuda/epilogue.cu`, loaded as PTX), summing in
//! f32; on a CPU it stays candle's ops.

use candle_core::{Result, Tensor};

/// The activation that ends a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    /// GELU with the exact erf (BERT's `gelu`).
    Gelu,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

impl Activation {
    fn apply(self, y: Tensor) -> Result<Tensor> {
        match self {
            Activation::None => Ok(y),
            Activation::Relu => y.relu(),
            Activation::Gelu => y.gelu_erf(),
            Activation::GeluTanh => y.gelu(),
        }
    }
}

/// A convolution's end: `y + bias` (`y` NCHW, `bias` `[1, C, 1, 1]`), plus
/// `residual` (`y`'s shape) when given, then ReLU when `relu`. Takes `y` by
/// value: on a GPU it is overwritten and returned.
pub fn conv_bias_residual_relu(
    y: Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    relu: bool,
) -> Result<Tensor> {
    let act = if relu {
        Activation::Relu
    } else {
        Activation::None
    };
    let plane = y.dims().iter().skip(2).product();
    apply(y, bias, residual, act, plane)
}

/// A linear layer's end: `y + bias` (`y` `[.., out]`, `bias` `[out]`), plus
/// `residual` when given, then `act`.
pub fn linear_bias_residual_act(
    y: Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    act: Activation,
) -> Result<Tensor> {
    apply(y, bias, residual, act, 1)
}

/// `plane`: elements per bias value, one after another (`H·W` for NCHW,
/// 1 for a last-axis bias); only the GPU kernel needs it.
#[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
fn apply(
    y: Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    act: Activation,
    plane: usize,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(op) = gpu::Epilogue::fits(&y, bias, residual, act, plane) {
        y.inplace_op3(bias, residual.unwrap_or(bias), &op)?;
        return Ok(y);
    }
    let mut y = y.broadcast_add(bias)?;
    if let Some(z) = residual {
        y = (y + z)?;
    }
    act.apply(y)
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::Activation;
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::CudaDType;
    use candle_core::{CpuStorage, CudaStorage, DType, InplaceOp3, Layout, Result, Tensor};
    use cudarc::driver::{LaunchConfig, PushKernelArg};
    use half::{bf16, f16};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/epilogue.ptx"));
    const MODULE: &str = "joulebench_epilogue";

    /// One launch's shape: elements per bias value, bias values, elements.
    /// One op of three operands whether or not there is a residual: without
    /// one, the third operand is the bias again and the kernel gets null.
    pub(super) struct Epilogue {
        plane: u32,
        channels: u32,
        total: u32,
        act: Activation,
        residual: bool,
    }

    impl Epilogue {
        /// The op for these tensors, or `None` when the kernel does not fit
        /// them (not on a GPU, not contiguous, another type, a bias that is
        /// not one value per channel, or over 2³² elements): then candle's
        /// ops run instead.
        pub(super) fn fits(
            y: &Tensor,
            bias: &Tensor,
            residual: Option<&Tensor>,
            act: Activation,
            plane: usize,
        ) -> Option<Epilogue> {
            let total = y.elem_count();
            let channels = bias.elem_count();
            let same_type =
                bias.dtype() == y.dtype() && residual.is_none_or(|z| z.dtype() == y.dtype());
            let contiguous = y.is_contiguous()
                && bias.is_contiguous()
                && residual.is_none_or(|z| z.is_contiguous() && z.dims() == y.dims());
            let supported = matches!(y.dtype(), DType::BF16 | DType::F16 | DType::F32);
            let shaped = plane > 0 && channels > 0 && total.is_multiple_of(plane * channels);
            if !y.device().is_cuda() || !same_type || !contiguous || !supported || !shaped {
                return None;
            }
            Some(Epilogue {
                plane: u32::try_from(plane).ok()?,
                channels: u32::try_from(channels).ok()?,
                total: u32::try_from(total).ok()?,
                act,
                residual: residual.is_some(),
            })
        }

        fn launch(
            &self,
            y: &mut CudaStorage,
            yl: &Layout,
            bias: &CudaStorage,
            bl: &Layout,
            z: Option<(&CudaStorage, &Layout)>,
        ) -> Result<()> {
            match y.dtype() {
                DType::BF16 => {
                    let kernels = ("epilogue_bf16", Some("epilogue_rows_bf16"));
                    self.typed::<bf16>(kernels, y, yl, bias, bl, z)
                }
                DType::F16 => {
                    let kernels = ("epilogue_f16", Some("epilogue_rows_f16"));
                    self.typed::<f16>(kernels, y, yl, bias, bl, z)
                }
                DType::F32 => self.typed::<f32>(("epilogue_f32", None), y, yl, bias, bl, z),
                other => candle_core::bail!("epilogue: no kernel for {other:?}"),
            }
        }

        /// `kernels`: the general kernel, and the one for linear layers in
        /// 16-bit types that works on channel pairs (see epilogue.cu).
        fn typed<T: CudaDType + cudarc::driver::DeviceRepr>(
            &self,
            (kernel, pairwise_kernel): (&str, Option<&str>),
            y: &mut CudaStorage,
            yl: &Layout,
            bias: &CudaStorage,
            bl: &Layout,
            z: Option<(&CudaStorage, &Layout)>,
        ) -> Result<()> {
            let device = y.device().clone();
            let span = |l: &Layout| {
                l.contiguous_offsets()
                    .ok_or_else(|| candle_core::Error::msg("epilogue: operand not contiguous"))
            };
            let (y0, y1) = span(yl)?;
            let (b0, b1) = span(bl)?;
            let z0 = z
                .map(|(_, zl)| span(zl))
                .transpose()?
                .map_or(0, |(z0, _)| z0);
            // Channel pairs need whole 32-bit words: even offsets and channels.
            let pairwise = pairwise_kernel.filter(|_| {
                self.plane == 1
                    && self.channels.is_multiple_of(2)
                    && [y0, b0, z0].iter().all(|o| o % 2 == 0)
            });
            let bias = bias.as_cuda_slice::<T>()?.slice(b0..b1);
            let z = match z {
                Some((z, zl)) => {
                    let (z0, z1) = span(zl)?;
                    Some(z.as_cuda_slice::<T>()?.slice(z0..z1))
                }
                None => None,
            };
            let mut y = y.as_cuda_slice_mut::<T>()?.slice_mut(y0..y1);
            let null = 0u64;
            let act: i32 = match self.act {
                Activation::None => 0,
                Activation::Relu => 1,
                Activation::Gelu => 2,
                Activation::GeluTanh => 3,
            };
            if let Some(kernel) = pairwise {
                let func = device.get_or_load_custom_func(kernel, MODULE, PTX)?;
                let (rows, pairs) = (self.total / self.channels, self.channels / 2);
                let threads = pairs.div_ceil(32).clamp(1, 8) * 32;
                let columns = pairs.div_ceil(threads);
                // About 4,096 blocks in all; each walks down its share of rows.
                let row_blocks = rows.clamp(1, (4096 / columns).clamp(1, 65_535));
                let config = LaunchConfig {
                    grid_dim: (columns, row_blocks, 1),
                    block_dim: (threads, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut args = func.builder();
                args.arg(&mut y).arg(&bias);
                match &z {
                    Some(z) => args.arg(z),
                    None => args.arg(&null),
                };
                args.arg(&rows).arg(&pairs).arg(&act);
                // SAFETY: epilogue_rows_T(unsigned*, const unsigned*, const
                // unsigned* or null, rows, pairs, act): the 16-bit operands
                // as 32-bit words, even offsets and channels checked above.
                unsafe { args.launch(config) }.map_err(candle_core::Error::wrap)?;
                return Ok(());
            }
            let func = device.get_or_load_custom_func(kernel, MODULE, PTX)?;
            const THREADS: u32 = 256;
            let blocks = self.total.div_ceil(THREADS).clamp(1, 1 << 16);
            let config = LaunchConfig {
                grid_dim: (blocks, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut args = func.builder();
            args.arg(&mut y).arg(&bias);
            match &z {
                Some(z) => args.arg(z),
                None => args.arg(&null),
            };
            args.arg(&self.total)
                .arg(&self.plane)
                .arg(&self.channels)
                .arg(&act);
            // SAFETY: the arguments match the kernel's signature (epilogue.cu)
            // and the element counts were checked against the tensors' shapes.
            unsafe { args.launch(config) }.map_err(candle_core::Error::wrap)?;
            Ok(())
        }
    }

    impl InplaceOp3 for Epilogue {
        fn name(&self) -> &'static str {
            "bias-residual-activation"
        }
        fn cpu_fwd(
            &self,
            _: &mut CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> Result<()> {
            candle_core::bail!("{}: CPU tensors use candle's ops", self.name())
        }
        fn cuda_fwd(
            &self,
            y: &mut CudaStorage,
            yl: &Layout,
            bias: &CudaStorage,
            bl: &Layout,
            z: &CudaStorage,
            zl: &Layout,
        ) -> Result<()> {
            self.launch(y, yl, bias, bl, self.residual.then_some((z, zl)))
        }
    }
}
