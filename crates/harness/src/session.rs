//! One measured session: the output folder, the meters, idle power, the
//! sampler on the run's one clock around whatever is measured, energy over
//! its windows, and the files written atomically.

use crate::efficiency::RunCounts;
use crate::interrupt::Interrupt;
use crate::meters::PowerOptions;
use crate::record;
use crate::HarnessError;
use power::energy::{MeterEnergy, SystemTotal, Window};
use power::meter::ptd::SharedPtdClient;
use power::sampler::{IdleMeasurement, MeterPlan, Sampler, SamplerConfig, SamplerReport};
use report::schema::{PowerRecord, PtdRecord, UnusableMeter};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The session's clock: every timestamp (queries, power samples, phase
/// marks) is nanoseconds since one anchor.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor: Instant,
}

impl Clock {
    pub fn anchor(&self) -> Instant {
        self.anchor
    }

    pub fn now_ns(&self) -> u64 {
        power::sampler::ns_since(self.anchor, Instant::now())
    }
}

/// What a session measures: a LoadGen test, a child process, a training
/// loop. It runs once, with the sampler around it, on the session's clock.
/// Any `FnOnce(&Clock) -> T` is one.
pub trait Measurement {
    type Output;
    fn run(self, clock: &Clock) -> Self::Output;
}

impl<T, F: FnOnce(&Clock) -> T> Measurement for F {
    type Output = T;
    fn run(self, clock: &Clock) -> T {
        self(clock)
    }
}

/// What one measurement gave: its own output and the sampler's report
/// (`None` when no meter is used).
pub struct Measured<T> {
    pub output: T,
    pub report: Option<SamplerReport>,
}

pub struct Session {
    outdir: PathBuf,
    started_at: chrono::DateTime<chrono::Utc>,
    clock: Clock,
    options: PowerOptions,
    /// The meters between measurements (the sampler borrows them while one runs).
    plans: Vec<MeterPlan>,
    unusable: Vec<UnusableMeter>,
    ptd: Option<(SharedPtdClient, String)>,
    idle: Option<IdleMeasurement>,
    interrupt: Interrupt,
}

impl Session {
    /// Chooses and checks the meters (a meter asked for but unreadable stops
    /// here, before any file is written), then creates `outdir` and anchors
    /// the session's clock.
    pub fn open(
        outdir: PathBuf,
        options: &PowerOptions,
        interrupt: Interrupt,
    ) -> Result<Session, HarnessError> {
        if let Some(s) = options.idle_s {
            if !(s.is_finite() && s > 0.0) {
                return Err(HarnessError::IdleDuration(s));
            }
        }
        let selection = options.select()?;
        std::fs::create_dir_all(&outdir).map_err(|source| HarnessError::OutputFolder {
            path: outdir.clone(),
            source,
        })?;
        let unusable = selection.unusable_records();
        Ok(Session {
            outdir,
            started_at: chrono::Utc::now(),
            clock: Clock {
                anchor: Instant::now(),
            },
            plans: options.plans(selection.meters),
            options: options.clone(),
            unusable,
            ptd: selection.ptd,
            idle: None,
            interrupt,
        })
    }

    pub fn outdir(&self) -> &Path {
        &self.outdir
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    pub fn started_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.started_at
    }

    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    pub fn has_meters(&self) -> bool {
        !self.plans.is_empty()
    }

    pub fn options(&self) -> &PowerOptions {
        &self.options
    }

    /// The PTDaemon connection and the analyzer's model, when one is used.
    pub fn ptd(&self) -> Option<&(SharedPtdClient, String)> {
        self.ptd.as_ref()
    }

    pub fn idle(&self) -> Option<&IdleMeasurement> {
        self.idle.as_ref()
    }

    /// The UTC time `ns` after the anchor.
    pub fn utc_at(&self, ns: u64) -> String {
        let offset = chrono::Duration::nanoseconds(i64::try_from(ns).unwrap_or(i64::MAX));
        (self.started_at + offset).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    }

    /// Idle power, when the options ask for it and there are meters, logged
    /// to `<outdir>/power-idle/`; `announce` is told for how long first.
    pub fn measure_idle(&mut self, announce: impl FnOnce(f64)) -> Result<(), HarnessError> {
        let (Some(seconds), true) = (self.options.idle_s, self.has_meters()) else {
            return Ok(());
        };
        announce(seconds);
        let mut config = SamplerConfig::for_run(&self.outdir, self.clock.anchor);
        config.log_dir = self.outdir.join("power-idle");
        let plans = std::mem::take(&mut self.plans);
        let (measured, plans) =
            power::sampler::measure_idle(&config, plans, Duration::from_secs_f64(seconds))?;
        self.plans = plans;
        self.idle = Some(measured);
        Ok(())
    }

