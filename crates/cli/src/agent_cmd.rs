//! `joulebench agent` (the node daemon behind per-job energy) and
//! `joulebench slurm prolog|epilog` (the hooks that tell it a job started or
//! ended). See `deploy/slurm/` for the systemd unit and the slurm.conf lines.

use agent::daemon::{serve_with, AgentConfig};
use agent::hook::{append_summary, message_from_env, query, send, SendError};
use agent::protocol::Event;
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

    /// Node power from the BMC, besides the node's own meters (RAPL, NVML and hwmon are
    /// always read): ipmi (the local BMC), ipmi://USER@HOST, redfish://HOST[:PORT].
    /// Comma-separated or repeated. Its energy becomes the node's total, and a shared
    /// node's rest (fans, power supplies, disks) is split by allocated CPUs.
    #[arg(long = "power", value_name = "SPEC", value_delimiter = ',')]
    power: Vec<String>,

    /// How often each power meter (BMC, hwmon) is sampled; its own update period
    /// where that is longer. ipmitool starts a process per sample.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = crate::run::parse_duration)]
    sample_interval: Duration,

    /// File with the IPMI password (else the IPMI_PASSWORD environment variable).
    #[arg(long, value_name = "FILE")]
    ipmi_password_file: Option<PathBuf>,

    /// File with Redfish credentials, USER:PASSWORD (else REDFISH_USER / REDFISH_PASSWORD).
    #[arg(long, value_name = "FILE")]
    redfish_credentials: Option<PathBuf>,

    /// Accept a Redfish BMC's self-signed certificate.
    #[arg(long)]
    redfish_insecure: bool,

    /// Where powercap (RAPL) and hwmon are looked for.
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    sysfs_root: PathBuf,

    /// NVML's library, when not the driver's libnvidia-ml.so.1.
    #[arg(long, value_name = "FILE")]
    nvml_library: Option<PathBuf>,

    /// Where the jobs' cgroups are (their CPU time splits a shared node's CPU energy).
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup")]
    cgroup_root: PathBuf,

    /// Where the hooks keep messages while the agent is down (their --spool-dir;
    /// default STATE_DIR/spool, which is the hooks' default with the default STATE_DIR).
    #[arg(long, value_name = "DIR")]
    spool_dir: Option<PathBuf>,
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
    /// On the controller, from a timer or by hand: sums again the jobs whose total is
    /// missing or stale in the shared records folder (EpilogSlurmctld failed, sacctmgr
    /// did not answer, or a node's record came late because its agent was down) and
    /// stores their AdminComment. Safe to run at any time; does nothing when all is done.
    Backfill(BackfillArgs),
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The records folder the agents share (their `--records-dir`).
    #[arg(long, value_name = "DIR")]
    records_dir: PathBuf,

    /// Write the jobs' totals only; leave AdminComment alone.
    #[arg(long)]
    no_admin_comment: bool,

    /// How long to keep asking sacctmgr for each job (slurmdbd may lag).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::run::parse_duration)]
    wait: Duration,
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

    /// Where the message waits when the agent is down (root only); the agent
    /// settles it on its return, interpolating its meters to the hook's time.
    #[arg(long, value_name = "DIR", default_value = agent::spool::DEFAULT_SPOOL_DIR)]
    spool_dir: PathBuf,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into())
}

/// The BMC meters `--power` names, opened and checked before the agent starts.
fn bmc_meters(args: &AgentArgs) -> Result<Vec<Box<dyn power::meter::Meter>>> {
    if args.power.is_empty() {
        return Ok(Vec::new());
    }
    for spec in &args.power {
        let bmc = spec == "ipmi" || spec.starts_with("ipmi://") || spec.starts_with("redfish");
        if !bmc {
            anyhow::bail!(
                "--power {spec}: the agent takes a BMC here (ipmi, ipmi://USER@HOST, \
                 redfish://HOST); RAPL, NVML and hwmon are always read"
            );
        }
    }
    let options = harness::PowerOptions {
        specs: args.power.clone(),
        ipmi_password_file: args.ipmi_password_file.clone(),
        redfish_credentials: args.redfish_credentials.clone(),
        redfish_insecure: args.redfish_insecure,
        sysfs_root: args.sysfs_root.clone(),
        ..harness::PowerOptions::default()
    };
    Ok(options.select()?.meters)
}

