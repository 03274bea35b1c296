//! Watts for the virtual analyzer, from any joulebench meter.
//!
//! An analyzer reports the power at the wall; a joulebench meter may report
//! power samples (IPMI, Redfish, hwmon, replay) or energy counters (RAPL,
//! NVML). [`MeterSource`] turns each into watts (counters by difference over
//! the time between reads) and sums the meters that are not inside another
//! selected meter (a package already contains its core domain), so a domain
//! is never counted twice. Volts, amps and power factor are passed through
//! when a meter reports them (only an analyzer does); otherwise the virtual
//! analyzer assumes them, and says so.

use power::energy::{counter_step, CounterStep};
use power::meter::{Meter, MeterError, Reading};
use std::time::Instant;

/// Why a [`PowerSource`] gives no reading, or cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The selection leaves no meter to read (nothing selected, or `--total`
    /// names none of the selected meters).
    #[error("no meter to read: choose one with --power (and --total)")]
    NoMeter,
    /// A meter's read failed; the meter's error names it and says why.
    #[error(transparent)]
    Meter(#[from] MeterError),
}

/// One reading of the total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceReading {
    pub watts: f64,
    pub volts: Option<f64>,
    pub amps: Option<f64>,
    pub power_factor: Option<f64>,
}

/// Anything that gives the wall power now.
pub trait PowerSource: Send {
    /// `Ok(None)` when no value is available yet (an energy counter's first
    /// read); `Err` says what failed.
    fn read(&mut self) -> Result<Option<SourceReading>, SourceError>;
    /// What backs the readings, for `Identify` and the logs (no commas).
    fn describe(&self) -> String;
}

/// A counter's last value and when it was read.
type LastCount = Option<(u64, Instant)>;

/// The sum of the top-level meters of a selection.
pub struct MeterSource {
    meters: Vec<(Box<dyn Meter>, LastCount)>,
}

impl MeterSource {
    /// Keeps the meters not contained in another one of `meters`, or
    /// exactly those named in `total_ids` when given.
    pub fn new(
        meters: Vec<Box<dyn Meter>>,
        total_ids: &[String],
    ) -> Result<MeterSource, SourceError> {
        let contained: Vec<String> = meters
            .iter()
            .flat_map(|m| m.info().contains.clone())
            .collect();
        let chosen: Vec<Box<dyn Meter>> = meters
            .into_iter()
            .filter(|m| {
                if total_ids.is_empty() {
                    !contained.contains(&m.info().id)
                } else {
                    total_ids.contains(&m.info().id)
                }
            })
            .collect();
        if chosen.is_empty() {
            return Err(SourceError::NoMeter);
        }
        Ok(MeterSource {
            meters: chosen.into_iter().map(|m| (m, None)).collect(),
        })
    }
}

impl PowerSource for MeterSource {
    fn read(&mut self) -> Result<Option<SourceReading>, SourceError> {
        let single = self.meters.len() == 1;
        let mut total = 0.0;
        let mut extras = (None, None, None);
        let mut complete = true;
        for (meter, last) in &mut self.meters {
            let now = Instant::now();
            match meter.read()? {
                Reading::Power {
                    watts,
                    volts,
                    amps,
                    power_factor,
                } => {
                    total += watts;
                    if single {
                        extras = (volts, amps, power_factor);
                    }
                }
                Reading::Energy {
                    counter_uj,
                    wrap_uj,
                } => match last.replace((counter_uj, now)) {
                    Some((prev, at)) => {
                        let dt = now.duration_since(at).as_secs_f64();
                        let step = match counter_step(prev, counter_uj, wrap_uj) {
                            CounterStep::Forward(d) | CounterStep::Wrapped(d) => d,
                            CounterStep::Reset => 0,
                        };
                        if dt > 0.0 {
                            total += step as f64 / 1e6 / dt;
                        } else {
                            complete = false;
                        }
                    }
                    None => complete = false,
                },
            }
        }
        Ok(complete.then_some(SourceReading {
            watts: total,
            volts: extras.0,
            amps: extras.1,
            power_factor: extras.2,
        }))
    }

    fn describe(&self) -> String {
        let ids: Vec<String> = self
            .meters
            .iter()
            .map(|(m, _)| format!("{} ({} {})", m.info().id, m.info().source, m.info().domain))
            .collect();
        ids.join(" + ").replace(',', ";")
    }
}
