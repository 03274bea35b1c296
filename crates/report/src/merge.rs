//! Merging per-node command results (one `joulebench measure` per Slurm node)
//! into one result for the whole job.
//!
//! Each node measured on its own clock, so windows cannot be lined up; what
//! adds up across nodes is energy. The merged result therefore:
//!
//! - keeps every node's meters, renamed `<host>/<meter>` (their windows stay
//!   on their node's clock), so nothing measured is lost;
//! - sums the nodes' measured totals, and separately their estimated totals
//!   (never one into the other), each node's total taken by its own rule;
//! - lists each node in `nodes` with its exit code, wall time and energy;
//! - sums phases by name across nodes (`phase_totals`), and drops the
//!   per-occurrence `phases` (their windows are per node);
//! - sums idle power and energy above idle (absent if any node lacks it);
//! - is `interrupted` if any node was, and incomplete if any node was.
//!
//! The same host appearing twice is refused: its meters would be counted
//! twice (two tasks on one node both measured it, or a folder was given
//! twice).

use crate::phases::add_total;
use crate::schema::{
    CommandResult, IdleRecord, MeasuredCommand, MeterLog, NodeRecord, PhaseTotal, PowerRecord,
    RunStatus, UnusableMeter, KIND_COMMAND, SCHEMA_VERSION,
};
use crate::system::SystemDescription;
use power::energy::{Completeness, Excluded, SystemTotal, TotalPart};
use power::meter::Provenance;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge")]
    Empty,
    #[error("host {host} appears twice ({first} and {second}): its energy would be counted twice; give each node's result once")]
    DuplicateHost {
        host: String,
        first: String,
        second: String,
    },
}

/// Why a folder gives no node results.
#[derive(Debug, thiserror::Error)]
pub enum NodeDirError {
    #[error("{}: not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error("reading {}: {source}", dir.display())]
    Read {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: no result.json in it or in its subfolders (give the --output folder of `joulebench measure`)",
        .0.display()
    )]
    NoResults(PathBuf),
}

/// The node folders under `dir`: itself when it holds a node's result, else
/// its subfolders that hold one (a merged result in `dir` is not a node).
pub fn node_dirs(dir: &Path) -> Result<(Vec<PathBuf>, bool), NodeDirError> {
    if !dir.is_dir() {
        return Err(NodeDirError::NotAFolder(dir.to_path_buf()));
    }
    let own = dir.join(crate::schema::RESULT_FILE);
    if own.exists() {
        let merged_here = matches!(
            crate::schema::read_any(&own),
            Ok(crate::schema::AnyResult::Command(ref c)) if !c.nodes.is_empty()
        );
        if !merged_here {
            return Ok((vec![dir.to_path_buf()], false));
        }
    }
    let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| NodeDirError::Read {
            dir: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.join(crate::schema::RESULT_FILE).exists())
        .collect();
    subs.sort();
    if subs.is_empty() {
        return Err(NodeDirError::NoResults(dir.to_path_buf()));
    }
    Ok((subs, true))
}

/// One node's result and the folder it came from.
pub struct NodeInput {
    pub dir: String,
    pub result: CommandResult,
}

/// The merged result and anything a user should know about the inputs.
pub struct Merged {
    pub result: CommandResult,
    pub warnings: Vec<String>,
}

/// The node name of a result: Slurm's node name when it ran under Slurm,
/// else the machine's hostname.
pub fn host_of(r: &CommandResult) -> String {
    r.measured_command
        .slurm
        .as_ref()
        .map(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| r.system.hostname.clone())
}