pub fn run_agent(args: AgentArgs) -> Result<ExitCode> {
    let extra = bmc_meters(&args)?;
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
        sample_interval: args.sample_interval,
        sysfs_root: args.sysfs_root,
        nvml_library: args.nvml_library,
        cgroup_root: args.cgroup_root,
        spool_dir: args.spool_dir,
    };
    eprintln!(
        "joulebench agent on {}: state in {}, hooks at {}",
        config.node,
        config.state_dir.display(),
        config.socket.display()
    );
    serve_with(config, extra, &stop)?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_slurm(command: SlurmCommand) -> Result<ExitCode> {
    let (event, args, name) = match command {
        SlurmCommand::Prolog(a) => (Event::Start, a, "prolog"),
        SlurmCommand::Epilog(a) => (Event::End, a, "epilog"),
        SlurmCommand::Backfill(a) => return backfill(&a),
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
    let message = match message_from_env(event, |k| std::env::var(k).ok()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("joulebench slurm {name}: energy not recorded: {e}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    match send(&args.socket, &message) {
        // No agent: the message waits in the spool for its return.
        Err(SendError::Unreachable(e)) => match agent::spool::keep(&args.spool_dir, &message) {
            Ok(path) => eprintln!(
                "joulebench slurm {name}: {e}; kept in {} for the agent's return",
                path.display()
            ),
            Err(spool) => {
                eprintln!("joulebench slurm {name}: energy not recorded: {e}; spooling: {spool}")
            }
        },
        Ok(reply) => {
            eprintln!("joulebench slurm {name}: {reply}");
            if event == Event::End {
                let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                if let Err(e) = append_summary(&reply, env) {
                    eprintln!("joulebench slurm {name}: no summary in the job's output: {e}");
                }
            }
        }
        Err(e) => eprintln!("joulebench slurm {name}: energy not recorded: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `joulebench job ID`: the job's energy per node and per GPU, with how it was
/// attributed. Users see their own jobs; root any.
pub fn run_job(args: JobArgs) -> Result<ExitCode> {
    let records = query(&args.socket, args.job_id).map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        print!("{}", agent::view::job_table(&records));
    }
    if let Some(path) = &args.html {
        let html = report::format::Format::Html
            .renderer()
            .render(&agent::view::job_document(&records));
        atomic_file::write(path, html.as_bytes())?;
        eprintln!("report: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
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
    if !total.missing_nodes.is_empty() {
        eprintln!(
            "joulebench slurm epilog-ctld: job {job_id}: no record from {} \
             (`joulebench slurm backfill` sums it again once they come)",
            total.missing_nodes.join(", ")
        );
    }
    total.store(&args.records_dir, !args.no_admin_comment, args.wait)
}

/// `joulebench slurm backfill`: every stale total summed again.
fn backfill(args: &BackfillArgs) -> Result<ExitCode> {
    let stale = agent::job::stale(&args.records_dir);
    if stale.is_empty() {
        println!("joulebench slurm backfill: every job's total is up to date");
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = 0;
    for (job_id, nodes) in &stale {
        let total = agent::job::total(*job_id, nodes, &args.records_dir, Duration::ZERO);
        let line = format!(
            "job {job_id}: {} on {} of {} node{}",
            agent::record::joules(total.job_j),
            total.records.len(),
            nodes.len(),
            if nodes.len() == 1 { "" } else { "s" }
        );
        match total.store(&args.records_dir, !args.no_admin_comment, args.wait) {
            Ok(()) => println!("{line}: stored"),
            Err(e) => {
                failed += 1;
                println!("{line}: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
