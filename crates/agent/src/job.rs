//! A whole job: its nodes' records summed, for `EpilogSlurmctld` (the job's
//! record `<job>.json` and the compact `AdminComment` users read with
//! `sacct -j ID -o AdminComment`).
//!
//! `EpilogSlurmctld` runs when the job has finished: `scontrol update`
//! refuses it then ("Job has already finished"), so the comment goes in
//! with `sacctmgr`, once slurmdbd has the job.

use crate::record::JobNodeRecord;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

pub const JOB_SCHEMA: &str = "joulebench.job.v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTotal {
    pub schema: String,
    pub job_id: u64,
    pub uid: Option<u32>,
    pub user: Option<String>,
    /// The job's nodes, and those whose record never came.
    pub nodes: Vec<String>,
    pub missing_nodes: Vec<String>,
    pub job_j: f64,
    pub job_gpu_j: f64,
    pub job_cpu_j: f64,
    /// Of `job_j`, GPUs the job was not given but had to itself (whole nodes).
    #[serde(default)]
    pub unused_gpu_j: f64,
    /// The measured totals of the nodes over their windows.
    pub nodes_measured_j: f64,
    /// Each node's method, once each (`exclusive`, `cpu-time-share`).
    pub methods: Vec<String>,
    pub duration_s: f64,
    pub records: Vec<JobNodeRecord>,
    /// Whether the AdminComment holds this total (`sacctmgr` answered).
    #[serde(default)]
    pub admin_comment_set: bool,
}

