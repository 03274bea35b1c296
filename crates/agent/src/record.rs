//! A job's energy on one node: the record its end writes
//! (`<state>/jobs/<job>.<node>.json`).
//!
//! Attribution:
//! - `exclusive`: no other job ran on the node during this one, so the job
//!   gets every device's energy (the node's measured total);
//! - `cpu-time-share`: the node was shared; the job gets the energy of the
//!   GPUs it was given (each GPU goes to its owner) and its share of the
//!   packages' and DRAM's energy, interval by interval, by its cgroup's CPU
//!   time (idle intervals by allocated CPUs; see `share`). The record keeps
//!   the node's measured total beside it.
//!
//! The node's total follows the run's rule (`power::energy::total`): a node
//! meter (the BMC through IPMI or Redfish, an ACPI power meter) when there is
//! one, since it holds everything else; otherwise the GPUs, packages and DRAM
//! summed. With a node meter, what lies outside the measured parts (fans,
//! power supplies, disks, network) is the "rest of the node": a shared node's
//! rest is split by allocated CPUs, interval by interval.

use crate::journal::{OpenJob, Readings};
use power::meter::{ReadingKind, Scope};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const RECORD_SCHEMA: &str = "joulebench.job-node.v1";

/// What the record needs to know of a meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterMeta {
    pub domain: String,
    pub scope: Scope,
    pub kind: ReadingKind,
    /// Meters inside this one (RAPL core in package): not summed twice.
    pub contains: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobNodeRecord {
    pub schema: String,
    pub job_id: u64,
    pub node: String,
    pub uid: u32,
    pub user: Option<String>,
    pub gpus: Vec<u32>,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub duration_s: f64,
    pub meters: Vec<MeterEnergy>,
    /// By GPU index, joules (every GPU of the node).
    pub gpu_j: BTreeMap<u32, f64>,
    /// By package domain (`package-0`, `dram-0`), joules.
    pub cpu_j: BTreeMap<String, f64>,
    /// What the node used: its node meter's energy where it has one
    /// (`node_meter`), else every top-level meter summed (`components_j`).
    pub node_measured_j: f64,
    /// The node meter counted (`ipmi`, `redfish-…`, `hwmon-power_meter-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_meter: Option<String>,
    /// GPUs, CPU packages and DRAM summed.
    #[serde(default)]
    pub components_j: f64,
    /// The job's part of the node's energy outside those parts (fans, power
    /// supplies, disks, network); only with a node meter.
    #[serde(default)]
    pub job_rest_j: f64,
    /// Of `job_j`, what was bridged across gaps in a power meter's samples
    /// (the agent down, the BMC not answering): estimated, not measured.
    #[serde(default)]
    pub job_estimated_j: f64,
    /// What this job is charged under `method`.
    pub job_j: f64,
    /// Energy of GPUs the job was given (always part of `job_j`).
    pub job_gpu_j: f64,
    /// The job's part of the CPU packages and DRAM (all of it when exclusive).
    #[serde(default)]
    pub job_cpu_j: f64,
    /// CPU time its cgroup used, seconds (`None`: no cgroup found).
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    /// CPUs allocated to it on this node.
    #[serde(default)]
    pub cpus: Option<u32>,
    /// Of `job_j`, the energy of GPUs on the node it was not given (charged
    /// to it because it had the node alone): what a CPU-only job on a GPU
    /// node costs in GPUs it never used.
    #[serde(default)]
    pub unused_gpu_j: f64,
    #[serde(default)]
    pub unused_gpus: Vec<u32>,
    /// GPUs the job was given that showed no utilization at any of the
    /// agent's polls (every 10 s by default: a short burst between two polls
    /// can be missed), and their energy (part of `job_gpu_j`).
    #[serde(default)]
    pub idle_given_gpus: Vec<u32>,
    #[serde(default)]
    pub idle_given_gpu_j: f64,
    /// The agent was not running when the job started: the window begins
    /// when it did, and `not_attributed` says so.
    #[serde(default)]
    pub missed_start: bool,
    /// The job's start or end came while the agent was down (its hook kept
    /// the message for it): the figures at that moment are interpolated
    /// between the agent's readings either side, and that part of `job_j` is
    /// in `job_estimated_j`.
    #[serde(default)]
    pub interpolated_start: bool,
    #[serde(default)]
    pub interpolated_end: bool,
    pub method: String,
    /// How each part of `job_j` was attributed: `node: exclusive`; on a
    /// shared node `gpus: gpu-device` (each GPU to the job it was given),
    /// `cpu: cpu-time-share` (packages and DRAM by cgroup CPU time) and, with
    /// a node meter, `rest: allocated-cpus`.
    #[serde(default)]
    pub attribution: BTreeMap<String, String>,
    pub co_tenants: Vec<u64>,
    /// What is missing from `job_j`, in words (empty when nothing is).
    pub not_attributed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterEnergy {
    pub meter_id: String,
    pub domain: String,
    pub scope: Scope,
    /// An energy counter, or a power meter whose samples were integrated.
    #[serde(default = "counter_kind")]
    pub kind: ReadingKind,
    /// An energy counter's raw readings at the job's start and end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_raw_uj: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_raw_uj: Option<u64>,
    pub energy_j: f64,
    /// Of `energy_j`, what was bridged across gaps in the samples (estimated).
    #[serde(default)]
    pub bridged_j: f64,
}

fn counter_kind() -> ReadingKind {
    ReadingKind::EnergyCounter
}

/// The attribution keys of the rest of the node (see `Agent::share_energy`):
/// the node meter's increments and its measured parts', both split by
/// allocated CPUs; a job's rest is the first less the second.
pub const REST_NODE_KEY: &str = "rest:node";
pub const REST_PARTS_KEY: &str = "rest:parts";

/// The GPU index of an NVML whole-GPU meter's domain (`gpu3` → 3).
fn gpu_index(domain: &str) -> Option<u32> {
    domain.strip_prefix("gpu")?.parse().ok()
}

/// The record of `job` ending now (`end`: every meter's figures now).
pub fn close(
    job: &OpenJob,
    node: &str,
    end_unix_ns: u64,
    end: &Readings,
    meta: &BTreeMap<String, MeterMeta>,
) -> JobNodeRecord {
    let contained: Vec<&String> = meta.values().flat_map(|m| &m.contains).collect();
    let mut meters = Vec::new();
    let (mut gpu_j, mut cpu_j) = (BTreeMap::new(), BTreeMap::new());
    let mut gpu_bridged_j: BTreeMap<u32, f64> = BTreeMap::new();
    let mut components_j = 0.0;
    let mut node_meter: Option<(String, f64, f64)> = None;
    for (id, &end_total) in &end.totals_uj {
        let (Some(&start), Some(m)) = (job.start_totals_uj.get(id), meta.get(id)) else {
            continue; // a meter that appeared during the job: no start
        };
        let energy_j = end_total.saturating_sub(start) as f64 / 1e6;
        let bridged_j = match end.bridged_uj.get(id) {
            Some(&b) => {
                b.saturating_sub(job.start_bridged_uj.get(id).copied().unwrap_or(0)) as f64 / 1e6
            }
            None => 0.0,
        };
        meters.push(MeterEnergy {
            meter_id: id.clone(),
            domain: m.domain.clone(),
            scope: m.scope,
            kind: m.kind,
            start_raw_uj: job.start_raw_uj.get(id).copied(),
            end_raw_uj: end.raw_uj.get(id).copied(),
            energy_j,
            bridged_j,
        });
        if contained.contains(&id) {
            continue;
        }
        match m.scope {
            Scope::Node => {
                // The first node meter counts; others are listed, not added.
                if node_meter.is_none() {
                    node_meter = Some((id.clone(), energy_j, bridged_j));
                }
                continue;
            }
            Scope::Gpu => {
                if let Some(index) = gpu_index(&m.domain) {
                    gpu_j.insert(index, energy_j);
                    gpu_bridged_j.insert(index, bridged_j);
                }
            }
            Scope::CpuPackage | Scope::Dram => {
                cpu_j.insert(m.domain.clone(), energy_j);
            }
            _ => continue,
        }
        components_j += energy_j;
    }
    let job_gpu_j = total(job.gpus.iter().filter_map(|g| gpu_j.get(g)));
    let unused_gpus: Vec<u32> = gpu_j
        .keys()
        .filter(|g| !job.gpus.contains(g))
        .copied()
        .collect();
    let unused_gpu_j = total(unused_gpus.iter().filter_map(|g| gpu_j.get(g)));
    let idle_given: Vec<u32> = job
        .gpus
        .iter()
        .filter(|g| job.gpu_peak_utilization.get(g) == Some(&0))
        .copied()
        .collect();
    let idle_given_gpu_j = total(idle_given.iter().filter_map(|g| gpu_j.get(g)));
    let node_cpu_j = total(cpu_j.values());
    let node_measured_j = node_meter.as_ref().map_or(components_j, |(_, j, _)| *j);
    let exclusive = job.co_tenants.is_empty();
    let mut not_attributed = Vec::new();
    let (method, job_cpu_j, job_rest_j) = if exclusive {
        let rest = (node_measured_j - components_j).max(0.0);
        ("exclusive", node_cpu_j, rest)
    } else {
        let share: u64 = job
            .attributed_uj
            .iter()
            .filter(|(id, _)| {
                meta.get(*id)
                    .is_some_and(|m| matches!(m.scope, Scope::CpuPackage | Scope::Dram))
            })
            .map(|(_, &uj)| uj)
            .sum();
        let share = share as f64 / 1e6;
        if job.cgroup_cpu_us.is_none() {
            not_attributed.push(
                "no cgroup CPU time was found for this job: its CPU share counts only the \
                 intervals when no job used CPU (split by allocated CPUs)"
                    .to_string(),
            );
        }
        let attributed = |key: &str| job.attributed_uj.get(key).copied().unwrap_or(0);
        let rest = if node_meter.is_some() {
            attributed(REST_NODE_KEY).saturating_sub(attributed(REST_PARTS_KEY)) as f64 / 1e6
        } else {
            0.0
        };
        ("cpu-time-share", share, rest)
    };
    let job_j = if exclusive {
        node_measured_j
    } else {
        job_gpu_j + job_cpu_j + job_rest_j
    };
    // The estimated part: bridged energy of what the job is charged.
    let node_bridged_fraction = match &node_meter {
        Some((_, j, bridged)) if *j > 0.0 => bridged / j,
        _ => 0.0,
    };
    let job_estimated_j = if exclusive {
        match &node_meter {
            Some((_, _, bridged)) => *bridged,
            None => total(gpu_bridged_j.values()),
        }
    } else {
        total(job.gpus.iter().filter_map(|g| gpu_bridged_j.get(g)))
            + job_rest_j * node_bridged_fraction
    };
    let job_estimated_j = (job_estimated_j + job.interpolated_start_j).min(job_j);
    let node_meter_counted = node_meter.is_some();
    JobNodeRecord {
        schema: RECORD_SCHEMA.into(),
        job_id: job.job_id,
        node: node.to_string(),
        uid: job.uid,
        user: job.user.clone(),
        gpus: job.gpus.clone(),
        start_unix_ns: job.started_unix_ns,
        end_unix_ns,
        duration_s: end_unix_ns.saturating_sub(job.started_unix_ns) as f64 / 1e9,
        meters,
        gpu_j,
        cpu_j,
        node_measured_j,
        node_meter: node_meter.map(|(id, _, _)| id),
        components_j,
        job_rest_j,
        job_estimated_j,
        job_j,
        job_gpu_j,
        job_cpu_j,
        cpu_seconds: job.cgroup_cpu_us.map(|_| job.cpu_used_us as f64 / 1e6),
        cpus: job.cpus,
        unused_gpu_j: if exclusive { unused_gpu_j } else { 0.0 },
        unused_gpus: if exclusive { unused_gpus } else { Vec::new() },
        missed_start: false,
        interpolated_start: job.interpolated_start,
        interpolated_end: false,
        idle_given_gpu_j,
        idle_given_gpus: idle_given,
        method: method.into(),
        attribution: attribution(exclusive, node_meter_counted),
        co_tenants: job.co_tenants.clone(),
        not_attributed,
    }
}

/// The attribution of each part of a job's energy (see `JobNodeRecord`).
fn attribution(exclusive: bool, node_meter: bool) -> BTreeMap<String, String> {
    let parts: &[(&str, &str)] = match (exclusive, node_meter) {
        (true, _) => &[("node", "exclusive")],
        (false, false) => &[("gpus", "gpu-device"), ("cpu", "cpu-time-share")],
        (false, true) => &[
            ("gpus", "gpu-device"),
            ("cpu", "cpu-time-share"),
            ("rest", "allocated-cpus"),
        ],
    };
    parts
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Joules summed, from +0 (an empty `Iterator::sum` of floats is -0, which
/// would read "-0.0" in the record).
fn total<'a>(joules: impl Iterator<Item = &'a f64>) -> f64 {
    joules.fold(0.0, |sum, j| sum + j)
}

/// The few figures a hook shows the user, sent back with the Epilog's reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub job_id: u64,
    pub node: String,
    pub job_j: f64,
    pub job_gpu_j: f64,
    pub gpus: Vec<u32>,
    pub duration_s: f64,
    pub method: String,
    pub not_attributed: Vec<String>,
    #[serde(default)]
    pub unused_gpu_j: f64,
    #[serde(default)]
    pub unused_gpus: usize,
    #[serde(default)]
    pub idle_given_gpu_j: f64,
    #[serde(default)]
    pub idle_given_gpus: usize,
    #[serde(default)]
    pub job_estimated_j: f64,
    /// The node meter that made the total, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_meter: Option<String>,
}

impl JobNodeRecord {
    pub fn summary(&self) -> JobSummary {
        JobSummary {
            job_id: self.job_id,
            node: self.node.clone(),
            job_j: self.job_j,
            job_gpu_j: self.job_gpu_j,
            gpus: self.gpus.clone(),
            duration_s: self.duration_s,
            method: self.method.clone(),
            not_attributed: self.not_attributed.clone(),
            unused_gpu_j: self.unused_gpu_j,
            unused_gpus: self.unused_gpus.len(),
            idle_given_gpu_j: self.idle_given_gpu_j,
            idle_given_gpus: self.idle_given_gpus.len(),
            job_estimated_j: self.job_estimated_j,
            node_meter: self.node_meter.clone(),
        }
    }
}

impl JobSummary {
    /// What the job's output file gets, on one line: the energy, in J and
    /// kWh, the average power, and how it was attributed.
    pub fn line(&self, nodes_in_job: usize) -> String {
        let mut text = format!(
            "joulebench: job {} used {} ({:.4} kWh) on {} in {:.0} s, {:.0} W on average ({})",
            self.job_id,
            joules(self.job_j),
            self.job_j / 3.6e6,
            self.node,
            self.duration_s,
            self.job_j / self.duration_s.max(1e-9),
            self.method
        );
        if !self.gpus.is_empty() {
            text += &format!("; its GPUs {:?}: {}", self.gpus, joules(self.job_gpu_j));
        }
        if self.idle_given_gpus > 0 {
            text += &format!(
                "; {} of it went to {} GPU{} it was given and never used",
                joules(self.idle_given_gpu_j),
                self.idle_given_gpus,
                if self.idle_given_gpus == 1 { "" } else { "s" }
            );
        }
        if self.unused_gpus > 0 {
            text += &format!(
                "; {} of it went to {} GPU{} it was not given",
                joules(self.unused_gpu_j),
                self.unused_gpus,
                if self.unused_gpus == 1 { "" } else { "s" }
            );
        }
        if let Some(meter) = &self.node_meter {
            text += &format!("; the node's total from {meter}");
        }
        if self.job_estimated_j > 0.0 {
            text += &format!(
                "; {} of it estimated (a gap in the power meter's samples, bridged)",
                joules(self.job_estimated_j)
            );
        }
        if nodes_in_job > 1 {
            text += &format!(
                "; this node only, of {nodes_in_job}: `joulebench job {}` has the total",
                self.job_id
            );
        }
        for missing in &self.not_attributed {
            text += &format!("; not counted: {missing}");
        }
        text
    }
}

/// Joules in the unit that reads best (J, kJ, MJ).
pub fn joules(j: f64) -> String {
    if j >= 1e6 {
        format!("{:.2} MJ", j / 1e6)
    } else if j >= 1e3 {
        format!("{:.1} kJ", j / 1e3)
    } else {
        format!("{j:.1} J")
    }
}

/// The record's file name.
pub fn file_name(job_id: u64, node: &str) -> String {
    format!("{job_id}.{node}.json")
}
