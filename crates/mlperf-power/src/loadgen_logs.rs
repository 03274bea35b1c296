//! Finding the LoadGen logs of one run.
//!
//! The workload is any command line; LoadGen writes `mlperf_log_detail.txt`
//! with `power_begin` and `power_end` (UTC, `MM-DD-YYYY HH:MM:SS.fff`)
//! somewhere under the folder the user names. After each run the client
//! takes the detail log whose two instants fall strictly inside that run, as
//! power-dev's client does, so a stale log from an earlier run is never
//! taken for this one.

use std::path::{Path, PathBuf};

pub const DETAIL_LOG: &str = "mlperf_log_detail.txt";
pub const SUMMARY_LOG: &str = "mlperf_log_summary.txt";

/// Longest date `time_in_line` looks for: `MM-DD-YYYY HH:MM:SS.ffffff` is 26
/// bytes; chrono also takes years of up to 6 digits.
const MAX_DATE_BYTES: usize = 40;

/// The first `D-D-D D:D:D.D` date in a line, as Unix seconds (UTC).
pub fn time_in_line(line: &str) -> Option<f64> {
    let bytes = line.as_bytes();
    for start in 0..bytes.len() {
        if !bytes[start].is_ascii_digit() || (start > 0 && bytes[start - 1].is_ascii_digit()) {
            continue;
        }
        let rest = &line[start..];
        // A date is at most MAX_DATE_BYTES long: looking further would make a
        // long line of digits and separators quadratic (or worse) to scan.
        let end = rest
            .bytes()
            .take(MAX_DATE_BYTES)
            .position(|b| !(b.is_ascii_digit() || matches!(b, b'-' | b' ' | b':' | b'.')))
            .unwrap_or(rest.len().min(MAX_DATE_BYTES));
        let candidate = rest[..end].trim_end_matches([' ', '.', ':', '-']);
        // Take the longest prefix that parses.
        for len in (19..=candidate.len()).rev() {
            if let Some(t) = candidate.get(..len).and_then(mlperf_time::Timestamp::parse) {
                return Some(t.unix_ms() as f64 / 1000.0);
            }
        }
    }
    None
}

/// `power_begin` and `power_end` of one detail log, as Unix seconds.
pub fn power_window(detail: &Path) -> std::io::Result<Option<(f64, f64)>> {
    let text = std::fs::read_to_string(detail)?;
    let (mut begin, mut end) = (None, None);
    for line in text.lines() {
        let lower = line.to_ascii_lowercase();
        if lower.contains("power_begin") {
            begin = time_in_line(line);
        } else if lower.contains("power_end") {
            end = time_in_line(line);
        }
        if begin.is_some() && end.is_some() {
            break;
        }
    }
    Ok(begin.zip(end))
}

/// The folder under `root` holding a detail log whose power window lies
/// strictly inside `(start_s, end_s)`.
pub fn find(root: &Path, start_s: f64, end_s: f64) -> std::io::Result<Option<PathBuf>> {
    let mut stack = vec![root.to_path_buf()];
    let mut found = Vec::new();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.file_name() == DETAIL_LOG {
                if let Some((b, e)) = power_window(&path)? {
                    if b > start_s && e < end_s {
                        found.push(d.clone());
                    }
                }
            }
        }
    }
    found.sort();
    Ok(found.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadgen_lines_give_their_utc_instant() {
        let line = r#":::MLLOG {"key": "power_begin", "value": "11-24-2026 10:00:01.250", "time_ms": 12.5}"#;
        let t = time_in_line(line).unwrap();
        assert!((t - 1_795_514_401.25).abs() < 1e-6, "{t}");
        assert_eq!(time_in_line("no date here 12:00"), None);
    }

    #[test]
    fn only_a_log_inside_the_run_is_taken() {
        let d = tempfile::tempdir().unwrap();
        let inner = d.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(
            inner.join(DETAIL_LOG),
            "x power_begin \"11-24-2026 10:00:01.000\"\nx POWER_END \"11-24-2026 10:00:05.000\"\n",
        )
        .unwrap();
        let begin = 1_795_514_401.0;
        assert_eq!(
            find(d.path(), begin - 1.0, begin + 5.0).unwrap(),
            Some(inner.clone())
        );
        assert_eq!(find(d.path(), begin, begin + 5.0).unwrap(), None);
        assert_eq!(find(d.path(), begin - 1.0, begin + 3.0).unwrap(), None);
    }
}
