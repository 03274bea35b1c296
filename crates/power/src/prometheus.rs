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

/// A job running on the node (from `joulebench agent`), for labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningJob {
    pub job_id: u64,
    pub user: Option<String>,
    /// Its GPUs' indices (`gpu0` … on the meters).
    pub gpus: Vec<u32>,
}

/// The Prometheus text exposition (version 0.0.4) of `states`.
pub fn render(states: &[MeterState], host: &str) -> String {
    render_with_jobs(states, host, &[])
}

/// The job a meter's device belongs to: a GPU to the job it was given; any
/// other device to the node's one job, when there is exactly one.
fn owner(info: &super::meter::MeterInfo, jobs: &[RunningJob]) -> Option<u64> {
    let gpu: Option<u32> = info
        .domain
        .strip_prefix("gpu")
        .and_then(|d| d.split('-').next())
        .and_then(|n| n.parse().ok());
    match gpu {
        Some(g) => jobs.iter().find(|j| j.gpus.contains(&g)).map(|j| j.job_id),
        None if jobs.len() == 1 => Some(jobs[0].job_id),
        None => None,
    }
}

/// [`render`], with a `job_id` label on the series of devices a running job
/// has (see [`owner`]) and one `joulebench_job_info` series per job.
pub fn render_with_jobs(states: &[MeterState], host: &str, jobs: &[RunningJob]) -> String {
    let labels = |s: &MeterState| {
        let job = owner(&s.info, jobs)
            .map(|j| format!(",job_id=\"{j}\""))
            .unwrap_or_default();
        format!(
            "host=\"{}\",meter=\"{}\",source=\"{}\",device=\"{}\",domain=\"{}\",provenance=\"{}\"{job}",
            label(host),
            label(&s.info.id),
            label(&s.info.source),
            label(&s.info.domain),
            snake(s.info.scope),
            snake(s.info.provenance)
        )
    };
    let mut o = String::new();
    if !jobs.is_empty() {
        let _ = writeln!(
            o,
            "# HELP joulebench_job_info A job running on this node (joulebench agent)."
        );
        let _ = writeln!(o, "# TYPE joulebench_job_info gauge");
        for j in jobs {
            let gpus: Vec<String> = j.gpus.iter().map(u32::to_string).collect();
            let _ = writeln!(
                o,
                "joulebench_job_info{{host=\"{}\",job_id=\"{}\",user=\"{}\",gpus=\"{}\"}} 1",
                label(host),
                j.job_id,
                label(j.user.as_deref().unwrap_or("")),
                gpus.join(",")
            );
        }
    }
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
    fn devices_carry_the_job_that_has_them() {
        let mut gpu = info(ReadingKind::EnergyCounter);
        gpu.id = "nvml-gpu1".into();
        gpu.domain = "gpu1".into();
        gpu.scope = Scope::Gpu;
        let states = [
            MeterState::new(info(ReadingKind::EnergyCounter), Duration::from_secs(1)),
            MeterState::new(gpu, Duration::from_secs(1)),
        ];
        let jobs = [
            RunningJob {
                job_id: 7,
                user: Some("ada".into()),
                gpus: vec![1],
            },
            RunningJob {
                job_id: 8,
                user: None,
                gpus: vec![],
            },
        ];
        let text = render_with_jobs(&states, "n1", &jobs);
        assert!(
            text.contains(
                "joulebench_job_info{host=\"n1\",job_id=\"7\",user=\"ada\",gpus=\"1\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("meter=\"nvml-gpu1\",source=\"rapl\",device=\"gpu1\",domain=\"gpu\",provenance=\"measured\",job_id=\"7\"}"), "{text}");
        // Two jobs share the node: the package belongs to neither.
        let package = text
            .lines()
            .find(|l| l.contains("rapl-package-0") && l.starts_with("joulebench_energy"))
            .unwrap();
        assert!(!package.contains("job_id"), "{package}");
        let alone = render_with_jobs(&states, "n1", &jobs[1..]);
        assert!(
            alone
                .lines()
                .any(|l| l.contains("rapl-package-0") && l.contains("job_id=\"8\"")),
            "{alone}"
        );
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
