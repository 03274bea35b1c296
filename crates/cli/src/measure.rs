//! `joulebench measure -- COMMAND [ARGS...]`: the energy of any command, like
//! `perf stat` or `/usr/bin/time` for joules.
//!
//! The meters are chosen (and any idle power measured) before the command
//! starts; the sampler runs from before its start to after its exit, and the
//! energy is computed over exactly the command's lifetime on the run clock.
//! The command owns the terminal: its stdin, stdout and stderr are untouched,
//! our summary goes to stderr after it exits (`--json` puts one JSON object on
//! stdout instead, for scripts), and our exit code is its exit code. Phases the
//! command marks through `$JOULEBENCH_MARKS` get their own energy
//! (`report::phases`).
//!
//! Under Slurm (`srun joulebench measure -- ...`), each node's first task
//! (SLURM_LOCALID 0) measures and writes `OUTPUT/<node name>/result.json`;
//! other tasks on the same node only run the command, so a node's meters are
//! never counted twice. `joulebench merge OUTPUT` then sums the nodes.
//!
//! Exit status: the command's, or 128 + the signal that ended it; 127 when the
//! command is not found, 126 when it cannot be executed; 125 when joulebench
//! itself failed (the message says why). Whatever was measured is written
//! even then.

use anyhow::{Context, Result};
use clap::Args;
use harness::child;
use harness::command::{self, local_task_is_not_first, slurm_context};
use report::schema::{self, SlurmContext};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Exit code for joulebench's own failures (as `env`, `timeout`, `nohup`).
const OWN_FAILURE: u8 = 125;

#[derive(Debug, Args)]
#[command(after_long_help = "\
The command runs with its stdin, stdout and stderr untouched; the summary goes to stderr when it \
exits. Signals sent to joulebench (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, \
SIGWINCH) are passed on to it.

PHASES: the command finds a FIFO's path in $JOULEBENCH_MARKS. Each line written there starts a \
phase of that name (ending the one before); `end` ends the current phase. Energy is reported per \
phase. From a shell: echo train > \"$JOULEBENCH_MARKS\"; from Python: \
open(os.environ['JOULEBENCH_MARKS'], 'w').write('eval\\n').

SLURM: `srun joulebench measure -o DIR -- CMD` writes DIR/<node>/result.json on each node (only \
the first task of a node measures); `joulebench merge DIR` sums them.

OUTPUT (in --output, default joulebench-results/<time>-measure-<program>): result.json (kind \
`command`, docs/result-schema.md) and power/<meter>.csv.

EXIT STATUS: the command's; 128+N if signal N ended it; 127 command not found; 126 not \
executable; 125 joulebench failed.

EXAMPLES:
  joulebench measure -- python train.py --epochs 3
  joulebench measure --power rapl,nvml --idle 10 -o runs/train -- ./train.sh
  srun -N2 joulebench measure -o runs/job -- ./app   &&  joulebench merge runs/job")]
pub struct MeasureArgs {
    /// Meters to use (same as --power): auto, none, nvml, rapl, hwmon, estimate, ipmi, …
    #[arg(
        long,
        value_name = "SPEC",
        value_delimiter = ',',
        conflicts_with = "power"
    )]
    meters: Vec<String>,

    /// Sampling interval per meter (same as --power-interval), e.g. 100ms, 10ms.
    #[arg(long, value_name = "DURATION", value_parser = crate::run::parse_duration, conflicts_with = "power_interval")]
    interval: Option<Duration>,

    /// Folder for result.json and the power logs (under Slurm: a folder per node inside it).
    #[arg(long, short)]
    output: Option<PathBuf>,

    /// Print the result as one JSON object on stdout (after the command's own output).
    #[arg(long)]
    json: bool,

    /// No summary on stderr.
    #[arg(long, short)]
    quiet: bool,

    #[command(flatten)]
    power: crate::meters::PowerArgs,

    /// The command and its arguments (put `--` before it).
    #[arg(
        value_name = "COMMAND",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

pub fn run(mut args: MeasureArgs) -> Result<ExitCode> {
    if !args.meters.is_empty() {
        args.power.power = std::mem::take(&mut args.meters);
    }
    if let Some(i) = args.interval {
        args.power.power_interval = i;
    }
    let program_arg = args.command[0].clone();
    let program = match child::resolve(&program_arg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("joulebench measure: {}", e.message);
            return Ok(ExitCode::from(e.exit_code));
        }
    };
    let slurm = slurm_context();
    if local_task_is_not_first() {
        // Another task on this node measures it; this one only runs.
        tracing::info!("SLURM_LOCALID is not 0: running the command without measuring");
        let finished = child::run(
            &program,
            &program_arg,
            &args.command[1..],
            &[],
            Instant::now(),
        )?;
        return Ok(ExitCode::from(finished.exit_code()));
    }
    match measure(&args, &program, slurm) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("joulebench measure: error: {e:#}");
            Ok(ExitCode::from(OWN_FAILURE))
        }
    }
}

fn measure(args: &MeasureArgs, program: &Path, slurm: Option<SlurmContext>) -> Result<ExitCode> {
    let outdir = args
        .output
        .clone()
        .map(|o| command::node_folder(o, slurm.as_ref()))
        .unwrap_or_else(|| command::default_folder(&args.command[0], slurm.as_ref()));
    // Signals go to the command (child::run forwards them), not to a handler of ours.
    let mut session = harness::Session::open(
        outdir.clone(),
        &args.power.options(),
        harness::Interrupt::detached(),
    )?;
    if !session.has_meters() && !args.quiet && !session.options().none_asked() {
        eprintln!(
            "joulebench measure: no usable meter; measuring wall time only \
             (`joulebench power list` shows what this machine has)"
        );
    }
    session.measure_idle(|seconds| {
        if !args.quiet {
            eprintln!("joulebench measure: measuring idle power for {seconds} s");
        }
    })?;
    let measured = session.measure(&outdir, |clock: &harness::session::Clock| {
        command::run_marked(program, &args.command, &outdir, clock)
    })?;
    let report = measured.report;
    let (outcome, mark_lines) = measured.output;
    let finished = match outcome {
        Ok(f) => f,
        Err(e) => {
            // Found on PATH but the kernel would not run it (a bad `#!`
            // line, a binary for another machine): say so in the result too.
            let code = 126;
            eprintln!("joulebench measure: {e:#}");
            let result =
                command::not_started(&session, &args.command, slurm, format!("{e:#}"), code);
            session.write_json(schema::RESULT_FILE, &result)?;
            return Ok(ExitCode::from(code));
        }
    };
    let result = command::command_result(
        &session,
        &args.command,
        &finished,
        report.as_ref(),
        &mark_lines,
        slurm,
    )?;
    session.write_json(schema::RESULT_FILE, &result)?;

    for warning in report::text::command_warnings(&result) {
        eprintln!("joulebench measure: warning: {warning}");
    }
    if !args.quiet {
        eprint!(
            "{}",
            report::text::command_summary(&result, &outdir.display().to_string())
        );
    }
    if args.json {
        let line = serde_json::to_string(&result).context("serialising the JSON summary")?;
        let mut out = std::io::stdout().lock();
        // stdout closed by the reader is not our failure to report.
        let _ = writeln!(out, "{line}");
    }
    Ok(ExitCode::from(finished.exit_code()))
}
