//! Power meters (hwmon power sensors, the BMC through IPMI or Redfish), each
//! sampled on a thread of its own into an [`Integral`].
//!
//! Why a thread: a BMC can take a second or more to answer, and the agent's
//! main loop must answer a hook within one (a hook that times out records
//! nothing). The main loop only copies each integral, never waits for a meter.

use crate::counters::Integral;
use crate::protocol::unix_ns;
use power::meter::{Meter, MeterInfo, Reading};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A power meter being sampled.
pub struct SampledMeter {
    info: MeterInfo,
    integral: Arc<Mutex<Option<Integral>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SampledMeter {
    /// Starts sampling `meter` every `every`, on from `restored` (the
    /// journal's integral from before the agent's restart: the time it was
    /// down is a gap).
    pub fn start(
        mut meter: Box<dyn Meter>,
        every: Duration,
        restored: Option<Integral>,
    ) -> SampledMeter {
        let info = meter.info().clone();
        let integral = Arc::new(Mutex::new(restored));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (integral, stop) = (Arc::clone(&integral), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("sample {}", info.id))
                .spawn(move || sample(meter.as_mut(), every, &integral, &stop))
                .expect("a thread for a meter")
        };
        SampledMeter {
            info,
            integral,
            stop,
            thread: Some(thread),
        }
    }

    pub fn info(&self) -> &MeterInfo {
        &self.info
    }

    /// The integral so far (none before the first good sample).
    pub fn integral(&self) -> Option<Integral> {
        self.integral.lock().expect("integral lock").clone()
    }
}

impl Drop for SampledMeter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn sample(
    meter: &mut dyn Meter,
    every: Duration,
    integral: &Mutex<Option<Integral>>,
    stop: &AtomicBool,
) {
    let id = meter.info().id.clone();
    // Samples further apart than this are a gap, bridged (estimated), by
    // the rule a run's sampler uses, so both call the same stretch a gap.
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let gap_ns = power::energy::gap_limit_ns(
        ns(every),
        ns(meter.info().update_period),
        power::sampler::DEFAULT_GAP_PERIODS,
    );
    // The first sample after a restart bridges the time the agent was down.
    let mut restored = integral.lock().expect("integral lock").is_some();
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        let before = unix_ns();
        let reading = meter.read();
        // The reading belongs to the middle of a slow read (ipmitool: tens of ms).
        let at = before + unix_ns().saturating_sub(before) / 2;
        match reading {
            Ok(Reading::Power { watts, .. }) => {
                if failing {
                    tracing::info!("{id}: reading again");
                    failing = false;
                }
                let mut guard = integral.lock().expect("integral lock");
                match guard.as_mut() {
                    Some(i) => {
                        let gap = restored || at.saturating_sub(i.last_unix_ns) > gap_ns;
                        i.advance(watts, at, gap);
                    }
                    None => *guard = Some(Integral::new(watts, at)),
                }
                restored = false;
            }
            Ok(Reading::Energy { .. }) => {
                tracing::warn!("{id}: an energy counter among the power meters; not sampled");
                return;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("{id}: {e} (until it reads again, its energy is bridged)");
                    failing = true;
                }
            }
        }
        std::thread::park_timeout(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use power::meter::{MeterError, Provenance, ReadingKind, Scope};

    struct Steady {
        info: MeterInfo,
        watts: f64,
    }

    impl Meter for Steady {
        fn info(&self) -> &MeterInfo {
            &self.info
        }
        fn read(&mut self) -> Result<Reading, MeterError> {
            Ok(Reading::watts(self.watts))
        }
    }

    fn steady(watts: f64) -> Box<dyn Meter> {
        Box::new(Steady {
            info: MeterInfo {
                id: "ipmi".into(),
                source: "ipmi".into(),
                domain: "node".into(),
                scope: Scope::Node,
                kind: ReadingKind::PowerSample,
                provenance: Provenance::Measured,
                resolution: 1.0,
                update_period: Duration::from_secs(1),
                contains: Vec::new(),
            },
            watts,
        })
    }

    #[test]
    fn a_steady_meter_integrates_to_watts_times_seconds() {
        let started = unix_ns();
        let m = SampledMeter::start(steady(250.0), Duration::from_millis(10), None);
        std::thread::sleep(Duration::from_millis(200));
        let i = m.integral().expect("sampled");
        drop(m);
        assert_eq!(i.bridged_uj, 0);
        // Every sample is 250 W: the total is 250 W × the time from the first
        // sample to the last, which lies within the test's own window.
        let sampled_s = i.total_uj as f64 / 250.0 / 1e6;
        let window_s = (i.last_unix_ns - started) as f64 / 1e9;
        assert!(
            sampled_s > 0.0 && sampled_s <= window_s,
            "{sampled_s} s sampled in a {window_s} s window"
        );
    }

    #[test]
    fn the_first_sample_after_a_restart_is_a_bridge() {
        let down_since = unix_ns() - 5_000_000_000;
        let restored = Integral::new(100.0, down_since);
        let m = SampledMeter::start(steady(100.0), Duration::from_millis(10), Some(restored));
        std::thread::sleep(Duration::from_millis(100));
        let i = m.integral().unwrap();
        assert_eq!(i.gaps, 1);
        let bridged_s = i.bridged_uj as f64 / 100.0 / 1e6;
        assert!((5.0..5.2).contains(&bridged_s), "{bridged_s}");
        assert!(i.total_uj > i.bridged_uj, "measured after the bridge");
    }
}
