//! Splitting a shared node's CPU energy between its jobs, poll by poll: each
//! interval's package and DRAM energy goes to the jobs in proportion to the
//! CPU time their cgroups used in it; an interval in which no job used CPU
//! (idle) is split by the CPUs each job was allocated.
//!
//! A job's CPU time is its cgroup's: `cpu.stat`'s `usage_usec` (cgroup v2,
//! Slurm 22.05: `system.slice/slurmstepd.scope/job_<id>`) or
//! `cpuacct.usage` in nanoseconds (v1: `cpuacct/slurm/uid_<uid>/job_<id>`).

use std::collections::BTreeMap;
use std::path::Path;

/// The job's cgroup CPU time so far, µs; `None` when no cgroup is found.
pub fn cgroup_cpu_us(root: &Path, job_id: u64, uid: u32) -> Option<u64> {
    let v2 = root.join(format!(
        "system.slice/slurmstepd.scope/job_{job_id}/cpu.stat"
    ));
    if let Ok(text) = std::fs::read_to_string(v2) {
        return text
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse().ok());
    }
    let v1 = root.join(format!(
        "cpuacct/slurm/uid_{uid}/job_{job_id}/cpuacct.usage"
    ));
    std::fs::read_to_string(v1)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map(|ns| ns / 1000)
}

/// One open job's part in an interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tenant {
    /// CPU time its cgroup used in the interval, µs.
    pub cpu_us: u64,
    /// CPUs allocated to it on this node.
    pub cpus: u32,
}

/// Each job's share of `energy_uj` (same order as `tenants`), summing to it
/// exactly: by CPU time when any was used, else by allocated CPUs.
pub fn split(energy_uj: u64, tenants: &[Tenant]) -> Vec<u64> {
    let weights: Vec<u64> = if tenants.iter().any(|t| t.cpu_us > 0) {
        tenants.iter().map(|t| t.cpu_us).collect()
    } else {
        tenants.iter().map(|t| u64::from(t.cpus.max(1))).collect()
    };
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if total == 0 {
        return vec![0; tenants.len()];
    }
    let mut shares: Vec<u64> = weights
        .iter()
        .map(|&w| (u128::from(energy_uj) * u128::from(w) / total) as u64)
        .collect();
    // Rounding leaves a few µJ: the largest weight takes them, so nothing is lost.
    let rest = energy_uj - shares.iter().sum::<u64>();
    if let Some(i) = (0..weights.len()).max_by_key(|&i| weights[i]) {
        shares[i] += rest;
    }
    shares
}

/// Adds each job's share of each meter's increment to `attributed`
/// (job → meter → µJ).
pub fn attribute(
    increments_uj: &BTreeMap<String, u64>,
    jobs: &[(u64, Tenant)],
    attributed: &mut BTreeMap<u64, BTreeMap<String, u64>>,
) {
    if jobs.is_empty() {
        return;
    }
    let tenants: Vec<Tenant> = jobs.iter().map(|(_, t)| *t).collect();
    for (meter, &energy) in increments_uj {
        for ((job, _), share) in jobs.iter().zip(split(energy, &tenants)) {
            *attributed
                .entry(*job)
                .or_default()
                .entry(meter.clone())
                .or_default() += share;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_splits_busy_intervals_and_cores_split_idle_ones() {
        let busy = [
            Tenant {
                cpu_us: 3_000,
                cpus: 1,
            },
            Tenant {
                cpu_us: 1_000,
                cpus: 3,
            },
        ];
        assert_eq!(split(1_000_000, &busy), vec![750_000, 250_000]);
        let idle = [Tenant { cpu_us: 0, cpus: 1 }, Tenant { cpu_us: 0, cpus: 3 }];
        assert_eq!(split(1_000_000, &idle), vec![250_000, 750_000]);
        let odd = [
            Tenant { cpu_us: 1, cpus: 1 },
            Tenant { cpu_us: 1, cpus: 1 },
            Tenant { cpu_us: 1, cpus: 1 },
        ];
        assert_eq!(
            split(10, &odd).iter().sum::<u64>(),
            10,
            "nothing lost to rounding"
        );
    }

    #[test]
    fn cgroup_v2_and_v1_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("system.slice/slurmstepd.scope/job_7");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("cpu.stat"), "usage_usec 1234\nuser_usec 1000\n").unwrap();
        assert_eq!(cgroup_cpu_us(dir.path(), 7, 0), Some(1234));
        let v1 = dir.path().join("cpuacct/slurm/uid_5/job_8");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("cpuacct.usage"), "5000000\n").unwrap();
        assert_eq!(cgroup_cpu_us(dir.path(), 8, 5), Some(5000));
        assert_eq!(cgroup_cpu_us(dir.path(), 9, 5), None);
    }
}
