//! Image preprocessing as MLPerf's ResNet-50 reference does it, with its
//! parameters in a small struct so that other models (a 28×28 or 8×8 edge
//! classifier) can use other ones.
//!
//! The reference pipeline (`python/dataset.py` in MLPerf Inference's
//! vision reference) reads the image with OpenCV (EXIF orientation applied,
//! alpha dropped, BGR turned into RGB), resizes it so that its shorter side
//! is 256 px keeping the aspect ratio (the longer side truncated:
//! `int(256 * long / short)`), takes the centre 224×224, and normalises each
//! channel. It comes in two flavours, both here:
//!
//! - [`ImagePreprocess::mlperf_resnet50_pytorch`] (`pre_process_imagenet_pytorch`,
//!   what torchvision-layout weights such as ours expect): Pillow's bilinear
//!   resize (antialiased when shrinking), torchvision's centre crop (offset
//!   rounded half to even), pixels / 255, then ImageNet's mean and std.
//!   Pillow's 8-bit fixed-point arithmetic and its order of passes are
//!   reproduced exactly (checked against Pillow 13.0), so the tensor is the
//!   one torchvision makes from the same decoded pixels. Older Pillow
//!   releases always resized horizontally first, and differ from this by a
//!   grey level on some pixels of images much taller than wide.
//! - [`ImagePreprocess::mlperf_resnet50_onnx`] (`pre_process_vgg`, the ONNX and
//!   TensorFlow models): OpenCV's `INTER_AREA` resize, the crop offset
//!   truncated, and the means 123.68/116.78/103.94 subtracted from 0–255
//!   pixels. OpenCV's weights and arithmetic (area sums in `f32` when
//!   shrinking, fixed-point linear interpolation when enlarging) are
//!   reproduced (checked against OpenCV 5.0's x86 build); a rare pixel may
//!   still differ by one grey level where `f32` sums land on a rounding tie.
//!
//! Decoded pixels themselves can differ from the reference's: our JPEG
//! decoder is not libjpeg, and two JPEG decoders may differ by a grey level
//! or two; PNG decoding is exact.
//!
//! The output is `f32`, channels first (CHW), `channels × crop × crop`.

use super::DatasetError;
use image::DynamicImage;

/// How the image is resized; each follows its reference pipeline, crop
/// rounding included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Pillow's `BILINEAR` (a triangle filter widened when shrinking), as
    /// torchvision applies it to PIL images; the centre crop's offset is
    /// rounded half to even (`int(round((h - crop) / 2))`).
    PilBilinear,
    /// OpenCV's `INTER_AREA`; the centre crop's offset is truncated
    /// (`int((h - crop) / 2)`).
    OpenCvArea,
}

/// Channels the model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    /// Red, green, blue (MLPerf converts OpenCV's BGR to this order).
    Rgb,
    /// One grey channel, for single-channel data sets such as the digits; a
    /// colour image is converted with Rec. 709 weights.
    Luma,
}

impl ColorMode {
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Rgb => 3,
            ColorMode::Luma => 1,
        }
    }
}

/// Why preprocessing settings cannot produce an image.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessError {
    #[error("resize and crop must be at least 1 px")]
    ZeroSize,
    #[error("crop {crop_px} px is larger than the resized shorter side {resize_shorter_px} px")]
    CropLargerThanResize {
        crop_px: usize,
        resize_shorter_px: usize,
    },
    #[error("{channels} channel(s) need {channels} means and stds, got {means} and {stds}")]
    Channels {
        channels: usize,
        means: usize,
        stds: usize,
    },
    #[error("pixel divisor {divisor} must be positive")]
    PixelDivisor { divisor: f32 },
    #[error("std {std} must be finite and non-zero")]
    Std { std: f32 },
}

