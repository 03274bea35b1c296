//! CPU power *estimated* from utilisation, for machines with no meter.
//!
//! `P = idle_w + (tdp_w - idle_w) × util`, where `util` is the busy share of
//! CPU time between two reads of the aggregate `cpu` line of
//! `<procfs_root>/stat`:
//!
//! - total = user + nice + system + idle + iowait + irq + softirq + steal
//!   (`guest` and `guest_nice` are already inside `user` and `nice`);
//! - busy = total − idle − iowait.
//!
//! The user gives the TDP; the idle power defaults to
//! [`DEFAULT_IDLE_FRACTION`] of it. The linear model is coarse (real CPUs are
//! not linear, turbo exceeds TDP, idle depends on C-states), which is why
//! every figure from this meter is [`Provenance::Estimated`] and never summed
//! with measured ones.
//!
//! `/proc/stat` counts in clock ticks (usually 10 ms), so two reads a few
//! milliseconds apart see no change. The meter recomputes only once at least
//! ten ticks per CPU have passed (about 100 ms, its update period) and
//! repeats its last value in between. Until the first such interval, it uses
//! the utilisation since boot.

use super::{Meter, MeterError, MeterInfo, Probe, Provenance, Reading, ReadingKind, Scope};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SOURCE: &str = "estimate";
const METER_ID: &str = "estimate-cpu";

/// Idle power as a share of TDP when the user does not give it: 0.2, close to
/// the per-vCPU coefficients of the Cloud Carbon Footprint methodology
/// (0.74 W idle vs 3.5 W at full load, a ratio of 0.21).
pub const DEFAULT_IDLE_FRACTION: f64 = 0.2;

/// Ticks per CPU between two estimates (10 ticks = 100 ms at USER_HZ = 100).
const TICKS_PER_CPU: u64 = 10;

/// The model's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimateConfig {
    /// Power at full utilisation, watts (the CPU's TDP).
    pub tdp_w: f64,
    /// Power at zero utilisation, watts; `None` means
    /// `DEFAULT_IDLE_FRACTION × tdp_w`.
    pub idle_w: Option<f64>,
}

impl EstimateConfig {
    pub fn new(tdp_w: f64) -> Self {
        Self {
            tdp_w,
            idle_w: None,
        }
    }

    /// The idle power in effect.
    pub fn effective_idle_w(&self) -> f64 {
        self.idle_w.unwrap_or(DEFAULT_IDLE_FRACTION * self.tdp_w)
    }

    /// The estimate for a utilisation in 0..=1 (clamped).
    pub fn power_w(&self, util: f64) -> f64 {
        let idle = self.effective_idle_w();
        idle + (self.tdp_w - idle) * util.clamp(0.0, 1.0)
    }

    fn validate(&self) -> Result<(), MeterError> {
        let bad = |reason: String| MeterError::Config {
            meter: METER_ID.into(),
            reason,
        };
        if !(self.tdp_w.is_finite() && self.tdp_w > 0.0) {
            return Err(bad(format!(
                "TDP must be a positive number of watts, got {}",
                self.tdp_w
            )));
        }
        let idle = self.effective_idle_w();
        if !(idle.is_finite() && (0.0..=self.tdp_w).contains(&idle)) {
            return Err(bad(format!(
                "idle power must lie between 0 and the TDP ({} W), got {idle} W",
                self.tdp_w
            )));
        }
        Ok(())
    }
}

/// The aggregate CPU times of one `/proc/stat` read, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    total: u64,
    busy: u64,
    cpus: u64,
}

/// Why a `/proc/stat` text gives no CPU times.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum StatError {
    #[error("`{field}` in the `cpu` line is not a tick count")]
    NotTicks { field: String },
    #[error("the `cpu` line has {fields} fields, at least 4 expected")]
    TooFewFields { fields: usize },
    #[error("no aggregate `cpu` line")]
    NoCpuLine,
    #[error("the `cpu` line's tick counts add up past 2^64")]
    TooLarge,
}

fn parse_stat(text: &str) -> Result<CpuTimes, StatError> {
    let mut aggregate = None;
    let mut cpus = 0u64;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        match fields.next() {
            Some("cpu") => {
                let v: Vec<u64> = fields
                    .map(|f| {
                        f.parse::<u64>()
                            .map_err(|_| StatError::NotTicks { field: f.into() })
                    })
                    .collect::<Result<_, _>>()?;
                if v.len() < 4 {
                    return Err(StatError::TooFewFields { fields: v.len() });
                }
                // Hostile counts must not overflow (a panic in debug, a wrong
                // sum in release).
                let total = v
                    .iter()
                    .take(8)
                    .try_fold(0u64, |sum, &t| sum.checked_add(t))
                    .ok_or(StatError::TooLarge)?;
                let idle = v[3]
                    .checked_add(v.get(4).copied().unwrap_or(0))
                    .ok_or(StatError::TooLarge)?;
                aggregate = Some((total, total.saturating_sub(idle)));
            }
            Some(name) if name.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    let (total, busy) = aggregate.ok_or(StatError::NoCpuLine)?;
    Ok(CpuTimes {
        total,
        busy,
        cpus: cpus.max(1),
    })
}

/// CPU power from utilisation × TDP.
#[derive(Debug)]
pub struct EstimateMeter {
    info: MeterInfo,
    config: EstimateConfig,
    stat_path: PathBuf,
    last: CpuTimes,
    current_w: f64,
}

impl EstimateMeter {
    /// Reads `<procfs_root>/stat` once to start from.
    pub fn open(procfs_root: &Path, config: EstimateConfig) -> Result<Self, MeterError> {
        config.validate()?;
        let stat_path = procfs_root.join("stat");
        let first = read_times(&stat_path)?;
        let since_boot = if first.total > 0 {
            first.busy as f64 / first.total as f64
        } else {
            0.0
        };
        let span = config.tdp_w - config.effective_idle_w();
        let info = MeterInfo {
            id: METER_ID.into(),
            source: SOURCE.into(),
            domain: "cpu".into(),
            scope: Scope::CpuPackage,
            kind: ReadingKind::PowerSample,
            provenance: Provenance::Estimated,
            resolution: span / (TICKS_PER_CPU * first.cpus) as f64,
            update_period: Duration::from_millis(100),
            contains: Vec::new(),
        };
        Ok(Self {
            info,
            config,
            stat_path,
            last: first,
            current_w: config.power_w(since_boot),
        })
    }

    pub fn config(&self) -> &EstimateConfig {
        &self.config
    }
}

fn read_times(path: &Path) -> Result<CpuTimes, MeterError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let reason = format!("cannot read {}: {e}", path.display());
        if e.kind() == std::io::ErrorKind::NotFound {
            MeterError::NotPresent {
                meter: METER_ID.into(),
                reason,
            }
        } else {
            MeterError::Read {
                meter: METER_ID.into(),
                reason,
            }
        }
    })?;
    parse_stat(&text).map_err(|e| MeterError::Read {
        meter: METER_ID.into(),
        reason: format!("{}: {e}", path.display()),
    })
}

