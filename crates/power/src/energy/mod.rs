//! Energy over a window, per meter and for the whole system.
//!
//! This module knows nothing about sampling threads: it takes timestamped
//! samples (from the sampler or read back from a power log) and a window
//! `[begin_ns, end_ns]` on the run's clock, and says how much energy was spent,
//! how sure it is, and why not when it is not (DESIGN.md "Energy, honestly").
//!
//! # Per meter
//!
//! The samples define a piecewise-linear function of time: the watts of a
//! power meter, or the unwrapped cumulative microjoules of a counter. The
//! window edges are linearly interpolated on that function, so a window that
//! starts or ends between two samples gets exactly its share.
//!
//! - **Counters** give energy by difference: `cum(end) - cum(begin)`. A counter
//!   that steps backwards has wrapped if it has a `wrap_uj` and the implied
//!   step (`wrap_uj - prev + cur`) is at most half the range; otherwise it
//!   was reset (driver reload, device reset). The energy of a reset interval
//!   is unknown: it is not counted, it is reported, and the result is marked
//!   incomplete. It is never negative.
//! - **Power samples** give energy by trapezoidal integration.
//!
//! Two consecutive samples further apart than `max_gap_ns` form a *gap*: its
//! energy is still counted (interpolated for power, exact for counters), but
//! the gap is reported, does not count as covered time, and marks the result
//! incomplete. Window time before the first or after the last sample is not
//! extrapolated: it is uncovered and marks the result incomplete.
//!
//! # System total
//!
//! See [`TOTAL_RULE`]: measured and estimated totals are kept apart, a node
//! meter is never summed with what it contains, and sub-domains never count.

mod integrate;
mod total;

pub use integrate::{energy_over_window, gap_limit_ns};
pub use total::{chosen_total, system_total, Excluded, SystemTotal, TotalPart, TOTAL_RULE};

use crate::meter::{Provenance, ReadingKind, Scope};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnergyError {
    #[error("empty window: end {end_ns} ns is not after begin {begin_ns} ns")]
    EmptyWindow { begin_ns: u64, end_ns: u64 },
    #[error(
        "{meter}: sample {index} at {t_ns} ns is earlier than the one before it ({prev_ns} ns)"
    )]
    TimeWentBackwards {
        meter: String,
        index: usize,
        t_ns: u64,
        prev_ns: u64,
    },
    #[error("{meter}: sample {index} is a {found:?} reading, the meter yields {expected:?}")]
    KindMismatch {
        meter: String,
        index: usize,
        expected: ReadingKind,
        found: ReadingKind,
    },
    #[error("{meter}: sample {index} has non-finite power {watts}")]
    NonFinite {
        meter: String,
        index: usize,
        watts: f64,
    },
    #[error("total: no meter '{id}' (meters: {})", known.join(", "))]
    UnknownTotalMeter { id: String, known: Vec<String> },
}

/// A time window on the run's clock, in nanoseconds since the anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub begin_ns: u64,
    pub end_ns: u64,
}

impl Window {
    pub fn new(begin_ns: u64, end_ns: u64) -> Result<Self, EnergyError> {
        if end_ns <= begin_ns {
            return Err(EnergyError::EmptyWindow { begin_ns, end_ns });
        }
        Ok(Self { begin_ns, end_ns })
    }

    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.begin_ns)
    }

    pub fn duration_s(&self) -> f64 {
        self.duration_ns() as f64 * 1e-9
    }
}

/// Two consecutive samples further apart than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub from_ns: u64,
    pub to_ns: u64,
}

impl Gap {
    pub fn duration_s(&self) -> f64 {
        self.to_ns.saturating_sub(self.from_ns) as f64 * 1e-9
    }
}

/// A counter that went backwards without a plausible wrap-around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterReset {
    /// Time of the sample before the reset.
    pub from_ns: u64,
    /// Time of the first sample after it.
    pub to_ns: u64,
    pub before_uj: u64,
    pub after_uj: u64,
}

/// How one counter step is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterStep {
    /// Moved forward by this many microjoules.
    Forward(u64),
    /// Wrapped through `wrap_uj`; the energy spent is this many microjoules.
    Wrapped(u64),
    /// Went backwards with no plausible wrap: the counter was reset.
    Reset,
}

/// Classifies the step of a counter from `prev_uj` to `cur_uj`.
///
/// A backward step is a wrap only when the counter has a `wrap_uj`, `prev_uj`
/// lies within it, and the implied energy is at most half the range; a bigger
/// one would mean the sampler missed most of a full range (hours of RAPL at
/// full load), so a reset is the likelier story.
pub fn counter_step(prev_uj: u64, cur_uj: u64, wrap_uj: Option<u64>) -> CounterStep {
    if cur_uj >= prev_uj {
        return CounterStep::Forward(cur_uj - prev_uj);
    }
    match wrap_uj {
        Some(w) if prev_uj <= w => {
            let d = (w - prev_uj).saturating_add(cur_uj);
            if d <= w / 2 {
                CounterStep::Wrapped(d)
            } else {
                CounterStep::Reset
            }
        }
        _ => CounterStep::Reset,
    }
}

/// Whether a figure can be trusted as the whole story, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Completeness {
    Complete,
    Incomplete { reasons: Vec<String> },
}

impl Completeness {
    fn from_reasons(reasons: Vec<String>) -> Self {
        if reasons.is_empty() {
            Completeness::Complete
        } else {
            Completeness::Incomplete { reasons }
        }
    }

    pub fn is_complete(&self) -> bool {
        matches!(self, Completeness::Complete)
    }

    pub fn reasons(&self) -> &[String] {
        match self {
            Completeness::Complete => &[],
            Completeness::Incomplete { reasons } => reasons,
        }
    }
}

/// Energy of one meter over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterEnergy {
    pub meter_id: String,
    pub source: String,
    pub domain: String,
    pub scope: Scope,
    pub kind: ReadingKind,
    pub provenance: Provenance,
    /// Ids of meters inside this one (copied from [`MeterInfo::contains`]).
    pub contains: Vec<String>,
    pub window: Window,
    pub energy_j: f64,
    /// `energy_j` over the time it was counted over (window time outside
    /// the samples and counter resets excluded).
    pub avg_w: f64,
    /// Samples with a timestamp inside the window (edges included).
    pub samples_in_window: usize,
    /// Window time between two samples no further apart than the gap limit
    /// (and, for counters, not across a reset).
    pub covered_s: f64,
    /// `covered_s` over the window duration, 0 to 1.
    pub coverage: f64,
    /// Gaps overlapping the window.
    pub gaps: Vec<Gap>,
    /// Counter resets overlapping the window (their energy is not counted).
    pub counter_resets: Vec<CounterReset>,
    pub completeness: Completeness,
}

impl MeterEnergy {
    pub fn is_complete(&self) -> bool {
        self.completeness.is_complete()
    }
}
