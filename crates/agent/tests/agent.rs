//! The agent against a fake powercap tree whose counter the test sets, so
//! every expected joule is exact: a job's energy across a counter wrap,
//! across the agent's own restart, on a shared node, and the hooks'
//! refusals. The meters are joulebench's real RAPL reader; NVML is pointed
//! at a library that does not exist (no GPU here).

use agent::daemon::{serve, AgentConfig};
use agent::hook::send;
use agent::protocol::{unix_ns, Event, HookMessage};
use agent::record::JobNodeRecord;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const WRAP_UJ: u64 = 1_000_000_000;
const POLL: Duration = Duration::from_millis(40);

struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let zone = dir.path().join("sys/class/powercap/intel-rapl:0");
        std::fs::create_dir_all(&zone).unwrap();
        std::fs::write(zone.join("name"), "package-0\n").unwrap();
        std::fs::write(zone.join("max_energy_range_uj"), format!("{WRAP_UJ}\n")).unwrap();
        let node = Node { dir };
        node.set_uj(0);
        node
    }

    fn set_uj(&self, uj: u64) {
        let zone = self.dir.path().join("sys/class/powercap/intel-rapl:0");
        std::fs::write(zone.join("energy_uj.tmp"), format!("{uj}\n")).unwrap();
        std::fs::rename(zone.join("energy_uj.tmp"), zone.join("energy_uj")).unwrap();
        // Let the agent see it.
        std::thread::sleep(POLL * 3);
    }

    fn config(&self) -> AgentConfig {
        AgentConfig {
            node: "jbn1".into(),
            state_dir: self.dir.path().join("state"),
            socket: self.socket(),
            query_socket: Some(self.query_socket()),
            records_dir: None,
            records_group: None,
            interval: POLL,
            sample_interval: POLL,
            sysfs_root: self.dir.path().join("sys"),
            nvml_library: Some(PathBuf::from("/nonexistent/libnvidia-ml.so.1")),
            cgroup_root: self.dir.path().join("cgroup"),
            spool_dir: None,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/agent.sock")
    }

    fn query_socket(&self) -> PathBuf {
        self.dir.path().join("run/query.sock")
    }

    fn start_agent(&self) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let config = self.config();
        let thread = std::thread::spawn(move || serve(config, &flag).unwrap());
        for _ in 0..100 {
            if self.socket().exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Running { stop, thread }
    }

    /// The node's wall power as an ACPI power meter shows it through hwmon
    /// (chip `power_meter`: the whole node), in watts.
    fn set_wall_w(&self, watts: f64) {
        let chip = self.dir.path().join("sys/class/hwmon/hwmon0");
        std::fs::create_dir_all(&chip).unwrap();
        std::fs::write(chip.join("name"), "power_meter\n").unwrap();
        let uw = (watts * 1e6) as u64;
        std::fs::write(chip.join("power1_input.tmp"), format!("{uw}\n")).unwrap();
        std::fs::rename(chip.join("power1_input.tmp"), chip.join("power1_input")).unwrap();
    }

    fn hook(&self, event: Event, job_id: u64, gpus: &[u32]) -> Result<String, String> {
        self.hook_cpus(event, job_id, gpus, 1)
    }

    fn hook_cpus(
        &self,
        event: Event,
        job_id: u64,
        gpus: &[u32],
        cpus: u32,
    ) -> Result<String, String> {
        send(
            &self.socket(),
            &HookMessage {
                event,
                job_id,
                uid: 1000,
                gpus: gpus.to_vec(),
                user: Some("ada".into()),
                cpus: Some(cpus),
                sent_unix_ns: unix_ns(),
            },
        )
        .map_err(|e| e.to_string())
    }

    fn record(&self, job_id: u64) -> JobNodeRecord {
        let path = self
            .dir
            .path()
            .join(format!("state/jobs/{job_id}.jbn1.json"));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }
}

struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Running {
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}

fn assert_joules(record: &JobNodeRecord, joules: f64) {
    assert!(
        (record.job_j - joules).abs() < 1e-9,
        "job_j {} != {joules}: {record:?}",
        record.job_j
    );
}

#[test]
fn an_exclusive_job_gets_the_node_across_a_counter_wrap() {
    let node = Node::new();
    node.set_uj(900_000_000);
    let agent = node.start_agent();
    assert!(node.hook(Event::Start, 11, &[]).unwrap().starts_with("ok"));
    node.set_uj(999_000_000);
    node.set_uj(5_000_000); // wrapped at 1 kJ
    node.set_uj(7_000_000);
    let reply = node.hook(Event::End, 11, &[]).unwrap();
    let summary: agent::record::JobSummary =
        serde_json::from_str(reply.strip_prefix("ok ").unwrap()).unwrap();
    assert_eq!(
        (summary.job_j, summary.method.as_str()),
        (107.0, "exclusive")
    );
    let r = node.record(11);
    assert_joules(&r, 107.0);
    assert_eq!(r.method, "exclusive");
    assert_eq!(r.cpu_j["package-0"], 107.0);
    assert_eq!(r.meters[0].end_raw_uj, Some(7_000_000));
    // Asked by its owner (the test runs as root: any job), through the query socket.
    let records = agent::hook::query(&node.query_socket(), 11).unwrap();
    assert_eq!(records, vec![r.clone()]);
    let err = agent::hook::query(&node.query_socket(), 99).unwrap_err();
    assert!(err.contains("no record of job 99"), "{err}");
    // The exporter's question: what runs here now (nothing, after the end).
    assert_eq!(
        agent::hook::open_jobs(&node.query_socket()).unwrap(),
        vec![]
    );
    // An Epilog run twice is answered, not recorded twice.
    assert!(node
        .hook(Event::End, 11, &[])
        .unwrap()
        .contains("already recorded"));
    agent.stop();
}

#[test]
fn a_restarted_agent_loses_no_energy_and_counts_none_twice() {
    let node = Node::new();
    node.set_uj(100_000_000);
    let agent = node.start_agent();
    node.hook(Event::Start, 21, &[]).unwrap();
    node.set_uj(150_000_000);
    agent.stop();
    // Down for a while: the counter keeps counting.
    node.set_uj(300_000_000);
    let agent = node.start_agent();
    node.set_uj(320_000_000);
    node.hook(Event::End, 21, &[]).unwrap();
    assert_joules(&node.record(21), 220.0);
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.dir.path().join("state/journal.json")).unwrap())
            .unwrap();
    assert_eq!(journal["restarts"], 1);
    agent.stop();
}

#[test]
fn jobs_sharing_the_node_say_so_and_keep_the_node_total() {
    let node = Node::new();
    let agent = node.start_agent();
    node.hook(Event::Start, 31, &[0]).unwrap();
    node.set_uj(10_000_000);
    node.hook(Event::Start, 32, &[1]).unwrap();
    node.set_uj(30_000_000);
    node.hook(Event::End, 31, &[0]).unwrap();
    node.set_uj(35_000_000);
    node.hook(Event::End, 32, &[1]).unwrap();
    let (a, b) = (node.record(31), node.record(32));
    assert_eq!(
        (a.method.as_str(), b.method.as_str()),
        ("cpu-time-share", "cpu-time-share")
    );
    assert_eq!(
        (a.co_tenants.clone(), b.co_tenants.clone()),
        (vec![32], vec![31])
    );
    assert_eq!((a.node_measured_j, b.node_measured_j), (30.0, 25.0));
    // No cgroups here: every interval is split by allocated CPUs (one each).
    assert_joules(&a, 10.0 + 10.0);
    assert_joules(&b, 10.0 + 5.0);
    assert!(
        a.not_attributed[0].contains("no cgroup CPU time"),
        "{:?}",
        a.not_attributed
    );
    agent.stop();
}

