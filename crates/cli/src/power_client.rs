//! `joulebench power-client`: the MLPerf Power client, speaking power-dev's
//! v3 protocol (the behaviour lives in `mlperf_power::client`).

use anyhow::{bail, Context, Result};
use clap::Args;
use mlperf_power::checker::{self, Outcome};
use mlperf_power::client::{self, ClientConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "EXAMPLE:
  joulebench power-client -a director:4950 -n ntp.example.org -L loadgen-out -o results \\
      -w 'joulebench run --duration 600 --quiet --power none -o loadgen-out'

The workload runs twice (ranging, then testing; $JOULEBENCH_POWER_STAGE says which) and must \
write LoadGen's logs under -L. The result is OUTDIR/SESSION (named SESSION.incomplete, with \
INCOMPLETE.txt, when the session fails). The clock is checked against -n and the server before \
each stage; 400 ms or more is refused, and joulebench never sets the clock.

--check DIR runs joulebench's reading of MLPerf's eleven power checks on a result folder.")]
pub struct PowerClientArgs {
    /// Server address, HOST[:PORT] (port 4950 by default).
    #[arg(
        short = 'a',
        long = "addr",
        value_name = "HOST[:PORT]",
        required_unless_present = "check"
    )]
    addr: Option<String>,

    /// Shell command to run under measurement (twice).
    #[arg(
        short = 'w',
        long = "run-workload",
        value_name = "CMD",
        required_unless_present = "check"
    )]
    workload: Option<String>,

    /// Folder where the workload writes LoadGen's logs.
    #[arg(
        short = 'L',
        long = "loadgen-logs",
        value_name = "INDIR",
        required_unless_present = "check"
    )]
    loadgen_logs: Option<PathBuf>,

    /// Folder for the result (a SESSION folder is made inside).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "OUTDIR",
        required_unless_present = "check"
    )]
    output: Option<PathBuf>,

    /// NTP server, HOST[:PORT].
    #[arg(
        short = 'n',
        long = "ntp",
        value_name = "HOST",
        required_unless_present = "check"
    )]
    ntp: Option<String>,

    /// A label for the session name (letters, digits, - and _).
    #[arg(short = 'l', long, default_value = "")]
    label: String,

    /// Ask the server to exit after this client.
    #[arg(short = 'S', long)]
    stop_server: bool,

    /// File with the shared token a server listening beyond loopback requires.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// Longest wait for one server reply.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = crate::run::parse_duration)]
    reply_timeout: Duration,

    /// Check a result folder instead (the eleven checks), e.g. OUTDIR/SESSION.
    #[arg(long, value_name = "DIR")]
    check: Option<PathBuf>,

    /// With --check: MLPerf's sources_checksums.json, to verify the two source checks.
    #[arg(long, value_name = "FILE", requires = "check")]
    sources_checksums: Option<PathBuf>,
}

pub fn run(args: PowerClientArgs) -> Result<ExitCode> {
    if let Some(dir) = &args.check {
        let results = checker::check(dir, args.sources_checksums.as_deref());
        let mut ok = true;
        for r in &results {
            match &r.outcome {
                Outcome::Passed => println!("[x] {}", r.name),
                Outcome::Warning(w) => println!("[x] {} (warning: {w})", r.name),
                Outcome::Failed(e) => {
                    ok = false;
                    println!("[ ] {}\n      {e}", r.name)
                }
            }
        }
        let passed = results.iter().filter(|r| r.passed()).count();
        println!("{passed} passed, {} failed", results.len() - passed);
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let (Some(addr), Some(workload), Some(loadgen_logs), Some(output), Some(ntp)) = (
        args.addr,
        args.workload,
        args.loadgen_logs,
        args.output,
        args.ntp,
    ) else {
        bail!("-a, -w, -L, -o and -n are required");
    };
    let server = if addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr
    } else {
        format!("{addr}:{}", mlperf_power::protocol::DEFAULT_PORT)
    };
    let token = args
        .token_file
        .as_deref()
        .map(crate::power_server::read_token)
        .transpose()?;
    let config = ClientConfig {
        server,
        ntp_server: ntp,
        workload,
        loadgen_logs,
        output,
        label: args.label,
        stop_server: args.stop_server,
        token,
        reply_timeout: args.reply_timeout,
    };
    let folder = client::run(&config).context("power-client")?;
    println!("{}", folder.display());
    Ok(ExitCode::SUCCESS)
}