    /// Runs `what` with every meter sampled into `<dir>/power/`. The sampler
    /// stops (its logs closed) whatever `what` returns; the meters stay with
    /// the session for the next measurement.
    pub fn measure<M: Measurement>(
        &mut self,
        dir: &Path,
        what: M,
    ) -> Result<Measured<M::Output>, HarnessError> {
        let sampler = match self.has_meters() {
            true => Some(Sampler::start(
                &SamplerConfig::for_run(dir, self.clock.anchor),
                std::mem::take(&mut self.plans),
            )?),
            false => None,
        };
        let output = what.run(&self.clock);
        let report = sampler.map(|s| {
            let (report, plans) = s.stop_and_keep_meters();
            self.plans = plans;
            report
        });
        Ok(Measured { output, report })
    }

    /// Every meter's energy over `window` and the system total.
    pub fn window_energy(
        &self,
        report: &SamplerReport,
        window: Window,
    ) -> Result<(Vec<MeterEnergy>, SystemTotal), HarnessError> {
        record::window_energy(report, window, &self.options.total)
    }

    /// Each phase's energy (without meters: the phases' times alone), with
    /// the energy above `idle_total_w` where it is known.
    pub fn phase_records(
        &self,
        report: Option<&SamplerReport>,
        spans: &[report::phases::PhaseSpan],
        idle_total_w: Option<f64>,
    ) -> Result<Vec<report::schema::PhaseRecord>, HarnessError> {
        spans
            .iter()
            .map(|span| {
                let (meters, total) = match report {
                    Some(r) => {
                        let end_ns = span.end_ns.max(span.begin_ns + 1);
                        self.window_energy(r, Window::new(span.begin_ns, end_ns)?)?
                    }
                    None => (Vec::new(), power::energy::system_total(&[])),
                };
                Ok(report::phases::record(span, meters, total, idle_total_w))
            })
            .collect()
    }

    /// The idle power of the meters that make the total over `window`.
    pub fn idle_total_w(&self, report: &SamplerReport, window: Window) -> Option<f64> {
        let (_, total) = self.window_energy(report, window).ok()?;
        record::idle_total_w(self.idle.as_ref()?, &total)
    }

    /// The power record of `window`: each meter, the total, idle, and the
    /// efficiency metric when `counts` says what LoadGen counted.
    pub fn power_record(
        &self,
        report: &SamplerReport,
        window: Window,
        counts: Option<RunCounts>,
        ptd: Option<PtdRecord>,
    ) -> Result<PowerRecord, HarnessError> {
        let (meters, total) = self.window_energy(report, window)?;
        Ok(PowerRecord {
            interval_s: self.options.interval.as_secs_f64(),
            efficiency: record::efficiency_record(&total, counts)?,
            idle: record::idle_record(self.idle.as_ref(), &total, window.duration_s()),
            logs: record::meter_logs(report, &self.outdir),
            complete: record::total_is_complete(&total),
            meters,
            total,
            unusable: self.unusable.clone(),
            ptd,
        })
    }

    /// Writes `value` as pretty JSON to `<outdir>/<name>`, atomically.
    pub fn write_json<T: serde::Serialize>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<PathBuf, HarnessError> {
        let json = serde_json::to_vec_pretty(value).map_err(|source| HarnessError::Serialise {
            what: "the result",
            source,
        })?;
        let path = self.outdir.join(name);
        atomic_file::write(&path, &json)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_without_meters_still_measures_and_writes() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let options = PowerOptions {
            specs: vec!["none".into()],
            ..Default::default()
        };
        let mut s = Session::open(out.clone(), &options, Interrupt::detached()).unwrap();
        assert!(out.is_dir());
        s.measure_idle(|_| panic!("no meters: no idle")).unwrap();
        let m = s.measure(&out, |c: &Clock| c.now_ns()).unwrap();
        assert!(m.report.is_none());
        let path = s
            .write_json("result.json", &serde_json::json!({"ok": m.output > 0}))
            .unwrap();
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(back["ok"], true);
    }

    #[test]
    fn bad_meters_stop_the_session_before_its_folder_exists() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let options = PowerOptions {
            specs: vec!["rapl".into()],
            sysfs_root: dir.path().join("no-sysfs"),
            ..Default::default()
        };
        assert!(Session::open(out.clone(), &options, Interrupt::detached()).is_err());
        assert!(!out.exists());
    }
}
