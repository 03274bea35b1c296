//! Power and energy as Prometheus metrics (`joulebench exporter`).
//!
//! Each meter is read on its own thread (a slow BMC never delays a RAPL
//! counter), and only the running figures are kept: the latest power and the
//! energy since the exporter started. Nothing is logged to disk and no
//! samples pile up in memory, so it can run for months. (That is why this
//! does not use the run sampler, which keeps every sample for a run's logs.)
//! Energy is accumulated the way a run's energy is computed, with the run's
//! gap rule ([`crate::running`]).
//!
//! Metrics follow Prometheus naming: `joulebench_power_watts` (gauge) and
//! `joulebench_energy_joules_total` (counter), with labels `host`, `meter`,
//! `source`, `device` (what the meter measures: `package-0`, `gpu0`, `node`),
//! `domain` (its scope: `cpu_package`, `dram`, `gpu`, `node`, …) and
//! `provenance` (`measured` or `estimated`), plus `joulebench_meter_up` and
//! `joulebench_meter_read_errors_total`.

use crate::meter::{Meter, MeterInfo};
use crate::running::RunningEnergy;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One meter's running figures.
#[derive(Debug, Clone)]
pub struct MeterState {
    pub info: MeterInfo,
    pub running: RunningEnergy,
    pub read_errors: u64,
    pub up: bool,
}

impl MeterState {
    pub fn new(info: MeterInfo, interval: Duration) -> Self {
        MeterState {
            running: RunningEnergy::new(&info, interval),
            info,
            read_errors: 0,
            up: false,
        }
    }

    pub fn read(&mut self, at: Instant, reading: crate::meter::Reading) {
        self.up = true;
        self.running.update(at, reading);
    }

    pub fn failed(&mut self) {
        self.read_errors += 1;
        self.up = false;
    }
}

/// A label value escaped as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn snake<T: std::fmt::Debug>(v: T) -> String {
    let s = format!("{v:?}");
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                o.push('_');
            }
            o.push(c.to_ascii_lowercase());
        } else {
            o.push(c);
        }
    }
    o
}

/// The Prometheus text exposition (version 0.0.4) of `states`.
pub fn render(states: &[MeterState], host: &str) -> String {
    let labels = |s: &MeterState| {
        format!(
            "host=\"{}\",meter=\"{}\",source=\"{}\",device=\"{}\",domain=\"{}\",provenance=\"{}\"",
            label(host),
            label(&s.info.id),
            label(&s.info.source),
            label(&s.info.domain),
            snake(s.info.scope),
            snake(s.info.provenance)
        )
    };
    let mut o = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, value: &dyn Fn(&MeterState) -> Option<f64>| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} {kind}");
            for s in states {
                if let Some(v) = value(s) {
                    let _ = writeln!(o, "{name}{{{}}} {v}", labels(s));
                }
            }
        };
    family(
        "joulebench_power_watts",
        "gauge",
        "Power in watts from the meter's latest reading (a counter's: its last interval).",
        &|s| s.running.watts,
    );
    family(
        "joulebench_energy_joules_total",
        "counter",
        "Energy in joules since the exporter started.",
        &|s| Some(s.running.energy_j),
    );
    family(
        "joulebench_meter_up",
        "gauge",
        "1 if the meter's last read succeeded, else 0.",
        &|s| Some(if s.up { 1.0 } else { 0.0 }),
    );
    family(
        "joulebench_meter_read_errors_total",
        "counter",
        "Reads of the meter that failed.",
        &|s| Some(s.read_errors as f64),
    );
    o
}

/// Reads `meter` every `interval` into `state`, for as long as the process runs.
pub fn read_forever(mut meter: Box<dyn Meter>, state: Arc<Mutex<MeterState>>, interval: Duration) {
    let mut next = Instant::now();
    loop {
        let reading = meter.read();
        let at = Instant::now();
        if let Ok(mut s) = state.lock() {
            match reading {
                Ok(r) => s.read(at, r),
                Err(e) => {
                    if s.up || s.read_errors == 0 {
                        tracing::warn!("{}: {e}", s.info.id);
                    }
                    s.failed();
                }
            }
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::{Provenance, ReadingKind, Scope};

    fn info(kind: ReadingKind) -> MeterInfo {
        MeterInfo {
            id: "rapl-package-0".into(),
            source: "rapl".into(),
            domain: "package-0".into(),
            scope: Scope::CpuPackage,
            kind,
            provenance: Provenance::Measured,
            resolution: 1e-6,
            update_period: Duration::from_millis(1),
            contains: vec![],
        }
    }

    #[test]
    fn the_text_format_has_types_labels_and_escapes() {
        let mut s = MeterState::new(info(ReadingKind::PowerSample), Duration::from_secs(1));
        s.read(Instant::now(), crate::meter::Reading::watts(12.5));
        s.failed();
        let text = render(&[s], "node\"1");
        assert!(text.contains("# TYPE joulebench_power_watts gauge"));
        assert!(text.contains("# TYPE joulebench_energy_joules_total counter"));
        assert!(text.contains(
            "joulebench_power_watts{host=\"node\\\"1\",meter=\"rapl-package-0\",source=\"rapl\",\
             device=\"package-0\",domain=\"cpu_package\",provenance=\"measured\"} 12.5"
        ), "{text}");
        assert!(
            text.contains("joulebench_meter_up{") && text.contains("} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("joulebench_meter_read_errors_total{"),
            "{text}"
        );
    }
}
