//! `joulebench exporter`: power and energy as Prometheus metrics.
//!
//! Each meter is read on its own thread (a slow BMC never delays a RAPL
//! counter), and only the running figures are kept: the latest power and the
//! energy since the exporter started. Nothing is logged to disk and no
//! samples pile up in memory, so it can run for months. (That is why this
//! does not use the run sampler, which keeps every sample for a run's logs.)
//!
//! Energy is accumulated the way the run's energy is computed: counters by
//! difference with wrap-around undone (a reset adds nothing), power samples
//! by trapezoids, never across a gap longer than [`GAP_PERIODS`] intervals.
//! Power from a counter is the energy of its last interval over its length.
//!
//! Metrics follow Prometheus naming: `joulebench_power_watts` (gauge) and
//! `joulebench_energy_joules_total` (counter), with labels `host`, `meter`,
//! `source`, `device` (what the meter measures: `package-0`, `gpu0`, `node`),
//! `domain` (its scope: `cpu_package`, `dram`, `gpu`, `node`, …) and
//! `provenance` (`measured` or `estimated`), plus `joulebench_meter_up` and
//! `joulebench_meter_read_errors_total`. It listens on loopback unless an
//! address is given.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use power::energy::{counter_step, CounterStep};
use power::meter::{Meter, MeterInfo, Reading};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Power samples further apart than this many intervals are not integrated.
pub const GAP_PERIODS: u32 = 10;

#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Address to serve on; loopback unless you name another (e.g. 0.0.0.0:9469).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9469")]
    listen: String,

    #[command(flatten)]
    power: crate::meters::PowerArgs,
}

/// One meter's running figures.
#[derive(Debug, Clone)]
pub struct MeterState {
    pub info: MeterInfo,
    pub watts: Option<f64>,
    pub energy_j: f64,
    pub read_errors: u64,
    pub up: bool,
    last: Option<(Instant, Reading)>,
}

impl MeterState {
    pub fn new(info: MeterInfo) -> Self {
        MeterState {
            info,
            watts: None,
            energy_j: 0.0,
            read_errors: 0,
            up: false,
            last: None,
        }
    }

