//! MLPerf Power's measurement workflow, compatible with MLCommons power-dev.
//!
//! An MLPerf Power result needs three programs: PTDaemon driving a lab
//! analyzer, a *director* (power-dev's server) that starts PTDaemon and keeps
//! its logs, and a *client* on the system under test that runs the workload
//! twice (ranging, then testing) and collects everything into one folder that
//! MLPerf's checker verifies. This crate is joulebench's implementation of
//! all three, wire-compatible with power-dev's, so any of ours can be mixed
//! with any of theirs:
//!
//! - [`virtual_analyzer`] + [`ptd_daemon`]: `joulebench ptd-serve`, a drop-in
//!   PTDaemon whose readings come from any joulebench meter
//!   ([`meter_source`]). Honest by default; a rehearsal mode answers as a
//!   supported analyzer and says so everywhere.
//! - [`protocol`]: power-dev's v3 client ↔ server line protocol.
//! - [`server`] + [`analyzer`]: `joulebench power-server`, the director.
//! - [`client`] + [`loadgen_logs`]: `joulebench power-client`.
//! - [`ntp`]: clock checks (never setting the clock).
//! - [`summary`] and [`result_folder`]: `client.json`/`server.json` and the
//!   folder layout, incomplete folders named and marked.
//! - [`checker`]: our reading of MLPerf's power checker, to test the folder.
//!
//! The facts followed are in `shared/reference/ptd-protocol.md`.

pub mod analyzer;
pub mod checker;
pub mod client;
pub mod line_conn;
pub mod loadgen_logs;
pub mod meter_source;
pub mod ntp;
pub mod protocol;
pub mod ptd_daemon;
pub mod ranging;
pub mod result_folder;
pub mod server;
pub mod session_log;
pub mod summary;
pub mod virtual_analyzer;
