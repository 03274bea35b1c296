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