/// Preprocessing parameters: `out = (pixel / pixel_divisor - mean[c]) / std[c]`
/// on the resized, centre-cropped 8-bit image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePreprocess {
    /// Length of the shorter side after resizing, px (MLPerf: 256).
    pub resize_shorter_px: usize,
    /// Side of the square centre crop, px (MLPerf: 224); at most the resize.
    pub crop_px: usize,
    pub interpolation: Interpolation,
    pub color: ColorMode,
    /// 255 to normalise pixels in [0, 1] (torchvision), 1 to normalise
    /// 0–255 values (MLPerf's ONNX reference).
    pub pixel_divisor: f32,
    /// Per channel, in the units left after `pixel_divisor`.
    pub mean: Vec<f32>,
    /// Per channel, in the units left after `pixel_divisor`.
    pub std: Vec<f32>,
}

impl ImagePreprocess {
    /// MLPerf's `pre_process_imagenet_pytorch`: torchvision's
    /// `Resize(256)`, `CenterCrop(224)`, `ToTensor()`, `Normalize(mean, std)`.
    pub fn mlperf_resnet50_pytorch() -> ImagePreprocess {
        ImagePreprocess {
            resize_shorter_px: 256,
            crop_px: 224,
            interpolation: Interpolation::PilBilinear,
            color: ColorMode::Rgb,
            pixel_divisor: 255.0,
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    /// MLPerf's `pre_process_vgg` (ResNet-50 v1.5 in ONNX and TensorFlow):
    /// `INTER_AREA` to 256 (224 / 87.5 %), centre 224, minus the channel means.
    pub fn mlperf_resnet50_onnx() -> ImagePreprocess {
        ImagePreprocess {
            resize_shorter_px: 256,
            crop_px: 224,
            interpolation: Interpolation::OpenCvArea,
            color: ColorMode::Rgb,
            pixel_divisor: 1.0,
            mean: vec![123.68, 116.78, 103.94],
            std: vec![1.0, 1.0, 1.0],
        }
    }

    /// Images already at the model's size (e.g. 8×8 digits, 28×28 MNIST):
    /// pixels scaled to [0, 1], nothing else. An image of another size is
    /// still resized (shorter side) and centre-cropped to `side_px`.
    pub fn unscaled(side_px: usize, color: ColorMode) -> ImagePreprocess {
        let channels = color.channels();
        ImagePreprocess {
            resize_shorter_px: side_px,
            crop_px: side_px,
            interpolation: Interpolation::PilBilinear,
            color,
            pixel_divisor: 255.0,
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    pub fn channels(&self) -> usize {
        self.color.channels()
    }

    /// The shape of one preprocessed image: (channels, height, width).
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.channels(), self.crop_px, self.crop_px)
    }

    /// Refuses parameters that cannot produce an image.
    pub fn validate(&self) -> Result<(), DatasetError> {
        self.check().map_err(DatasetError::Preprocess)
    }

    fn check(&self) -> Result<(), PreprocessError> {
        if self.resize_shorter_px == 0 || self.crop_px == 0 {
            return Err(PreprocessError::ZeroSize);
        }
        if self.crop_px > self.resize_shorter_px {
            return Err(PreprocessError::CropLargerThanResize {
                crop_px: self.crop_px,
                resize_shorter_px: self.resize_shorter_px,
            });
        }
        let channels = self.channels();
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(PreprocessError::Channels {
                channels,
                means: self.mean.len(),
                stds: self.std.len(),
            });
        }
        if !(self.pixel_divisor.is_finite() && self.pixel_divisor > 0.0) {
            return Err(PreprocessError::PixelDivisor {
                divisor: self.pixel_divisor,
            });
        }
        if let Some(&std) = self.std.iter().find(|s| !(s.is_finite() && **s != 0.0)) {
            return Err(PreprocessError::Std { std });
        }
        Ok(())
    }

    /// One line for result parameters and logs.
    pub fn describe(&self) -> String {
        let resize = match self.interpolation {
            Interpolation::PilBilinear => "Pillow bilinear",
            Interpolation::OpenCvArea => "OpenCV INTER_AREA",
        };
        format!(
            "{resize} resize to {} px (shorter side), centre crop {} px, {:?}, (x/{} - mean {:?}) / std {:?}",
            self.resize_shorter_px, self.crop_px, self.color, self.pixel_divisor, self.mean, self.std
        )
    }

    /// Width and height after the aspect-preserving resize.
    pub fn resized_size(&self, width: usize, height: usize) -> (usize, usize) {
        let short = self.resize_shorter_px;
        // Both references compute `int(short * long / side)` in floating point.
        let scaled = |long: usize, side: usize| ((short * long) as f64 / side as f64) as usize;
        if width <= height {
            (short, scaled(height, width))
        } else {
            (scaled(width, height), short)
        }
    }

    /// A decoded image → CHW `f32` values, `channels × crop × crop`.
    pub fn apply(&self, image: &DynamicImage) -> Vec<f32> {
        match self.color {
            ColorMode::Rgb => {
                let rgb = image.to_rgb8();
                let (w, h) = rgb.dimensions();
                self.apply_pixels(rgb.as_raw(), w as usize, h as usize)
            }
            ColorMode::Luma => {
                let luma = image.to_luma8();
                let (w, h) = luma.dimensions();
                self.apply_pixels(luma.as_raw(), w as usize, h as usize)
            }
        }
    }

    /// 8-bit pixels, row-major and channels interleaved (HWC, as many
    /// channels as the colour mode has) → CHW `f32` values.
    ///
    /// Panics if `pixels` is not `width × height × channels` long or the
    /// image is empty; [`validate`](Self::validate) the parameters first.
    pub fn apply_pixels(&self, pixels: &[u8], width: usize, height: usize) -> Vec<f32> {
        let channels = self.channels();
        assert_eq!(pixels.len(), width * height * channels, "pixel buffer size");
        assert!(width > 0 && height > 0, "empty image");
        let (rw, rh) = self.resized_size(width, height);
        let resized;
        let image = if (rw, rh) == (width, height) {
            // Both libraries copy an image already at the target size.
            pixels
        } else {
            resized = match self.interpolation {
                Interpolation::PilBilinear => pil_bilinear(pixels, width, height, channels, rw, rh),
                Interpolation::OpenCvArea => opencv_area(pixels, width, height, channels, rw, rh),
            };
            &resized
        };
        let crop = self.crop_px;
        let left = self.crop_offset(rw);
        let top = self.crop_offset(rh);
        let mut out = Vec::with_capacity(channels * crop * crop);
        for c in 0..channels {
            let (mean, std) = (self.mean[c], self.std[c]);
            for y in top..top + crop {
                let row = &image[(y * rw + left) * channels..(y * rw + left + crop) * channels];
                out.extend(
                    row.iter()
                        .skip(c)
                        .step_by(channels)
                        .map(|&p| (f32::from(p) / self.pixel_divisor - mean) / std),
                );
            }
        }
        out
    }

    /// Offset of the centre crop along a side of `len` px.
    fn crop_offset(&self, len: usize) -> usize {
        let spare = len - self.crop_px;
        match self.interpolation {
            // torchvision: int(round(spare / 2.0)), Python rounding half to even.
            Interpolation::PilBilinear => (spare as f64 / 2.0).round_ties_even() as usize,
            // MLPerf's center_crop: int((len - crop) / 2).
            Interpolation::OpenCvArea => spare / 2,
        }
    }
}

/// Pillow's fixed-point precision for 8-bit images (`PRECISION_BITS`).
const PIL_PRECISION_BITS: u32 = 32 - 8 - 2;

/// Taps of one output position: first input index and its weights.
struct FixedTaps {
    first: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` for the bilinear filter, then
/// `normalize_coeffs_8bpc`.
fn pil_coefficients(in_size: usize, out_size: usize) -> Vec<FixedTaps> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    // The bilinear filter's support is 1, widened by the shrink factor.
    let support = filter_scale;
    let triangle = |x: f64| {
        let x = x.abs();
        if x < 1.0 {
            1.0 - x
        } else {
            0.0
        }
    };
    let one = f64::from(1u32 << PIL_PRECISION_BITS);
    (0..out_size)
        .map(|out| {
            let center = (out as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero, as `as` does.
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let raw: Vec<f64> = (first..end)
                .map(|x| triangle((x as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    if w < 0.0 {
                        (-0.5 + w * one) as i32
                    } else {
                        (0.5 + w * one) as i32
                    }
                })
                .collect();
            FixedTaps { first, weights }
        })
        .collect()
}

/// Pillow's `clip8`: the rounded fixed-point sum back to a byte.
fn pil_clip8(sum: i32) -> u8 {
    if sum >= 1 << (PIL_PRECISION_BITS + 8) {
        255
    } else if sum <= 0 {
        0
    } else {
        (sum >> PIL_PRECISION_BITS) as u8
    }
}

/// Pillow's `ImagingResample` with `BILINEAR` on an 8-bit image: two
/// separable passes, each rounded back to bytes; a pass whose size does not
/// change is skipped. Pillow (13.0) runs the vertical pass first when the
/// height shrinks by more than twice as many pixels as the width, otherwise
/// the horizontal one; the order changes the rounding, so it is kept.
fn pil_bilinear(src: &[u8], w: usize, h: usize, c: usize, new_w: usize, new_h: usize) -> Vec<u8> {
    let shrink_h = h as i64 - new_h as i64;
    let shrink_w = w as i64 - new_w as i64;
    let vertical_first = shrink_h > 0 && shrink_h > 2 * shrink_w;
    if vertical_first {
        let tall = pil_vertical(src, w, h, c, new_h);
        pil_horizontal(&tall, w, new_h, c, new_w)
    } else {
        let wide = pil_horizontal(src, w, h, c, new_w);
        pil_vertical(&wide, new_w, h, c, new_h)
    }
}

/// Rounding offset of Pillow's fixed-point sums (half of one).
const PIL_ROUND_HALF: i32 = 1 << (PIL_PRECISION_BITS - 1);

/// Pillow's `ImagingResampleHorizontal_8bpc`: width `w` → `new_w`.
fn pil_horizontal(src: &[u8], w: usize, h: usize, c: usize, new_w: usize) -> Vec<u8> {
    if new_w == w {
        return src.to_vec();
    }
    let taps = pil_coefficients(w, new_w);
    let mut out = vec![0u8; new_w * h * c];
    for y in 0..h {
        let row = &src[y * w * c..(y + 1) * w * c];
        for (x, t) in taps.iter().enumerate() {
            for ch in 0..c {
                let sum = t
                    .weights
                    .iter()
                    .enumerate()
                    .fold(PIL_ROUND_HALF, |s, (i, k)| {
                        s + i32::from(row[(t.first + i) * c + ch]) * k
                    });
                out[(y * new_w + x) * c + ch] = pil_clip8(sum);
            }
        }
    }
    out
}

/// Pillow's `ImagingResampleVertical_8bpc`: height `h` → `new_h`.
fn pil_vertical(src: &[u8], w: usize, h: usize, c: usize, new_h: usize) -> Vec<u8> {
    if new_h == h {
        return src.to_vec();
    }
    let taps = pil_coefficients(h, new_h);
    let stride = w * c;
    let mut out = vec![0u8; stride * new_h];
    for (y, t) in taps.iter().enumerate() {
        for i in 0..stride {
            let sum = t
                .weights
                .iter()
                .enumerate()
                .fold(PIL_ROUND_HALF, |s, (j, k)| {
                    s + i32::from(src[(t.first + j) * stride + i]) * k
                });
            out[y * stride + i] = pil_clip8(sum);
        }
    }
    out
}

/// OpenCV's `computeResizeAreaTab`: each output pixel averages the input
/// cells it covers, weighted by coverage (`scale` = input / output ≥ 1).
/// Entries are (input index, weight), in OpenCV's order, weights in `f32`
/// as OpenCV stores them.
fn opencv_area_taps(in_size: usize, out_size: usize) -> Vec<Vec<(usize, f32)>> {
    // OpenCV divides by the inverse scale, not by the sizes directly.
    let scale = 1.0 / (out_size as f64 / in_size as f64);
    (0..out_size)
        .map(|dx| {
            let fsx1 = dx as f64 * scale;
            let fsx2 = fsx1 + scale;
            let cell = scale.min(in_size as f64 - fsx1);
            let sx2 = (fsx2.floor() as usize).min(in_size - 1);
            let sx1 = (fsx1.ceil() as usize).min(sx2);
            let mut taps = Vec::new();
            if sx1 as f64 - fsx1 > 1e-3 {
                taps.push((sx1 - 1, ((sx1 as f64 - fsx1) / cell) as f32));
            }
            taps.extend((sx1..sx2).map(|sx| (sx, (1.0 / cell) as f32)));
            if fsx2 - sx2 as f64 > 1e-3 {
                taps.push((sx2, ((fsx2 - sx2 as f64).min(1.0).min(cell) / cell) as f32));
            }
            taps
        })
        .collect()
}

/// OpenCV's `resize(..., INTER_AREA)` on 8-bit images, arithmetic included:
/// when both sides shrink, area averaging (integer factors: its fast block
/// mean; otherwise `f32` sums in OpenCV's order, rounded half to even);
/// otherwise its two-tap linear interpolation in fixed point.
fn opencv_area(src: &[u8], w: usize, h: usize, c: usize, new_w: usize, new_h: usize) -> Vec<u8> {
    if new_w > w || new_h > h {
        return opencv_area_linear(src, w, h, c, new_w, new_h);
    }
    if w.is_multiple_of(new_w) && h.is_multiple_of(new_h) {
        return opencv_area_fast(src, w, h, c, w / new_w, h / new_h);
    }
    let (x_taps, y_taps) = (opencv_area_taps(w, new_w), opencv_area_taps(h, new_h));
    let stride = new_w * c;
    let mut out = vec![0u8; stride * new_h];
    let mut row = vec![0f32; stride];
    let mut sum = vec![0f32; stride];
    for (dy, taps) in y_taps.iter().enumerate() {
        for (k, &(sy, beta)) in taps.iter().enumerate() {
            // One source row, shrunk horizontally (`buf` in OpenCV).
            row.iter_mut().for_each(|v| *v = 0.0);
            let line = &src[sy * w * c..(sy + 1) * w * c];
            for (dx, xt) in x_taps.iter().enumerate() {
                for &(sx, alpha) in xt {
                    for ch in 0..c {
                        row[dx * c + ch] += f32::from(line[sx * c + ch]) * alpha;
                    }
                }
            }
            for (s, v) in sum.iter_mut().zip(&row) {
                *s = if k == 0 { beta * v } else { *s + beta * v };
            }
        }
        for (o, s) in out[dy * stride..(dy + 1) * stride].iter_mut().zip(&sum) {
            *o = s.round_ties_even().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// OpenCV's `resizeAreaFast`: integer factors, the mean of each block; its
/// vector path for 2×2 rounds half up, the general one half to even.
fn opencv_area_fast(src: &[u8], w: usize, h: usize, c: usize, fx: usize, fy: usize) -> Vec<u8> {
    let (new_w, new_h) = (w / fx, h / fy);
    let area = fx * fy;
    let inverse = 1.0f32 / area as f32;
    let mut out = vec![0u8; new_w * new_h * c];
    for y in 0..new_h {
        for x in 0..new_w {
            for ch in 0..c {
                let mut sum = 0u32;
                for sy in y * fy..(y + 1) * fy {
                    for sx in x * fx..(x + 1) * fx {
                        sum += u32::from(src[(sy * w + sx) * c + ch]);
                    }
                }
                out[(y * new_w + x) * c + ch] = if area == 4 {
                    ((sum + 2) >> 2) as u8
                } else {
                    (sum as f32 * inverse).round_ties_even().clamp(0.0, 255.0) as u8
                };
            }
        }
    }
    out
}

/// OpenCV's `INTER_AREA` taps when enlarging: two-tap linear interpolation
/// with area-specific weights, as (first index, second index, weights in
/// OpenCV's 11-bit fixed point).
fn opencv_area_linear_taps(in_size: usize, out_size: usize) -> Vec<(usize, usize, [i32; 2])> {
    let inv_scale = out_size as f64 / in_size as f64;
    let scale = 1.0 / inv_scale;
    let last = in_size as i64 - 1;
    // INTER_RESIZE_COEF_SCALE.
    let fixed = |v: f32| (v * 2048.0).round_ties_even() as i32;
    (0..out_size)
        .map(|dx| {
            let mut sx = (dx as f64 * scale).floor() as i64;
            // OpenCV keeps this weight in single precision.
            let mut fx = ((dx + 1) as f64 - (sx + 1) as f64 * inv_scale) as f32;
            fx = if fx <= 0.0 { 0.0 } else { fx - fx.floor() };
            if sx < 0 {
                (fx, sx) = (0.0, 0);
            }
            if sx >= last {
                (fx, sx) = (0.0, last);
            }
            let next = (sx + 1).min(last) as usize;
            (sx as usize, next, [fixed(1.0 - fx), fixed(fx)])
        })
        .collect()
}

/// OpenCV's 8-bit linear resize (`HResizeLinear` into `int` rows, then
/// `VResizeLinearVec_32s8u`: rows shifted right by 4, multiplied keeping the
/// high 16 bits, summed and rounded with a shift by 2).
fn opencv_area_linear(
    src: &[u8],
    w: usize,
    h: usize,
    c: usize,
    new_w: usize,
    new_h: usize,
) -> Vec<u8> {
    let x_taps = opencv_area_linear_taps(w, new_w);
    let y_taps = opencv_area_linear_taps(h, new_h);
    let stride = new_w * c;
    let mut rows = vec![0i32; stride * h];
    for y in 0..h {
        let line = &src[y * w * c..(y + 1) * w * c];
        for (x, &(s0, s1, [a0, a1])) in x_taps.iter().enumerate() {
            for ch in 0..c {
                rows[y * stride + x * c + ch] =
                    i32::from(line[s0 * c + ch]) * a0 + i32::from(line[s1 * c + ch]) * a1;
            }
        }
    }
    let mut out = vec![0u8; stride * new_h];
    for (y, &(s0, s1, [b0, b1])) in y_taps.iter().enumerate() {
        for i in 0..stride {
            let high = |row: usize, beta: i32| ((rows[row * stride + i] >> 4) * beta) >> 16;
            let v = (high(s0, b0) + high(s1, b1) + 2) >> 2;
            out[y * stride + i] = v.clamp(0, 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_mlperf_shaped() {
        for p in [
            ImagePreprocess::mlperf_resnet50_pytorch(),
            ImagePreprocess::mlperf_resnet50_onnx(),
            ImagePreprocess::unscaled(8, ColorMode::Luma),
        ] {
            p.validate().unwrap();
        }
        assert_eq!(
            ImagePreprocess::mlperf_resnet50_pytorch().shape(),
            (3, 224, 224)
        );
    }

    #[test]
    fn bad_parameters_are_refused() {
        let mut p = ImagePreprocess::mlperf_resnet50_pytorch();
        p.crop_px = 300;
        assert!(p.validate().unwrap_err().to_string().contains("larger"));
        let mut p = ImagePreprocess::mlperf_resnet50_pytorch();
        p.mean.pop();
        assert!(p.validate().unwrap_err().to_string().contains("3 means"));
        let mut p = ImagePreprocess::unscaled(8, ColorMode::Luma);
        p.std[0] = 0.0;
        assert!(p.validate().is_err());
    }

    #[test]
    fn resize_keeps_aspect_and_truncates_the_long_side() {
        let p = ImagePreprocess::mlperf_resnet50_pytorch();
        // ImageNet's typical 500×375 landscape: int(256 * 500 / 375) = 341.
        assert_eq!(p.resized_size(500, 375), (341, 256));
        assert_eq!(p.resized_size(375, 500), (256, 341));
        assert_eq!(p.resized_size(300, 300), (256, 256));
    }

    #[test]
    fn crop_offsets_follow_each_reference() {
        let torch = ImagePreprocess::mlperf_resnet50_pytorch();
        let cv = ImagePreprocess::mlperf_resnet50_onnx();
        // 259 - 224 = 35: torchvision rounds 17.5 to 18, MLPerf's crop truncates to 17.
        assert_eq!(torch.crop_offset(259), 18);
        assert_eq!(cv.crop_offset(259), 17);
        // 16.5 rounds half to even: 16.
        assert_eq!(torch.crop_offset(257), 16);
    }

    #[test]
    fn pillow_bilinear_shrink_by_hand() {
        // 4 → 2: scale 2, support 2. Output 0 is centred at 1.0 and weighs
        // inputs 0, 1, 2 by triangle(-0.25), triangle(0.25), triangle(0.75)
        // = 0.75, 0.75, 0.25 (normalised: 3/7, 3/7, 1/7); output 1 weighs
        // inputs 1, 2, 3 by 1/7, 3/7, 3/7.
        // (0·3 + 70·3 + 140) / 7 = 50 and (70 + 140·3 + 210·3) / 7 = 160.
        let out = pil_bilinear(&[0, 70, 140, 210], 4, 1, 1, 2, 1);
        assert_eq!(out, vec![50, 160]);
    }

    #[test]
    fn opencv_area_shrink_by_hand() {
        // 3 → 2: each output covers 1.5 inputs: (3·1 + 6·0.5) / 1.5 = 4 and
        // (6·0.5 + 9·1) / 1.5 = 8.
        let out = opencv_area(&[3, 6, 9], 3, 1, 1, 2, 1);
        assert_eq!(out, vec![4, 8]);
        // Integer factor: plain 2×2 block means, (10+20+30+40)/4 = 25.
        let out = opencv_area(&[10, 20, 30, 40], 2, 2, 1, 1, 1);
        assert_eq!(out, vec![25]);
    }

    #[test]
    fn normalisation_by_hand() {
        // A 2×2 RGB image already at size: only (x/255 - mean) / std.
        let mut p = ImagePreprocess::mlperf_resnet50_pytorch();
        p.resize_shorter_px = 2;
        p.crop_px = 2;
        let pixels = [
            255, 0, 0, 0, 255, 0, //
            0, 0, 255, 128, 128, 128,
        ];
        let out = p.apply_pixels(&pixels, 2, 2);
        assert_eq!(out.len(), 12);
        // Red plane, pixel (0,0): (1 - 0.485) / 0.229 = 2.2489083.
        assert!((out[0] - 2.248_908_3).abs() < 1e-6, "{}", out[0]);
        // Red plane, pixel (0,1): (0 - 0.485) / 0.229 = -2.1179039.
        assert!((out[1] + 2.117_904).abs() < 1e-6, "{}", out[1]);
        // Blue plane, pixel (1,1): (128/255 - 0.406) / 0.225 = 0.4264924.
        assert!((out[11] - 0.426_492_4).abs() < 1e-6, "{}", out[11]);
        // The ONNX flavour subtracts means from 0–255 values exactly.
        let mut cv = ImagePreprocess::mlperf_resnet50_onnx();
        cv.resize_shorter_px = 2;
        cv.crop_px = 2;
        let out = cv.apply_pixels(&pixels, 2, 2);
        assert_eq!(out[0], 255.0 - 123.68);
        // Green plane, pixel (0,1).
        assert_eq!(out[5], 255.0 - 116.78);
    }

    #[test]
    fn resize_then_crop_picks_the_centre() {
        // A 4×2 grey ramp, shorter side 2 and crop 2: no resize, the centre
        // two columns of each row.
        let p = ImagePreprocess::unscaled(2, ColorMode::Luma);
        let out = p.apply_pixels(&[0, 51, 102, 153, 0, 51, 102, 153], 4, 2);
        assert_eq!(out, vec![0.2, 0.4, 0.2, 0.4]);
    }
}
