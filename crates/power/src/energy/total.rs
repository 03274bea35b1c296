//! The system total over a window: measured and estimated apart, a node meter
//! never summed with what it contains, sub-domains never counted.

use super::{Completeness, EnergyError, MeterEnergy};
use crate::meter::{Provenance, Scope};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The default rule for the system total, printable as is.
pub const TOTAL_RULE: &str = "\
System total (measured and estimated figures are totalled separately, never mixed):
  1. If a node meter exists (scope `node`: wall analyzer, BMC, PSU), the total is that
     meter alone (the first listed if several); everything else is inside it.
  2. Otherwise the total is the sum of the top-level domains: CPU packages, DRAM and GPUs.
     Sub-domains (RAPL core, uncore) are never added: their package already holds them.
     RAPL DRAM counts as top-level even where powercap lists it under a package,
     because the package counter does not include DRAM.
  3. Meters of unknown placement (scope `other`: RAPL psys, most hwmon sensors) are
     not added: they may overlap what is already counted.
  4. A meter listed in the `contains` of a counted meter is never added again.";

/// One of the two totals (measured or estimated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotalPart {
    pub provenance: Provenance,
    pub energy_j: f64,
    /// Sum of the counted meters' average power.
    pub avg_w: f64,
    /// The meters added up, in order.
    pub meter_ids: Vec<String>,
    pub completeness: Completeness,
}

/// A meter left out of the total, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    pub meter_id: String,
    pub reason: String,
}

/// The system total under [`TOTAL_RULE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemTotal {
    pub measured: Option<TotalPart>,
    pub estimated: Option<TotalPart>,
    pub excluded: Vec<Excluded>,
    pub rule: String,
}

/// The total the user chose: exactly the meters in `ids` (measured and
/// estimated still kept apart). For machines where the default rule does not
/// know the layout, e.g. a PDU outlet meter that feeds only the GPUs.
pub fn chosen_total(meters: &[MeterEnergy], ids: &[String]) -> Result<SystemTotal, EnergyError> {
    for id in ids {
        if !meters.iter().any(|m| &m.meter_id == id) {
            return Err(EnergyError::UnknownTotalMeter {
                id: id.clone(),
                known: meters.iter().map(|m| m.meter_id.clone()).collect(),
            });
        }
    }
    let part = |provenance: Provenance| {
        let chosen: Vec<&MeterEnergy> = meters
            .iter()
            .filter(|m| m.provenance == provenance && ids.contains(&m.meter_id))
            .collect();
        if chosen.is_empty() {
            return None;
        }
        let reasons: Vec<String> = chosen
            .iter()
            .flat_map(|m| {
                m.completeness
                    .reasons()
                    .iter()
                    .map(move |r| format!("{}: {r}", m.meter_id))
            })
            .collect();
        Some(TotalPart {
            provenance,
            energy_j: chosen.iter().map(|m| m.energy_j).sum(),
            avg_w: chosen.iter().map(|m| m.avg_w).sum(),
            meter_ids: chosen.iter().map(|m| m.meter_id.clone()).collect(),
            completeness: Completeness::from_reasons(reasons),
        })
    };
    Ok(SystemTotal {
        measured: part(Provenance::Measured),
        estimated: part(Provenance::Estimated),
        excluded: meters
            .iter()
            .filter(|m| !ids.contains(&m.meter_id))
            .map(|m| Excluded {
                meter_id: m.meter_id.clone(),
                reason: "not named in --total".into(),
            })
            .collect(),
        rule: format!("chosen by the user (--total): {}", ids.join(" + ")),
    })
}

/// Totals `meters` under [`TOTAL_RULE`].
pub fn system_total(meters: &[MeterEnergy]) -> SystemTotal {
    let mut excluded = Vec::new();
    let measured = total_for(meters, Provenance::Measured, &mut excluded);
    let estimated = total_for(meters, Provenance::Estimated, &mut excluded);
    SystemTotal {
        measured,
        estimated,
        excluded,
        rule: TOTAL_RULE.to_string(),
    }
}

