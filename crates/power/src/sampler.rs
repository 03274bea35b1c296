//! The sampler: one thread per meter, every reading stamped on the run's clock.
//!
//! Each meter gets its own thread and its own rate (default
//! [`DEFAULT_RATE_HZ`]), so a slow or hung meter (a BMC taking a second to
//! answer) never delays the others, and a failing one never stops the run:
//! its errors are counted, the last one kept, and sampling goes on.
//!
//! Timestamps are `u64` nanoseconds since the `anchor` instant the caller
//! passes in — the same anchor the load generator's timings use (DESIGN.md
//! "One clock"). A reading is stamped at the midpoint of the `read()` call,
//! the best guess of when a slow read saw its value.
//!
//! Every sample is streamed to `<log_dir>/<meter_id>.csv` (see [`crate::log`])
//! and flushed at least once a second, so a crash loses at most the last
//! second. Samples are also kept in memory and returned by
//! [`Sampler::stop`], together with each meter's faults: read errors, counters
//! going backwards (not explained by a wrap), and gaps longer than
//! `gap_periods` sampling periods.
//!
//! [`Sampler::start`] returns once every meter has attempted its first read
//! (or after 5 s), and [`Sampler::stop`] takes one last reading per meter,
//! so a window marked between the two is bracketed by samples on both sides.
//! Ticks are kept on a fixed grid; a read that overruns skips the missed
//! ticks rather than bursting to catch up.

use crate::energy::{
    counter_step, energy_over_window, gap_limit_ns, CounterReset, CounterStep, EnergyError, Gap,
    MeterEnergy, Window,
};
use crate::log::{LogError, PowerLogWriter, Sample};
use crate::meter::{Meter, MeterInfo, Reading, ReadingKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Sampling rate when the caller does not choose one.
pub const DEFAULT_RATE_HZ: f64 = 10.0;
/// Highest rate accepted (0.1 ms period).
pub const MAX_RATE_HZ: f64 = 10_000.0;
/// A gap is an interval longer than this many sampling periods.
pub const DEFAULT_GAP_PERIODS: u32 = 3;
/// Logs are flushed at least this often.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long [`Sampler::start`] waits for the first read of every meter.
pub const FIRST_READ_WAIT: Duration = Duration::from_secs(5);

/// Nanoseconds from `anchor` to `t` (0 if `t` is earlier).
pub fn ns_since(anchor: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(anchor).as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error("cannot create the power log directory {}: {source}", path.display())]
    LogDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("two meters share the id `{id}`: their logs would overwrite each other")]
    DuplicateId { id: String },
    #[error("{meter}: sampling rate {rate_hz} Hz is outside (0, {MAX_RATE_HZ}]")]
    Rate { meter: String, rate_hz: f64 },
    #[error("cannot start the sampling thread for {meter}: {source}")]
    Spawn {
        meter: String,
        #[source]
        source: std::io::Error,
    },
    #[error("idle measurement needs a duration above zero")]
    IdleDuration,
    #[error(transparent)]
    Energy(#[from] EnergyError),
}

/// A meter and the rate to sample it at.
pub struct MeterPlan {
    pub meter: Box<dyn Meter>,
    pub rate_hz: f64,
}

impl MeterPlan {
    /// Samples at [`DEFAULT_RATE_HZ`].
    pub fn new(meter: Box<dyn Meter>) -> Self {
        Self::with_rate(meter, DEFAULT_RATE_HZ)
    }

    pub fn with_rate(meter: Box<dyn Meter>, rate_hz: f64) -> Self {
        Self { meter, rate_hz }
    }
}

impl std::fmt::Debug for MeterPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeterPlan")
            .field("meter", &self.meter.info().id)
            .field("rate_hz", &self.rate_hz)
            .finish()
    }
}

/// Where logs go and which clock to stamp on.
#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// Logs are written to `<log_dir>/<meter_id>.csv`.
    pub log_dir: PathBuf,
    /// The run's single clock: every `t_ns` counts from here.
    pub anchor: Instant,
    /// Intervals longer than this many sampling periods are gaps.
    pub gap_periods: u32,
}

impl SamplerConfig {
    /// Logs in `<run_dir>/power/`.
    pub fn for_run(run_dir: &Path, anchor: Instant) -> Self {
        Self {
            log_dir: run_dir.join("power"),
            anchor,
            gap_periods: DEFAULT_GAP_PERIODS,
        }
    }
}

