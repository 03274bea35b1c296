//! The agent's state on disk: each counter's total, and the jobs open on
//! this node with the totals at their start. Written atomically after every
//! change, so a restarted agent (or a crashed one) loses nothing but the
//! energy of the time it was down, which the next reading adds back: the
//! counters kept counting.

use crate::counters::{Counter, Integral};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const JOURNAL_FILE: &str = "journal.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub node: String,
    /// Energy counters, by meter id.
    pub counters: BTreeMap<String, Counter>,
    /// Power meters' integrals, by meter id.
    #[serde(default)]
    pub samples: BTreeMap<String, Integral>,
    /// By job id.
    pub jobs: BTreeMap<u64, OpenJob>,
    /// The last poll, ns since the Unix epoch.
    pub polled_unix_ns: u64,
    /// Restarts of the agent that found this journal.
    pub restarts: u64,
}

/// A job running on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenJob {
    pub job_id: u64,
    pub uid: u32,
    pub user: Option<String>,
    pub gpus: Vec<u32>,
    pub started_unix_ns: u64,
    /// Each counter's total and raw reading at the start.
    pub start_totals_uj: BTreeMap<String, u64>,
    pub start_raw_uj: BTreeMap<String, u64>,
    /// Each power meter's bridged (estimated) energy at the start.
    #[serde(default)]
    pub start_bridged_uj: BTreeMap<String, u64>,
    /// Energy of this job the agent could only interpolate (its start came
    /// while the agent was down, spooled by the Prolog): from the start to
    /// the agent's first reading after, J.
    #[serde(default)]
    pub interpolated_start: bool,
    #[serde(default)]
    pub interpolated_start_j: f64,
    /// Other jobs that ran on the node during this one.
    pub co_tenants: Vec<u64>,
    /// CPUs allocated on this node.
    #[serde(default)]
    pub cpus: Option<u32>,
    /// The cgroup's CPU time at the last poll, µs (none found: `None`).
    #[serde(default)]
    pub cgroup_cpu_us: Option<u64>,
    /// CPU time used over the job, µs, as its cgroup counted it.
    #[serde(default)]
    pub cpu_used_us: u64,
    /// Its share of each CPU meter's energy, poll by poll (see `share`), µJ.
    #[serde(default)]
    pub attributed_uj: BTreeMap<String, u64>,
    /// The highest utilization (%) each of its GPUs showed at a poll, where
    /// NVML reports it.
    #[serde(default)]
    pub gpu_peak_utilization: BTreeMap<u32, u32>,
}