fn total_for(
    meters: &[MeterEnergy],
    provenance: Provenance,
    excluded: &mut Vec<Excluded>,
) -> Option<TotalPart> {
    let mine: Vec<&MeterEnergy> = meters
        .iter()
        .filter(|m| m.provenance == provenance)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let mut counted: Vec<&MeterEnergy> = Vec::new();
    if let Some(node) = mine.iter().find(|m| m.scope == Scope::Node) {
        counted.push(node);
        for m in &mine {
            if m.meter_id != node.meter_id {
                let why = if m.scope == Scope::Node {
                    format!("another node meter ({}) is already counted", node.meter_id)
                } else {
                    format!("inside the node meter {}", node.meter_id)
                };
                excluded.push(Excluded {
                    meter_id: m.meter_id.clone(),
                    reason: why,
                });
            }
        }
    } else {
        let top_level =
            |m: &&MeterEnergy| matches!(m.scope, Scope::CpuPackage | Scope::Dram | Scope::Gpu);
        let candidates: Vec<&MeterEnergy> = mine.iter().copied().filter(top_level).collect();
        for m in &mine {
            match m.scope {
                Scope::CpuPackage | Scope::Dram | Scope::Gpu => {
                    if let Some(holder) = candidates
                        .iter()
                        .find(|c| c.meter_id != m.meter_id && c.contains.contains(&m.meter_id))
                    {
                        excluded.push(Excluded {
                            meter_id: m.meter_id.clone(),
                            reason: format!("contained in {}", holder.meter_id),
                        });
                    } else {
                        counted.push(m);
                    }
                }
                Scope::CpuSubdomain => excluded.push(Excluded {
                    meter_id: m.meter_id.clone(),
                    reason: "sub-domain: its package already holds it".into(),
                }),
                Scope::Other => excluded.push(Excluded {
                    meter_id: m.meter_id.clone(),
                    reason: "unknown placement (scope other): may overlap counted meters".into(),
                }),
                Scope::Node => {}
            }
        }
    }
    let mut reasons = Vec::new();
    for m in &counted {
        for r in m.completeness.reasons() {
            reasons.push(format!("{}: {r}", m.meter_id));
        }
    }
    if counted.is_empty() {
        reasons.push("no meter qualifies for the total".into());
    }
    Some(TotalPart {
        provenance,
        energy_j: counted.iter().map(|m| m.energy_j).sum(),
        avg_w: counted.iter().map(|m| m.avg_w).sum(),
        meter_ids: counted.iter().map(|m| m.meter_id.clone()).collect(),
        completeness: Completeness::from_reasons(reasons),
    })
}