/// What went wrong with one meter during sampling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeterFaults {
    pub read_errors: u64,
    pub last_error: Option<String>,
    pub first_error_ns: Option<u64>,
    pub last_error_ns: Option<u64>,
    /// Counter steps backwards that a wrap does not explain.
    pub counter_resets: Vec<CounterReset>,
    /// Intervals between successful samples longer than the gap limit.
    pub gaps: Vec<Gap>,
    /// Writing the CSV failed; sampling went on in memory.
    pub log_error: Option<String>,
    /// The meter panicked; it was not read again.
    pub panicked: Option<String>,
}

impl MeterFaults {
    pub fn is_clean(&self) -> bool {
        self.read_errors == 0
            && self.counter_resets.is_empty()
            && self.gaps.is_empty()
            && self.log_error.is_none()
            && self.panicked.is_none()
    }

    fn record_error(&mut self, t_ns: u64, message: String) {
        self.read_errors += 1;
        self.first_error_ns.get_or_insert(t_ns);
        self.last_error_ns = Some(t_ns);
        self.last_error = Some(message);
    }
}

/// Everything one meter produced.
#[derive(Debug, Clone)]
pub struct MeterRun {
    pub info: MeterInfo,
    pub rate_hz: f64,
    pub period_ns: u64,
    /// Intervals longer than this are gaps (see [`gap_limit_ns`]).
    pub gap_limit_ns: u64,
    pub log_path: PathBuf,
    pub samples: Vec<Sample>,
    pub faults: MeterFaults,
}

impl MeterRun {
    /// Energy of this meter over `window`, gaps judged by this run's limit.
    pub fn energy(&self, window: Window) -> Result<MeterEnergy, EnergyError> {
        energy_over_window(&self.info, &self.samples, window, self.gap_limit_ns)
    }
}

/// What [`Sampler::stop`] returns: one entry per meter, in start order.
#[derive(Debug, Clone)]
pub struct SamplerReport {
    pub meters: Vec<MeterRun>,
}

impl SamplerReport {
    pub fn meter(&self, id: &str) -> Option<&MeterRun> {
        self.meters.iter().find(|m| m.info.id == id)
    }

    /// Energy of every meter over `window`.
    pub fn energy(&self, window: Window) -> Result<Vec<MeterEnergy>, EnergyError> {
        self.meters.iter().map(|m| m.energy(window)).collect()
    }
}

struct Worker {
    info: MeterInfo,
    rate_hz: f64,
    period_ns: u64,
    gap_limit_ns: u64,
    log_path: PathBuf,
    stop_tx: Option<Sender<()>>,
    handle: Option<JoinHandle<(MeterRun, Box<dyn Meter>)>>,
    latest: Arc<Mutex<Option<Sample>>>,
}

/// Running sampling threads. Stop with [`Sampler::stop`]; dropping it also
/// stops and joins them.
pub struct Sampler {
    anchor: Instant,
    workers: Vec<Worker>,
}

