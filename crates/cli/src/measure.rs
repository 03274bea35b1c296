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
use harness::{child, marks};
use power::energy::Window;
use power::sampler::SamplerReport;
use report::schema::{self, CommandResult, MeasuredCommand, RunStatus, SlurmContext, TimedWindow};
use std::ffi::OsStr;
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
    use std::os::unix::process::ExitStatusExt;
    let outdir = output_dir(args, slurm.as_ref());
    // Signals go to the command (child::run forwards them), not to a handler of ours.
    let mut session = harness::Session::open(
        outdir.clone(),
        &args.power.options(),
        harness::Interrupt::detached(),
    )?;
    let started_at = session.started_at();
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
        run_marked(args, program, &outdir, clock)
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
            let result = not_started(args, slurm, started_at, format!("{e:#}"), code);
            session.write_json(schema::RESULT_FILE, &result)?;
            return Ok(ExitCode::from(code));
        }
    };
    let begin_ns = finished.begin_ns;
    let end_ns = finished.end_ns.max(begin_ns + 1);
    let window = Window::new(begin_ns, end_ns)?;
    let power = match &report {
        Some(r) => Some(session.power_record(r, window, None, None)?),
        None => None,
    };
    let (spans, mark_problems) = report::phases::spans(&mark_lines, begin_ns, end_ns);
    let idle_total_w = power
        .as_ref()
        .and_then(|p| p.idle.as_ref())
        .and_then(|i| i.total_idle_w);
    let phases = session.phase_records(report.as_ref(), &spans, idle_total_w)?;
    let phase_totals = report::phases::phase_totals(&phases);
    let peaks = peak_power(report.as_ref(), window);

    let interrupted = finished.signals.iter().any(|s| s.is_termination());
    let status = &finished.status;
    let exit_code = finished.exit_code();
    let mut files = vec![schema::RESULT_FILE.to_string()];
    if let Some(p) = &power {
        files.extend(p.logs.iter().map(|l| l.file.clone()));
    }
    let result = CommandResult {
        schema_version: schema::SCHEMA_VERSION,
        joulebench_version: env!("CARGO_PKG_VERSION").into(),
        kind: schema::KIND_COMMAND.into(),
        status: if interrupted {
            RunStatus::Interrupted
        } else {
            RunStatus::Completed
        },
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        command: std::env::args().collect(),
        system: report::system::SystemDescription::detect(),
        measured_command: MeasuredCommand {
            argv: args.command.clone(),
            exit_code: status.code(),
            signal: status.signal(),
            reported_exit_code: i32::from(exit_code),
            wall_s: window.duration_s(),
            start_error: None,
            forwarded_signals: finished
                .signals
                .iter()
                .map(|s| s.describe(begin_ns))
                .collect(),
            mark_problems,
            slurm,
        },
        timed_window: Some(TimedWindow {
            begin_ns,
            end_ns,
            duration_s: window.duration_s(),
            begin_utc: session.utc_at(begin_ns),
            end_utc: session.utc_at(end_ns),
        }),
        phases,
        phase_totals,
        nodes: Vec::new(),
        power,
        peak_power: peaks,
        files,
    };
    session.write_json(schema::RESULT_FILE, &result)?;

    warn_faults(&result);
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
    Ok(ExitCode::from(exit_code))
}

/// The command with its phase-marks FIFO, on the session's clock; the marks
/// it wrote come back with how it ended.
fn run_marked(
    args: &MeasureArgs,
    program: &Path,
    outdir: &Path,
    clock: &harness::session::Clock,
) -> (
    std::result::Result<child::Finished, child::ChildError>,
    Vec<report::phases::Mark>,
) {
    // Without a FIFO (no writable temp folder) the command still runs, unmarked.
    let marks = match marks::Marks::start(clock.anchor()) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("joulebench measure: warning: no phase marks: {e:#}");
            None
        }
    };
    let marks_path = marks.as_ref().map(|m| m.path().as_os_str().to_owned());
    let run_dir = outdir.as_os_str().to_owned();
    let mut env: Vec<(&str, &OsStr)> = vec![("JOULEBENCH_RUN_DIR", &run_dir)];
    if let Some(p) = &marks_path {
        env.push((marks::ENV, p));
    }
    let outcome = child::run(
        program,
        &args.command[0],
        &args.command[1..],
        &env,
        clock.anchor(),
    );
    (outcome, marks.map(marks::Marks::stop).unwrap_or_default())
}