#[test]
fn a_shared_nodes_cpu_energy_follows_the_jobs_cgroup_cpu_time() {
    let node = Node::new();
    let cgroup = |job: u64, usec: u64| {
        let dir = node
            .dir
            .path()
            .join(format!("cgroup/system.slice/slurmstepd.scope/job_{job}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("cpu.stat"),
            format!("usage_usec {usec}\nuser_usec 0\n"),
        )
        .unwrap();
    };
    cgroup(41, 0);
    cgroup(42, 0);
    let agent = node.start_agent();
    node.hook(Event::Start, 41, &[]).unwrap();
    node.hook(Event::Start, 42, &[]).unwrap();
    // Busy: 4 J while job 41 used three times job 42's CPU time.
    cgroup(41, 3_000_000);
    cgroup(42, 1_000_000);
    node.set_uj(4_000_000);
    // Idle: 2 J while neither used CPU, split by allocated CPUs (one each).
    node.set_uj(6_000_000);
    node.hook(Event::End, 41, &[]).unwrap();
    node.hook(Event::End, 42, &[]).unwrap();
    let (a, b) = (node.record(41), node.record(42));
    assert_joules(&a, 3.0 + 1.0);
    assert_joules(&b, 1.0 + 1.0);
    assert_eq!((a.cpu_seconds, b.cpu_seconds), (Some(3.0), Some(1.0)));
    assert!(a.not_attributed.is_empty(), "{:?}", a.not_attributed);
    assert_eq!(
        a.node_measured_j, 6.0,
        "the node's total stays beside the share"
    );
    agent.stop();
}

/// `got` within `percent` of `want`.
fn near(got: f64, want: f64, percent: f64) -> bool {
    (got - want).abs() <= want.abs() * percent / 100.0
}

#[test]
fn a_node_meter_makes_the_nodes_total_and_the_rest_is_the_jobs() {
    let node = Node::new();
    node.set_wall_w(400.0);
    let agent = node.start_agent();
    node.hook(Event::Start, 51, &[]).unwrap();
    node.set_uj(50_000_000); // the package: 50 J of it
    std::thread::sleep(Duration::from_millis(300));
    node.hook(Event::End, 51, &[]).unwrap();
    let r = node.record(51);
    assert_eq!(
        r.node_meter.as_deref(),
        Some("hwmon0-power_meter-power1"),
        "{r:?}"
    );
    assert_eq!(r.method, "exclusive");
    assert_eq!(r.attribution["node"], "exclusive");
    assert_eq!(r.components_j, 50.0);
    assert!(
        near(r.node_measured_j, 400.0 * r.duration_s, 2.0),
        "{} J in {} s at 400 W",
        r.node_measured_j,
        r.duration_s
    );
    assert_eq!(
        r.job_j, r.node_measured_j,
        "the job had the node: all of it"
    );
    assert!((r.job_rest_j - (r.node_measured_j - 50.0)).abs() < 1e-9);
    assert_eq!(r.job_estimated_j, 0.0);
    let wall = r
        .meters
        .iter()
        .find(|m| m.meter_id == "hwmon0-power_meter-power1")
        .unwrap();
    assert_eq!(wall.kind, power::meter::ReadingKind::PowerSample);
    assert_eq!(wall.start_raw_uj, None);
    agent.stop();
}

#[test]
fn a_node_meters_samples_across_the_agents_restart_are_estimated() {
    let node = Node::new();
    node.set_wall_w(200.0);
    let agent = node.start_agent();
    node.hook(Event::Start, 61, &[]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    agent.stop();
    let down = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(700));
    let agent = node.start_agent();
    let down_s = down.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    node.hook(Event::End, 61, &[]).unwrap();
    let r = node.record(61);
    assert!(
        near(r.job_j, 200.0 * r.duration_s, 3.0),
        "{} J in {} s at 200 W: nothing lost or doubled across the restart",
        r.job_j,
        r.duration_s
    );
    // The gap: from the last sample before the stop to the first after.
    assert!(
        r.job_estimated_j >= 200.0 * 0.7 && r.job_estimated_j <= 200.0 * (down_s + 0.3),
        "{} J estimated for {down_s} s down",
        r.job_estimated_j
    );
    let line = r.summary().line(1);
    assert!(line.contains("estimated (a gap"), "{line}");
    agent.stop();
}

#[test]
fn a_shared_nodes_rest_is_split_by_allocated_cpus() {
    let node = Node::new();
    node.set_wall_w(300.0);
    let agent = node.start_agent();
    node.hook_cpus(Event::Start, 71, &[], 1).unwrap();
    node.hook_cpus(Event::Start, 72, &[], 3).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    node.hook_cpus(Event::End, 71, &[], 1).unwrap();
    node.hook_cpus(Event::End, 72, &[], 3).unwrap();
    let (a, b) = (node.record(71), node.record(72));
    assert_eq!(a.method, "cpu-time-share");
    assert_eq!(
        a.attribution,
        [
            ("cpu", "cpu-time-share"),
            ("gpus", "gpu-device"),
            ("rest", "allocated-cpus")
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    );
    // No package energy: the node's whole draw is the rest.
    assert_eq!((a.job_cpu_j, b.job_cpu_j), (0.0, 0.0));
    assert!(
        near(b.job_rest_j, 3.0 * a.job_rest_j, 10.0),
        "3 CPUs against 1: {} J and {} J",
        b.job_rest_j,
        a.job_rest_j
    );
    assert!(
        near(a.job_j + b.job_j, 300.0 * b.duration_s, 5.0),
        "the two shares make the node: {} + {} J in {} s at 300 W",
        a.job_j,
        b.job_j,
        b.duration_s
    );
    agent.stop();
}

/// The journal's last reading, ns since the epoch.
fn last_poll(node: &Node) -> u64 {
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.dir.path().join("state/journal.json")).unwrap())
            .unwrap();
    journal["polled_unix_ns"].as_u64().unwrap()
}