    /// Takes one reading made at `at`; `gap` is the longest interval
    /// integrated for power samples.
    pub fn update(&mut self, at: Instant, reading: Reading, gap: Duration) {
        self.up = true;
        if let Some((t0, prev)) = self.last {
            let dt = at.saturating_duration_since(t0).as_secs_f64();
            match (prev, reading) {
                (
                    Reading::Energy { counter_uj: a, .. },
                    Reading::Energy {
                        counter_uj: b,
                        wrap_uj,
                    },
                ) => match counter_step(a, b, wrap_uj) {
                    CounterStep::Forward(d) | CounterStep::Wrapped(d) => {
                        let j = d as f64 * 1e-6;
                        self.energy_j += j;
                        if dt > 0.0 {
                            self.watts = Some(j / dt);
                        }
                    }
                    CounterStep::Reset => {}
                },
                (Reading::Power { watts: w0, .. }, Reading::Power { watts: w1, .. })
                    if dt > 0.0 && dt <= gap.as_secs_f64() && w0.is_finite() && w1.is_finite() =>
                {
                    self.energy_j += 0.5 * (w0 + w1) * dt;
                }
                _ => {}
            }
        }
        if let Reading::Power { watts, .. } = reading {
            if watts.is_finite() {
                self.watts = Some(watts);
            }
        }
        self.last = Some((at, reading));
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
        &|s| s.watts,
    );
    family(
        "joulebench_energy_joules_total",
        "counter",
        "Energy in joules since the exporter started.",
        &|s| Some(s.energy_j),
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

fn sample_forever(mut meter: Box<dyn Meter>, state: Arc<Mutex<MeterState>>, interval: Duration) {
    let gap = interval * GAP_PERIODS;
    let mut next = Instant::now();
    loop {
        let reading = meter.read();
        let at = Instant::now();
        if let Ok(mut s) = state.lock() {
            match reading {
                Ok(r) => s.update(at, r, gap),
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

pub fn run(args: ExporterArgs) -> Result<ExitCode> {
    let selection = args.power.select()?;
    for u in &selection.unusable {
        tracing::info!("not usable: {}", u.error);
    }
    if selection.meters.is_empty() {
        bail!("no usable meter to export (`joulebench power list` shows what this machine has)");
    }
    let interval = args.power.power_interval;
    if interval.is_zero() {
        bail!("--power-interval must be above zero");
    }
    let host = report::system::SystemDescription::detect().hostname;
    let mut states = Vec::new();
    for meter in selection.meters {
        let state = Arc::new(Mutex::new(MeterState::new(meter.info().clone())));
        let s = Arc::clone(&state);
        std::thread::Builder::new()
            .name(format!("export-{}", meter.info().id))
            .spawn(move || sample_forever(meter, s, interval))
            .context("starting a meter thread")?;
        states.push(state);
    }
    let server = tiny_http::Server::http(args.listen.as_str())
        .map_err(|e| anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = server.server_addr();
    let ids: Vec<String> = states
        .iter()
        .filter_map(|s| s.lock().ok().map(|s| s.info.id.clone()))
        .collect();
    eprintln!(
        "joulebench exporter: serving http://{addr}/metrics ({})",
        ids.join(", ")
    );
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let response = match (request.method(), path.as_str()) {
            (tiny_http::Method::Get, "/metrics") => {
                let snapshot: Vec<MeterState> = states
                    .iter()
                    .filter_map(|s| s.lock().ok().map(|s| s.clone()))
                    .collect();
                text(
                    200,
                    render(&snapshot, &host),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            }
            (tiny_http::Method::Get, "/") => text(
                200,
                "joulebench exporter: metrics at /metrics\n".into(),
                "text/plain; charset=utf-8",
            ),
            _ => text(
                404,
                "not found: try /metrics\n".into(),
                "text/plain; charset=utf-8",
            ),
        };
        if let Err(e) = request.respond(response) {
            tracing::debug!("answering a scrape: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn text(
    code: u16,
    body: String,
    content_type: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut r = tiny_http::Response::from_string(body).with_status_code(code);
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        r = r.with_header(h);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use power::meter::{Provenance, ReadingKind, Scope};

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
    fn counters_accumulate_across_a_wrap_and_give_watts() {
        let mut s = MeterState::new(info(ReadingKind::EnergyCounter));
        let t0 = Instant::now();
        let e = |uj| Reading::Energy {
            counter_uj: uj,
            wrap_uj: Some(1_000_000),
        };
        let gap = Duration::from_secs(1);
        s.update(t0, e(900_000), gap);
        assert_eq!(s.watts, None, "no power from one reading");
        s.update(t0 + Duration::from_millis(100), e(100_000), gap);
        assert!((s.energy_j - 0.2).abs() < 1e-12, "{}", s.energy_j);
        assert!((s.watts.unwrap() - 2.0).abs() < 1e-9);
        s.update(t0 + Duration::from_millis(200), e(50), gap);
        assert!((s.energy_j - 0.2).abs() < 1e-12, "a reset adds nothing");
    }

    #[test]
    fn power_samples_integrate_but_not_across_a_gap() {
        let mut s = MeterState::new(info(ReadingKind::PowerSample));
        let t0 = Instant::now();
        let gap = Duration::from_secs(1);
        s.update(t0, Reading::watts(10.0), gap);
        s.update(t0 + Duration::from_millis(500), Reading::watts(30.0), gap);
        assert!((s.energy_j - 10.0).abs() < 1e-9);
        s.update(t0 + Duration::from_secs(5), Reading::watts(30.0), gap);
        assert!((s.energy_j - 10.0).abs() < 1e-9, "gap skipped");
        assert_eq!(s.watts, Some(30.0));
    }

    #[test]
    fn the_text_format_has_types_labels_and_escapes() {
        let mut s = MeterState::new(info(ReadingKind::PowerSample));
        s.update(Instant::now(), Reading::watts(12.5), Duration::from_secs(1));
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
