//! Query sample libraries of preprocessed images, and the interface a
//! classifier SUT reads them through ([`ImageSource`]).
//!
//! Samples are preprocessed when loaded (off the timed path, as MLPerf
//! allows) and kept in memory as f32 CHW tensors. The built-in data set is
//! synthetic: seeded pixels with ImageNet's normalisation, for performance
//! and energy runs; real images come from a folder
//! ([`crate::datasets::image_folder::ImageFolder`]).

use crate::rng::Mt19937;
use crate::vision::INPUT_SIDE;
use candle_core::{Device, Tensor};
use loadgen::{QuerySampleIndex, QuerySampleLibrary};
use std::collections::HashMap;
use std::sync::RwLock;

/// Why loaded samples cannot be handed to a model.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("sample {index} was not loaded")]
    NotLoaded { index: QuerySampleIndex },
    #[error("sample index {index} is outside the library (size {size})")]
    OutOfRange {
        index: QuerySampleIndex,
        size: usize,
    },
    /// A thread panicked while it held the loaded samples.
    #[error("sample store poisoned")]
    Poisoned,
    #[error("a loaded sample is not in host memory")]
    NotOnHost,
    #[error("a loaded sample is not contiguous")]
    NotContiguous,
    #[error("batch buffer of {capacity} values is too small")]
    BufferTooSmall { capacity: usize },
    #[error("batch of {values} values for a buffer of {capacity}")]
    BufferSize { values: usize, capacity: usize },
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// A data set of preprocessed images that a classifier can run on: the
/// synthetic set or a real folder.
pub trait ImageSource: QuerySampleLibrary {
    /// The loaded samples stacked into one `[n, C, H, W]` f32 batch; an
    /// error when a sample was not loaded.
    fn batch(&self, indices: &[QuerySampleIndex]) -> Result<Tensor, SampleError>;
    /// The same batch written into `out` (`indices.len()` samples of
    /// `3 × 224 × 224` f32 each, in order): the GPU path writes straight
    /// into its page-locked staging buffer.
    fn write_batch(&self, indices: &[QuerySampleIndex], out: &mut [f32])
        -> Result<(), SampleError>;
    /// The sample's class, when the data set has labels.
    fn label(&self, index: QuerySampleIndex) -> Option<u32>;
    /// What the data are, for result parameters (e.g. `synthetic images`).
    fn describe(&self) -> String;
}

/// The loaded samples, in the order asked (shared by the image sources).
pub(crate) struct Loaded(RwLock<HashMap<QuerySampleIndex, Tensor>>);

impl Loaded {
    pub(crate) fn new() -> Self {
        Loaded(RwLock::new(HashMap::new()))
    }

    fn with<R>(
        &self,
        indices: &[QuerySampleIndex],
        f: impl FnOnce(&[&Tensor]) -> Result<R, SampleError>,
    ) -> Result<R, SampleError> {
        let loaded = self.0.read().map_err(|_| SampleError::Poisoned)?;
        let images: Vec<&Tensor> = indices
            .iter()
            .map(|&index| loaded.get(&index).ok_or(SampleError::NotLoaded { index }))
            .collect::<Result<_, _>>()?;
        f(&images)
    }

    /// The samples stacked into one `[n, C, H, W]` batch.
    pub(crate) fn stack(&self, indices: &[QuerySampleIndex]) -> Result<Tensor, SampleError> {
        self.with(indices, |images| Ok(Tensor::stack(images, 0)?))
    }

