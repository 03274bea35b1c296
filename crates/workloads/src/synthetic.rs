//! A query sample library with no data behind it: the harness SUTs need
//! only sample indices. It remembers what was loaded, so tests can check
//! that the load generator loads and unloads what it says.

use loadgen::{QuerySampleIndex, QuerySampleLibrary};
use std::sync::Mutex;

pub struct SyntheticQsl {
    total: usize,
    performance: usize,
    loaded: Mutex<Vec<QuerySampleIndex>>,
}

impl SyntheticQsl {
    pub fn new(total: usize, performance: usize) -> SyntheticQsl {
        SyntheticQsl {
            total,
            performance: performance.min(total),
            loaded: Mutex::new(Vec::new()),
        }
    }

    /// Samples currently loaded.
    pub fn loaded(&self) -> Vec<QuerySampleIndex> {
        self.loaded.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl QuerySampleLibrary for SyntheticQsl {
    fn name(&self) -> &str {
        "joulebench-synthetic"
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
        if let Some(bad) = samples.iter().find(|&&s| s >= self.total) {
            return Err(format!(
                "sample index {bad} is outside the library (size {})",
                self.total
            )
            .into());
        }
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.extend_from_slice(samples);
        }
        Ok(())
    }

    fn unload_samples_from_ram(&self, samples: &[QuerySampleIndex]) {
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.retain(|s| !samples.contains(s));
        }
    }
}
