//! Power and energy for joulebench.
//!
//! A [`meter::Meter`] reads one quantity from one source (an energy counter or a
//! power sample). The sampler (one thread per meter) timestamps every reading on
//! the run's single clock and streams it to `power/<meter>.csv`. Energy over a
//! window is computed afterwards from those samples: counters by difference,
//! power samples by trapezoidal integration. Nothing here knows about the load
//! generator: the caller hands in the window as two instants.

pub mod discover;
pub mod energy;
pub mod log;
pub mod meter;
pub mod prometheus;
pub mod running;
pub mod sampler;
#[cfg(feature = "testing")]
pub mod testing;
