//! 2-D convolution for the image models, inference and training alike.
//!
//! With the `cudnn` feature, a convolution on an NVIDIA GPU runs through
//! cuDNN with its set-up cached per layer shape ([`crate::cudnn_conv`]);
//! everywhere else it is candle's own. Both compute cross-correlation with
//! symmetric zero padding and no dilation or groups, which is all ResNet and
//! the digits CNN use.

use candle_core::{Result, Tensor};

/// Whether [`conv2d`] and [`conv2d_backward`] on a CUDA device may multiply
/// f32 operands as TF32: in a build with the `cudnn` feature they are
/// cuDNN's, with tensor-core math allowed, which for f32 data is TF32 on the
/// GPUs that have it (compute capability 8.0 and later). candle's own
/// convolution (every other build, and every CPU) computes f32 as f32.
pub const F32_ON_CUDA_MAY_RUN_AS_TF32: bool = cfg!(feature = "cudnn");

/// Whether candle's f32 matrix products (and its own convolutions, which
/// are matrix products) on a CUDA device may run as TF32: only when
/// candle's reduced-precision switch for f32 is on, which joulebench never
/// turns on (candle's default is off, as PyTorch's). A build without CUDA
/// has no such products.
pub fn candle_f32_matmul_on_cuda_may_run_as_tf32() -> bool {
    #[cfg(feature = "cuda")]
    {
        candle_core::cuda::gemm_reduced_precision_f32()
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

/// `x` is `[batch, c_in, h, w]`, `weight` `[c_out, c_in, kh, kw]`.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    #[cfg(feature = "cudnn")]
    if x.device().is_cuda() {
        return crate::cudnn_conv::conv2d(x, weight, stride, padding);
    }
    x.conv2d(weight, padding, stride, 1, 1)
}

/// What [`conv2d_backward`] does with the input gradient `dx`.
pub enum InputGradient {
    /// Not computed (a network's first layer has no use for it).
    Skip,
    /// Returned as a new tensor.
    New,
    /// Added onto this gradient, returned as the sum. On cuDNN the sum is
    /// written into the given tensor's storage: give one nothing else reads.
    AddedTo(Tensor),
}

/// The gradients of [`conv2d`] for the output gradient `dy`: `dx` as
/// `input_gradient` asks, and `dw`. Nothing is recorded for candle's
/// autograd: this is for callers that run the backward pass themselves
/// (training's ResNet-50).
pub fn conv2d_backward(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    stride: usize,
    padding: usize,
    input_gradient: InputGradient,
) -> Result<(Option<Tensor>, Tensor)> {
    #[cfg(feature = "cudnn")]
    if x.device().is_cuda() {
        return crate::cudnn_conv::conv2d_backward(x, weight, dy, stride, padding, input_gradient);
    }
    let (x, weight, dy) = (x.detach(), weight.detach(), dy.detach());
    // candle's own formulas, as its autograd applies them (no dilation).
    let data = || -> Result<Tensor> {
        let (_, _, kh, _) = weight.dims4()?;
        let spanned = (dy.dim(2)? - 1) * stride + kh - 2 * padding;
        let out_padding = x.dim(2)? - spanned;
        dy.conv_transpose2d(&weight, padding, out_padding, stride, 1)
    };
    let dx = match input_gradient {
        InputGradient::Skip => None,
        InputGradient::New => Some(data()?),
        InputGradient::AddedTo(sum) => Some((sum + data()?)?),
    };
    // Stride and dilation swap places when the batch is the reduced axis.
    let dw = x
        .transpose(0, 1)?
        .conv2d(&dy.transpose(0, 1)?, padding, 1, stride, 1)?
        .transpose(0, 1)?;
    let (_, _, kh, kw) = weight.dims4()?;
    let dw = dw.narrow(2, 0, kh)?.narrow(3, 0, kw)?.contiguous()?;
    Ok((dx, dw))
}

/// Which implementation [`conv2d`] uses for tensors on `device`, for
/// results and logs.
pub fn backend(device: &candle_core::Device) -> &'static str {
    if cfg!(feature = "cudnn") && device.is_cuda() {
        "cudnn"
    } else {
        "candle"
    }
}
