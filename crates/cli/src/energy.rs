//! Energy of a run: the sampler around the load generator, then energy over
//! exactly LoadGen's timed window (power_begin → power_end) for each meter,
//! the system total and MLPerf's efficiency metric.

use anyhow::{Context, Result};
use power::energy::{self, Efficiency, MeterEnergy, Window};
use power::meter::Provenance;
use power::sampler::{IdleMeasurement, MeterPlan, Sampler, SamplerConfig, SamplerReport};
use report::schema::{
    EfficiencyRecord, IdleRecord, MeterLog, PowerRecord, PtdRecord, UnusableMeter,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// Starts sampling into `<dir>/power/`.
pub fn start(dir: &Path, anchor: Instant, plans: Vec<MeterPlan>) -> Result<Sampler> {
    Sampler::start(&SamplerConfig::for_run(dir, anchor), plans)
        .context("starting the power sampler")
}

/// Idle power for `seconds`, logged to `<dir>/power-idle/`; the meters come back.
pub fn measure_idle(
    dir: &Path,
    anchor: Instant,
    plans: Vec<MeterPlan>,
    seconds: f64,
) -> Result<(IdleMeasurement, Vec<MeterPlan>)> {
    let mut config = SamplerConfig::for_run(dir, anchor);
    config.log_dir = dir.join("power-idle");
    power::sampler::measure_idle(&config, plans, Duration::from_secs_f64(seconds))
        .context("measuring idle power")
}

/// The system total by the default rule, or exactly `ids` when given.
pub fn total_of(meters: &[MeterEnergy], ids: &[String]) -> Result<energy::SystemTotal> {
    Ok(if ids.is_empty() {
        energy::system_total(meters)
    } else {
        energy::chosen_total(meters, ids)?
    })
}

/// Idle power per meter and, for the measured total, the energy above idle
/// over a window of `window_s`.
pub fn idle_record(
    idle: Option<&IdleMeasurement>,
    total: &energy::SystemTotal,
    window_s: f64,
) -> Option<IdleRecord> {
    let m = idle?;
    let total_idle_w = total.measured.as_ref().map(|part| {
        m.energies
            .iter()
            .filter(|e| part.meter_ids.contains(&e.meter_id))
            .map(|e| e.avg_w)
            .sum::<f64>()
    });
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

/// What the run measured, for the power record.
pub struct RunCounts<'a> {
    pub scenario: &'a str,
    pub samples: u64,
    pub queries: u64,
}

/// Energy over `window_ns` from the sampler's report; the total by the
/// default rule, or exactly `total_ids` when given.
#[allow(clippy::too_many_arguments)]
pub fn record(
    report: &SamplerReport,
    window_ns: (u64, u64),
    counts: &RunCounts<'_>,
    idle: Option<&IdleMeasurement>,
    unusable: Vec<UnusableMeter>,
    interval: Duration,
    result_dir: &Path,
    ptd: Option<PtdRecord>,
    total_ids: &[String],
) -> Result<PowerRecord> {
    let window = Window::new(window_ns.0, window_ns.1.max(window_ns.0 + 1))?;
    let meters: Vec<MeterEnergy> = report.energy(window)?;
    let total = total_of(&meters, total_ids)?;
    let counted = total.measured.as_ref().or(total.estimated.as_ref());
    let efficiency = match counted {
        Some(part) if part.energy_j > 0.0 => {
            let scenario = counts
                .scenario
                .parse()
                .map_err(|e: power::energy::EnergyError| anyhow::anyhow!(e))?;
            match energy::efficiency(scenario, part.energy_j, counts.samples, counts.queries)? {
                Efficiency::SamplesPerJoule(v) => Some(EfficiencyRecord {
                    name: "samples_per_joule".into(),
                    value: v,
                    provenance: part.provenance,
                }),
                Efficiency::JoulesPerQuery(v) => Some(EfficiencyRecord {
                    name: "joules_per_query".into(),
                    value: v,
                    provenance: part.provenance,
                }),
            }
        }
        _ => None,
    };
    let idle = idle_record(idle, &total, window.duration_s());
    let logs = meter_logs(report, result_dir);
    let complete = [&total.measured, &total.estimated]
        .into_iter()
        .flatten()
        .all(|part| part.completeness.is_complete());
    Ok(PowerRecord {
        interval_s: interval.as_secs_f64(),
        meters,
        logs,
        total,
        efficiency,
        idle,
        unusable,
        ptd,
        complete,
    })
}

/// Lines for the run's text summary.
pub fn summary_lines(record: &PowerRecord) -> Vec<String> {
    let mut lines = Vec::new();
    for m in &record.meters {
        let tag = if m.provenance == Provenance::Estimated {
            " (estimated)"
        } else {
            ""
        };
        let incomplete = if m.completeness.is_complete() {
            String::new()
        } else {
            format!("  INCOMPLETE: {}", m.completeness.reasons().join("; "))
        };
        lines.push(format!(
            "  {:<24} {:>9.2} W {:>12.3} J{tag}{incomplete}",
            m.meter_id, m.avg_w, m.energy_j
        ));
    }
    for (label, part) in [
        ("measured total", &record.total.measured),
        ("estimated total", &record.total.estimated),
    ] {
        if let Some(p) = part {
            lines.push(format!(
                "  {:<24} {:>9.2} W {:>12.3} J  ({})",
                label,
                p.avg_w,
                p.energy_j,
                p.meter_ids.join(" + ")
            ));
        }
    }
    if let Some(e) = &record.efficiency {
        let tag = if e.provenance == Provenance::Estimated {
            " (estimated)"
        } else {
            ""
        };
        match e.name.as_str() {
            "samples_per_joule" => {
                lines.push(format!("  efficiency  {:.3} samples/J{tag}", e.value))
            }
            _ => lines.push(format!("  efficiency  {:.3} mJ/query{tag}", e.value * 1e3)),
        }
    }
    if let Some(idle) = &record.idle {
        if let (Some(w), Some(j)) = (idle.total_idle_w, idle.energy_above_idle_j) {
            lines.push(format!(
                "  idle        {w:.2} W; {j:.3} J above idle in the timed window"
            ));
        }
    }
    lines
}
