//! `joulebench`: measure how fast an ML system is and how much energy it
//! spends doing it, the way MLPerf does. This binary parses arguments and
//! wires the library crates together; the behaviour lives in them.

mod accuracy_cmd;
mod agent_cmd;
mod compare;
mod endpoint_args;
mod exporter;
mod measure;
mod merge;
mod meters;
mod model_args;
mod ort_args;
mod power_client;
mod power_cmd;
mod power_server;
mod progress;
mod ptd_serve;
mod report_cmd;
mod run;
mod sweep;
mod train_cmd;

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
    Run(Box<run::RunArgs>),
    /// One closed-loop run per concurrency level: the Pareto curve of a serving endpoint,
    /// system tokens/s against tokens/s per user, with tokens/J at each point.
    Sweep(Box<sweep::SweepArgs>),
    /// See and trust the power meters: list what this machine has, watch live readings.
    #[command(subcommand)]
    Power(power_cmd::PowerCommand),
    /// Energy of any command, like `time` for joules: `joulebench measure -- CMD ARGS`.
    Measure(measure::MeasureArgs),
    /// Sum per-node results (e.g. one `measure` per Slurm node) into one.
    Merge(merge::MergeArgs),
    /// Score a run's mlperf_log_accuracy.json (top-1, SQuAD EM/F1, ROUGE, perplexity).
    Accuracy(accuracy_cmd::AccuracyArgs),
    /// A self-contained HTML (or Markdown) report of a run.
    Report(report_cmd::ReportArgs),
    /// Several runs side by side: throughput, W, J per sample, samples/J, ratios.
    Compare(compare::CompareArgs),
    /// Serve power and energy as Prometheus metrics.
    Exporter(exporter::ExporterArgs),
    /// A drop-in SPEC PTDaemon backed by any joulebench meter (virtual analyzer).
    PtdServe(ptd_serve::PtdServeArgs),
    /// MLPerf power director (power-dev's server role).
    PowerServer(power_server::PowerServerArgs),
    /// MLPerf power client (power-dev's client role).
    PowerClient(power_client::PowerClientArgs),
    /// Train to a target quality (or for throughput): time and energy to train, MLPerf Training logs.
    Train(train_cmd::TrainArgs),
    /// The node agent behind every Slurm job's energy (run as root, one per node).
    Agent(agent_cmd::AgentArgs),
    /// Slurm hooks: `joulebench slurm prolog` / `epilog` tell the agent a job started or ended.
    #[command(subcommand)]
    Slurm(agent_cmd::SlurmCommand),
    /// A Slurm job's energy per node and per GPU (your own jobs; root: any).
    Job(agent_cmd::JobArgs),
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
        Command::Run(args) => run::run(*args),
        Command::Sweep(args) => sweep::run(*args),
        Command::Power(cmd) => power_cmd::run(cmd),
        Command::Measure(args) => measure::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Accuracy(args) => accuracy_cmd::run(args),
        Command::Report(args) => report_cmd::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Exporter(args) => exporter::run(args),
        Command::PtdServe(args) => ptd_serve::run(args),
        Command::PowerServer(args) => power_server::run(args),
        Command::PowerClient(args) => power_client::run(args),
        Command::Train(args) => train_cmd::run(args),
        Command::Agent(args) => agent_cmd::run_agent(args),
        Command::Slurm(cmd) => agent_cmd::run_slurm(cmd),
        Command::Job(args) => agent_cmd::run_job(args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
