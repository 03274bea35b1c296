//! `joulebench exporter`: power and energy as Prometheus metrics
//! (`power::prometheus`), served over HTTP. It listens on loopback unless an
//! address is given.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use power::prometheus::{read_forever, render, MeterState};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Address to serve on; loopback unless you name another (e.g. 0.0.0.0:9469).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9469")]
    listen: String,

    #[command(flatten)]
    power: crate::meters::PowerArgs,
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
            .spawn(move || read_forever(meter, s, interval))
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