impl OpenJob {
    /// `message`'s job, started at `at` with the meters at `readings`.
    pub fn new(
        message: &crate::protocol::HookMessage,
        at: u64,
        readings: Readings,
        cgroup_cpu_us: Option<u64>,
        co_tenants: Vec<u64>,
    ) -> OpenJob {
        OpenJob {
            job_id: message.job_id,
            uid: message.uid,
            user: message.user.clone(),
            gpus: message.gpus.clone(),
            cpus: message.cpus,
            cgroup_cpu_us,
            cpu_used_us: 0,
            attributed_uj: BTreeMap::new(),
            gpu_peak_utilization: BTreeMap::new(),
            started_unix_ns: at,
            start_totals_uj: readings.totals_uj,
            start_raw_uj: readings.raw_uj,
            start_bridged_uj: readings.bridged_uj,
            interpolated_start: false,
            interpolated_start_j: 0.0,
            co_tenants,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a joulebench agent journal ({source}); move it away to start afresh", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] atomic_file::AtomicWriteError),
}

impl Journal {
    /// The journal in `state_dir`, or a new one for `node`.
    pub fn load(state_dir: &Path, node: &str) -> Result<Journal, JournalError> {
        let path = state_dir.join(JOURNAL_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mut journal: Journal = serde_json::from_slice(&bytes)
                    .map_err(|source| JournalError::Parse { path, source })?;
                journal.restarts += 1;
                journal.node = node.to_string();
                Ok(journal)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Journal {
                node: node.to_string(),
                ..Journal::default()
            }),
            Err(source) => Err(JournalError::Read { path, source }),
        }
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), JournalError> {
        let json = serde_json::to_vec_pretty(self).expect("the journal serialises");
        atomic_file::write(&state_dir.join(JOURNAL_FILE), &json)?;
        Ok(())
    }

    /// Every meter's figures as of the last poll.
    pub fn readings(&self) -> Readings {
        let at = self.polled_unix_ns;
        let mut totals_uj: BTreeMap<String, u64> = self
            .counters
            .iter()
            .map(|(id, c)| (id.clone(), c.total_uj))
            .collect();
        totals_uj.extend(
            self.samples
                .iter()
                .map(|(id, i)| (id.clone(), i.total_at(at))),
        );
        Readings {
            totals_uj,
            raw_uj: self
                .counters
                .iter()
                .map(|(id, c)| (id.clone(), c.last_raw_uj))
                .collect(),
            bridged_uj: self
                .samples
                .iter()
                .map(|(id, i)| (id.clone(), i.bridged_uj))
                .collect(),
        }
    }
}

/// Every meter's figures at one moment, by meter id, µJ.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    /// Energy so far (counters and integrated power meters).
    pub totals_uj: BTreeMap<String, u64>,
    /// Energy counters' raw values (none for power meters).
    pub raw_uj: BTreeMap<String, u64>,
    /// Power meters' energy bridged across gaps in their samples.
    pub bridged_uj: BTreeMap<String, u64>,
}

impl Readings {
    /// The figures at `at_unix_ns`, between two sets of readings, by straight
    /// line: what the agent can say of a moment it was not running (the
    /// counters kept counting; how the energy fell inside the gap is not
    /// known). No raw counter values: none was read then. Meters in both only.
    pub fn between(
        earlier: (u64, &Readings),
        later: (u64, &Readings),
        at_unix_ns: u64,
    ) -> Readings {
        let (t0, r0) = earlier;
        let (t1, r1) = later;
        let fraction = if t1 > t0 {
            (at_unix_ns.clamp(t0, t1) - t0) as f64 / (t1 - t0) as f64
        } else {
            1.0
        };
        let line = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
            a.iter()
                .filter_map(|(id, &x0)| {
                    let x1 = *b.get(id)?;
                    let x = x0 as f64 + (x1 as f64 - x0 as f64) * fraction;
                    Some((id.clone(), x.round().max(0.0) as u64))
                })
                .collect()
        };
        Readings {
            totals_uj: line(&r0.totals_uj, &r1.totals_uj),
            raw_uj: BTreeMap::new(),
            bridged_uj: line(&r0.bridged_uj, &r1.bridged_uj),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_between_two_polls_lie_on_the_straight_line() {
        let at = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let r0 = Readings {
            totals_uj: at(&[("rapl", 100), ("ipmi", 1_000), ("gone", 5)]),
            raw_uj: at(&[("rapl", 7)]),
            bridged_uj: at(&[("ipmi", 0)]),
        };
        let r1 = Readings {
            totals_uj: at(&[("rapl", 300), ("ipmi", 2_000), ("new", 9)]),
            raw_uj: at(&[("rapl", 9)]),
            bridged_uj: at(&[("ipmi", 400)]),
        };
        let mid = Readings::between((10, &r0), (20, &r1), 15);
        assert_eq!(mid.totals_uj, at(&[("ipmi", 1_500), ("rapl", 200)]));
        assert_eq!(mid.bridged_uj, at(&[("ipmi", 200)]));
        assert!(mid.raw_uj.is_empty(), "no counter was read then");
        assert_eq!(
            Readings::between((10, &r0), (20, &r1), 99).totals_uj["rapl"],
            300
        );
    }
}
