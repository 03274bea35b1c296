//! A command as the measured thing (`joulebench measure`, and a Slurm job
//! step): the command runs with its phase-marks FIFO on the session's
//! clock, and its result record holds the energy over its lifetime, each
//! marked phase's energy, each meter's peak power and how it ended.

use crate::child::{self, ChildError, Finished};
use crate::marks;
use crate::session::{Clock, Session};
use crate::HarnessError;
use power::energy::Window;
use power::sampler::SamplerReport;
use report::phases::Mark;
use report::schema::{self, CommandResult, MeasuredCommand, RunStatus, SlurmContext, TimedWindow};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The command with its phase-marks FIFO, on the session's clock; the marks
/// it wrote come back with how it ended.
pub fn run_marked(
    program: &Path,
    argv: &[String],
    outdir: &Path,
    clock: &Clock,
) -> (Result<Finished, ChildError>, Vec<Mark>) {
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
    let outcome = child::run(program, &argv[0], &argv[1..], &env, clock.anchor());
    (outcome, marks.map(marks::Marks::stop).unwrap_or_default())
}

/// The command's result record: energy over its lifetime, each phase's
/// energy and each meter's peak, how it ended.
pub fn command_result(
    session: &Session,
    argv: &[String],
    finished: &Finished,
    report: Option<&SamplerReport>,
    marks: &[Mark],
    slurm: Option<SlurmContext>,
) -> Result<CommandResult, HarnessError> {
    use std::os::unix::process::ExitStatusExt;
    let begin_ns = finished.begin_ns;
    let end_ns = finished.end_ns.max(begin_ns + 1);
    let window = Window::new(begin_ns, end_ns)?;
    let power = match report {
        Some(r) => Some(session.power_record(r, window, None, None)?),
        None => None,
    };
    let (spans, mark_problems) = report::phases::spans(marks, begin_ns, end_ns);
    let idle_total_w = power
        .as_ref()
        .and_then(|p| p.idle.as_ref())
        .and_then(|i| i.total_idle_w);
    let phases = session.phase_records(report, &spans, idle_total_w)?;
    let interrupted = finished.signals.iter().any(|s| s.is_termination());
    let mut files = vec![schema::RESULT_FILE.to_string()];
    if let Some(p) = &power {
        files.extend(p.logs.iter().map(|l| l.file.clone()));
    }
    Ok(CommandResult {
        schema_version: schema::SCHEMA_VERSION,
        joulebench_version: env!("CARGO_PKG_VERSION").into(),
        kind: schema::KIND_COMMAND.into(),
        status: if interrupted {
            RunStatus::Interrupted
        } else {
            RunStatus::Completed
        },
        started_at: session
            .started_at()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        command: std::env::args().collect(),
        system: report::system::SystemDescription::detect(),
        measured_command: MeasuredCommand {
            argv: argv.to_vec(),
            exit_code: finished.status.code(),
            signal: finished.status.signal(),
            reported_exit_code: i32::from(finished.exit_code()),
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
        phase_totals: report::phases::phase_totals(&phases),
        phases,
        nodes: Vec::new(),
        power,
        peak_power: peak_power(report, window),
        files,
    })
}

/// The result of a command that could not be started.
pub fn not_started(
    session: &Session,
    argv: &[String],
    slurm: Option<SlurmContext>,
    error: String,
    code: u8,
) -> CommandResult {
    let started_at = session.started_at();
    CommandResult {
        schema_version: schema::SCHEMA_VERSION,
        joulebench_version: env!("CARGO_PKG_VERSION").into(),
        kind: schema::KIND_COMMAND.into(),
        status: RunStatus::Completed,
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        command: std::env::args().collect(),
        system: report::system::SystemDescription::detect(),
        measured_command: MeasuredCommand {
            argv: argv.to_vec(),
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
pub fn slurm_context() -> Option<SlurmContext> {
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

/// Whether another task on this node measures it (SLURM_LOCALID is not 0).
pub fn local_task_is_not_first() -> bool {
    std::env::var("SLURM_LOCALID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|id| id != 0)
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

/// Where a measured command's files go without `--output`:
/// `joulebench-results/<time>-measure-<program>`, or under Slurm
/// `joulebench-results/slurm-<job>[.<step>]-measure-<program>/<node>`.
pub fn default_folder(program: &str, slurm: Option<&SlurmContext>) -> PathBuf {
    let program = Path::new(program)
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_else(|| "command".into());
    match slurm {
        Some(s) => {
            let step = s
                .step_id
                .as_ref()
                .map(|x| format!(".{x}"))
                .unwrap_or_default();
            node_folder(
                PathBuf::from("joulebench-results")
                    .join(format!("slurm-{}{step}-measure-{program}", s.job_id)),
                Some(s),
            )
        }
        None => crate::output::default_folder(&chrono::Local::now(), &["measure", &program]),
    }
}

/// A folder per node inside `base` under Slurm (each node's first task
/// writes its own result; `joulebench merge` sums them).
pub fn node_folder(base: PathBuf, slurm: Option<&SlurmContext>) -> PathBuf {
    match slurm {
        Some(s) => base.join(&s.node_name),
        None => base,
    }
}
