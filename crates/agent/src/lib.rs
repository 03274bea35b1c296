//! The node agent behind per-job energy on a cluster (`joulebench agent`).
//!
//! - [`counters`]: every energy counter extended to a monotonic total across
//!   wraps, and across the agent's own restarts; power meters integrated;
//! - [`sampled`]: the power meters (hwmon, IPMI, Redfish), each sampled on a
//!   thread of its own;
//! - [`journal`]: those totals and the jobs open on this node, written
//!   atomically after every poll, read back at start;
//! - [`protocol`]: the one-line messages Slurm's Prolog/Epilog hooks send;
//!   [`spool`]: those kept for an agent that was down, settled on its return;
//! - [`record`]: what a job's end writes: one JSON record per job per node;
//! - [`share`]: a shared node's CPU energy split by the jobs' cgroup CPU time;
//! - [`job`]: a whole job from its nodes' records (EpilogSlurmctld, AdminComment);
//!   [`view`]: what `joulebench job` shows;
//! - [`daemon`]: the agent's state, polled and told of jobs; [`server`]: its
//!   sockets; [`hook`]: the hooks' side, which never fails a job.

pub mod counters;
pub mod daemon;
pub mod hook;
pub mod hostlist;
pub mod job;
pub mod journal;
pub mod protocol;
pub mod record;
pub mod sampled;
pub mod server;
pub mod share;
pub mod spool;
pub mod view;
