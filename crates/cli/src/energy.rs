//! Energy of a run: the sampler around the load generator, then energy over
//! exactly LoadGen's timed window (power_begin → power_end) for each meter,
//! the system total and MLPerf's efficiency metric.

use anyhow::{Context, Result};
use power::energy::{self, MeterEnergy, Window};
use power::sampler::{IdleMeasurement, MeterPlan, Sampler, SamplerConfig, SamplerReport};
use report::schema::{PowerRecord, PtdRecord, UnusableMeter};
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
    Ok(harness::record::total_of(meters, ids)?)
}

pub use harness::efficiency::RunCounts;

/// Energy over `window_ns` from the sampler's report; the total by the
/// default rule, or exactly `total_ids` when given.
#[allow(clippy::too_many_arguments)]
pub fn record(
    report: &SamplerReport,
    window_ns: (u64, u64),
    counts: &RunCounts,
    idle: Option<&IdleMeasurement>,
    unusable: Vec<UnusableMeter>,
    interval: Duration,
    result_dir: &Path,
    ptd: Option<PtdRecord>,
    total_ids: &[String],
) -> Result<PowerRecord> {
    use harness::record as r;
    let window = Window::new(window_ns.0, window_ns.1.max(window_ns.0 + 1))?;
    let (meters, total) = r::window_energy(report, window, total_ids)?;
    Ok(PowerRecord {
        interval_s: interval.as_secs_f64(),
        efficiency: r::efficiency_record(&total, Some(*counts))?,
        idle: r::idle_record(idle, &total, window.duration_s()),
        logs: r::meter_logs(report, result_dir),
        complete: r::total_is_complete(&total),
        meters,
        total,
        unusable,
        ptd,
    })
}