/// What a hook does when the agent is down: keep the message in the spool.
fn spool(node: &Node, event: Event, job_id: u64) -> u64 {
    let sent = unix_ns();
    let message = HookMessage {
        event,
        job_id,
        uid: 1000,
        gpus: vec![],
        user: Some("ada".into()),
        cpus: Some(1),
        sent_unix_ns: sent,
    };
    agent::spool::keep(&node.dir.path().join("state/spool"), &message).unwrap();
    sent
}

#[test]
fn a_job_that_ends_while_the_agent_is_down_is_settled_on_its_return() {
    let node = Node::new();
    let agent = node.start_agent();
    node.hook(Event::Start, 81, &[]).unwrap();
    node.set_uj(50_000_000);
    agent.stop();
    let t0 = last_poll(&node);
    std::thread::sleep(Duration::from_millis(300));
    let t_end = spool(&node, Event::End, 81);
    std::thread::sleep(Duration::from_millis(300));
    // The counter went on while the agent was down: 200 J more by its return.
    node.set_uj(250_000_000);
    let before_start = unix_ns();
    let agent = node.start_agent();
    let after_start = unix_ns();
    let r = node.record(81);
    assert!(r.interpolated_end && !r.interpolated_start, "{r:?}");
    assert_eq!(r.end_unix_ns, t_end, "the end is when the Epilog ran");
    // 50 J measured, then the share of the 200 J that falls before the end.
    let fraction = |t1: u64| (t_end - t0) as f64 / (t1 - t0) as f64;
    let (most, least) = (fraction(before_start), fraction(after_start));
    let estimated = r.job_j - 50.0;
    assert!(
        (200.0 * least - 1e-6..=200.0 * most + 1e-6).contains(&estimated),
        "{estimated} J after the last reading: between {} and {}",
        200.0 * least,
        200.0 * most
    );
    assert!((r.job_estimated_j - estimated).abs() < 1e-6, "{r:?}");
    assert!(
        !node.dir.path().join("state/spool/81.end.json").exists(),
        "settled once"
    );
    agent.stop();
}

