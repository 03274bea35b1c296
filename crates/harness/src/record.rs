//! The power record of a window: each meter's energy, the system total, idle,
//! the efficiency metric where LoadGen counted the work, and where each
//! figure came from.

use crate::efficiency::{efficiency, RunCounts};
use crate::HarnessError;
use power::energy::{self, MeterEnergy, SystemTotal, Window};
use power::sampler::{IdleMeasurement, SamplerReport};
use report::schema::{EfficiencyRecord, IdleRecord, MeterLog};
use std::path::Path;

/// The system total by the default rule, or exactly `ids` when given.
pub fn total_of(meters: &[MeterEnergy], ids: &[String]) -> Result<SystemTotal, HarnessError> {
    Ok(if ids.is_empty() {
        energy::system_total(meters)
    } else {
        energy::chosen_total(meters, ids)?
    })
}

/// Every meter's energy over `window` and their total.
pub fn window_energy(
    report: &SamplerReport,
    window: Window,
    total_ids: &[String],
) -> Result<(Vec<MeterEnergy>, SystemTotal), HarnessError> {
    let meters = report.energy(window)?;
    let total = total_of(&meters, total_ids)?;
    Ok((meters, total))
}

/// The idle power of the meters that make `total` (the measured part).
pub fn idle_total_w(idle: &IdleMeasurement, total: &SystemTotal) -> Option<f64> {
    total.measured.as_ref().map(|part| {
        idle.energies
            .iter()
            .filter(|e| part.meter_ids.contains(&e.meter_id))
            .map(|e| e.avg_w)
            .sum::<f64>()
    })
}

/// Idle power per meter and, for the measured total, the energy above idle
/// over a window of `window_s`.
pub fn idle_record(
    idle: Option<&IdleMeasurement>,
    total: &SystemTotal,
    window_s: f64,
) -> Option<IdleRecord> {
    let m = idle?;
    let total_idle_w = idle_total_w(m, total);
    Some(IdleRecord {
        duration_s: m.window.duration_s(),
        meters: m
            .energies
            .iter()
            .map(|e| (e.meter_id.clone(), e.avg_w))
            .collect(),
        total_idle_w,
        energy_above_idle_j: match (&total.measured, total_idle_w) {
            (Some(part), Some(w)) => Some(part.energy_j - w * window_s),
            _ => None,
        },
    })
}

/// Each meter's log file (relative to `dir`), sample count and faults.
pub fn meter_logs(report: &SamplerReport, dir: &Path) -> Vec<MeterLog> {
    report
        .meters
        .iter()
        .map(|m| MeterLog {
            meter_id: m.info.id.clone(),
            file: m
                .log_path
                .strip_prefix(dir)
                .unwrap_or(&m.log_path)
                .display()
                .to_string(),
            samples: m.samples.len(),
            faults: m.faults.clone(),
        })
        .collect()
}

/// Whether every counted part of the total is complete (no gaps, no errors).
pub fn total_is_complete(total: &SystemTotal) -> bool {
    [&total.measured, &total.estimated]
        .into_iter()
        .flatten()
        .all(|part| part.completeness.is_complete())
}

/// MLPerf's efficiency metric from the total (measured before estimated),
/// when LoadGen counted the work and the total has energy in it.
pub fn efficiency_record(
    total: &SystemTotal,
    counts: Option<RunCounts>,
) -> Result<Option<EfficiencyRecord>, HarnessError> {
    let counted = total.measured.as_ref().or(total.estimated.as_ref());
    Ok(match (counted, counts) {
        (Some(part), Some(counts)) if part.energy_j > 0.0 => {
            let e = efficiency(counts, part.energy_j)?;
            Some(EfficiencyRecord {
                name: e.name().into(),
                value: e.value(),
                provenance: part.provenance,
            })
        }
        _ => None,
    })
}
