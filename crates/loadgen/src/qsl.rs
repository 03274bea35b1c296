//! The query sample library: the data set the SUT reads samples from.
//!
//! LoadGen asks the QSL to load a set of samples before a run (untimed) and
//! to unload them afterwards, so preprocessing stays off the timed path.

use crate::sut::QuerySampleIndex;

/// Error returned by a QSL that could not load its samples.
pub type QslError = Box<dyn std::error::Error + Send + Sync>;

pub trait QuerySampleLibrary: Send + Sync {
    /// Shown in the logs as `qsl_name`.
    fn name(&self) -> &str;
    /// Every sample the library has (the accuracy run uses all of them).
    fn total_sample_count(&self) -> usize;
    /// How many samples fit in memory at once (the performance set).
    fn performance_sample_count(&self) -> usize;
    fn load_samples_to_ram(&self, samples: &[QuerySampleIndex]) -> Result<(), QslError>;
    fn unload_samples_from_ram(&self, samples: &[QuerySampleIndex]);
}