/// Sums `nodes` into one result. `command` is the merging command line;
/// `log_path` maps a node's folder and a log file in it to the path the
/// merged result should name (relative to where it is written).
pub fn merge(
    nodes: Vec<NodeInput>,
    command: Vec<String>,
    joulebench_version: &str,
    log_path: &dyn Fn(&str, &str) -> String,
) -> Result<Merged, MergeError> {
    if nodes.is_empty() {
        return Err(MergeError::Empty);
    }
    let mut warnings = Vec::new();
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[..i] {
            if host_of(&a.result) == host_of(&b.result) {
                return Err(MergeError::DuplicateHost {
                    host: host_of(&a.result),
                    first: b.dir.clone(),
                    second: a.dir.clone(),
                });
            }
        }
    }
    let first = &nodes[0].result;
    for n in &nodes[1..] {
        if n.result.measured_command.argv != first.measured_command.argv {
            warnings.push(format!(
                "{} ran `{}`, {} ran `{}`: merged anyway",
                nodes[0].dir,
                first.measured_command.argv.join(" "),
                n.dir,
                n.result.measured_command.argv.join(" ")
            ));
        }
        let job = |r: &CommandResult| r.measured_command.slurm.as_ref().map(|s| s.job_id.clone());
        if job(&n.result) != job(first) {
            warnings.push(format!(
                "{} and {} come from different Slurm jobs ({} and {}): merged anyway",
                nodes[0].dir,
                n.dir,
                job(first).unwrap_or_else(|| "none".into()),
                job(&n.result).unwrap_or_else(|| "none".into())
            ));
        }
    }

    let mut node_records = Vec::new();
    let mut meters = Vec::new();
    let mut logs = Vec::new();
    let mut unusable = Vec::new();
    let mut measured: Option<TotalPart> = None;
    let mut estimated: Option<TotalPart> = None;
    let mut excluded = Vec::new();
    let mut rules = Vec::new();
    let mut phase_totals: Vec<PhaseTotal> = Vec::new();
    let mut interval_s: f64 = 0.0;
    let mut any_power = false;
    let mut complete = true;
    let mut idle: Option<IdleRecord> = None;
    for n in &nodes {
        let r = &n.result;
        let host = host_of(r);
        let p = r.power.as_ref();
        let total = p.map(|p| &p.total);
        let part = |t: Option<&SystemTotal>, measured: bool| {
            t.and_then(|t| {
                if measured {
                    t.measured.clone()
                } else {
                    t.estimated.clone()
                }
            })
        };
        let node_measured = part(total, true);
        let node_estimated = part(total, false);
        let node_above = p
            .and_then(|p| p.idle.as_ref())
            .and_then(|i| i.energy_above_idle_j);
        node_records.push(NodeRecord {
            hostname: host.clone(),
            dir: n.dir.clone(),
            status: r.status,
            reported_exit_code: r.measured_command.reported_exit_code,
            wall_s: r.measured_command.wall_s,
            measured_j: node_measured.as_ref().map(|t| t.energy_j),
            measured_avg_w: node_measured.as_ref().map(|t| t.avg_w),
            estimated_j: node_estimated.as_ref().map(|t| t.energy_j),
            estimated_avg_w: node_estimated.as_ref().map(|t| t.avg_w),
            energy_above_idle_j: node_above,
            complete: p.is_none_or(|p| p.complete),
        });
        if let Some(p) = p {
            any_power = true;
            interval_s = interval_s.max(p.interval_s);
            complete &= p.complete;
            for m in &p.meters {
                let mut m = m.clone();
                m.meter_id = format!("{host}/{}", m.meter_id);
                m.contains = m.contains.iter().map(|c| format!("{host}/{c}")).collect();
                meters.push(m);
            }
            for l in &p.logs {
                logs.push(MeterLog {
                    meter_id: format!("{host}/{}", l.meter_id),
                    file: log_path(&n.dir, &l.file),
                    samples: l.samples,
                    faults: l.faults.clone(),
                });
            }
            for u in &p.unusable {
                unusable.push(UnusableMeter {
                    source: u.source.clone(),
                    domain: format!("{host}/{}", u.domain),
                    reason: u.reason.clone(),
                });
            }
            measured = add_part(measured, node_measured.as_ref(), &host);
            estimated = add_part(estimated, node_estimated.as_ref(), &host);
            for e in &p.total.excluded {
                excluded.push(Excluded {
                    meter_id: format!("{host}/{}", e.meter_id),
                    reason: e.reason.clone(),
                });
            }
            let rule_head = p.total.rule.lines().next().unwrap_or("").to_string();
            rules.push(format!("{host}: {rule_head}"));
            if let Some(i) = &p.idle {
                let sum = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(x), Some(y)) => Some(x + y),
                    _ => None,
                };
                let prefixed: Vec<(String, f64)> = i
                    .meters
                    .iter()
                    .map(|(m, w)| (format!("{host}/{m}"), *w))
                    .collect();
                idle = Some(match idle.take() {
                    None => IdleRecord {
                        duration_s: i.duration_s,
                        meters: prefixed,
                        total_idle_w: i.total_idle_w,
                        energy_above_idle_j: i.energy_above_idle_j,
                    },
                    Some(mut acc) => {
                        acc.duration_s = acc.duration_s.min(i.duration_s);
                        acc.meters.extend(prefixed);
                        acc.total_idle_w = sum(acc.total_idle_w, i.total_idle_w);
                        acc.energy_above_idle_j =
                            sum(acc.energy_above_idle_j, i.energy_above_idle_j);
                        acc
                    }
                });
            }
        }
        for t in &r.phase_totals {
            match phase_totals.iter_mut().find(|x| x.name == t.name) {
                Some(x) => add_total(x, t),
                None => phase_totals.push(t.clone()),
            }
        }
    }

    let status = if nodes
        .iter()
        .any(|n| n.result.status == RunStatus::Interrupted)
    {
        RunStatus::Interrupted
    } else {
        RunStatus::Completed
    };
    // The job's exit code: the first node's failure, else 0.
    let reported_exit_code = nodes
        .iter()
        .map(|n| n.result.measured_command.reported_exit_code)
        .find(|&c| c != 0)
        .unwrap_or(0);
    let power = any_power.then(|| PowerRecord {
        interval_s,
        meters,
        logs,
        total: SystemTotal {
            measured,
            estimated,
            excluded,
            rule: format!(
                "sum over nodes of each node's total; per node:\n{}",
                rules.join("\n")
            ),
        },
        efficiency: None,
        idle,
        unusable,
        ptd: None,
        complete,
    });
    let result = CommandResult {
        schema_version: SCHEMA_VERSION,
        joulebench_version: joulebench_version.to_string(),
        kind: KIND_COMMAND.into(),
        status,
        started_at: nodes
            .iter()
            .map(|n| n.result.started_at.clone())
            .min()
            .unwrap_or_default(),
        command,
        system: merged_system(nodes.iter().map(|n| &n.result.system)),
        measured_command: MeasuredCommand {
            argv: first.measured_command.argv.clone(),
            exit_code: None,
            signal: None,
            reported_exit_code,
            wall_s: nodes
                .iter()
                .map(|n| n.result.measured_command.wall_s)
                .fold(0.0, f64::max),
            start_error: None,
            forwarded_signals: Vec::new(),
            mark_problems: Vec::new(),
            slurm: first.measured_command.slurm.clone().map(|mut s| {
                s.node_name = node_records
                    .iter()
                    .map(|n| n.hostname.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                s.node_id = None;
                s
            }),
        },
        timed_window: None,
        phases: Vec::new(),
        phase_totals,
        nodes: node_records,
        power,
        peak_power: nodes
            .iter()
            .flat_map(|n| {
                let host = host_of(&n.result);
                n.result
                    .peak_power
                    .iter()
                    .map(move |p| crate::schema::MeterPeak {
                        meter_id: format!("{host}/{}", p.meter_id),
                        peak_w: p.peak_w,
                    })
            })
            .collect(),
        files: Vec::new(),
    };
    Ok(Merged { result, warnings })
}

