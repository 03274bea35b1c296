//! `joulebench ptd-serve`: a drop-in PTDaemon backed by a joulebench meter
//! (the behaviour lives in `mlperf_power::ptd_daemon`).

use anyhow::{bail, Context, Result};
use clap::Args;
use mlperf_power::meter_source::MeterSource;
use mlperf_power::ptd_daemon::{self, DaemonConfig, PtdCommandLine};
use mlperf_power::virtual_analyzer::{self, Identity};
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(
    after_help = "PTDaemon's own command line follows our options, as power-dev's director writes it:\n  \
joulebench ptd-serve --power replay:trace.csv -l LOGFILE -p 8888 49 /dev/null\n\n\
By default `Identify` says this is joulebench's virtual analyzer (MLPerf's checker refuses it). \
--rehearsal-model WT310 answers as a Yokogawa WT310 so the whole MLPerf flow can be rehearsed; \
every line it writes then says it is a rehearsal, not a measurement. See docs/mlperf-power.md."
)]
pub struct PtdServeArgs {
    /// Answer as this analyzer model (WT210, WT310, WT330, WT500) to rehearse the MLPerf flow.
    #[arg(long, value_name = "MODEL")]
    rehearsal_model: Option<String>,

    /// Address to listen on (PTDaemon's -p gives the port). Loopback unless you name another.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    address: IpAddr,

    /// Volts to report when the meter gives none (amps = W / (V x PF)).
    #[arg(long, value_name = "VOLTS", default_value = "230")]
    volts: f64,

    /// Power factor to report when the meter gives none.
    #[arg(long, value_name = "PF", default_value = "1.0")]
    power_factor: f64,

    /// How often the meter is read; each sample is the mean over its interval.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = crate::run::parse_duration)]
    read_period: Duration,

    /// How long a client may take to end a line it began, or to take a
    /// reply; one that stalls is disconnected.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::run::parse_duration)]
    client_line_timeout: Duration,

    /// How long a client may stay silent while no measurement runs before it
    /// is disconnected (one client at a time: a silent one would hold the
    /// daemon for ever). While a measurement runs there is no limit.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = crate::run::parse_duration)]
    client_idle_timeout: Duration,

    #[command(flatten)]
    power: crate::meters::PowerArgs,

    /// PTDaemon's command line: -l LOGFILE -p PORT [-b N] [-c CH] [flags] DEVICE_TYPE DEVICE_PORT
    #[arg(value_name = "PTD_ARGS", allow_hyphen_values = true, trailing_var_arg = true, num_args = 0..)]
    ptd_args: Vec<String>,
}

pub fn run(args: PtdServeArgs) -> Result<ExitCode> {
    let command_line = PtdCommandLine::parse(&args.ptd_args)?;
    if !(args.volts.is_finite() && args.volts > 0.0) {
        bail!("--volts {}: must be a positive number", args.volts);
    }
    if !(args.power_factor > 0.0 && args.power_factor <= 1.0) {
        bail!("--power-factor {}: must be in (0, 1]", args.power_factor);
    }
    let selection = args.power.select()?;
    let source = MeterSource::new(selection.meters, &args.power.total).context("ptd-serve")?;
    use mlperf_power::meter_source::PowerSource;
    let meter = source.describe();
    let identity = match &args.rehearsal_model {
        None => Identity::Honest { meter },
        Some(name) => Identity::Rehearsal {
            model: virtual_analyzer::model(name).with_context(|| {
                format!("--rehearsal-model {name}: use one of WT210, WT310, WT330, WT500")
            })?,
            meter,
        },
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing the signal handler")?;
    }
    let config = DaemonConfig {
        command_line,
        bind: args.address,
        identity,
        assumed_volts: args.volts,
        assumed_power_factor: args.power_factor,
        read_period: args.read_period,
        client_line_timeout: args.client_line_timeout,
        client_idle_timeout: args.client_idle_timeout,
    };
    ptd_daemon::serve(config, Box::new(source), stop, Box::new(std::io::stdout()))?;
    Ok(ExitCode::SUCCESS)
}