    /// The samples' f32 elements one after another into `out`.
    pub(crate) fn write(
        &self,
        indices: &[QuerySampleIndex],
        out: &mut [f32],
    ) -> Result<(), SampleError> {
        self.with(indices, |images| {
            let mut at = 0;
            for image in images {
                let (storage, layout) = image.storage_and_layout();
                let candle_core::Storage::Cpu(cpu) = &*storage else {
                    return Err(SampleError::NotOnHost);
                };
                let values = cpu.as_slice::<f32>()?;
                let values = layout
                    .contiguous_offsets()
                    .map(|(start, end)| &values[start..end])
                    .ok_or(SampleError::NotContiguous)?;
                let end = at + values.len();
                let capacity = out.len();
                out.get_mut(at..end)
                    .ok_or(SampleError::BufferTooSmall { capacity })?
                    .copy_from_slice(values);
                at = end;
            }
            if at != out.len() {
                return Err(SampleError::BufferSize {
                    values: at,
                    capacity: out.len(),
                });
            }
            Ok(())
        })
    }

    pub(crate) fn insert(&self, made: Vec<(QuerySampleIndex, Tensor)>) -> Result<(), SampleError> {
        let mut loaded = self.0.write().map_err(|_| SampleError::Poisoned)?;
        loaded.extend(made);
        Ok(())
    }

    pub(crate) fn remove(&self, samples: &[QuerySampleIndex]) {
        if let Ok(mut loaded) = self.0.write() {
            for i in samples {
                loaded.remove(i);
            }
        }
    }
}

pub struct SyntheticImages {
    total: usize,
    performance: usize,
    seed: u64,
    loaded: Loaded,
}

impl SyntheticImages {
    pub fn new(total: usize, performance: usize, seed: u64) -> Self {
        SyntheticImages {
            total,
            performance: performance.min(total),
            seed,
            loaded: Loaded::new(),
        }
    }

    /// One image, the same for the same seed and index.
    fn make(&self, index: QuerySampleIndex) -> candle_core::Result<Tensor> {
        let mut rng = Mt19937::new(self.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let n = 3 * INPUT_SIDE * INPUT_SIDE;
        // Pixels in [0, 1) normalised per channel with ImageNet's mean and std.
        let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        let plane = INPUT_SIDE * INPUT_SIDE;
        let pixels: Vec<f32> = (0..n)
            .map(|i| ((rng.canonical() - mean[i / plane]) / std[i / plane]) as f32)
            .collect();
        Tensor::from_vec(pixels, (3, INPUT_SIDE, INPUT_SIDE), &Device::Cpu)
    }

    /// The loaded samples stacked into a `[n, 3, 224, 224]` batch.
    pub fn batch(&self, indices: &[QuerySampleIndex]) -> Result<Tensor, SampleError> {
        self.loaded.stack(indices)
    }
}

impl ImageSource for SyntheticImages {
    fn batch(&self, indices: &[QuerySampleIndex]) -> Result<Tensor, SampleError> {
        self.loaded.stack(indices)
    }
    fn write_batch(
        &self,
        indices: &[QuerySampleIndex],
        out: &mut [f32],
    ) -> Result<(), SampleError> {
        self.loaded.write(indices, out)
    }
    /// Synthetic pixels have no class.
    fn label(&self, _index: QuerySampleIndex) -> Option<u32> {
        None
    }
    fn describe(&self) -> String {
        "synthetic images (seeded), preprocessed at load".into()
    }
}

impl QuerySampleLibrary for SyntheticImages {
    fn name(&self) -> &str {
        "joulebench-synthetic-images"
    }
    fn total_sample_count(&self) -> usize {
        self.total
    }
    fn performance_sample_count(&self) -> usize {
        self.performance
    }
    fn load_samples_to_ram(
        &self,
        samples: &[QuerySampleIndex],
    ) -> Result<(), loadgen::qsl::QslError> {
        let mut made = Vec::with_capacity(samples.len());
        for &i in samples {
            if i >= self.total {
                return Err(SampleError::OutOfRange {
                    index: i,
                    size: self.total,
                }
                .into());
            }
            made.push((i, self.make(i)?));
        }
        Ok(self.loaded.insert(made)?)
    }
    fn unload_samples_from_ram(&self, samples: &[QuerySampleIndex]) {
        self.loaded.remove(samples)
    }
}
