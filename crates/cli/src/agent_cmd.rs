//! `joulebench agent` (the node daemon behind per-job energy) and
//! `joulebench slurm prolog|epilog` (the hooks that tell it a job started or
//! ended). See `deploy/slurm/` for the systemd unit and the slurm.conf lines.

use agent::daemon::{serve, AgentConfig};
use agent::hook::{append_as_user, expand_output_path, message_from_env, query, send};
use agent::protocol::Event;
use agent::record::{joules, JobNodeRecord, JobSummary};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The socket both sides use unless told otherwise.
const DEFAULT_SOCKET: &str = "/run/joulebench/agent.sock";
/// Where users ask for their jobs (`joulebench job`).
const DEFAULT_QUERY_SOCKET: &str = "/run/joulebench/query.sock";

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The journal and each job's record (`jobs/<job>.<node>.json`) go here.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/joulebench")]
    state_dir: PathBuf,

    /// The Unix socket the hooks talk to (root only).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,

    /// The socket `joulebench job` asks (anyone may; each user sees their own jobs).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_QUERY_SOCKET)]
    query_socket: PathBuf,

    /// Where job records go (default STATE_DIR/jobs). A folder the nodes share lets
    /// any node's agent answer for a whole multi-node job, and EpilogSlurmctld sum it.
    #[arg(long, value_name = "DIR")]
    records_dir: Option<PathBuf>,

    /// A group that may read the records (0640 instead of 0600): SlurmUser's,
    /// when EpilogSlurmctld does not run as root.
    #[arg(long, value_name = "GROUP")]
    records_group: Option<String>,

    /// How often every counter is read into the journal; keep it well inside a
    /// RAPL counter's wrap time (minutes).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::run::parse_duration)]
    interval: Duration,

    /// This node's name in records (default: the host name).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,

    /// Where powercap (RAPL) is looked for.
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    sysfs_root: PathBuf,

    /// NVML's library, when not the driver's libnvidia-ml.so.1.
    #[arg(long, value_name = "FILE")]
    nvml_library: Option<PathBuf>,

    /// Where the jobs' cgroups are (their CPU time splits a shared node's CPU energy).
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup")]
    cgroup_root: PathBuf,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The Slurm job id.
    job_id: u64,

    /// The agent's query socket (on any node that sees the job's records).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_QUERY_SOCKET)]
    socket: PathBuf,

    /// Print the records as JSON instead of a table.
    #[arg(long)]
    json: bool,

    /// Also write a self-contained HTML report of the job to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SlurmCommand {
    /// For `Prolog=` (with `PrologFlags=Alloc`): tells the agent this job
    /// started on this node. Always exits 0 within a second, so a node never drains.
    Prolog(HookArgs),
    /// For `Epilog=`: tells the agent this job ended; the agent writes its record.
    /// Always exits 0 within a second.
    Epilog(HookArgs),
    /// For `EpilogSlurmctld=` (the controller, as SlurmUser): sums the job's node
    /// records (from a records folder the nodes share) into `<job>.json` and puts a
    /// compact summary in the job's AdminComment (`sacct -j ID -o AdminComment`).
    EpilogCtld(CtldArgs),
}

#[derive(Debug, Args)]
pub struct CtldArgs {
    /// The records folder the agents share (their `--records-dir`).
    #[arg(long, value_name = "DIR")]
    records_dir: PathBuf,

    /// How long to wait for the nodes' records (their Epilogs may still run).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::run::parse_duration)]
    wait: Duration,

    /// Write the job's record only; leave AdminComment alone.
    #[arg(long)]
    no_admin_comment: bool,

    /// Do the work here (the hook itself returns at once and leaves it to a
    /// detached copy of itself: slurmctld holds the job COMPLETING, its nodes
    /// busy, while EpilogSlurmctld runs).
    #[arg(long, hide = true)]
    worker: bool,
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// The agent's socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into())
}