/// Reads the records of `job_id` for `nodes` from `dir`, waiting up to
/// `wait` for those not there yet (a node's Epilog may still be running).
pub fn total(job_id: u64, nodes: &[String], dir: &Path, wait: Duration) -> JobTotal {
    let deadline = Instant::now() + wait;
    let mut records: Vec<Option<JobNodeRecord>> = vec![None; nodes.len()];
    loop {
        for (node, slot) in nodes.iter().zip(records.iter_mut()) {
            if slot.is_none() {
                let path = dir.join(crate::record::file_name(job_id, node));
                *slot = std::fs::read(path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
            }
        }
        if records.iter().all(Option::is_some) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let missing_nodes = nodes
        .iter()
        .zip(&records)
        .filter(|(_, r)| r.is_none())
        .map(|(n, _)| n.clone())
        .collect();
    let records: Vec<JobNodeRecord> = records.into_iter().flatten().collect();
    let sum = |f: fn(&JobNodeRecord) -> f64| records.iter().map(f).fold(0.0, |a, b| a + b);
    let mut methods: Vec<String> = records.iter().map(|r| r.method.clone()).collect();
    methods.sort();
    methods.dedup();
    JobTotal {
        schema: JOB_SCHEMA.into(),
        job_id,
        uid: records.first().map(|r| r.uid),
        user: records.first().and_then(|r| r.user.clone()),
        nodes: nodes.to_vec(),
        missing_nodes,
        job_j: sum(|r| r.job_j),
        job_gpu_j: sum(|r| r.job_gpu_j),
        job_cpu_j: sum(|r| r.job_cpu_j),
        unused_gpu_j: sum(|r| r.unused_gpu_j),
        nodes_measured_j: sum(|r| r.node_measured_j),
        methods,
        duration_s: records.iter().map(|r| r.duration_s).fold(0.0, f64::max),
        records,
        admin_comment_set: false,
    }
}

/// Jobs in `dir` whose total is missing or stale, with their nodes: node
/// records but no `<job>.json` (EpilogSlurmctld failed or is not
/// configured), a total whose AdminComment was never stored, or one that
/// misses a node whose record has come since (its agent was down and
/// settled the job on its return).
pub fn stale(dir: &Path) -> Vec<(u64, Vec<String>)> {
    use std::collections::BTreeMap;
    let mut nodes_seen: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((job, node)) = name
            .strip_suffix(".json")
            .and_then(|stem| stem.split_once('.'))
        else {
            continue;
        };
        if let Ok(job) = job.parse::<u64>() {
            nodes_seen.entry(job).or_default().push(node.to_string());
        }
    }
    let mut out = Vec::new();
    for (job, mut seen) in nodes_seen {
        seen.sort();
        let path = dir.join(format!("{job}.json"));
        let existing: Option<JobTotal> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match existing {
            None => out.push((job, seen)),
            Some(t) => {
                let arrived = t.missing_nodes.iter().any(|n| seen.contains(n));
                if arrived || (!t.admin_comment_set && !t.records.is_empty()) {
                    out.push((job, t.nodes));
                }
            }
        }
    }
    out
}

impl JobTotal {
    /// Writes `<dir>/<job>.json`, root-only.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        atomic_file::write_private(&dir.join(format!("{}.json", self.job_id)), &json)
            .map_err(|e| e.to_string())
    }

    /// Writes the total, then, when `admin_comment` and there is something
    /// to say, stores its AdminComment and writes again noting that it did
    /// (what `stale` looks for).
    pub fn store(mut self, dir: &Path, admin_comment: bool, wait: Duration) -> Result<(), String> {
        self.write(dir)?;
        if !admin_comment || self.records.is_empty() {
            return Ok(());
        }
        self.set_admin_comment(wait)?;
        self.admin_comment_set = true;
        self.write(dir)
    }

    /// Stores [`Self::admin_comment`] with `sacctmgr`, trying again for up to
    /// `wait`: the job has finished (`scontrol update` refuses it then) and
    /// slurmdbd may not have it yet.
    pub fn set_admin_comment(&self, wait: Duration) -> Result<(), String> {
        let deadline = Instant::now() + wait;
        loop {
            let out = std::process::Command::new("sacctmgr")
                .args(["-i", "modify", "job", "where"])
                .arg(format!("jobid={}", self.job_id))
                .arg("set")
                .arg(format!("AdminComment={}", self.admin_comment()))
                .output()
                .map_err(|e| format!("running sacctmgr: {e}"))?;
            let said = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            if out.status.success() && !said.contains("Nothing modified") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("sacctmgr set AdminComment: {}", said.trim()));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The `AdminComment`: `jb1:` and `key=value` pairs (`j`, `kwh`,
    /// `gpu_j`, `cpu_j`, `unused_gpu_j`, `nodes`, `method`, `missing`), all lower case,
    /// no quotes: `sacctmgr ... set AdminComment=` on a finished job lowers
    /// the case and turns `"` into backticks (Slurm 22.05), which this
    /// survives unchanged, and users read it as it is.
    pub fn admin_comment(&self) -> String {
        format!(
            "jb1:j={},kwh={},gpu_j={},cpu_j={},unused_gpu_j={},nodes={},method={},missing={}",
            round3(self.job_j),
            (self.job_j / 3.6e6 * 1e6).round() / 1e6,
            round3(self.job_gpu_j),
            round3(self.job_cpu_j),
            round3(self.unused_gpu_j),
            self.nodes.len(),
            self.methods.join("+"),
            self.missing_nodes.join(";").to_lowercase()
        )
    }
}

/// The fields of an `AdminComment` written by [`JobTotal::admin_comment`].
pub fn parse_admin_comment(text: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let body = text.trim().strip_prefix("jb1:")?;
    Some(
        body.split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_comment_survives_sacctmgrs_lower_case() {
        let total = JobTotal {
            schema: JOB_SCHEMA.into(),
            job_id: 7,
            uid: Some(1000),
            user: None,
            nodes: vec!["n1".into(), "N2".into()],
            missing_nodes: vec!["N2".into()],
            job_j: 1234.56789,
            job_gpu_j: 1000.0,
            job_cpu_j: 234.56789,
            unused_gpu_j: 0.0,
            nodes_measured_j: 1300.0,
            methods: vec!["exclusive".into()],
            duration_s: 10.0,
            records: vec![],
            admin_comment_set: false,
        };
        let comment = total.admin_comment();
        assert_eq!(comment, comment.to_lowercase());
        assert!(!comment.contains('"'));
        let fields = parse_admin_comment(&comment).unwrap();
        assert_eq!(fields["j"], "1234.568");
        assert_eq!(fields["missing"], "n2");
        assert_eq!(fields["method"], "exclusive");
    }
}
