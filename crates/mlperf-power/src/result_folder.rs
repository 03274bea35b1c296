//! The result folder MLPerf's checker reads, and how an unfinished one is
//! kept from being mistaken for a result.
//!
//! ```text
//! {session}/power/{client.json,client.log,ptd_logs.txt,server.json,server.log}
//! {session}/ranging/{mlperf_log_detail.txt,mlperf_log_summary.txt,spl.txt}
//! {session}/run_1/{mlperf_log_detail.txt,mlperf_log_summary.txt,spl.txt,ptd_out.txt}
//! ```
//!
//! Both roles build their folder under the name `{session}.incomplete` and
//! rename it to `{session}` only once every file is in place. A session that
//! fails keeps the `.incomplete` name and gets an [`INCOMPLETE_FILE`] saying
//! why, so neither a person nor a script picks it up as a result.

use std::path::{Path, PathBuf};

/// Files the checker requires (relative to the session folder).
pub const REQUIRED_FILES: [&str; 11] = [
    "power/client.json",
    "power/client.log",
    "power/ptd_logs.txt",
    "power/server.json",
    "power/server.log",
    "ranging/mlperf_log_detail.txt",
    "ranging/mlperf_log_summary.txt",
    "ranging/spl.txt",
    "run_1/mlperf_log_detail.txt",
    "run_1/mlperf_log_summary.txt",
    "run_1/spl.txt",
];
/// Suffix of a folder that is not (yet) a result.
pub const INCOMPLETE_SUFFIX: &str = ".incomplete";
/// The file in an incomplete folder that says why.
pub const INCOMPLETE_FILE: &str = "INCOMPLETE.txt";
/// The file in a rehearsal folder that says it is not a measurement.
pub const REHEARSAL_FILE: &str = "REHEARSAL.txt";

/// `{parent}/{name}.incomplete`.
pub fn incomplete_path(parent: &Path, name: &str) -> PathBuf {
    parent.join(format!("{name}{INCOMPLETE_SUFFIX}"))
}

/// Marks `dir` (an `.incomplete` folder) with the reason it is not a result.
pub fn mark_incomplete(dir: &Path, reason: &str) -> std::io::Result<()> {
    let text = format!(
        "This folder is NOT a result: the session did not finish.\nReason: {reason}\n\
         Files here may be partial; MLPerf's checker must not be run on it.\n"
    );
    std::fs::create_dir_all(dir)?;
    Ok(atomic_file::write(
        &dir.join(INCOMPLETE_FILE),
        text.as_bytes(),
    )?)
}

/// Renames a finished `{name}.incomplete` folder to `{name}`.
pub fn finish(incomplete: &Path) -> std::io::Result<PathBuf> {
    let name = incomplete
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(stem) = name.strip_suffix(INCOMPLETE_SUFFIX) else {
        return Ok(incomplete.to_path_buf());
    };
    let done = incomplete.with_file_name(stem);
    if done.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} already exists", done.display()),
        ));
    }
    std::fs::rename(incomplete, &done)?;
    Ok(done)
}

/// The required files missing from `dir`.
pub fn missing_files(dir: &Path) -> Vec<&'static str> {
    REQUIRED_FILES
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_folders_are_marked_and_finished_ones_renamed() {
        let d = tempfile::tempdir().unwrap();
        let inc = incomplete_path(d.path(), "s1");
        mark_incomplete(&inc, "client disconnected").unwrap();
        let text = std::fs::read_to_string(inc.join(INCOMPLETE_FILE)).unwrap();
        assert!(text.contains("client disconnected"));
        assert_eq!(missing_files(&inc).len(), REQUIRED_FILES.len());
        let inc2 = incomplete_path(d.path(), "s2");
        std::fs::create_dir_all(&inc2).unwrap();
        let done = finish(&inc2).unwrap();
        assert_eq!(done, d.path().join("s2"));
        assert!(done.is_dir() && !inc2.exists());
    }
}
