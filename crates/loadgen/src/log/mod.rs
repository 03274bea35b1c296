//! The files MLPerf tooling reads, in LoadGen's exact layouts:
//! `mlperf_log_detail.txt` (one `:::MLLOG {json}` line per event),
//! `mlperf_log_summary.txt` (the human summary) and
//! `mlperf_log_accuracy.json` (the responses to score).

pub mod accuracy;
pub mod detail;
pub mod files;
pub mod format;
pub mod results;
pub mod settings;
pub mod summary;

pub const DETAIL_FILE: &str = "mlperf_log_detail.txt";
pub const SUMMARY_FILE: &str = "mlperf_log_summary.txt";
pub const ACCURACY_FILE: &str = "mlperf_log_accuracy.json";