/// The result of a command that could not be started.
fn not_started(
    args: &MeasureArgs,
    slurm: Option<SlurmContext>,
    started_at: chrono::DateTime<chrono::Utc>,
    error: String,
    code: u8,
) -> CommandResult {
    CommandResult {
        schema_version: schema::SCHEMA_VERSION,
        joulebench_version: env!("CARGO_PKG_VERSION").into(),
        kind: schema::KIND_COMMAND.into(),
        status: RunStatus::Completed,
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        command: std::env::args().collect(),
        system: report::system::SystemDescription::detect(),
        measured_command: MeasuredCommand {
            argv: args.command.clone(),
            exit_code: None,
            signal: None,
            reported_exit_code: i32::from(code),
            wall_s: 0.0,
            start_error: Some(error),
            forwarded_signals: Vec::new(),
            mark_problems: Vec::new(),
            slurm,
        },
        timed_window: None,
        phases: Vec::new(),
        phase_totals: Vec::new(),
        nodes: Vec::new(),
        power: None,
        peak_power: Vec::new(),
        files: vec![schema::RESULT_FILE.to_string()],
    }
}

/// Slurm's description of this task, when running inside a job.
fn slurm_context() -> Option<SlurmContext> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let job_id = var("SLURM_JOB_ID")?;
    Some(SlurmContext {
        job_id,
        step_id: var("SLURM_STEP_ID"),
        node_name: var("SLURMD_NODENAME")
            .unwrap_or_else(|| report::system::SystemDescription::detect().hostname),
        node_id: var("SLURM_NODEID").and_then(|v| v.parse().ok()),
        num_nodes: var("SLURM_JOB_NUM_NODES")
            .or_else(|| var("SLURM_NNODES"))
            .and_then(|v| v.parse().ok()),
    })
}

fn local_task_is_not_first() -> bool {
    std::env::var("SLURM_LOCALID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|id| id != 0)
}

/// `--output`, or a fresh folder under joulebench-results; a folder per node
/// inside it under Slurm.
fn output_dir(args: &MeasureArgs, slurm: Option<&SlurmContext>) -> PathBuf {
    let base = args.output.clone().unwrap_or_else(|| {
        let program = Path::new(&args.command[0])
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_else(|| "command".into());
        let tag = match slurm {
            Some(s) => format!(
                "slurm-{}{}",
                s.job_id,
                s.step_id
                    .as_ref()
                    .map(|x| format!(".{x}"))
                    .unwrap_or_default()
            ),
            None => {
                return harness::output::default_folder(
                    &chrono::Local::now(),
                    &["measure", &program],
                )
            }
        };
        PathBuf::from("joulebench-results").join(format!("{tag}-measure-{program}"))
    });
    match slurm {
        Some(s) => base.join(&s.node_name),
        None => base,
    }
}

/// Each meter's highest power inside the window.
fn peak_power(report: Option<&SamplerReport>, window: Window) -> Vec<schema::MeterPeak> {
    let Some(report) = report else {
        return Vec::new();
    };
    let w = Some((window.begin_ns as f64 * 1e-9, window.end_ns as f64 * 1e-9));
    report
        .meters
        .iter()
        .filter_map(|m| {
            let pts = report::run_dir::watts_over_time(&m.samples);
            report::run_dir::peak_w(&pts, w).map(|peak_w| schema::MeterPeak {
                meter_id: m.info.id.clone(),
                peak_w,
            })
        })
        .collect()
}

/// A meter that failed while measuring is said so on stderr, always.
fn warn_faults(result: &CommandResult) {
    let Some(p) = &result.power else { return };
    let begin = result.timed_window.as_ref().map_or(0, |w| w.begin_ns);
    for l in &p.logs {
        let f = &l.faults;
        if f.read_errors > 0 {
            eprintln!(
                "joulebench measure: warning: meter {} failed {} read(s) from {:.3} s on (last error: {}); \
                 its energy is incomplete",
                l.meter_id,
                f.read_errors,
                f.first_error_ns.unwrap_or(begin).saturating_sub(begin) as f64 * 1e-9,
                f.last_error.as_deref().unwrap_or("unknown")
            );
        }
        if let Some(e) = &f.panicked {
            eprintln!("joulebench measure: warning: meter {}: {e}", l.meter_id);
        }
    }
    for problem in &result.measured_command.mark_problems {
        eprintln!("joulebench measure: warning: {problem}");
    }
}
