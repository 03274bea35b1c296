//! `joulebench exporter`: power and energy as Prometheus metrics.
//!
//! Each meter is read on its own thread (a slow BMC never delays a RAPL
//! counter), and only the running figures are kept: the latest power and the
//! energy since the exporter started. Nothing is logged to disk and no
//! samples pile up in memory, so it can run for months. (That is why this
//! does not use the run sampler, which keeps every sample for a run's logs.)
//!
//! Energy is accumulated the way the run's energy is computed, with the
//! run's gap rule (`power::running`). Power from a counter is the energy of
//! its last interval over its length.
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
use power::meter::{Meter, MeterInfo};
use power::running::RunningEnergy;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    pub fn read(&mut self, at: Instant, reading: power::meter::Reading) {
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

fn sample_forever(mut meter: Box<dyn Meter>, state: Arc<Mutex<MeterState>>, interval: Duration) {
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

pub fn run(args: ExporterArgs) -> Result<ExitCode> {
    let selection = args.power.select()?;
    for u in &selection.unusable {
        tracing::info!("not usable: {}", u.error);
    }
    if selection.meters.is_empty() {
        bail!("no usable meter to export (`joulebench power list` shows what this machine has)");
    }
    let interval = args.power.power_interval;
    let host = report::system::SystemDescription::detect().hostname;
    let mut states = Vec::new();
    for meter in selection.meters {
        let state = Arc::new(Mutex::new(MeterState::new(meter.info().clone(), interval)));
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
    fn the_text_format_has_types_labels_and_escapes() {
        let mut s = MeterState::new(info(ReadingKind::PowerSample), Duration::from_secs(1));
        s.read(Instant::now(), power::meter::Reading::watts(12.5));
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
