//! The agent's state: every meter of the node read into the journal, jobs
//! opened and closed as the hooks say, their records written (the sockets
//! that carry the hooks' messages are `server`'s).

use crate::counters::Counter;
use crate::journal::{Journal, JournalError, OpenJob, Readings};
use crate::protocol::{unix_ns, Event, HookMessage};
use crate::record::{self, JobNodeRecord, MeterMeta, REST_NODE_KEY, REST_PARTS_KEY};
use crate::sampled::SampledMeter;
use crate::share;
use crate::spool::{self, Spooled};
use power::meter::{Meter, Probe, Reading, ReadingKind, Scope};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::server::{serve, serve_with, JobQuery, OpenJobInfo};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: String,
    /// The journal and `jobs/` go here (`/var/lib/joulebench`).
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// A group that may read the records too (0640): the SlurmUser's, so
    /// that `EpilogSlurmctld` sums them when it does not run as root.
    pub records_group: Option<u32>,
    /// Where users ask for their jobs' records (`joulebench job`): anyone
    /// may connect, each sees only their own jobs.
    pub query_socket: Option<PathBuf>,
    /// Where each job's record goes (`<state_dir>/jobs` unless a folder
    /// shared by the nodes, so any node's agent answers for a whole job).
    pub records_dir: Option<PathBuf>,
    /// Between polls; well inside a RAPL counter's wrap time.
    pub interval: Duration,
    /// Between two samples of a power meter (hwmon, IPMI, Redfish), or the
    /// meter's own update period where that is longer.
    pub sample_interval: Duration,
    /// Where powercap lives (`/sys`; a fake tree in tests).
    pub sysfs_root: PathBuf,
    /// NVML's library, when not the driver's usual name.
    pub nvml_library: Option<PathBuf>,
    /// Where the jobs' cgroups are (`/sys/fs/cgroup`), for their CPU time.
    pub cgroup_root: PathBuf,
    /// Where hooks keep messages the agent was not there to take
    /// (`<state_dir>/spool` unless set; the hooks' `--spool-dir`).
    pub spool_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The agent's state: its counters and their journal.
pub struct Agent {
    config: AgentConfig,
    /// Energy counters, read at each poll.
    meters: Vec<Box<dyn Meter>>,
    /// Power meters, sampled on their own threads.
    sampled: Vec<SampledMeter>,
    /// Each power meter's total at the last poll, µJ (for its increments).
    sampled_seen_uj: BTreeMap<String, u64>,
    meta: BTreeMap<String, MeterMeta>,
    journal: Journal,
    /// When this agent process first read the meters, and their figures
    /// then: the start of a job whose Prolog came while the agent was down.
    since: (u64, Readings),
    /// NVML again, for how busy each GPU is (jobs' GPUs that stay idle).
    utilization: Option<power::meter::nvml::Nvml>,
    /// Meters that could not be used, with why (logged once).
    pub unusable: Vec<String>,
}