impl Meter for EstimateMeter {
    fn info(&self) -> &MeterInfo {
        &self.info
    }

    fn read(&mut self) -> Result<Reading, MeterError> {
        let now = read_times(&self.stat_path)?;
        let d_total = now.total.saturating_sub(self.last.total);
        if d_total >= TICKS_PER_CPU * now.cpus {
            // Counters can step back on CPU hot-unplug; clamp rather than trust.
            let d_busy = now.busy.saturating_sub(self.last.busy).min(d_total);
            self.current_w = self.config.power_w(d_busy as f64 / d_total as f64);
            self.last = now;
        } else if now.total < self.last.total {
            self.last = now;
        }
        Ok(Reading::watts(self.current_w))
    }
}

/// Opens the estimate meter, or says why it cannot.
pub fn probe(procfs_root: &Path, config: EstimateConfig) -> Probe {
    match EstimateMeter::open(procfs_root, config) {
        Ok(m) => Probe::Usable(Box::new(m)),
        Err(error) => Probe::Unusable {
            source: SOURCE.into(),
            domain: "cpu".into(),
            error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(user: u64, idle: u64, iowait: u64) -> String {
        format!(
            "cpu  {user} 0 0 {idle} {iowait} 0 0 0 50 0\ncpu0 0 0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0 0 0\nintr 1 2 3\n"
        )
    }

    #[test]
    fn parse_counts_busy_without_guest_and_iowait() {
        let t = parse_stat(&stat(100, 300, 50)).unwrap();
        assert_eq!(t.total, 450); // guest (50) not added again
        assert_eq!(t.busy, 100);
        assert_eq!(t.cpus, 2);
        assert!(parse_stat("intr 1\n").is_err());
        assert!(parse_stat("cpu 1 2 x 4\n").is_err());
        assert!(parse_stat("cpu 1 2\n").is_err());
    }

    #[test]
    fn power_follows_utilisation_and_tdp() {
        let dir = tempfile::tempdir().unwrap();
        let stat_path = dir.path().join("stat");
        std::fs::write(&stat_path, stat(0, 1000, 0)).unwrap();
        let cfg = EstimateConfig {
            tdp_w: 100.0,
            idle_w: Some(20.0),
        };
        let mut m = EstimateMeter::open(dir.path(), cfg).unwrap();
        assert_eq!(m.info().provenance, Provenance::Estimated);
        // Since boot: idle only.
        assert_eq!(m.read().unwrap(), Reading::watts(20.0));
        // +10 busy, +5 idle ticks (< 20 = 10 ticks × 2 CPUs): value repeats.
        std::fs::write(&stat_path, stat(10, 1005, 0)).unwrap();
        assert_eq!(m.read().unwrap(), Reading::watts(20.0));
        // +30 busy, +10 idle since the last estimate: 75 % busy.
        std::fs::write(&stat_path, stat(30, 1010, 0)).unwrap();
        assert_eq!(m.read().unwrap(), Reading::watts(80.0));
        // +10 busy +10 iowait: iowait counts as idle → 50 %.
        std::fs::write(&stat_path, stat(40, 1010, 10)).unwrap();
        assert_eq!(m.read().unwrap(), Reading::watts(60.0));
    }

    #[test]
    fn default_idle_and_bad_config() {
        let c = EstimateConfig::new(150.0);
        assert_eq!(c.effective_idle_w(), 30.0);
        assert_eq!(c.power_w(1.0), 150.0);
        assert_eq!(c.power_w(2.0), 150.0);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stat"), stat(0, 1, 0)).unwrap();
        for bad in [
            EstimateConfig::new(0.0),
            EstimateConfig::new(f64::NAN),
            EstimateConfig {
                tdp_w: 100.0,
                idle_w: Some(120.0),
            },
        ] {
            assert!(matches!(
                EstimateMeter::open(dir.path(), bad),
                Err(MeterError::Config { .. })
            ));
        }
        let missing = tempfile::tempdir().unwrap();
        assert!(matches!(
            probe(missing.path(), c),
            Probe::Unusable {
                error: MeterError::NotPresent { .. },
                ..
            }
        ));
    }
}
