//! Query sample libraries of preprocessed images, and the interface a
//! classifier SUT reads them through ([`ImageSource`]).
//!
//! Samples are preprocessed when loaded (off the timed path, as MLPerf
//! allows) and kept in memory as f32 CHW tensors. The built-in data set is
//! synthetic: seeded pixels with ImageNet's normalisation, for performance
//! and energy runs; real images come from a folder
//! ([`crate::datasets::image_folder::ImageFolder`]).

use crate::vision::INPUT_SIDE;
use candle_core::{Device, Tensor};
use loadgen::rng::Mt19937;
use loadgen::{QuerySampleIndex, QuerySampleLibrary};
use std::collections::HashMap;
use std::sync::RwLock;

/// A data set of preprocessed images that a classifier can run on: the
/// synthetic set or a real folder.
pub trait ImageSource: QuerySampleLibrary {
    /// The loaded samples stacked into one `[n, C, H, W]` f32 batch; an
    /// error when a sample was not loaded.
    fn batch(&self, indices: &[QuerySampleIndex]) -> Result<Tensor, String>;
    /// The sample's class, when the data set has labels.
    fn label(&self, index: QuerySampleIndex) -> Option<u32>;
    /// What the data are, for result parameters (e.g. `synthetic images`).
    fn describe(&self) -> String;
}

/// Stacks loaded samples into a batch (shared by the image sources).
pub(crate) fn stack_loaded(
    loaded: &RwLock<HashMap<QuerySampleIndex, Tensor>>,
    indices: &[QuerySampleIndex],
) -> Result<Tensor, String> {
    let loaded = loaded
        .read()
        .map_err(|_| "sample store poisoned".to_string())?;
    let images: Vec<&Tensor> = indices
        .iter()
        .map(|i| {
            loaded
                .get(i)
                .ok_or_else(|| format!("sample {i} was not loaded"))
        })
        .collect::<Result<_, _>>()?;
    Tensor::stack(&images, 0).map_err(|e| e.to_string())
}

pub struct SyntheticImages {
    total: usize,
    performance: usize,
    seed: u64,
    loaded: RwLock<HashMap<QuerySampleIndex, Tensor>>,
}

impl SyntheticImages {
    pub fn new(total: usize, performance: usize, seed: u64) -> Self {
        SyntheticImages {
            total,
            performance: performance.min(total),
            seed,
            loaded: RwLock::new(HashMap::new()),
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
    pub fn batch(&self, indices: &[QuerySampleIndex]) -> Result<Tensor, String> {
        stack_loaded(&self.loaded, indices)
    }
}

impl ImageSource for SyntheticImages {
    fn batch(&self, indices: &[QuerySampleIndex]) -> Result<Tensor, String> {
        stack_loaded(&self.loaded, indices)
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
                return Err(format!(
                    "sample index {i} is outside the library (size {})",
                    self.total
                )
                .into());
            }
            made.push((i, self.make(i)?));
        }
        let mut loaded = self.loaded.write().map_err(|_| "sample store poisoned")?;
        loaded.extend(made);
        Ok(())
    }
    fn unload_samples_from_ram(&self, samples: &[QuerySampleIndex]) {
        if let Ok(mut loaded) = self.loaded.write() {
            for i in samples {
                loaded.remove(i);
            }
        }
    }
}
