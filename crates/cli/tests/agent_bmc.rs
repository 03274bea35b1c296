//! `joulebench agent --power ipmi`: the node's BMC as its total, through a
//! fake `ipmitool` on PATH that prints what real ipmitool prints for
//! `dcmi power reading`, with the Prolog and Epilog run as Slurm runs them
//! (`joulebench slurm prolog|epilog` with the job's environment).

mod common;

use common::FakeRapl;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

/// What `ipmitool dcmi power reading` prints (a Dell iDRAC's layout), 412 W.
const READING: &str = include_str!("../../power/tests/data/dcmi_power_reading_412w.txt");

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fake_ipmitool(bin: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    let path = bin.join("ipmitool");
    std::fs::write(&path, format!("#!/bin/sh\ncat <<'EOF'\n{READING}EOF\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn hook(dir: &Path, which: &str, job: &str) -> String {
    let out = common::joulebench()
        .args(["slurm", which, "--socket"])
        .arg(dir.join("agent.sock"))
        .env("SLURM_JOB_ID", job)
        .env("SLURM_JOB_UID", "1000")
        .env("SLURM_JOB_USER", "ada")
        .env_remove("SLURM_JOB_STDOUT")
        .output()
        .unwrap();
    assert!(out.status.success(), "a hook always exits 0");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_bmc_is_the_nodes_total_and_the_job_gets_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fake_ipmitool(&bin);
    let _rapl = FakeRapl::start(&dir.path().join("sys"), 100.0);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let agent = Agent(
        common::joulebench()
            .args(["agent", "--node", "jbn1", "--interval", "50ms"])
            .args(["--power", "ipmi", "--sample-interval", "50ms"])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--socket")
            .arg(dir.path().join("agent.sock"))
            .arg("--query-socket")
            .arg(dir.path().join("query.sock"))
            .arg("--sysfs-root")
            .arg(dir.path().join("sys"))
            .args(["--nvml-library", "/nonexistent/libnvidia-ml.so.1"])
            .env("PATH", &path)
            .spawn()
            .unwrap(),
    );
    for _ in 0..200 {
        if dir.path().join("agent.sock").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let said = hook(dir.path(), "prolog", "901");
    assert!(said.contains("ok started job 901"), "{said}");
    std::thread::sleep(Duration::from_millis(600));
    let said = hook(dir.path(), "epilog", "901");
    assert!(said.contains(r#"{"job_id":901,"#), "{said}");
    assert!(!said.contains("-0.0"), "no negative zeros: {said}");
    // What the user sees names where the total came from.
    let shown = common::joulebench()
        .args(["job", "901", "--socket"])
        .arg(dir.path().join("query.sock"))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("power meters, sampled and integrated (ipmi-node)")
            && shown.contains("the node's total from ipmi-node"),
        "{shown}"
    );
    drop(agent);
    let r = common::read_json(&dir.path().join("state/jobs/901.jbn1.json"));
    assert_eq!(r["node_meter"], "ipmi-node", "{r:#}");
    assert_eq!(r["method"], "exclusive");
    let (job_j, s) = (
        r["job_j"].as_f64().unwrap(),
        r["duration_s"].as_f64().unwrap(),
    );
    assert!(
        (job_j - 412.0 * s).abs() < 0.03 * 412.0 * s,
        "{job_j} J in {s} s: the BMC's 412 W"
    );
    let package = r["cpu_j"]["package-0"].as_f64().unwrap();
    assert!(
        (r["job_rest_j"].as_f64().unwrap() - (job_j - package)).abs() < 1e-6,
        "the rest is the BMC's less the package's: {r:#}"
    );
    let ipmi = r["meters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["meter_id"] == "ipmi-node")
        .unwrap();
    assert_eq!(ipmi["kind"], "power_sample");
}

#[test]
fn the_agent_takes_only_a_bmc_as_an_extra_meter() {
    let out = common::joulebench()
        .args(["agent", "--power", "rapl", "--state-dir", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--power rapl") && err.contains("always read"),
        "{err}"
    );
    // A BMC that cannot be read stops the agent before it starts, saying why.
    let out = common::joulebench()
        .args(["agent", "--power", "ipmi", "--state-dir", "/nonexistent"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ipmi") && err.contains("ipmitool"), "{err}");
}
