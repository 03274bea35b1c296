//! `joulebench`: measure how fast an ML system is and how much energy it
//! spends doing it, the way MLPerf does. This binary parses arguments and
//! wires the library crates together; the behaviour lives in them.

mod energy;
mod meters;
mod power_cmd;
mod progress;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "joulebench",
    version,
    about = "Benchmark ML systems for speed and energy, the MLPerf way",
    long_about = "joulebench drives a system under test with MLPerf LoadGen's scenarios \
(SingleStream, MultiStream, Server, Offline), writes the same logs MLPerf tooling reads, \
and reports the result with its validity.\n\nStart with `joulebench run` (a built-in SUT, \
no GPU or meter needed), then see `joulebench run --help`."
)]
struct Cli {
    /// More diagnostics on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a benchmark: a scenario against a system under test, with MLPerf logs.
    Run(run::RunArgs),
    /// See and trust the power meters: list what this machine has, watch live readings.
    #[command(subcommand)]
    Power(power_cmd::PowerCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JOULEBENCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Power(cmd) => power_cmd::run(cmd),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