#[test]
fn a_job_that_starts_while_the_agent_is_down_keeps_its_start() {
    let node = Node::new();
    let agent = node.start_agent();
    agent.stop();
    std::thread::sleep(Duration::from_millis(200));
    spool(&node, Event::Start, 82);
    std::thread::sleep(Duration::from_millis(200));
    node.set_uj(100_000_000);
    let agent = node.start_agent();
    node.set_uj(130_000_000);
    node.hook(Event::End, 82, &[]).unwrap();
    let r = node.record(82);
    assert!(r.interpolated_start && !r.missed_start, "{r:?}");
    // 30 J measured after the agent's return, and part of the 100 J before.
    let estimated = r.job_j - 30.0;
    assert!(
        estimated > 10.0 && estimated < 90.0,
        "{estimated} J of 100 J"
    );
    assert!((r.job_estimated_j - estimated).abs() < 1e-6, "{r:?}");
    agent.stop();
}

#[test]
fn bad_messages_are_refused_and_change_nothing() {
    let node = Node::new();
    let agent = node.start_agent();
    // An end whose start the agent never saw: a record from the agent's own
    // start, saying what is missing.
    node.set_uj(2_000_000);
    node.hook(Event::End, 41, &[]).unwrap();
    let partial = node.record(41);
    assert!(partial.missed_start);
    assert_joules(&partial, 2.0);
    assert!(
        partial.not_attributed[0].contains("did not see this job start"),
        "{partial:?}"
    );
    node.hook(Event::Start, 42, &[]).unwrap();
    let open = agent::hook::open_jobs(&node.query_socket()).unwrap();
    assert_eq!(open.iter().map(|j| j.job_id).collect::<Vec<_>>(), vec![42]);
    let err = node.hook(Event::Start, 42, &[]).unwrap_err();
    assert!(err.contains("already open"), "{err}");
    let stale = HookMessage {
        event: Event::End,
        job_id: 42,
        uid: 1000,
        gpus: vec![],
        user: None,
        cpus: None,
        sent_unix_ns: unix_ns() - 3_600_000_000_000,
    };
    let err = send(&node.socket(), &stale).unwrap_err().to_string();
    assert!(err.contains("old"), "{err}");
    // Garbage on the socket.
    let err = raw(&node.socket(), "{\"event\":\"start\"}\n");
    assert!(err.starts_with("error: not a hook message"), "{err}");
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.dir.path().join("state/journal.json")).unwrap())
            .unwrap();
    assert_eq!(journal["jobs"].as_object().unwrap().len(), 1);
    agent.stop();
}

fn raw(socket: &Path, text: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    (&stream).write_all(text.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    line.trim().to_string()
}

#[test]
fn records_are_root_only_or_shared_with_the_records_group() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let node = Node::new();
    let agent = node.start_agent();
    node.hook(Event::Start, 51, &[]).unwrap();
    node.hook(Event::End, 51, &[]).unwrap();
    let path = node.dir.path().join("state/jobs/51.jbn1.json");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    agent.stop();
    let gid = agent::hook::group_id("nogroup")
        .or_else(|_| agent::hook::group_id("nobody"))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let config = AgentConfig {
        records_group: Some(gid),
        ..node.config()
    };
    let thread = std::thread::spawn(move || serve(config, &flag).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    node.hook(Event::Start, 52, &[]).unwrap();
    node.hook(Event::End, 52, &[]).unwrap();
    let meta = std::fs::metadata(node.dir.path().join("state/jobs/52.jbn1.json")).unwrap();
    assert_eq!(
        (meta.permissions().mode() & 0o777, meta.gid()),
        (0o640, gid)
    );
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
}

/// The fake NVML library (tests/fake_nvml/fake_nvml.c), built once with cc.
fn fake_nvml() -> PathBuf {
    static LIB: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LIB.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libfake-nvml.so.1");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_nvml/fake_nvml.c");
        let status = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&out)
            .arg(source)
            .status()
            .expect("cc (a C compiler) builds the fake NVML");
        assert!(status.success(), "building the fake NVML failed");
        out
    })
    .clone()
}