impl fmt::Display for SystemTotal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (label, part) in [("measured", &self.measured), ("estimated", &self.estimated)] {
            if let Some(p) = part {
                write!(
                    f,
                    "{label} total: {:.3} J, {:.3} W avg = {}",
                    p.energy_j,
                    p.avg_w,
                    if p.meter_ids.is_empty() {
                        "(none)".to_string()
                    } else {
                        p.meter_ids.join(" + ")
                    }
                )?;
                match &p.completeness {
                    Completeness::Complete => writeln!(f)?,
                    Completeness::Incomplete { reasons } => {
                        writeln!(f, "  [incomplete]")?;
                        for r in reasons {
                            writeln!(f, "    - {r}")?;
                        }
                    }
                }
            }
        }
        for e in &self.excluded {
            writeln!(f, "not added: {} ({})", e.meter_id, e.reason)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::Window;
    use crate::meter::{Provenance, ReadingKind, Scope};

    const S: u64 = 1_000_000_000;

    fn me(id: &str, scope: Scope, prov: Provenance, j: f64, contains: &[&str]) -> MeterEnergy {
        MeterEnergy {
            meter_id: id.into(),
            source: "t".into(),
            domain: id.into(),
            scope,
            kind: ReadingKind::PowerSample,
            provenance: prov,
            contains: contains.iter().map(|s| s.to_string()).collect(),
            window: Window {
                begin_ns: 0,
                end_ns: S,
            },
            energy_j: j,
            avg_w: j,
            samples_in_window: 2,
            covered_s: 1.0,
            coverage: 1.0,
            gaps: vec![],
            counter_resets: vec![],
            completeness: Completeness::Complete,
        }
    }

    #[test]
    fn a_chosen_total_sums_exactly_the_named_meters() {
        use Provenance::*;
        let meters = [
            me("ipmi", Scope::Node, Measured, 1000.0, &[]),
            me("nvml-gpu0", Scope::Gpu, Measured, 300.0, &[]),
            me("rapl-package-0", Scope::CpuPackage, Measured, 100.0, &[]),
        ];
        let ids = vec!["nvml-gpu0".to_string(), "rapl-package-0".to_string()];
        let t = chosen_total(&meters, &ids).unwrap();
        let m = t.measured.unwrap();
        assert_eq!(m.meter_ids, ids);
        assert!((m.energy_j - 400.0).abs() < 1e-9);
        assert_eq!(t.excluded.len(), 1);
        assert!(t.rule.contains("--total"));
        let err = chosen_total(&meters, &["gpu9".to_string()]).unwrap_err();
        assert!(err.to_string().contains("no meter 'gpu9'"), "{err}");
    }

    #[test]
    fn several_readings_of_one_gpu_count_once() {
        // NVML's shape on an H100: the counter meter lists the other
        // whole-GPU readings and the memory meter as inside it. Figures are
        // those measured on the device machine (bench/gpu_energy_check.sh).
        use Provenance::*;
        let t = system_total(&[
            me(
                "nvml-gpu0",
                Scope::Gpu,
                Measured,
                9740.1,
                &[
                    "nvml-gpu0-memory-power",
                    "nvml-gpu0-power",
                    "nvml-gpu0-power-instant",
                    "nvml-gpu0-power-average",
                ],
            ),
            me(
                "nvml-gpu0-power",
                Scope::Gpu,
                Measured,
                9745.0,
                &["nvml-gpu0-memory-power"],
            ),
            me(
                "nvml-gpu0-power-instant",
                Scope::Gpu,
                Measured,
                9713.0,
                &["nvml-gpu0-memory-power"],
            ),
            me(
                "nvml-gpu0-power-average",
                Scope::Gpu,
                Measured,
                9744.9,
                &["nvml-gpu0-memory-power"],
            ),
            me("nvml-gpu0-memory-power", Scope::Gpu, Measured, 2080.0, &[]),
        ]);
        let measured = t.measured.unwrap();
        assert_eq!(measured.meter_ids, vec!["nvml-gpu0".to_string()]);
        assert!((measured.energy_j - 9740.1).abs() < 1e-9);
        assert_eq!(t.excluded.len(), 4);
    }

    #[test]
    fn total_sums_top_level_domains_only() {
        use Provenance::*;
        let t = system_total(&[
            me(
                "rapl-package-0",
                Scope::CpuPackage,
                Measured,
                100.0,
                &["rapl-core-0"],
            ),
            me("rapl-core-0", Scope::CpuSubdomain, Measured, 60.0, &[]),
            me("rapl-dram-0", Scope::Dram, Measured, 10.0, &[]),
            me("nvml-gpu0", Scope::Gpu, Measured, 300.0, &[]),
            me(
                "rapl-psys",
                Scope::Other,
                Measured,
                500.0,
                &["rapl-package-0"],
            ),
            me("estimate-cpu", Scope::CpuPackage, Estimated, 90.0, &[]),
        ]);
        let m = t.measured.as_ref().unwrap();
        assert_eq!(m.energy_j, 410.0);
        assert_eq!(m.meter_ids, ["rapl-package-0", "rapl-dram-0", "nvml-gpu0"]);
        let est = t.estimated.as_ref().unwrap();
        assert_eq!(est.energy_j, 90.0);
        assert_eq!(t.excluded.len(), 2);
        let text = t.to_string();
        assert!(text.contains("measured total: 410.000 J"), "{text}");
        assert!(text.contains("not added: rapl-core-0"), "{text}");
        assert!(t.rule.contains("node meter"));
    }

    #[test]
    fn node_meter_is_the_total_and_nothing_is_double_counted() {
        use Provenance::*;
        let mut gpu = me("nvml-gpu0", Scope::Gpu, Measured, 300.0, &[]);
        gpu.completeness = Completeness::Incomplete {
            reasons: vec!["gap".into()],
        };
        let t = system_total(&[
            gpu,
            me("ptd", Scope::Node, Measured, 700.0, &[]),
            me("ipmi", Scope::Node, Measured, 710.0, &[]),
        ]);
        let m = t.measured.unwrap();
        assert_eq!(m.energy_j, 700.0);
        assert_eq!(m.meter_ids, ["ptd"]);
        assert!(m.completeness.is_complete()); // the gpu's gap is not in the node total
        assert!(t.estimated.is_none());
        assert_eq!(t.excluded.len(), 2);
    }
}
