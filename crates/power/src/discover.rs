//! Finding the meters of this machine, and saying why the others are missing.
//!
//! `joulebench power list` prints every [`Probe`]: the usable meters, and for
//! each source that is present but not usable (RAPL counters readable by root
//! only, no hwmon power sensor, ...) the reason and what to do. The local
//! sources read files, under roots that tests point at a fake tree:
//! `<sysfs>/class/powercap` (RAPL), `<sysfs>/class/hwmon` (hwmon) and
//! `<procfs>/stat` (the estimate, only when the user gives a TDP, since an
//! estimate must be asked for, never slipped in).
//!
//! Remote and library-backed sources (NVML, IPMI, Redfish, PTDaemon) are
//! probed by their own modules and joined here through [`with_extra`], which
//! also keeps meter ids unique (each id names a log file).

use crate::meter::estimate::{self, EstimateConfig};
use crate::meter::{hwmon, rapl, MeterError, Probe};
use std::path::PathBuf;

/// Where the local sources live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// `/sys` on a real machine.
    pub sysfs: PathBuf,
    /// `/proc` on a real machine.
    pub procfs: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Self {
            sysfs: PathBuf::from("/sys"),
            procfs: PathBuf::from("/proc"),
        }
    }
}

/// Probes the local sources: RAPL, hwmon, and the utilisation estimate when
/// `estimate` is given. Every source says something: a meter, or why not.
pub fn discover(roots: &Roots, estimate: Option<EstimateConfig>) -> Vec<Probe> {
    let mut probes = rapl::probe(&roots.sysfs);
    probes.extend(hwmon::probe(&roots.sysfs));
    if let Some(cfg) = estimate {
        probes.push(estimate::probe(&roots.procfs, cfg));
    }
    probes
}

/// Joins the probes of other sources to the local ones.
///
/// ---- Place for the NVML / IPMI / Redfish / PTDaemon probes ----
/// Their modules (`meter::nvml`, `meter::ipmi`, `meter::redfish`,
/// `meter::ptd`) produce `Vec<Probe>`; the CLI passes them here as `extra`.
/// A usable meter whose id is already taken is turned into an unusable probe
/// saying so, rather than silently renamed: two meters writing one log file
/// would corrupt it, and a renamed id would not match the user's config.
pub fn with_extra(local: Vec<Probe>, extra: Vec<Probe>) -> Vec<Probe> {
    let mut out: Vec<Probe> = Vec::with_capacity(local.len() + extra.len());
    for probe in local.into_iter().chain(extra) {
        let clash = match &probe {
            Probe::Usable(m) => out.iter().any(|p| match p {
                Probe::Usable(o) => o.info().id == m.info().id,
                Probe::Unusable { .. } => false,
            }),
            Probe::Unusable { .. } => false,
        };
        if clash {
            if let Probe::Usable(m) = probe {
                let info = m.info();
                out.push(Probe::Unusable {
                    source: info.source.clone(),
                    domain: info.domain.clone(),
                    error: MeterError::Config {
                        meter: info.id.clone(),
                        reason: "another meter already has this id".into(),
                    },
                });
            }
        } else {
            out.push(probe);
        }
    }
    out
}

/// One line of `joulebench power list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeLine {
    /// The meter id, or `-` when none was opened.
    pub id: String,
    pub source: String,
    pub domain: String,
    /// `usable (energy_counter, cpu_package, measured)` or the error, which
    /// includes the remedy where there is one.
    pub status: String,
    pub usable: bool,
}

impl std::fmt::Display for ProbeLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<28} {:<8} {:<20} {}",
            self.id, self.source, self.domain, self.status
        )
    }
}

fn snake<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Describes each probe as one printable line.
pub fn describe(probes: &[Probe]) -> Vec<ProbeLine> {
    probes
        .iter()
        .map(|p| match p {
            Probe::Usable(m) => {
                let i = m.info();
                ProbeLine {
                    id: i.id.clone(),
                    source: i.source.clone(),
                    domain: i.domain.clone(),
                    status: format!(
                        "usable ({}, {}, {})",
                        snake(&i.kind),
                        snake(&i.scope),
                        snake(&i.provenance)
                    ),
                    usable: true,
                }
            }
            Probe::Unusable {
                source,
                domain,
                error,
            } => ProbeLine {
                id: "-".into(),
                source: source.clone(),
                domain: domain.clone(),
                status: format!("not usable: {error}"),
                usable: false,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_machine_says_why_for_each_source() {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots {
            sysfs: dir.path().join("sys"),
            procfs: dir.path().join("proc"),
        };
        let probes = discover(&roots, Some(EstimateConfig::new(65.0)));
        let lines = describe(&probes);
        let sources: Vec<&str> = lines.iter().map(|l| l.source.as_str()).collect();
        assert_eq!(sources, ["rapl", "hwmon", "estimate"]);
        assert!(lines.iter().all(|l| !l.usable));
        assert!(lines[0].status.contains("not present"), "{}", lines[0]);
        // Without a TDP there is no estimate line.
        assert_eq!(discover(&roots, None).len(), 2);
    }

    #[test]
    fn default_roots_are_the_real_ones() {
        let r = Roots::default();
        assert_eq!(r.sysfs, PathBuf::from("/sys"));
        assert_eq!(r.procfs, PathBuf::from("/proc"));
    }
}
