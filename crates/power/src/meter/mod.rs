//! The meter contract: one trait, many sources (one file each).
//!
//! A meter says what it measures ([`MeterInfo`]), and each [`Meter::read`]
//! returns one [`Reading`]. The sampler owns the clock: meters never timestamp
//! their own readings, except remote ones (PTDaemon) whose clock offset is
//! measured and reported separately.

pub mod estimate;
mod http_error;
pub mod hwmon;
pub mod ipmi;
pub mod nvml;
pub mod prom;
pub mod ptd;
pub mod rapl;
pub mod redfish;
pub mod replay;

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What kind of quantity a meter yields. Energy is never guessed from power
/// (or the reverse) silently: the integration step chooses by this kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadingKind {
    /// A monotonically increasing energy counter (RAPL `energy_uj`, NVML total
    /// energy). Energy over a window is the difference, wrap-around included.
    EnergyCounter,
    /// Instantaneous or short-averaged power (hwmon, IPMI, PTDaemon, NVML power).
    /// Energy over a window is the trapezoidal integral.
    PowerSample,
}

/// Where a figure comes from. Measured and estimated figures are never summed
/// into one total without saying so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    Measured,
    Estimated,
}

/// The physical scope a meter covers, used to avoid double counting
/// (a `node` meter already contains `gpu0` and `package-0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The whole node at the wall or at the PSU (IPMI, Redfish, PTDaemon).
    Node,
    /// A CPU package (RAPL package domain, hwmon CPU sensor).
    CpuPackage,
    /// A sub-domain of a package (RAPL core, uncore, dram).
    CpuSubdomain,
    /// DRAM (RAPL dram domain when it is a top-level domain).
    Dram,
    /// An accelerator (NVML GPU).
    Gpu,
    /// Anything else (a hwmon sensor of unknown placement).
    Other,
}

/// Static description of a meter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterInfo {
    /// Unique, file-name safe id, e.g. `rapl-package-0`, `nvml-gpu0`, `ptd`.
    /// Used for `power/<id>.csv`.
    pub id: String,
    /// The source family: `nvml`, `rapl`, `hwmon`, `ipmi`, `redfish`, `ptd`,
    /// `prom`, `replay`, `estimate`.
    pub source: String,
    /// The device or domain measured, as users say it: `gpu0`, `package-0`,
    /// `dram-0`, `node`, `wall`.
    pub domain: String,
    pub scope: Scope,
    pub kind: ReadingKind,
    pub provenance: Provenance,
    /// Smallest step the source can report, in its quantity's SI unit
    /// (joules for counters, watts for power samples).
    pub resolution: f64,
    /// How often the source itself refreshes; sampling faster only repeats values.
    pub update_period: Duration,
    /// Ids of meters whose domain lies inside this one (a package contains its
    /// core domain). Filled by discovery where known.
    pub contains: Vec<String>,
}

/// One reading, without a timestamp (the sampler adds it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reading {
    /// Counter value in microjoules. `wrap_uj` is the value at which the
    /// counter wraps to zero (RAPL `max_energy_range_uj`), if it can wrap.
    Energy {
        counter_uj: u64,
        wrap_uj: Option<u64>,
    },
    /// Power in watts; the electrical extras are filled by analyzers that
    /// report them (PTDaemon), `None` elsewhere.
    Power {
        watts: f64,
        volts: Option<f64>,
        amps: Option<f64>,
        power_factor: Option<f64>,
    },
}

impl Reading {
    /// A plain power reading with no electrical extras.
    pub fn watts(watts: f64) -> Self {
        Reading::Power {
            watts,
            volts: None,
            amps: None,
            power_factor: None,
        }
    }
}

/// Why a meter could not be opened or read. The message says what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MeterError {
    /// The device or interface is absent on this machine.
    #[error("{meter}: not present: {reason}")]
    NotPresent { meter: String, reason: String },
    /// Present but not readable by this user; `remedy` says how to grant access.
    #[error("{meter}: permission denied: {reason}; {remedy}")]
    Permission {
        meter: String,
        reason: String,
        remedy: String,
    },
    /// A run-time library (e.g. libnvidia-ml.so.1) could not be loaded.
    #[error("{meter}: library unavailable: {reason}")]
    Library { meter: String, reason: String },
    /// A read failed (I/O error, malformed value, protocol error, timeout).
    #[error("{meter}: read failed: {reason}")]
    Read { meter: String, reason: String },
    /// Bad configuration given by the user (address, credentials, file).
    #[error("{meter}: {reason}")]
    Config { meter: String, reason: String },
}

/// One power or energy source.
///
/// `read` is called from the meter's own sampling thread; it may block for at
/// most about one update period. Implementations keep whatever handle they need
/// (an open file, a socket, a library handle) between reads.
pub trait Meter: Send {
    fn info(&self) -> &MeterInfo;
    fn read(&mut self) -> Result<Reading, MeterError>;
}

/// The result of probing for one kind of meter: what was found, and for what
/// was not usable, why and what to do (shown by `joulebench power list`).
pub enum Probe {
    Usable(Box<dyn Meter>),
    Unusable {
        source: String,
        domain: String,
        error: MeterError,
    },
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Usable(m) => f.debug_tuple("Usable").field(&m.info().id).finish(),
            Probe::Unusable {
                source,
                domain,
                error,
            } => f
                .debug_struct("Unusable")
                .field("source", source)
                .field("domain", domain)
                .field("error", error)
                .finish(),
        }
    }
}