#[test]
fn each_gpu_goes_to_the_job_it_was_given() {
    let node = Node::new();
    let gpus = node.dir.path().join("nvml");
    let gpu = |index: u32, mj: u64| {
        let dir = gpus.join(format!("gpu{index}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("energy_mj.tmp"), format!("{mj}\n")).unwrap();
        std::fs::rename(dir.join("energy_mj.tmp"), dir.join("energy_mj")).unwrap();
    };
    gpu(0, 1_000);
    gpu(1, 5_000);
    // GPU 0 works; GPU 1 never does.
    std::fs::write(gpus.join("gpu0/utilization"), "87\n").unwrap();
    std::fs::write(gpus.join("gpu1/utilization"), "0\n").unwrap();
    // Only this test points the fake library anywhere.
    std::env::set_var("JOULEBENCH_FAKE_NVML_DIR", &gpus);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let config = AgentConfig {
        nvml_library: Some(fake_nvml()),
        ..node.config()
    };
    let thread = std::thread::spawn(move || serve(config, &flag).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    node.hook(Event::Start, 61, &[0]).unwrap();
    node.hook(Event::Start, 62, &[1]).unwrap();
    gpu(0, 101_000); // 100 J on GPU 0
    gpu(1, 305_000); // 300 J on GPU 1
    node.set_uj(8_000_000); // 8 J of CPU, idle: 4 J each
    node.hook(Event::End, 61, &[0]).unwrap();
    node.hook(Event::End, 62, &[1]).unwrap();
    let (a, b) = (node.record(61), node.record(62));
    assert_eq!((a.gpu_j[&0], a.gpu_j[&1]), (100.0, 300.0), "{a:?}");
    assert_eq!((a.job_gpu_j, b.job_gpu_j), (100.0, 300.0));
    assert_joules(&a, 100.0 + 4.0);
    assert_joules(&b, 300.0 + 4.0);
    assert_eq!(a.node_measured_j, 408.0);
    assert_eq!(
        a.unused_gpu_j, 0.0,
        "a shared node charges no GPU it was not given"
    );
    assert_eq!(
        (a.idle_given_gpus.clone(), b.idle_given_gpus.clone()),
        (vec![], vec![1])
    );
    assert_eq!(b.idle_given_gpu_j, 300.0);
    let line = b.summary().line(1);
    assert!(
        line.contains("300.0 J of it went to 1 GPU it was given and never used"),
        "{line}"
    );
    // Alone on the node with no GPU of its own: both GPUs' energy is its,
    // and said to be GPUs it was not given.
    node.hook(Event::Start, 63, &[]).unwrap();
    gpu(0, 111_000);
    gpu(1, 325_000);
    node.set_uj(9_000_000);
    let reply = node.hook(Event::End, 63, &[]).unwrap();
    let c = node.record(63);
    assert_eq!((c.unused_gpu_j, c.unused_gpus.clone()), (30.0, vec![0, 1]));
    assert_joules(&c, 31.0);
    let summary: agent::record::JobSummary =
        serde_json::from_str(reply.strip_prefix("ok ").unwrap()).unwrap();
    assert!(
        summary
            .line(1)
            .contains("30.0 J of it went to 2 GPUs it was not given"),
        "{}",
        summary.line(1)
    );
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
}