impl Sampler {
    /// Starts one thread per meter. Fails before starting anything if an id
    /// repeats, a rate is out of range, or a log cannot be created.
    pub fn start(config: &SamplerConfig, plans: Vec<MeterPlan>) -> Result<Sampler, SamplerError> {
        let mut seen = std::collections::HashSet::new();
        for p in &plans {
            let id = &p.meter.info().id;
            if !seen.insert(id.clone()) {
                return Err(SamplerError::DuplicateId { id: id.clone() });
            }
            if !(p.rate_hz.is_finite() && p.rate_hz > 0.0 && p.rate_hz <= MAX_RATE_HZ) {
                return Err(SamplerError::Rate {
                    meter: id.clone(),
                    rate_hz: p.rate_hz,
                });
            }
        }
        std::fs::create_dir_all(&config.log_dir).map_err(|source| SamplerError::LogDir {
            path: config.log_dir.clone(),
            source,
        })?;
        let mut prepared = Vec::with_capacity(plans.len());
        for p in plans {
            let path = config.log_dir.join(format!("{}.csv", p.meter.info().id));
            let writer = PowerLogWriter::create(&path, p.meter.info().kind)?;
            prepared.push((p, writer));
        }

        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let mut sampler = Sampler {
            anchor: config.anchor,
            workers: Vec::with_capacity(prepared.len()),
        };
        for (plan, writer) in prepared {
            let info = plan.meter.info().clone();
            let period = Duration::from_secs_f64(1.0 / plan.rate_hz);
            let period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX).max(1);
            let update_ns = u64::try_from(info.update_period.as_nanos()).unwrap_or(u64::MAX);
            let gap_limit = gap_limit_ns(period_ns, update_ns, config.gap_periods);
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            let latest = Arc::new(Mutex::new(None));
            let job = Job {
                latest: Arc::clone(&latest),
                meter: plan.meter,
                info: info.clone(),
                rate_hz: plan.rate_hz,
                period,
                period_ns,
                gap_limit_ns: gap_limit,
                anchor: config.anchor,
                log_path: writer.path().to_path_buf(),
                writer: Some(writer),
                stop_rx,
                ready_tx: Some(ready_tx.clone()),
            };
            let log_path = job.log_path.clone();
            let handle = std::thread::Builder::new()
                .name(format!("power-{}", info.id))
                .spawn(move || job.run())
                .map_err(|source| SamplerError::Spawn {
                    meter: info.id.clone(),
                    source,
                })?; // `sampler` drops here on error, stopping the threads already started
            sampler.workers.push(Worker {
                info,
                rate_hz: plan.rate_hz,
                period_ns,
                gap_limit_ns: gap_limit,
                log_path,
                stop_tx: Some(stop_tx),
                handle: Some(handle),
                latest,
            });
        }
        drop(ready_tx);
        let deadline = Instant::now() + FIRST_READ_WAIT;
        for _ in 0..sampler.workers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if ready_rx.recv_timeout(left).is_err() {
                tracing::warn!("a meter did not finish its first read within {FIRST_READ_WAIT:?}");
                break;
            }
        }
        Ok(sampler)
    }

    /// Each meter's newest sample so far (for live displays), in start order.
    pub fn latest(&self) -> Vec<(MeterInfo, Option<Sample>)> {
        self.workers
            .iter()
            .map(|w| (w.info.clone(), w.latest.lock().ok().and_then(|l| *l)))
            .collect()
    }

    pub fn anchor(&self) -> Instant {
        self.anchor
    }

    /// Now, on the run's clock.
    pub fn now_ns(&self) -> u64 {
        ns_since(self.anchor, Instant::now())
    }

    /// Stops every thread (each takes one last reading), joins them and
    /// returns what they sampled.
    pub fn stop(self) -> SamplerReport {
        self.stop_and_keep_meters().0
    }

    /// Like [`stop`](Self::stop), and hands the meters back (to sample them
    /// again, e.g. after an idle measurement). A meter whose thread died is
    /// not returned.
    pub fn stop_and_keep_meters(mut self) -> (SamplerReport, Vec<MeterPlan>) {
        for w in &mut self.workers {
            w.stop_tx = None; // disconnects: the thread wakes at once
        }
        let mut meters = Vec::new();
        let mut plans = Vec::new();
        for w in &mut self.workers {
            let Some(handle) = w.handle.take() else {
                continue;
            };
            match handle.join() {
                Ok((run, meter)) => {
                    plans.push(MeterPlan::with_rate(meter, run.rate_hz));
                    meters.push(run);
                }
                Err(_) => meters.push(MeterRun {
                    info: w.info.clone(),
                    rate_hz: w.rate_hz,
                    period_ns: w.period_ns,
                    gap_limit_ns: w.gap_limit_ns,
                    log_path: w.log_path.clone(),
                    samples: Vec::new(),
                    faults: MeterFaults {
                        panicked: Some(
                            "the sampling thread died; only what its log had flushed remains"
                                .into(),
                        ),
                        ..MeterFaults::default()
                    },
                }),
            }
        }
        (SamplerReport { meters }, plans)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.stop_tx = None;
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// One meter's sampling thread.
struct Job {
    meter: Box<dyn Meter>,
    info: MeterInfo,
    rate_hz: f64,
    period: Duration,
    period_ns: u64,
    gap_limit_ns: u64,
    anchor: Instant,
    log_path: PathBuf,
    writer: Option<PowerLogWriter>,
    stop_rx: Receiver<()>,
    ready_tx: Option<Sender<()>>,
    latest: Arc<Mutex<Option<Sample>>>,
}

struct State {
    samples: Vec<Sample>,
    faults: MeterFaults,
    last_flush: Instant,
    dead: bool,
}

impl Job {
    fn run(mut self) -> (MeterRun, Box<dyn Meter>) {
        let mut st = State {
            samples: Vec::new(),
            faults: MeterFaults::default(),
            last_flush: Instant::now(),
            dead: false,
        };
        let mut next = Instant::now();
        self.take(&mut st);
        if let Some(tx) = self.ready_tx.take() {
            let _ = tx.send(());
        }
        loop {
            if st.dead {
                // Wait for stop without reading a broken meter again.
                let _ = self.stop_rx.recv();
                break;
            }
            next += self.period;
            let now = Instant::now();
            if next < now {
                let behind = (now - next).as_nanos() / u128::from(self.period_ns);
                let skip = u32::try_from(behind + 1).unwrap_or(u32::MAX);
                next += self.period.saturating_mul(skip);
            }
            match self
                .stop_rx
                .recv_timeout(next.saturating_duration_since(Instant::now()))
            {
                Err(RecvTimeoutError::Timeout) => self.take(&mut st),
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if !st.dead {
            self.take(&mut st); // the closing sample brackets the window's end
        }
        if let Some(w) = self.writer.as_mut() {
            if let Err(e) = w.flush() {
                st.faults.log_error = Some(e.to_string());
            }
        }
        let run = MeterRun {
            info: self.info,
            rate_hz: self.rate_hz,
            period_ns: self.period_ns,
            gap_limit_ns: self.gap_limit_ns,
            log_path: self.log_path,
            samples: st.samples,
            faults: st.faults,
        };
        (run, self.meter)
    }

    fn take(&mut self, st: &mut State) {
        let before = Instant::now();
        let meter = &mut self.meter;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| meter.read()));
        let after = Instant::now();
        let t_ns = ns_since(self.anchor, before)
            + u64::try_from((after - before).as_nanos() / 2).unwrap_or(0);
        let reading = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                st.faults.record_error(t_ns, e.to_string());
                return;
            }
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                st.faults
                    .record_error(t_ns, format!("{}: meter panicked: {msg}", self.info.id));
                st.faults.panicked = Some(msg);
                st.dead = true;
                return;
            }
        };
        if let Some(problem) = self.check(&reading) {
            st.faults.record_error(t_ns, problem);
            return;
        }
        let sample = Sample { t_ns, reading };
        if let Some(prev) = st.samples.last() {
            if t_ns.saturating_sub(prev.t_ns) > self.gap_limit_ns {
                st.faults.gaps.push(Gap {
                    from_ns: prev.t_ns,
                    to_ns: t_ns,
                });
            }
            if let (
                Reading::Energy {
                    counter_uj: before_uj,
                    ..
                },
                Reading::Energy {
                    counter_uj: after_uj,
                    wrap_uj,
                },
            ) = (prev.reading, reading)
            {
                if counter_step(before_uj, after_uj, wrap_uj) == CounterStep::Reset {
                    st.faults.counter_resets.push(CounterReset {
                        from_ns: prev.t_ns,
                        to_ns: t_ns,
                        before_uj,
                        after_uj,
                    });
                }
            }
        }
        st.samples.push(sample);
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some(sample);
        }
        if let Some(w) = self.writer.as_mut() {
            let mut result = w.append(&sample);
            let now = Instant::now();
            // Flush if waiting for the next sample would leave rows unflushed
            // for longer than FLUSH_INTERVAL.
            if result.is_ok() && now + self.period >= st.last_flush + FLUSH_INTERVAL {
                result = w.flush();
                st.last_flush = now;
            }
            if let Err(e) = result {
                tracing::warn!(meter = %self.info.id, "power log stopped: {e}");
                st.faults.log_error = Some(e.to_string());
                self.writer = None;
            }
        }
    }

    /// A reading the meter should not have given, described.
    fn check(&self, reading: &Reading) -> Option<String> {
        let kind = match reading {
            Reading::Energy { .. } => ReadingKind::EnergyCounter,
            Reading::Power { watts, .. } => {
                if !watts.is_finite() {
                    return Some(format!("{}: meter returned power {watts}", self.info.id));
                }
                ReadingKind::PowerSample
            }
        };
        (kind != self.info.kind).then(|| {
            format!(
                "{}: meter returned a {kind:?} reading, it declares {:?}",
                self.info.id, self.info.kind
            )
        })
    }
}

