//! `joulebench exporter`: power and energy as Prometheus metrics
//! (`power::prometheus`), served over HTTP. It listens on loopback unless an
//! address is given.
//! The HTTP server with its bounds is [`http`].

mod http;

use anyhow::{bail, Context, Result};
use clap::Args;
use power::prometheus::{read_forever, render_with_jobs, MeterState, RunningJob};
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Address to serve on; loopback unless you name another (e.g. 0.0.0.0:9469).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9469")]
    listen: String,

    /// How long a client may take to send a request (and to take the reply);
    /// a keep-alive connection idle this long is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::run::parse_duration)]
    client_timeout: Duration,

    /// The joulebench agent's query socket: series of devices a running Slurm job
    /// has get a `job_id` label, and each job a `joulebench_job_info` series.
    #[arg(long, value_name = "PATH")]
    agent_socket: Option<std::path::PathBuf>,

    #[command(flatten)]
    power: crate::meters::PowerArgs,
}

/// What the connection threads share: the meters' running figures.
pub struct Page {
    states: Vec<Arc<Mutex<MeterState>>>,
    host: String,
    agent_socket: Option<std::path::PathBuf>,
}

impl Page {
    pub fn metrics(&self) -> String {
        let snapshot: Vec<MeterState> = self
            .states
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        render_with_jobs(&snapshot, &self.host, &self.running_jobs())
    }

    /// The agent's running jobs; none (and a warning) when it cannot be asked:
    /// the metrics are served either way.
    fn running_jobs(&self) -> Vec<RunningJob> {
        let Some(socket) = &self.agent_socket else {
            return Vec::new();
        };
        match agent::hook::open_jobs(socket) {
            Ok(jobs) => jobs
                .into_iter()
                .map(|j| RunningJob {
                    job_id: j.job_id,
                    user: j.user,
                    gpus: j.gpus,
                })
                .collect(),
            Err(e) => {
                tracing::warn!("no job labels: {e}");
                Vec::new()
            }
        }
    }
}

pub fn run(args: ExporterArgs) -> Result<ExitCode> {
    if args.client_timeout.is_zero() {
        bail!("--client-timeout must be more than 0");
    }
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
    let mut ids = Vec::new();
    for meter in selection.meters {
        ids.push(meter.info().id.clone());
        let state = Arc::new(Mutex::new(MeterState::new(meter.info().clone(), interval)));
        let s = Arc::clone(&state);
        std::thread::Builder::new()
            .name(format!("export-{}", meter.info().id))
            .spawn(move || read_forever(meter, s, interval))
            .context("starting a meter thread")?;
        states.push(state);
    }
    let listener = TcpListener::bind(args.listen.as_str())
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("the listening address")?;
    eprintln!(
        "joulebench exporter: serving http://{addr}/metrics ({})",
        ids.join(", ")
    );
    let page = Arc::new(Page {
        states,
        host,
        agent_socket: args.agent_socket,
    });
    http::serve(listener, page, args.client_timeout);
    Ok(ExitCode::SUCCESS)
}
