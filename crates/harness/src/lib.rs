//! The measuring harness: one measured session, written once for every front
//! end (`joulebench run`, `train`, `measure`, and next the Python
//! `mlperf_loadgen` module, network SUTs and the Slurm agent).
//!
//! A [`Session`] owns what every measurement shares: the output folder, the
//! meters (chosen and checked before anything starts, [`meters`]), idle power,
//! the sampler on the run's one clock, Ctrl-C and SIGTERM ([`interrupt`]),
//! energy over one or more named windows and the power record
//! ([`record`]). What is measured plugs in as a [`Measurement`] — a LoadGen
//! test ([`inference`]), a command with its phase marks ([`command`],
//! [`child`], [`marks`]), a training campaign (`training::campaign`) — the
//! way criterion's `Measurement` trait makes the thing measured a parameter
//! of a harness written once.

pub mod child;
pub mod command;
pub mod efficiency;
pub mod inference;
pub mod interrupt;
pub mod marks;
pub mod meters;
pub mod output;
pub mod record;
pub mod session;

pub use interrupt::Interrupt;
pub use meters::{PowerOptions, Selection};
pub use session::{Measured, Measurement, Session};

use std::path::PathBuf;

/// What can go wrong in a measured session.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("creating the output folder {}: {source}", path.display())]
    OutputFolder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] atomic_file::AtomicWriteError),
    #[error("serialising {what}: {source}")]
    Serialise {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Meters(#[from] meters::MeterSelectionError),
    #[error("starting the power sampler: {0}")]
    Sampler(#[from] power::sampler::SamplerError),
    #[error("energy over the window: {0}")]
    Energy(#[from] power::energy::EnergyError),
    #[error("efficiency: {0}")]
    Efficiency(#[from] efficiency::EfficiencyError),
    #[error("--idle {0}: must be a positive number of seconds")]
    IdleDuration(f64),
}
