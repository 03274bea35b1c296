//! Every job's energy on a real two-node Slurm cluster
//! (../shared/tools/slurm-two-nodes), with no change to the jobs: one
//! `joulebench agent` per node, each reading its own fake RAPL tree at a
//! known power, and `joulebench slurm prolog|epilog` as the cluster's
//! Prolog/Epilog (`PrologFlags=Alloc`). Cases: a one-node job, a two-node
//! job (a record per node), `joulebench job` for root and for another user
//! (refused), an ordinary user's batch job (the summary in its output file,
//! written as the user; a symlink to a root-owned file is not followed as
//! root), a job array (a record per task), a cancelled job, and a node whose
//! agent is down (the hooks exit 0: the node stays IDLE, the job runs,
//! the hooks spool their messages, and the agent settles them on its
//! return). Skips, saying why, where the cluster cannot
//! start (not root, no script).

mod common;

use common::{read_json, FakeRapl};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

struct Cluster {
    tool: PathBuf,
    dir: PathBuf,
    agents: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
        let _ = Command::new(&self.tool).arg("down").arg(&self.dir).output();
    }
}

fn skip(why: &str) {
    eprintln!("SKIPPED slurm agent test: {why}");
}

fn agent(work: &Path, node: &str, trees: &Path) -> Child {
    common::joulebench()
        .args(["agent", "--node", node, "--interval", "50ms"])
        .arg("--state-dir")
        .arg(work.join(node).join("state"))
        .arg("--socket")
        .arg(work.join(node).join("agent.sock"))
        .arg("--query-socket")
        .arg(work.join(node).join("query.sock"))
        .arg("--records-dir")
        .arg(work.join("records"))
        .arg("--sysfs-root")
        .arg(trees.join(node))
        .arg("--nvml-library")
        .arg(fake_nvml())
        // The fake NVML's GPUs for this node (none on jbn2).
        .env("JOULEBENCH_FAKE_NVML_DIR", trees.join(node).join("nvml"))
        .spawn()
        .unwrap()
}

/// The job's AdminComment as `sacct` shows it.
fn admin_comment(job: &str, conf: &Path) -> String {
    let sacct = Command::new("sacct")
        .args([
            "-j",
            job,
            "-o",
            "AdminComment%400",
            "-P",
            "-n",
            "-X",
            "-S",
            "now-1hour",
        ])
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    String::from_utf8_lossy(&sacct.stdout).trim().to_string()
}

/// The fake NVML library (crates/agent/tests/fake_nvml/fake_nvml.c), built with cc.
fn fake_nvml() -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libfake-nvml-cli.so.1");
    // Built afresh each run, so a changed fake is never stale.
    {
        let source =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/fake_nvml/fake_nvml.c");
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&out)
            .arg(source)
            .status()
            .expect("cc builds the fake NVML");
        assert!(status.success());
    }
    out
}

