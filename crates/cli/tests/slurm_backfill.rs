//! `joulebench slurm backfill`: the jobs whose total is missing or stale in
//! the shared records folder are summed again and their AdminComment stored,
//! through a fake `sacctmgr` on PATH that logs how it was called. (The real
//! sacctmgr stores the comment in the two-node cluster test.)

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A node's record of `job`, as an agent writes it.
fn node_record(dir: &Path, job: u64, node: &str, joules: f64) {
    let record = serde_json::json!({
        "schema": "joulebench.job-node.v1", "job_id": job, "node": node, "uid": 1000,
        "user": "ada", "gpus": [], "start_unix_ns": 1, "end_unix_ns": 2_000_000_001u64,
        "duration_s": 2.0, "meters": [], "gpu_j": {}, "cpu_j": {"package-0": joules},
        "node_measured_j": joules, "job_j": joules, "job_gpu_j": 0.0, "job_cpu_j": joules,
        "method": "exclusive", "co_tenants": [], "not_attributed": []
    });
    std::fs::write(
        dir.join(format!("{job}.{node}.json")),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
}

struct Controller {
    dir: tempfile::TempDir,
}

impl Controller {
    fn new() -> Controller {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("records")).unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let sacctmgr = dir.path().join("bin/sacctmgr");
        std::fs::write(
            &sacctmgr,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\n\
                 if [ -e '{}' ]; then echo ' Nothing modified'; exit 1; fi\n\
                 echo ' Modified jobs...'\n",
                dir.path().join("sacctmgr.log").display(),
                dir.path().join("slurmdbd-down").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&sacctmgr, std::fs::Permissions::from_mode(0o755)).unwrap();
        Controller { dir }
    }

    fn records(&self) -> std::path::PathBuf {
        self.dir.path().join("records")
    }

    fn backfill(&self) -> (Option<i32>, String) {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap()
        );
        let out = common::joulebench()
            .args(["slurm", "backfill", "--wait", "1ms", "--records-dir"])
            .arg(self.records())
            .env("PATH", path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("sacctmgr.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn total(&self, job: u64) -> serde_json::Value {
        common::read_json(&self.records().join(format!("{job}.json")))
    }
}

#[test]
fn jobs_without_a_total_get_one_and_their_admin_comment_once() {
    let c = Controller::new();
    node_record(&c.records(), 5, "jbn1", 100.0);
    let (code, said) = c.backfill();
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("job 5: 100.0 J on 1 of 1 node: stored"),
        "{said}"
    );
    assert_eq!(c.total(5)["admin_comment_set"], true);
    assert_eq!(
        c.calls(),
        vec!["-i modify job where jobid=5 set AdminComment=jb1:j=100,kwh=0.000028,gpu_j=0,cpu_j=100,unused_gpu_j=0,nodes=1,method=exclusive,missing="]
    );
    let (code, said) = c.backfill();
    assert_eq!(code, Some(0));
    assert!(said.contains("up to date"), "{said}");
    assert_eq!(c.calls().len(), 1, "nothing done twice");
}

#[test]
fn a_failed_sacctmgr_is_tried_again_on_the_next_run() {
    let c = Controller::new();
    node_record(&c.records(), 6, "jbn1", 50.0);
    std::fs::write(c.dir.path().join("slurmdbd-down"), "").unwrap();
    let (code, said) = c.backfill();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("Nothing modified"), "{said}");
    assert_eq!(c.total(6)["admin_comment_set"], false);
    std::fs::remove_file(c.dir.path().join("slurmdbd-down")).unwrap();
    let (code, said) = c.backfill();
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(c.total(6)["admin_comment_set"], true);
}

#[test]
fn a_node_record_that_comes_late_is_added_to_the_total() {
    let c = Controller::new();
    node_record(&c.records(), 7, "jbn1", 100.0);
    // What EpilogSlurmctld wrote while jbn2's agent was down.
    let mut early = agent::job::total(
        7,
        &["jbn1".into(), "jbn2".into()],
        &c.records(),
        std::time::Duration::ZERO,
    );
    assert_eq!(early.missing_nodes, vec!["jbn2".to_string()]);
    early.admin_comment_set = true;
    early.write(&c.records()).unwrap();
    assert!(c.backfill().1.contains("up to date"));
    // jbn2's agent came back and settled the job from its spool.
    node_record(&c.records(), 7, "jbn2", 30.0);
    let (code, said) = c.backfill();
    assert_eq!(code, Some(0), "{said}");
    let total = c.total(7);
    assert_eq!(total["job_j"], 130.0, "{total}");
    assert_eq!(total["missing_nodes"], serde_json::json!([]), "{total}");
    assert!(c.calls()[0].contains("j=130,"), "{:?}", c.calls());
}