/// Idle power measured before a run.
#[derive(Debug, Clone)]
pub struct IdleMeasurement {
    pub window: Window,
    /// Per meter, `avg_w` is the idle power.
    pub energies: Vec<MeterEnergy>,
    pub report: SamplerReport,
}

/// Samples `plans` for `duration` with nothing else running and reports the
/// average power of each meter. Logs go to `config.log_dir` (use a directory
/// other than the run's, e.g. `<run>/power-idle`). The meters come back for
/// the run itself.
pub fn measure_idle(
    config: &SamplerConfig,
    plans: Vec<MeterPlan>,
    duration: Duration,
) -> Result<(IdleMeasurement, Vec<MeterPlan>), SamplerError> {
    if duration.is_zero() {
        return Err(SamplerError::IdleDuration);
    }
    let sampler = Sampler::start(config, plans)?;
    let begin_ns = sampler.now_ns();
    std::thread::sleep(duration);
    let end_ns = sampler.now_ns().max(begin_ns + 1);
    let (report, plans) = sampler.stop_and_keep_meters();
    let window = Window::new(begin_ns, end_ns)?;
    let energies = report.energy(window)?;
    Ok((
        IdleMeasurement {
            window,
            energies,
            report,
        },
        plans,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::{MeterError, Provenance, Scope};

    /// A device whose driver misbehaves after a few reads: it panics, or
    /// returns values no meter should. Implements the contract directly
    /// because these faults cannot be produced through a file tree.
    struct Misbehaving {
        info: MeterInfo,
        reads: u32,
        fault: fn(u32) -> Result<Reading, MeterError>,
    }

    impl Meter for Misbehaving {
        fn info(&self) -> &MeterInfo {
            &self.info
        }
        fn read(&mut self) -> Result<Reading, MeterError> {
            self.reads += 1;
            (self.fault)(self.reads)
        }
    }

    fn misbehaving(id: &str, fault: fn(u32) -> Result<Reading, MeterError>) -> Box<dyn Meter> {
        Box::new(Misbehaving {
            info: MeterInfo {
                id: id.into(),
                source: "test".into(),
                domain: id.into(),
                scope: Scope::Other,
                kind: ReadingKind::PowerSample,
                provenance: Provenance::Measured,
                resolution: 1e-3,
                update_period: Duration::from_millis(1),
                contains: vec![],
            },
            reads: 0,
            fault,
        })
    }

    #[test]
    fn a_panicking_meter_is_stopped_and_reported_the_others_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let config = SamplerConfig::for_run(dir.path(), Instant::now());
        let plans = vec![
            MeterPlan::with_rate(
                misbehaving("panics", |n| {
                    if n > 3 {
                        panic!("driver bug");
                    }
                    Ok(Reading::watts(1.0))
                }),
                200.0,
            ),
            MeterPlan::with_rate(misbehaving("steady", |_| Ok(Reading::watts(2.0))), 200.0),
        ];
        let sampler = Sampler::start(&config, plans).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let (report, plans) = sampler.stop_and_keep_meters();
        let p = report.meter("panics").unwrap();
        assert_eq!(p.samples.len(), 3);
        assert_eq!(p.faults.panicked.as_deref(), Some("driver bug"));
        assert_eq!(p.faults.read_errors, 1, "not read again after the panic");
        let s = report.meter("steady").unwrap();
        assert!(s.samples.len() >= 20, "{}", s.samples.len());
        // A gap is possible on a loaded machine (200 Hz leaves 5 ms slack);
        // errors or a panic are not.
        assert_eq!(s.faults.read_errors, 0);
        assert!(s.faults.panicked.is_none());
        assert_eq!(plans.len(), 2);
    }

    #[test]
    fn impossible_readings_are_read_errors_not_samples() {
        let dir = tempfile::tempdir().unwrap();
        let config = SamplerConfig::for_run(dir.path(), Instant::now());
        let plans = vec![
            MeterPlan::with_rate(misbehaving("nan", |_| Ok(Reading::watts(f64::NAN))), 100.0),
            MeterPlan::with_rate(
                misbehaving("kind", |_| {
                    Ok(Reading::Energy {
                        counter_uj: 1,
                        wrap_uj: None,
                    })
                }),
                100.0,
            ),
        ];
        let report = Sampler::start(&config, plans).unwrap().stop();
        for m in &report.meters {
            assert!(m.samples.is_empty());
            assert_eq!(m.faults.read_errors, 2, "{:?}", m.faults);
        }
        let kind = report.meter("kind").unwrap();
        assert!(kind
            .faults
            .last_error
            .as_deref()
            .unwrap()
            .contains("declares"));
    }

    #[test]
    fn ns_since_saturates_before_the_anchor() {
        let anchor = Instant::now();
        let later = anchor + Duration::from_millis(5);
        assert_eq!(ns_since(later, anchor), 0);
        assert_eq!(ns_since(anchor, later), 5_000_000);
    }
}