/// A fake GPU whose NVML energy counter (millijoules) rises at `watts`.
struct FakeGpu {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeGpu {
    fn start(dir: PathBuf, watts: f64, utilization: u32) -> FakeGpu {
        use std::sync::atomic::{AtomicBool, Ordering};
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("energy_mj"), "0\n").unwrap();
        std::fs::write(dir.join("utilization"), format!("{utilization}\n")).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let mj = (start.elapsed().as_secs_f64() * watts * 1e3) as u64;
                let tmp = dir.join("energy_mj.tmp");
                if std::fs::write(&tmp, format!("{mj}\n")).is_ok() {
                    let _ = std::fs::rename(&tmp, dir.join("energy_mj"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        FakeGpu { stop }
    }
}

impl Drop for FakeGpu {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `PROGRAM ARGS --parsable --output=OUTPUT --wrap WRAP` (sbatch, or
/// runuser running sbatch): the job id.
fn submit(
    program: &str,
    args: &[&str],
    output: &Path,
    wrap: &str,
    cwd: &Path,
    conf: &Path,
) -> String {
    let o = Command::new(program)
        .args(args)
        .arg("--parsable")
        .arg(format!("--output={}", output.display()))
        .args(["--wrap", wrap])
        .current_dir(cwd)
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sbatch: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Waits (up to 20 s) until `job` runs.
fn wait_running(job: &str, conf: &Path) {
    for _ in 0..200 {
        let state = Command::new("squeue")
            .args(["-h", "-j", job, "-o", "%t"])
            .env("SLURM_CONF", conf)
            .output()
            .unwrap();
        if String::from_utf8_lossy(&state.stdout).trim() == "R" {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn record(work: &Path, node: &str, job: &str) -> Option<serde_json::Value> {
    let path = work.join("records").join(format!("{job}.{node}.json"));
    path.is_file().then(|| read_json(&path))
}

/// Waits for the Epilog's record (slurmd runs it after the job returns).
fn wait_record(work: &Path, node: &str, job: &str) -> serde_json::Value {
    for _ in 0..200 {
        if let Some(r) = record(work, node, job) {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let have: Vec<String> = std::fs::read_dir(work.join("records"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let log = std::env::temp_dir()
        .join(format!("joulebench-slurm-agent-{}", std::process::id()))
        .join(format!("log/slurmd-{node}.log"));
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    panic!(
        "no record of job {job} on {node}; records: {have:?}; slurmd:\n{}",
        tail.join("\n")
    );
}

#[test]
fn prolog_and_epilog_give_every_job_its_energy_per_node() {
    let Some(tool) = common::slurm_tool() else {
        return skip("../shared/tools/slurm-two-nodes not found (set JOULEBENCH_SLURM_TOOL)");
    };
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return skip("the two-node cluster needs root (network namespaces, slurmd)");
    }
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let trees = work.join("trees");
    let _n1 = FakeRapl::start(&trees.join("jbn1"), 20.0);
    let _n2 = FakeRapl::start(&trees.join("jbn2"), 50.0);
    // jbn1's two GPUs draw 100 W and 300 W; jbn2 has none NVML can see.
    // GPU 0 is busy whenever asked; GPU 1 never is.
    let _g0 = FakeGpu::start(trees.join("jbn1/nvml/gpu0"), 100.0, 60);
    let _g1 = FakeGpu::start(trees.join("jbn1/nvml/gpu1"), 300.0, 0);
    // All of jbn1: its package and both GPUs.
    const JBN1_W: f64 = 20.0 + 100.0 + 300.0;
    let dir = std::env::temp_dir().join(format!("joulebench-slurm-agent-{}", std::process::id()));
    for (name, command) in [
        (
            "prolog.sh",
            format!(
                "slurm prolog --socket '{0}'/$SLURMD_NODENAME/agent.sock \
                 --spool-dir '{0}'/$SLURMD_NODENAME/state/spool",
                work.display()
            ),
        ),
        (
            "epilog.sh",
            format!(
                "slurm epilog --socket '{0}'/$SLURMD_NODENAME/agent.sock \
                 --spool-dir '{0}'/$SLURMD_NODENAME/state/spool",
                work.display()
            ),
        ),
        (
            "epilog_ctld.sh",
            // slurmctld gives the script no SLURM_CONF: this cluster's is not
            // at the default path, so scontrol is told where it is.
            format!(
                "slurm epilog-ctld --records-dir '{0}'/records 2>>'{0}'/epilog_ctld.log",
                work.display()
            ),
        ),
    ] {
        let script = work.join(name);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexport SLURM_CONF='{}'\nexec '{}' {command}\n",
                dir.join("slurm.conf").display(),
                common::BIN
            ),
        )
        .unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(&script)
            .status()
            .unwrap();
    }
    let extra = work.join("extra.conf");
    std::fs::write(
        &extra,
        format!(
            "Prolog={0}/prolog.sh\nEpilog={0}/epilog.sh\nPrologFlags=Alloc\n\
             EpilogSlurmctld={0}/epilog_ctld.sh\n",
            work.display()
        ),
    )
    .unwrap();
    let mut cluster = Cluster {
        tool: tool.clone(),
        dir: dir.clone(),
        agents: vec![agent(work, "jbn1", &trees), agent(work, "jbn2", &trees)],
    };
    let up = Command::new(&tool)
        .arg("up")
        .arg(&dir)
        .env("SLURM_EXTRA_CONF", &extra)
        // MariaDB and slurmdbd: AdminComment and sacct.
        .env("SLURM_ACCOUNTING", "1")
        // Two CPUs and two (fake) GPUs a node: two jobs can share one.
        .env("SLURM_NODE_CPUS", "2")
        .env("SLURM_FAKE_GPUS", "2")
        .output()
        .unwrap();
    let up_text =
        String::from_utf8_lossy(&up.stdout).to_string() + &String::from_utf8_lossy(&up.stderr);
    if !up.status.success() || !up_text.contains("idle") {
        return skip(&format!("the cluster did not start:\n{up_text}"));
    }
    let conf = dir.join("slurm.conf");
    let srun = |args: &[&str]| {
        let o = Command::new("timeout")
            .arg("120")
            .arg("srun")
            .args(args)
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        let text =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "srun {args:?}: {text}");
        text
    };
    let job_of = |text: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix("job "))
            .unwrap_or_else(|| panic!("no job id in {text}"))
            .trim()
            .to_string()
    };

    // A one-node job: all of jbn1 (20 W) for its duration.
    let one = srun(&[
        "-N1",
        "-w",
        "jbn1",
        "sh",
        "-c",
        "echo job $SLURM_JOB_ID; sleep 1",
    ]);
    let job = job_of(&one);
    let r = wait_record(work, "jbn1", &job);
    assert_eq!(r["method"], "exclusive", "{r}");
    let (joules, seconds) = (
        r["job_j"].as_f64().unwrap(),
        r["duration_s"].as_f64().unwrap(),
    );
    assert!(seconds >= 1.0, "{r}");
    assert!(
        (joules / seconds - JBN1_W).abs() < 0.03 * JBN1_W,
        "{joules} J in {seconds} s: {r}"
    );
    // A CPU-only job had the node's GPUs too: said so.
    let unused = r["unused_gpu_j"].as_f64().unwrap() / seconds;
    assert!(
        (unused - 400.0).abs() < 0.03 * 400.0,
        "{joules} J in {seconds} s: {r}"
    );
    assert!(
        record(work, "jbn2", &job).is_none(),
        "jbn2 was not in the job"
    );

    // A two-node job: a record on each node, each with its own power.
    let two = srun(&["-N2", "sh", "-c", "echo job $SLURM_JOB_ID; sleep 1"]);
    let job = job_of(two.lines().find(|l| l.starts_with("job ")).unwrap());
    for (node, watts) in [("jbn1", JBN1_W), ("jbn2", 50.0)] {
        let r = wait_record(work, node, &job);
        let w = r["job_j"].as_f64().unwrap() / r["duration_s"].as_f64().unwrap();
        assert!((w - watts).abs() < 0.05 * watts, "{node}: {w} W: {r}");
        assert_eq!(r["node"], node);
    }

    // `joulebench job` on any node's agent (the records folder is shared):
    // root sees every job, with each node's share.
    let jb_job = |user: Option<&str>, job: &str| {
        let mut c = match user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--", common::BIN]);
                c
            }
            None => Command::new(common::BIN),
        };
        let o = c
            .args(["job", job, "--socket"])
            .arg(work.join("jbn2/query.sock"))
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    // EpilogSlurmctld summed the nodes into the job's record and its AdminComment.
    let total_path = work.join("records").join(format!("{job}.json"));
    for _ in 0..200 {
        if total_path.is_file() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let total = read_json(&total_path);
    let per_node: f64 = ["jbn1", "jbn2"]
        .iter()
        .map(|n| wait_record(work, n, &job)["job_j"].as_f64().unwrap())
        .sum();
    assert!(
        (total["job_j"].as_f64().unwrap() - per_node).abs() < 1e-6,
        "{total}"
    );
    assert_eq!(
        total["missing_nodes"].as_array().unwrap().len(),
        0,
        "{total}"
    );
    let mut comment = String::new();
    for _ in 0..100 {
        comment = admin_comment(&job, &conf);
        if comment.starts_with("jb1:") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if !comment.starts_with("jb1:") {
        let log = std::fs::read_to_string(dir.join("log/slurmctld.log")).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("joulebench") || l.contains("pilog") || l.contains("dmin"))
            .collect();
        let sacct = Command::new("sacct")
            .args([
                "-j",
                &job,
                "-o",
                "JobID,State,AdminComment%200",
                "-S",
                "now-1hour",
            ])
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        let ctld = std::fs::read_to_string(work.join("epilog_ctld.log")).unwrap_or_default();
        let show = Command::new("scontrol")
            .args(["show", "job", &job])
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        panic!(
            "no AdminComment: {comment}\nepilog-ctld: {ctld}\nscontrol: {}\nsacct: {}{}\nslurmctld: {}",
            String::from_utf8_lossy(&show.stdout),
            String::from_utf8_lossy(&sacct.stdout),
            String::from_utf8_lossy(&sacct.stderr),
            lines.join("\n")
        );
    }
    let summary = agent::job::parse_admin_comment(&comment).unwrap();
    let joules: f64 = summary["j"].parse().unwrap();
    assert!(
        (joules - per_node).abs() < 0.01,
        "sacct AdminComment: {comment}"
    );
    assert_eq!(summary["nodes"], "2", "{comment}");

    let (code, text) = jb_job(None, &job);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("on 2 nodes") && text.contains("jbn1") && text.contains("jbn2"),
        "{text}"
    );
    // Someone else's job is refused.
    let (code, text) = jb_job(Some("nobody"), &job);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("belongs to another user"), "{text}");

    // A batch job of an ordinary user: the Epilog appends the summary to its
    // output file, written as that user. The second job points its output
    // file at a root-owned file: the append is refused, the file untouched.
    let shared = work.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    Command::new("chmod").arg("755").arg(work).status().unwrap();
    Command::new("chmod")
        .arg("777")
        .arg(&shared)
        .status()
        .unwrap();
    let guarded = work.join("root-owned.txt");
    std::fs::write(&guarded, "root's\n").unwrap();
    // As the ordinary user `nobody`, on jbn1, output in the shared folder.
    let as_nobody = |extra: &[&str], output: &str, wrap: &str| {
        let mut args = vec!["-u", "nobody", "--", "sbatch", "-N1", "-w", "jbn1"];
        args.extend_from_slice(extra);
        submit("runuser", &args, &shared.join(output), wrap, &shared, &conf)
    };
    let sbatch = |wrap: &str| as_nobody(&[], "out-%j.txt", wrap);
    let job = sbatch("echo hello; sleep 1");
    wait_record(work, "jbn1", &job);
    let out = shared.join(format!("out-{job}.txt"));
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.contains("joulebench:") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        text.starts_with("hello\n") && text.contains(&format!("joulebench: job {job} used ")),
        "{text}"
    );
    assert!(text.contains("(exclusive)"), "{text}");
    // Its owner reads it with `joulebench job`; the record file itself is root's.
    let (code, table) = jb_job(Some("nobody"), &job);
    assert_eq!(code, Some(0), "{table}");
    assert!(table.contains(&format!("job {job} of nobody")), "{table}");
    let page = shared.join("job.html");
    let html = Command::new("runuser")
        .args(["-u", "nobody", "--", common::BIN, "job", &job, "--socket"])
        .arg(work.join("jbn2/query.sock"))
        .arg("--html")
        .arg(&page)
        .output()
        .unwrap();
    assert!(
        html.status.success(),
        "{}",
        String::from_utf8_lossy(&html.stderr)
    );
    let page = std::fs::read_to_string(&page).unwrap();
    assert!(
        page.contains(&format!("Energy of Slurm job {job}")) && page.contains("jbn1"),
        "{page}"
    );
    let direct = Command::new("runuser")
        .args(["-u", "nobody", "--", "cat"])
        .arg(work.join("records").join(format!("{job}.jbn1.json")))
        .output()
        .unwrap();
    assert!(
        !direct.status.success(),
        "a user read a record file directly"
    );
    let job = sbatch(&format!(
        "rm -f {0}/out-$SLURM_JOB_ID.txt; ln -s {1} {0}/out-$SLURM_JOB_ID.txt; sleep 1",
        shared.display(),
        guarded.display()
    ));
    wait_record(work, "jbn1", &job);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(std::fs::read_to_string(&guarded).unwrap(), "root's\n");

    // A job array: each task is a job of its own, with its own record. A
    // cancelled job still gets its Epilog, so its energy up to the cancel.
    let array = as_nobody(&["--array=1-2"], "array-%A_%a.txt", "sleep 1");
    let long = sbatch("sleep 60");
    // Cancelled once running (a job cancelled while pending never ran: no record).
    wait_running(&long, &conf);
    std::thread::sleep(Duration::from_secs(1));
    let cancel = Command::new("scancel")
        .arg(&long)
        .env("SLURM_CONF", &conf)
        .status()
        .unwrap();
    assert!(cancel.success());
    let cancelled = wait_record(work, "jbn1", &long);
    assert!(
        cancelled["duration_s"].as_f64().unwrap() < 30.0,
        "{cancelled}"
    );
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let show = Command::new("scontrol")
            .args(["show", "job", &array])
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&show.stdout).to_string();
        tasks = text
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("JobId="))
            .map(String::from)
            .collect();
        if tasks.len() == 2 && text.matches("JobState=COMPLETED").count() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(tasks.len(), 2, "array {array}'s tasks: {tasks:?}");
    for task in &tasks {
        let r = wait_record(work, "jbn1", task);
        assert_eq!(r["user"], "nobody", "{r}");
    }

    // Two jobs sharing jbn1, one GPU each: each GPU's energy goes to its job.
    let sharing: Vec<String> = (0..2)
        .map(|_| {
            submit(
                "sbatch",
                &["-N1", "-n1", "-w", "jbn1", "--gres=gpu:1"],
                &shared.join("gpu-%j.txt"),
                "sleep 2",
                &shared,
                &conf,
            )
        })
        .collect();
    // Meanwhile the exporter labels with the running jobs (from jbn1's agent).
    let mut exporter = common::joulebench()
        .args([
            "exporter",
            "--listen",
            "127.0.0.1:0",
            "--power",
            "rapl",
            "--sysfs-root",
        ])
        .arg(trees.join("jbn1"))
        .arg("--agent-socket")
        .arg(work.join("jbn1/query.sock"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = common::exporter_address(exporter.stderr.take().unwrap());
    let mut metrics = String::new();
    for _ in 0..40 {
        metrics = common::http_get(&addr, "/metrics").1;
        if sharing
            .iter()
            .all(|j| metrics.contains(&format!("job_id=\"{j}\"")))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = exporter.kill();
    let _ = exporter.wait();
    for job in &sharing {
        assert!(
            metrics.contains("joulebench_job_info{host=")
                && metrics.contains(&format!("job_id=\"{job}\",user=\"root\"")),
            "job {job} not in the exporter's metrics:\n{metrics}"
        );
    }
    let mut seen_gpus = Vec::new();
    for job in &sharing {
        let r = wait_record(work, "jbn1", job);
        assert_eq!(r["method"], "cpu-time-share", "{r}");
        assert_eq!(r["co_tenants"].as_array().unwrap().len(), 1, "{r}");
        assert_eq!(r["attribution"]["gpus"], "gpu-device", "{r}");
        let gpu = r["gpus"][0].as_u64().unwrap();
        let watts = if gpu == 0 { 100.0 } else { 300.0 };
        let w = r["job_gpu_j"].as_f64().unwrap() / r["duration_s"].as_f64().unwrap();
        assert!(
            (w - watts).abs() < 0.05 * watts,
            "job {job} on GPU {gpu}: {w} W: {r}"
        );
        // The job given the idle GPU is told so.
        let idle: Vec<u64> = r["idle_given_gpus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_u64().unwrap())
            .collect();
        assert_eq!(idle, if gpu == 1 { vec![1] } else { vec![] }, "{r}");
        seen_gpus.push(gpu);
    }
    seen_gpus.sort();
    assert_eq!(seen_gpus, [0, 1], "each job had its own GPU");

    // An ordinary user cannot talk to the agent as a hook (the socket is root's).
    let forged = Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            common::BIN,
            "slurm",
            "prolog",
            "--socket",
        ])
        .arg(work.join("jbn1/agent.sock"))
        .env("SLURM_JOB_ID", "999999")
        .env("SLURM_JOB_UID", "65534")
        .output()
        .unwrap();
    assert_eq!(forged.status.code(), Some(0), "a hook always exits 0");
    let said = String::from_utf8_lossy(&forged.stderr);
    assert!(said.contains("energy not recorded"), "{said}");
    assert!(record(work, "jbn1", "999999").is_none());

    // jbn2's agent down: the job still runs, the node stays idle, and the
    // hooks keep their messages for the agent's return.
    let mut down = cluster.agents.remove(1);
    down.kill().unwrap();
    down.wait().unwrap();
    let three = srun(&[
        "-N1",
        "-w",
        "jbn2",
        "sh",
        "-c",
        "sleep 1; echo job $SLURM_JOB_ID",
    ]);
    let job = job_of(&three);
    std::thread::sleep(Duration::from_secs(2));
    assert!(record(work, "jbn2", &job).is_none());
    let spool = work.join("jbn2/state/spool");
    for event in ["start", "end"] {
        assert!(
            spool.join(format!("{job}.{event}.json")).is_file(),
            "the {event} of job {job} is not in the spool"
        );
    }
    let sinfo = Command::new("sinfo")
        .args(["-h", "-N", "-o", "%N %T"])
        .env("SLURM_CONF", &conf)
        .output()
        .unwrap();
    let states = String::from_utf8_lossy(&sinfo.stdout).to_string();
    assert!(
        states.lines().all(|l| l.ends_with("idle")),
        "a node drained or is down: {states}"
    );

    // The agent comes back while a job runs that started while it was down:
    // that job's start, and the whole of the job that came and went, are
    // settled from the spool, interpolated between the agent's readings
    // either side (exact here: the fake counter rises at a steady 50 W).
    // EpilogSlurmctld gave up waiting for jbn2's record of job three.
    let early_total = work.join("records").join(format!("{job}.json"));
    for _ in 0..300 {
        if early_total.is_file() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        read_json(&early_total)["missing_nodes"],
        serde_json::json!(["jbn2"])
    );
    let late = submit(
        "sbatch",
        &["-N1", "-w", "jbn2"],
        &shared.join("late-%j.txt"),
        "sleep 4",
        &shared,
        &conf,
    );
    wait_running(&late, &conf);
    std::thread::sleep(Duration::from_secs(1));
    cluster.agents.push(agent(work, "jbn2", &trees));
    let gone = wait_record(work, "jbn2", &job);
    assert_eq!(
        (&gone["interpolated_start"], &gone["interpolated_end"]),
        (&serde_json::json!(true), &serde_json::json!(true)),
        "{gone}"
    );
    let r = wait_record(work, "jbn2", &late);
    assert_eq!(
        (&r["missed_start"], &r["interpolated_start"]),
        (&serde_json::json!(false), &serde_json::json!(true)),
        "{r}"
    );
    for r in [&gone, &r] {
        let watts = r["job_j"].as_f64().unwrap() / r["duration_s"].as_f64().unwrap();
        assert!((watts - 50.0).abs() < 2.5, "{watts} W: {r}");
        assert!(r["job_estimated_j"].as_f64().unwrap() > 0.0, "{r}");
    }
    // EpilogSlurmctld summed job three without jbn2's record (it came later):
    // the backfill sums it again and stores its AdminComment.
    let backfill = common::joulebench()
        .args(["slurm", "backfill", "--records-dir"])
        .arg(work.join("records"))
        .env("SLURM_CONF", &conf)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&backfill.stdout).to_string()
        + &String::from_utf8_lossy(&backfill.stderr);
    assert!(backfill.status.success(), "{said}");
    assert!(said.contains(&format!("job {job}:")), "{said}");
    let comment = admin_comment(&job, &conf);
    let summary = agent::job::parse_admin_comment(&comment)
        .unwrap_or_else(|| panic!("no AdminComment for job {job}: {comment}\n{said}"));
    let joules: f64 = summary["j"].parse().unwrap();
    assert!(
        (joules - gone["job_j"].as_f64().unwrap()).abs() < 0.01,
        "{comment}: {gone}"
    );
    drop(cluster);
}
