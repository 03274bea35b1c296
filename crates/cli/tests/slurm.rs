//! `srun joulebench measure` on a real two-node Slurm cluster
//! (../shared/tools/slurm-two-nodes: two network namespaces with their own
//! slurmd, one slurmctld), then `joulebench merge` of the per-node results.
//!
//! Each node gets its own fake RAPL tree (chosen by SLURMD_NODENAME, as the
//! cluster script suggests) drawing a different power, so the merged total
//! must be their sum. Where the cluster cannot start (not root, no script,
//! packages not installable), the test prints why it was SKIPPED.

mod common;

use common::{read_json, FakeRapl};
use std::path::PathBuf;
use std::process::Command;

struct Cluster {
    tool: PathBuf,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.tool).arg("down").arg(&self.dir).output();
    }
}

fn skip(why: &str) {
    eprintln!("SKIPPED srun test: {why}");
}

#[test]
fn srun_measures_each_node_and_merge_sums_them() {
    let Some(tool) = common::slurm_tool() else {
        return skip("../shared/tools/slurm-two-nodes not found (set JOULEBENCH_SLURM_TOOL)");
    };
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        return skip("the two-node cluster needs root (network namespaces, slurmd)");
    }
    let dir = std::env::temp_dir().join(format!("joulebench-slurm-{}", std::process::id()));
    let cluster = Cluster {
        tool: tool.clone(),
        dir: dir.clone(),
    };
    let up = Command::new(&tool).arg("up").arg(&dir).output().unwrap();
    let up_text =
        String::from_utf8_lossy(&up.stdout).to_string() + &String::from_utf8_lossy(&up.stderr);
    if !up.status.success() || !up_text.contains("idle") {
        return skip(&format!(
            "the cluster did not start:\n{}",
            up_text
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    let conf = dir.join("slurm.conf");

    let trees = tempfile::tempdir().unwrap();
    let _n1 = FakeRapl::start(&trees.path().join("jbn1"), 20.0);
    let _n2 = FakeRapl::start(&trees.path().join("jbn2"), 50.0);
    let out = tempfile::tempdir().unwrap();
    let script = format!(
        "exec '{bin}' measure --power rapl --interval 20ms --sysfs-root '{trees}'/$SLURMD_NODENAME -o '{out}' -- sh -c 'echo on $SLURMD_NODENAME; sleep 1'",
        bin = common::BIN,
        trees = trees.path().display(),
        out = out.path().display()
    );
    let srun = Command::new("timeout")
        .args(["120", "srun", "-N2", "-n2", "sh", "-c", &script])
        .env("SLURM_CONF", &conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&srun.stdout);
    let stderr = String::from_utf8_lossy(&srun.stderr);
    assert_eq!(srun.status.code(), Some(0), "srun: {stdout}\n{stderr}");
    assert!(
        stdout.contains("on jbn1") && stdout.contains("on jbn2"),
        "the commands' output passes through: {stdout}"
    );
    for (node, watts) in [("jbn1", 20.0), ("jbn2", 50.0)] {
        let r = read_json(&out.path().join(node).join("result.json"));
        assert_eq!(r["measured_command"]["slurm"]["node_name"], node);
        assert_eq!(r["system"]["hostname"], node, "measured on the node itself");
        let w = r["power"]["total"]["measured"]["avg_w"].as_f64().unwrap();
        assert!((w - watts).abs() < 0.1 * watts, "{node}: {w} W");
    }

    let merge = common::joulebench()
        .arg("merge")
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(
        merge.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&merge.stderr)
    );
    let m = read_json(&out.path().join("result.json"));
    assert_eq!(m["nodes"].as_array().unwrap().len(), 2);
    let w = m["power"]["total"]["measured"]["avg_w"].as_f64().unwrap();
    assert!((w - 70.0).abs() < 7.0, "20 W + 50 W: {w}");
    let job = m["measured_command"]["slurm"]["job_id"].as_str().unwrap();
    assert!(!job.is_empty());
    drop(cluster);
}