impl Agent {
    /// Loads the journal and finds the node's meters (RAPL packages and
    /// DRAM, NVML GPUs, hwmon sensors), with `extra` ones (a BMC through
    /// IPMI or Redfish); takes a first reading.
    pub fn open(config: AgentConfig, extra: Vec<Box<dyn Meter>>) -> Result<Agent, AgentError> {
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |source| AgentError::Io { path, source }
        };
        std::fs::create_dir_all(&config.state_dir).map_err(io(&config.state_dir))?;
        let records = config
            .records_dir
            .clone()
            .unwrap_or_else(|| config.state_dir.join("jobs"));
        std::fs::create_dir_all(&records).map_err(io(&records))?;
        let journal = Journal::load(&config.state_dir, &config.node)?;
        let config_nvml = config.nvml_library.clone();
        let mut probes = power::meter::rapl::probe(&config.sysfs_root);
        probes.extend(power::meter::hwmon::probe(&config.sysfs_root));
        probes.extend(match &config.nvml_library {
            Some(path) => power::meter::nvml::probe_library(path.as_os_str()),
            None => power::meter::nvml::probe(),
        });
        probes.extend(extra.into_iter().map(Probe::Usable));
        let (mut meters, mut power_meters, mut unusable) = (Vec::new(), Vec::new(), Vec::new());
        for probe in probes {
            match probe {
                Probe::Usable(m) if m.info().kind == ReadingKind::EnergyCounter => meters.push(m),
                // NVML's power gauges repeat its energy counter; only a GPU
                // without one (pre-Volta) gives its main id to a gauge.
                Probe::Usable(m)
                    if m.info().source == "nvml"
                        && m.info().id != format!("nvml-{}", m.info().domain) => {}
                Probe::Usable(m) => power_meters.push(m),
                Probe::Unusable {
                    source,
                    domain,
                    error,
                } => unusable.push(format!("{source} {domain}: {error}")),
            }
        }
        let meta = meters
            .iter()
            .map(|m| m.info())
            .chain(power_meters.iter().map(|m| m.info()))
            .map(|i| {
                (
                    i.id.clone(),
                    MeterMeta {
                        domain: i.domain.clone(),
                        scope: i.scope,
                        contains: i.contains.clone(),
                        kind: i.kind,
                    },
                )
            })
            .collect();
        let sampled: Vec<SampledMeter> = power_meters
            .into_iter()
            .map(|m| {
                let every = config.sample_interval.max(m.info().update_period);
                let restored = journal.samples.get(&m.info().id).cloned();
                SampledMeter::start(m, every, restored)
            })
            .collect();
        wait_for_first_samples(&sampled);
        // The last readings before the agent went down, if it ran before.
        let before =
            (journal.polled_unix_ns > 0).then(|| (journal.polled_unix_ns, journal.readings()));
        let mut agent = Agent {
            config,
            meters,
            sampled,
            sampled_seen_uj: BTreeMap::new(),
            meta,
            journal,
            since: (0, Readings::default()),
            utilization: match &config_nvml {
                Some(path) => power::meter::nvml::Nvml::open_path(path.as_os_str()).ok(),
                None => power::meter::nvml::Nvml::open().ok(),
            },
            unusable,
        };
        // The first reading, then what the hooks spooled while the agent was
        // down, settled between `before` and it, then the shares.
        let increments = agent.read_meters();
        let after = (agent.journal.polled_unix_ns, agent.journal.readings());
        agent.since = (after.0, after.1.clone());
        agent.settle_spool(before.as_ref().map(|(t, r)| (*t, r)), (after.0, &after.1));
        agent.share_energy(&increments);
        agent.note_gpu_use();
        agent.journal.save(&agent.config.state_dir)?;
        Ok(agent)
    }

    pub fn meter_ids(&self) -> Vec<String> {
        self.meta.keys().cloned().collect()
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Reads every counter into the journal (not saved here), and gives the
    /// open jobs their shares of the CPU energy since the last poll.
    pub fn poll(&mut self) {
        let increments = self.read_meters();
        self.share_energy(&increments);
        self.note_gpu_use();
    }

    /// Reads every meter into the journal; each one's energy since the last
    /// reading, µJ.
    fn read_meters(&mut self) -> BTreeMap<String, u64> {
        let now = unix_ns();
        let mut increments = BTreeMap::new();
        for meter in &mut self.meters {
            let id = meter.info().id.clone();
            match meter.read() {
                Ok(Reading::Energy {
                    counter_uj,
                    wrap_uj,
                }) => match self.journal.counters.get_mut(&id) {
                    Some(c) => {
                        increments.insert(id, c.advance(counter_uj, wrap_uj));
                    }
                    None => {
                        self.journal
                            .counters
                            .insert(id, Counter::new(counter_uj, wrap_uj));
                    }
                },
                Ok(_) => {}
                Err(e) => tracing::warn!("reading {id}: {e}"),
            }
        }
        for meter in &self.sampled {
            let id = &meter.info().id;
            let Some(integral) = meter.integral() else {
                continue; // no good sample yet
            };
            let total = integral.total_at(now);
            // Held at the last sample's power until the next: never less than
            // what an earlier poll saw, so nothing is counted twice.
            let seen = self.sampled_seen_uj.entry(id.clone()).or_insert(total);
            increments.insert(id.clone(), total.saturating_sub(*seen));
            *seen = (*seen).max(total);
            self.journal.samples.insert(id.clone(), integral);
        }
        self.journal.polled_unix_ns = now;
        increments
    }

    /// Each open job's GPUs' utilization now, kept at its peak.
    fn note_gpu_use(&mut self) {
        let Some(nvml) = &self.utilization else {
            return;
        };
        for job in self.journal.jobs.values_mut() {
            for &gpu in &job.gpus {
                if let Some(percent) = nvml.gpu_utilization(gpu) {
                    let peak = job.gpu_peak_utilization.entry(gpu).or_default();
                    *peak = (*peak).max(percent);
                }
            }
        }
    }

    /// The increments split between the open jobs (`share`): the CPU
    /// meters' by CPU time; with a node meter, the rest of the node by
    /// allocated CPUs.
    fn share_energy(&mut self, increments: &BTreeMap<String, u64>) {
        let contained: Vec<&String> = self.meta.values().flat_map(|m| &m.contains).collect();
        let top_level = |scopes: &[Scope]| -> BTreeMap<String, u64> {
            increments
                .iter()
                .filter(|(id, _)| {
                    !contained.contains(id)
                        && self
                            .meta
                            .get(*id)
                            .is_some_and(|m| scopes.contains(&m.scope))
                })
                .map(|(id, e)| (id.clone(), *e))
                .collect()
        };
        let cpu = top_level(&[Scope::CpuPackage, Scope::Dram]);
        // The first node meter, as the record counts it.
        let rest = top_level(&[Scope::Node])
            .into_iter()
            .next()
            .map(|(_, node)| {
                let parts: u64 = top_level(&[Scope::Gpu, Scope::CpuPackage, Scope::Dram])
                    .values()
                    .sum();
                BTreeMap::from([
                    (REST_NODE_KEY.to_string(), node),
                    (REST_PARTS_KEY.to_string(), parts),
                ])
            });
        let mut tenants = Vec::new();
        for job in self.journal.jobs.values_mut() {
            let now = share::cgroup_cpu_us(&self.config.cgroup_root, job.job_id, job.uid);
            let used = match (job.cgroup_cpu_us, now) {
                (Some(before), Some(now)) => now.saturating_sub(before),
                _ => 0,
            };
            job.cgroup_cpu_us = now.or(job.cgroup_cpu_us);
            job.cpu_used_us += used;
            tenants.push((
                job.job_id,
                share::Tenant {
                    cpu_us: used,
                    cpus: job.cpus.unwrap_or(1),
                },
            ));
        }
        let mut attributed = BTreeMap::new();
        share::attribute(&cpu, &tenants, &mut attributed);
        if let Some(rest) = rest {
            let by_cpus: Vec<(u64, share::Tenant)> = tenants
                .iter()
                .map(|(job, t)| (*job, share::Tenant { cpu_us: 0, ..*t }))
                .collect();
            share::attribute(&rest, &by_cpus, &mut attributed);
        }
        for (job_id, meters) in attributed {
            if let Some(job) = self.journal.jobs.get_mut(&job_id) {
                for (meter, uj) in meters {
                    *job.attributed_uj.entry(meter).or_default() += uj;
                }
            }
        }
    }

    /// A poll, saved; and any message spooled since (a hook that missed the
    /// agent for a moment), taken as arriving now.
    pub fn tick(&mut self) -> Result<(), AgentError> {
        self.poll();
        let now = (self.journal.polled_unix_ns, self.journal.readings());
        self.settle_spool(None, (now.0, &now.1));
        self.journal.save(&self.config.state_dir)?;
        Ok(())
    }

    fn records_dir(&self) -> PathBuf {
        self.config
            .records_dir
            .clone()
            .unwrap_or_else(|| self.config.state_dir.join("jobs"))
    }

    fn record_path(&self, job_id: u64) -> PathBuf {
        self.records_dir()
            .join(record::file_name(job_id, &self.config.node))
    }

    /// Every node's record of `job_id` in the records folder, for a user
    /// `uid`: their own jobs only, unless root.
    pub fn records_for(&self, job_id: u64, uid: u32) -> Result<Vec<JobNodeRecord>, String> {
        let prefix = format!("{job_id}.");
        let mut records = Vec::new();
        let entries = std::fs::read_dir(self.records_dir()).map_err(|e| e.to_string())?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `<job>.<node>.json`; `<job>.json` is the whole job's (epilog-ctld).
            let is_node_record = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".json"))
                .is_some_and(|node| !node.is_empty());
            if !is_node_record {
                continue;
            }
            let bytes = std::fs::read(entry.path()).map_err(|e| e.to_string())?;
            match serde_json::from_slice::<JobNodeRecord>(&bytes) {
                Ok(r) if r.job_id == job_id => records.push(r),
                Ok(_) => {}
                Err(e) => tracing::warn!("{name}: not a job record: {e}"),
            }
        }
        if records.is_empty() {
            return Err(format!(
                "no record of job {job_id} (still running, or not run on the nodes whose \
                 records this agent sees)"
            ));
        }
        if uid != 0 && records.iter().any(|r| r.uid != uid) {
            return Err(format!("job {job_id} belongs to another user"));
        }
        records.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(records)
    }

    /// Applies one hook message; the reply line.
    pub fn handle(&mut self, message: &HookMessage) -> Result<String, String> {
        self.poll();
        let (now, readings) = (unix_ns(), self.journal.readings());
        let reply = match message.event {
            Event::Start => {
                self.start_job(message, now, readings)?;
                format!("ok started job {}", message.job_id)
            }
            Event::End => match self.closed_record(message, now, &readings) {
                Some(record) => {
                    self.file_record(&record)?;
                    format!(
                        "ok {}",
                        serde_json::to_string(&record.summary()).map_err(|e| e.to_string())?
                    )
                }
                None => format!("ok job {} already recorded", message.job_id),
            },
        };
        self.journal
            .save(&self.config.state_dir)
            .map_err(|e| e.to_string())?;
        Ok(reply)
    }

    /// Opens `message`'s job as started at `at` with the meters at `readings`.
    fn start_job(
        &mut self,
        message: &HookMessage,
        at: u64,
        readings: Readings,
    ) -> Result<(), String> {
        if self.journal.jobs.contains_key(&message.job_id) {
            return Err(format!(
                "job {} is already open on this node (a replayed start?)",
                message.job_id
            ));
        }
        let others: Vec<u64> = self.journal.jobs.keys().copied().collect();
        for other in self.journal.jobs.values_mut() {
            other.co_tenants.push(message.job_id);
        }
        let cgroup_cpu_us =
            share::cgroup_cpu_us(&self.config.cgroup_root, message.job_id, message.uid);
        self.journal.jobs.insert(
            message.job_id,
            OpenJob::new(message, at, readings, cgroup_cpu_us, others),
        );
        Ok(())
    }

    /// The record of `message`'s job ended at `at` with the meters at
    /// `readings`; `None` when it was recorded already.
    fn closed_record(
        &self,
        message: &HookMessage,
        at: u64,
        readings: &Readings,
    ) -> Option<JobNodeRecord> {
        let (job, missed_start) = match self.journal.jobs.get(&message.job_id) {
            Some(job) => (job.clone(), false),
            None if self.record_path(message.job_id).is_file() => return None,
            // The Prolog never reached this agent (it was down): a
            // record from when the agent started, saying so.
            None => (self.since_agent_start(message), true),
        };
        let mut record = record::close(&job, &self.config.node, at, readings, &self.meta);
        if missed_start {
            record.missed_start = true;
            record.not_attributed.push(format!(
                "the agent did not see this job start (it was not running then): \
                 energy counted from {} only",
                utc(job.started_unix_ns)
            ));
        }
        Some(record)
    }

    /// Writes `record` and closes its job.
    fn file_record(&mut self, record: &JobNodeRecord) -> Result<(), String> {
        self.write_record(record)?;
        self.journal.jobs.remove(&record.job_id);
        Ok(())
    }

    fn spool_dir(&self) -> PathBuf {
        self.config
            .spool_dir
            .clone()
            .unwrap_or_else(|| self.config.state_dir.join("spool"))
    }

    /// Settles the messages hooks spooled while the agent was down: each at
    /// the time its hook sent it, with the meters interpolated between the
    /// readings `before` the agent went down and `after` it came back (at
    /// `after` when there is no `before`, or the message is later).
    fn settle_spool(&mut self, before: Option<(u64, &Readings)>, after: (u64, &Readings)) {
        let mut refused = Vec::new();
        let spooled = spool::take(&self.spool_dir(), &mut refused);
        for reason in refused {
            tracing::warn!("spooled hook message refused: {reason}");
        }
        for Spooled { path, message } in spooled {
            let at = message.sent_unix_ns;
            let inside = before.filter(|(t0, _)| (*t0..=after.0).contains(&at));
            let readings = match inside {
                Some(b) => Readings::between(b, after, at),
                None => after.1.clone(),
            };
            let at = if inside.is_some() { at } else { after.0 };
            let outcome = match message.event {
                Event::Start => self.start_job(&message, at, readings).map(|()| {
                    if inside.is_some() {
                        self.mark_interpolated_start(message.job_id, after);
                    }
                }),
                Event::End => self.end_job_spooled(&message, at, &readings, inside, after),
            };
            match outcome {
                Ok(()) => tracing::info!(
                    "settled the spooled {:?} of job {} ({})",
                    message.event,
                    message.job_id,
                    if inside.is_some() {
                        "interpolated"
                    } else {
                        "as of now"
                    }
                ),
                Err(e) => tracing::warn!("spooled message of job {}: {e}", message.job_id),
            }
            let _ = std::fs::remove_file(&path);
        }
    }

    /// A job whose start was interpolated: what it used from then to the
    /// agent's first reading is estimated.
    fn mark_interpolated_start(&mut self, job_id: u64, after: (u64, &Readings)) {
        let Some(job) = self.journal.jobs.get(&job_id) else {
            return;
        };
        let so_far = record::close(job, &self.config.node, after.0, after.1, &self.meta).job_j;
        if let Some(job) = self.journal.jobs.get_mut(&job_id) {
            job.interpolated_start = true;
            job.interpolated_start_j = so_far;
        }
    }

    /// A spooled end: the record, with what lies after the agent's last
    /// reading before the gap counted as estimated.
    fn end_job_spooled(
        &mut self,
        message: &HookMessage,
        at: u64,
        readings: &Readings,
        before: Option<(u64, &Readings)>,
        after: (u64, &Readings),
    ) -> Result<(), String> {
        let measured_j = match (self.journal.jobs.get(&message.job_id), before) {
            (Some(job), Some((t0, r0))) if job.started_unix_ns <= t0 => {
                record::close(job, &self.config.node, t0, r0, &self.meta).job_j
            }
            _ => 0.0,
        };
        let Some(mut record) = self.closed_record(message, at, readings) else {
            return Ok(()); // recorded already
        };
        if before.is_some() {
            record.interpolated_end = true;
            record.job_estimated_j =
                (record.job_estimated_j + (record.job_j - measured_j).max(0.0)).min(record.job_j);
        } else {
            record.not_attributed.push(format!(
                "the Epilog could not reach the agent: the job's end is taken as {}, when the \
                 agent read the message",
                utc(after.0)
            ));
        }
        self.file_record(&record)
    }

    /// A job the agent learns of only at its end: as if it had started when
    /// the agent did, sharing the node with every job open now.
    fn since_agent_start(&self, message: &HookMessage) -> OpenJob {
        let (at, readings) = &self.since;
        let others = self.journal.jobs.keys().copied().collect();
        OpenJob::new(message, *at, readings.clone(), None, others)
    }

    /// Written root-only (0600; 0640 with the records group): users read
    /// theirs through the agent.
    fn write_record(&self, record: &JobNodeRecord) -> Result<(), String> {
        let json = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        let path = self.record_path(record.job_id);
        atomic_file::write_private(&path, &json).map_err(|e| e.to_string())?;
        if let Some(gid) = self.config.records_group {
            std::os::unix::fs::chown(&path, None, Some(gid))
                .and_then(|_| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640))
                })
                .map_err(|e| format!("{}: giving it to group {gid}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// A moment as records say it.
fn utc(unix_ns: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(unix_ns as i64)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// Waits a little (at most a second in all) for each power meter's first
/// sample, so that jobs starting right away have it.
fn wait_for_first_samples(sampled: &[SampledMeter]) {
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until && sampled.iter().any(|m| m.integral().is_none()) {
        std::thread::sleep(Duration::from_millis(5));
    }
}
