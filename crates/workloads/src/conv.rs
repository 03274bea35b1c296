//! 2-D convolution for the image models, inference and training alike.
//!
//! With the `cudnn` feature, a convolution on an NVIDIA GPU runs through
//! cuDNN with its set-up cached per layer shape ([`crate::cudnn_conv`]);
//! everywhere else it is candle's own. Both compute cross-correlation with
//! symmetric zero padding and no dilation or groups, which is all ResNet and
//! the digits CNN use.

use candle_core::{Result, Tensor};

/// `x` is `[batch, c_in, h, w]`, `weight` `[c_out, c_in, kh, kw]`.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    #[cfg(feature = "cudnn")]
    if x.device().is_cuda() {
        return crate::cudnn_conv::conv2d(x, weight, stride, padding);
    }
    x.conv2d(weight, padding, stride, 1, 1)
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