fn add_part(sum: Option<TotalPart>, node: Option<&TotalPart>, host: &str) -> Option<TotalPart> {
    let Some(node) = node else {
        return sum;
    };
    let ids: Vec<String> = node
        .meter_ids
        .iter()
        .map(|m| format!("{host}/{m}"))
        .collect();
    let reasons: Vec<String> = node
        .completeness
        .reasons()
        .iter()
        .map(|r| format!("{host}: {r}"))
        .collect();
    Some(match sum {
        None => TotalPart {
            provenance: node.provenance,
            energy_j: node.energy_j,
            avg_w: node.avg_w,
            meter_ids: ids,
            completeness: completeness(reasons),
        },
        Some(mut s) => {
            s.energy_j += node.energy_j;
            s.avg_w += node.avg_w;
            s.meter_ids.extend(ids);
            let mut all = s.completeness.reasons().to_vec();
            all.extend(reasons);
            s.completeness = completeness(all);
            debug_assert!(s.provenance == node.provenance || s.provenance == Provenance::Measured);
            s
        }
    })
}

fn completeness(reasons: Vec<String>) -> Completeness {
    if reasons.is_empty() {
        Completeness::Complete
    } else {
        Completeness::Incomplete { reasons }
    }
}

/// Hostnames joined; text fields kept when every node agrees, else listed;
/// CPUs and memory summed.
fn merged_system<'a>(systems: impl Iterator<Item = &'a SystemDescription>) -> SystemDescription {
    let all: Vec<&SystemDescription> = systems.collect();
    let joined = |f: &dyn Fn(&SystemDescription) -> &str| {
        let mut values: Vec<&str> = Vec::new();
        for s in &all {
            if !values.contains(&f(s)) {
                values.push(f(s));
            }
        }
        values.join(" | ")
    };
    SystemDescription {
        hostname: all
            .iter()
            .map(|s| s.hostname.as_str())
            .collect::<Vec<_>>()
            .join(","),
        os: joined(&|s| &s.os),
        kernel: joined(&|s| &s.kernel),
        cpu_model: joined(&|s| &s.cpu_model),
        logical_cpus: all.iter().map(|s| s.logical_cpus).sum(),
        memory_bytes: all.iter().map(|s| s.memory_bytes).sum(),
    }
}
