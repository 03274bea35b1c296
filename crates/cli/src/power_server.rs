//! `joulebench power-server`: the MLPerf Power director, speaking power-dev's
//! v3 protocol (the behaviour lives in `mlperf_power::server`).

use anyhow::{bail, Context, Result};
use clap::Args;
use mlperf_power::analyzer::AnalyzerConfig;
use mlperf_power::server::{PowerDevConfig, Server, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "EXAMPLES:
  # power-dev's own server.conf, as is:
  joulebench power-server -c server.conf --out-dir /srv/mlperf-power
  # or everything on the command line (here a virtual analyzer for a rehearsal):
  joulebench power-server --ptd ./ptd-wrapper.sh --device-type 49 --device-port /dev/null \\
      --ptd-port 8888 --ntp 127.0.0.1 --out-dir sessions

SECURITY: power-dev's protocol has no authentication. The server listens on 127.0.0.1 unless \
you name another address; beyond loopback, --token-file makes it take no action for a client \
that has not sent the token first. Only `joulebench power-client --token-file` can send one: \
power-dev's own client cannot, so do not require a token when mixing with it.

The server never sets the system clock: when its offset against --ntp is 400 ms or more it \
refuses the stage and says by how much. See docs/mlperf-power.md.")]
pub struct PowerServerArgs {
    /// power-dev's server config ([server] ntpServer, listen; [ptd] ptd; [analyzerN] ...).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,

    /// PTDaemon, or a wrapper script running `joulebench ptd-serve` (overrides the config).
    #[arg(long, value_name = "PATH")]
    ptd: Option<PathBuf>,

    /// PTDaemon device type (e.g. 49 = WT310), when not using -c.
    #[arg(long, value_name = "N")]
    device_type: Option<u32>,

    /// PTDaemon device port (e.g. /dev/usbtmc0), when not using -c.
    #[arg(long, value_name = "PORT")]
    device_port: Option<String>,

    /// TCP port PTDaemon listens on, when not using -c.
    #[arg(long, value_name = "PORT", default_value = "8888")]
    ptd_port: u16,

    /// PTDaemon interface flag (e.g. -y), when not using -c.
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    interface_flag: Option<String>,

    /// NTP server for the clock checks (overrides the config).
    #[arg(long, value_name = "HOST[:PORT]")]
    ntp: Option<String>,

    /// Address and port to listen on (overrides the config). Default 127.0.0.1:4950.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,

    /// Where sessions and PTDaemon's logs go.
    #[arg(long, value_name = "DIR", default_value = "power-server-sessions")]
    out_dir: PathBuf,

    /// File holding a shared token clients must send first (for listening beyond loopback).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// Wait around each start and stop for the analyzer to settle (power-dev: 10 s).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::run::parse_duration)]
    settle: Duration,

    /// Longest wait for one PTDaemon reply.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::run::parse_duration)]
    ptd_timeout: Duration,

    /// How long a client may take to send its greeting or to end a line it
    /// began; one that stalls is disconnected (its session, if any, is marked
    /// incomplete).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::run::parse_duration)]
    client_line_timeout: Duration,

    /// How long a connected client with no session open may stay silent
    /// before it is disconnected, so that it cannot hold the server (one
    /// client at a time) for ever. Inside a session there is no limit.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = crate::run::parse_duration)]
    client_idle_timeout: Duration,
}

pub fn read_token(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--token-file {}", path.display()))?;
    let token = text.trim().to_string();
    if token.is_empty() || token.contains([',', '\r', '\n']) {
        bail!(
            "--token-file {}: the token must be one non-empty line without commas",
            path.display()
        );
    }
    Ok(token)
}

pub fn run(args: PowerServerArgs) -> Result<ExitCode> {
    let mut from_file = None;
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let c = PowerDevConfig::parse(&text, path)?;
        for note in &c.ignored {
            eprintln!("note: {}: ignoring {note}", path.display());
        }
        from_file = Some(c);
    }
    let analyzers = match (&from_file, &args.device_type, &args.device_port) {
        (_, Some(dt), Some(dp)) => vec![AnalyzerConfig {
            device_type: *dt,
            device_port: dp.clone(),
            network_port: args.ptd_port,
            interface_flag: args.interface_flag.clone(),
            channel: None,
            gpib_board: None,
            dc_flag: None,
        }],
        (Some(c), None, None) => c.analyzers.clone(),
        _ => bail!("name the analyzer: -c server.conf, or --device-type and --device-port"),
    };
    let ptd_path = args
        .ptd
        .clone()
        .or_else(|| from_file.as_ref().map(|c| c.ptd_path.clone()))
        .context("no PTDaemon: give --ptd PATH or -c server.conf with [ptd] ptd")?;
    let ntp_server = args
        .ntp
        .clone()
        .or_else(|| from_file.as_ref().map(|c| c.ntp_server.clone()))
        .context("no NTP server: give --ntp HOST or -c server.conf with [server] ntpServer")?;
    let listen = args
        .listen
        .or_else(|| from_file.as_ref().and_then(|c| c.listen))
        .unwrap_or_else(|| {
            SocketAddr::from(([127, 0, 0, 1], mlperf_power::protocol::DEFAULT_PORT))
        });
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let config = ServerConfig {
        ptd_path,
        analyzers,
        ntp_server,
        listen,
        out_dir: args.out_dir.clone(),
        token,
        settle: args.settle,
        ptd_timeouts: power::meter::ptd::PtdTimeouts {
            connect: Duration::from_secs(5),
            reply: args.ptd_timeout,
        },
        ptd_start_timeout: Duration::from_secs(30),
        client_line_timeout: args.client_line_timeout,
        client_idle_timeout: args.client_idle_timeout,
    };
    let server = Server::start(config)?;
    let addr = server
        .local_addr()
        .context("reading the listening address")?;
    eprintln!(
        "power-server: listening on {addr} (sessions in {})",
        args.out_dir.display()
    );
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing the signal handler")?;
    }
    server.serve(stop);
    Ok(ExitCode::SUCCESS)
}
