//! An ImageNet-layout folder (`--image-folder`) fed to an ONNX image
//! classifier: `workloads`' folder reader decodes and preprocesses each
//! image as MLPerf's references do (`--image-preprocess`) into f32 CHW
//! 3×224×224, and this source writes it in the layout the model's one input
//! declares: NCHW as it is, NHWC (TensorFlow's exports) transposed.

use crate::model_io::ModelIo;
use crate::samples::SampleSource;
use crate::OrtError;
use loadgen::qsl::QslError;
use loadgen::{QuerySampleIndex, QuerySampleLibrary};
use ort::value::TensorElementType;
use std::sync::Arc;
use workloads::image_qsl::ImageSource;

const SIDE: usize = 224;
const PLANE: usize = SIDE * SIDE;

/// How the model lays out one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// [3, 224, 224]
    Chw,
    /// [224, 224, 3]
    Hwc,
}

pub struct ImageInputs {
    images: Arc<dyn ImageSource>,
    layout: Layout,
}

impl ImageInputs {
    /// Checks that the model takes one f32 image input of 3×224×224 in
    /// either layout.
    pub fn new(images: Arc<dyn ImageSource>, io: &ModelIo) -> Result<ImageInputs, OrtError> {
        let [spec] = io.inputs.as_slice() else {
            return Err(OrtError::Unsupported {
                name: "(model)".into(),
                reason: format!(
                    "--image-folder feeds a model with one image input; this one takes {}",
                    io.inputs.len()
                ),
            });
        };
        let layout = match io.sample_shapes[0].as_slice() {
            [3, SIDE, SIDE] => Layout::Chw,
            [SIDE, SIDE, 3] => Layout::Hwc,
            other => {
                return Err(OrtError::Unsupported {
                    name: spec.name.clone(),
                    reason: format!(
                        "--image-folder gives 3×224×224 images (CHW or HWC); the input takes \
                         {other:?} per sample ({})",
                        spec.describe()
                    ),
                })
            }
        };
        if spec.element != TensorElementType::Float32 {
            return Err(OrtError::Unsupported {
                name: spec.name.clone(),
                reason: format!(
                    "--image-folder gives float32 pixels; the input takes {}",
                    spec.element
                ),
            });
        }
        Ok(ImageInputs { images, layout })
    }
}

impl SampleSource for ImageInputs {
    fn write_input(
        &self,
        indices: &[QuerySampleIndex],
        _input: usize,
        dst: &mut [u8],
    ) -> Result<(), QuerySampleIndex> {
        let mut chw = vec![0f32; indices.len() * 3 * PLANE];
        self.images
            .write_batch(indices, &mut chw)
            .map_err(|_| indices[0])?;
        let floats = dst.chunks_exact_mut(4);
        match self.layout {
            Layout::Chw => {
                for (out, v) in floats.zip(&chw) {
                    out.copy_from_slice(&v.to_le_bytes());
                }
            }
            Layout::Hwc => {
                // Element (n, y, x, c) of the output is (n, c, y, x) of CHW.
                for (k, out) in floats.enumerate() {
                    let (n, rest) = (k / (3 * PLANE), k % (3 * PLANE));
                    let (pixel, c) = (rest / 3, rest % 3);
                    out.copy_from_slice(&chw[n * 3 * PLANE + c * PLANE + pixel].to_le_bytes());
                }
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let layout = match self.layout {
            Layout::Chw => "NCHW",
            Layout::Hwc => "NHWC",
        };
        format!("{} ({layout})", self.images.describe())
    }
}

impl QuerySampleLibrary for ImageInputs {
    fn name(&self) -> &str {
        self.images.name()
    }
    fn total_sample_count(&self) -> usize {
        self.images.total_sample_count()
    }
    fn performance_sample_count(&self) -> usize {
        self.images.performance_sample_count()
    }
    fn load_samples_to_ram(&self, samples: &[QuerySampleIndex]) -> Result<(), QslError> {
        self.images.load_samples_to_ram(samples)
    }
    fn unload_samples_from_ram(&self, samples: &[QuerySampleIndex]) {
        self.images.unload_samples_from_ram(samples)
    }
}