pub fn run_agent(args: AgentArgs) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let config = AgentConfig {
        node: args.node.unwrap_or_else(host_name),
        state_dir: args.state_dir,
        socket: args.socket,
        query_socket: Some(args.query_socket),
        records_dir: args.records_dir,
        records_group: args
            .records_group
            .as_deref()
            .map(agent::hook::group_id)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        interval: args.interval,
        sysfs_root: args.sysfs_root,
        nvml_library: args.nvml_library,
        cgroup_root: args.cgroup_root,
    };
    eprintln!(
        "joulebench agent on {}: state in {}, hooks at {}",
        config.node,
        config.state_dir.display(),
        config.socket.display()
    );
    serve(config, &stop)?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_slurm(command: SlurmCommand) -> Result<ExitCode> {
    let (event, args, name) = match command {
        SlurmCommand::Prolog(a) => (Event::Start, a, "prolog"),
        SlurmCommand::Epilog(a) => (Event::End, a, "epilog"),
        SlurmCommand::EpilogCtld(a) => {
            // As the node hooks: say what went wrong, exit 0.
            let outcome = if a.worker {
                epilog_ctld(&a)
            } else {
                detach_ctld_worker(&a)
            };
            if let Err(e) = outcome {
                eprintln!("joulebench slurm epilog-ctld: {e}");
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    // Whatever happens, the job goes on and the node stays up: say why on
    // stderr (slurmd's log) and exit 0.
    let outcome = message_from_env(event, |k| std::env::var(k).ok())
        .map_err(|e| e.to_string())
        .and_then(|m| send(&args.socket, &m));
    match outcome {
        Ok(reply) => {
            eprintln!("joulebench slurm {name}: {reply}");
            if event == Event::End {
                if let Err(e) = tell_the_user(&reply) {
                    eprintln!("joulebench slurm {name}: no summary in the job's output: {e}");
                }
            }
        }
        Err(e) => eprintln!("joulebench slurm {name}: energy not recorded: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Appends the agent's summary to the job's output file (batch jobs: slurmd
/// names it in SLURM_JOB_STDOUT), written as the job's user.
fn tell_the_user(reply: &str) -> Result<(), String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(pattern) = var("SLURM_JOB_STDOUT") else {
        return Ok(()); // an interactive job: its output is a terminal
    };
    let summary: JobSummary = reply
        .strip_prefix("ok ")
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or("the agent's reply holds no summary")?;
    let path = expand_output_path(&pattern, var)
        .ok_or_else(|| format!("cannot expand the output file name {pattern}"))?;
    let id = |k: &str| -> Result<u32, String> {
        var(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{k} is not set"))
    };
    let nodes = var("SLURM_JOB_NUM_NODES")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    append_as_user(
        &path,
        id("SLURM_JOB_UID")?,
        id("SLURM_JOB_GID")?,
        &summary.line(nodes),
    )
}

/// `joulebench job ID`: the job's energy per node and per GPU, with how it was
/// attributed. Users see their own jobs; root any.
pub fn run_job(args: JobArgs) -> Result<ExitCode> {
    let records = query(&args.socket, args.job_id).map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        print!("{}", job_table(&records));
    }
    if let Some(path) = &args.html {
        let html = report::format::Format::Html
            .renderer()
            .render(&job_document(&records));
        atomic_file::write(path, html.as_bytes())?;
        eprintln!("report: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The job as a report document: per node, per GPU, and what was not counted.
fn job_document(records: &[JobNodeRecord]) -> report::document::Document {
    use report::document::{Block, Document, Section, Table};
    let first = &records[0];
    let total: f64 = records.iter().map(|r| r.job_j).sum();
    let mut nodes = Table::new(&[
        "node",
        "method",
        "seconds",
        "job J",
        "job kWh",
        "GPUs J",
        "CPU J",
        "GPUs not given J",
        "node measured J",
    ])
    .numeric(&[2, 3, 4, 5, 6, 7, 8]);
    let mut gpus = Table::new(&["node", "GPU", "J", "the job's"]).numeric(&[2]);
    let mut notes = Vec::new();
    for r in records {
        nodes.row(vec![
            r.node.clone(),
            r.method.clone(),
            format!("{:.1}", r.duration_s),
            format!("{:.1}", r.job_j),
            format!("{:.6}", r.job_j / 3.6e6),
            format!("{:.1}", r.job_gpu_j),
            format!("{:.1}", r.job_cpu_j),
            format!("{:.1}", r.unused_gpu_j),
            format!("{:.1}", r.node_measured_j),
        ]);
        for (g, j) in &r.gpu_j {
            let owned = if r.gpus.contains(g) { "yes" } else { "no" };
            gpus.row(vec![
                r.node.clone(),
                format!("gpu{g}"),
                format!("{j:.1}"),
                owned.into(),
            ]);
        }
        notes.extend(r.not_attributed.iter().map(|n| format!("{}: {n}", r.node)));
    }
    let mut per_node = Section::new("Per node");
    per_node.blocks.push(Block::Table(nodes));
    let mut sections = vec![per_node];
    if !gpus.rows.is_empty() {
        let mut section = Section::new("Per GPU");
        section.blocks.push(Block::Table(gpus));
        sections.push(section);
    }
    let mut how = Section::new("How it was measured");
    how.blocks.push(Block::Note(
        "RAPL (package, DRAM) and NVML (GPU) energy counters, read by joulebench agent on each \
         node between the job's Prolog and Epilog. exclusive: the job had the node alone and is \
         charged all of it; cpu-time-share: each GPU to the job it was given, package and DRAM \
         energy split by the jobs' cgroup CPU time."
            .into(),
    ));
    how.blocks.extend(notes.into_iter().map(Block::Warning));
    sections.push(how);
    Document {
        title: format!("Energy of Slurm job {}", first.job_id),
        subtitle: vec![
            format!(
                "{} (uid {}), {} node{}",
                first.user.as_deref().unwrap_or("?"),
                first.uid,
                records.len(),
                if records.len() == 1 { "" } else { "s" }
            ),
            format!("{} ({:.4} kWh)", joules(total), total / 3.6e6),
        ],
        sections,
    }
}

fn job_table(records: &[JobNodeRecord]) -> String {
    let total: f64 = records.iter().map(|r| r.job_j).sum();
    let first = &records[0];
    let mut out = format!(
        "job {} of {} (uid {}): {} ({:.4} kWh) on {} node{}\n",
        first.job_id,
        first.user.as_deref().unwrap_or("?"),
        first.uid,
        joules(total),
        total / 3.6e6,
        records.len(),
        if records.len() == 1 { "" } else { "s" }
    );
    out += &format!(
        "{:<12} {:<11} {:>9} {:>11} {:>10} {:>12}  GPUs\n",
        "node", "method", "seconds", "job", "kWh", "node total"
    );
    for r in records {
        let gpus = r
            .gpu_j
            .iter()
            .map(|(g, j)| {
                let mark = if r.gpus.contains(g) {
                    ""
                } else {
                    " (not the job's)"
                };
                format!("gpu{g} {}{mark}", joules(*j))
            })
            .collect::<Vec<_>>()
            .join(", ");
        out += &format!(
            "{:<12} {:<11} {:>9.1} {:>11} {:>10.5} {:>12}  {}\n",
            r.node,
            r.method,
            r.duration_s,
            joules(r.job_j),
            r.job_j / 3.6e6,
            joules(r.node_measured_j),
            if gpus.is_empty() { "-".into() } else { gpus }
        );
        for missing in &r.not_attributed {
            out += &format!("  {}: not counted: {missing}\n", r.node);
        }
    }
    out += "measured: RAPL and NVML energy counters read by joulebench agent on each node\n";
    out
}

/// Starts this command again as a detached worker (its own session, its
/// messages appended to `<records>/epilog-ctld.log`) and returns.
fn detach_ctld_worker(args: &CtldArgs) -> Result<(), String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.records_dir.join("epilog-ctld.log"))
        .map_err(|e| format!("{}: {e}", args.records_dir.display()))?;
    let mut worker = std::process::Command::new(
        std::env::current_exe().map_err(|e| format!("finding joulebench itself: {e}"))?,
    );
    worker
        .args(["slurm", "epilog-ctld", "--worker", "--records-dir"])
        .arg(&args.records_dir)
        .arg("--wait")
        .arg(format!("{}ms", args.wait.as_millis()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    if args.no_admin_comment {
        worker.arg("--no-admin-comment");
    }
    agent::hook::in_own_session(&mut worker);
    worker
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting the worker: {e}"))
}

/// The job's nodes' records summed into `<job>.json`, and its AdminComment.
fn epilog_ctld(args: &CtldArgs) -> Result<(), String> {
    let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let job_id: u64 = var("SLURM_JOB_ID")?
        .parse()
        .map_err(|_| "SLURM_JOB_ID is not a number".to_string())?;
    let list = var("SLURM_JOB_NODELIST")?;
    let nodes = agent::hostlist::expand(&list)
        .ok_or_else(|| format!("SLURM_JOB_NODELIST={list}: not a host list joulebench reads"))?;
    let total = agent::job::total(job_id, &nodes, &args.records_dir, args.wait);
    let json = serde_json::to_vec_pretty(&total).map_err(|e| e.to_string())?;
    atomic_file::write_private(&args.records_dir.join(format!("{job_id}.json")), &json)
        .map_err(|e| e.to_string())?;
    if !total.missing_nodes.is_empty() {
        eprintln!(
            "joulebench slurm epilog-ctld: job {job_id}: no record from {}",
            total.missing_nodes.join(", ")
        );
    }
    if args.no_admin_comment || total.records.is_empty() {
        return Ok(());
    }
    // The job has finished (scontrol refuses it now) and slurmdbd may not have
    // it yet: sacctmgr, again until it takes.
    let deadline = std::time::Instant::now() + args.wait;
    loop {
        let out = std::process::Command::new("sacctmgr")
            .args(["-i", "modify", "job", "where"])
            .arg(format!("jobid={job_id}"))
            .arg("set")
            .arg(format!("AdminComment={}", total.admin_comment()))
            .output()
            .map_err(|e| format!("running sacctmgr: {e}"))?;
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() && !said.contains("Nothing modified") {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("sacctmgr set AdminComment: {}", said.trim()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
