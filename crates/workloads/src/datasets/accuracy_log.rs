//! Reading `mlperf_log_accuracy.json`, LoadGen's accuracy log: a JSON list
//! of `{"seq_id": N, "qsl_idx": N, "data": "HEX"}` (plus `token_count` in
//! runs that count tokens), one entry per completed sample, the response
//! bytes in hex. `loadgen::log::accuracy` writes it; MLPerf's LoadGen writes
//! the same.
//!
//! LoadGen may issue a sample more than once; MLPerf's scripts score each
//! `qsl_idx` once, at its first entry, and so does [`first_per_sample`].

use super::{decode_hex, Coverage, DatasetError, MISSING_EXAMPLES};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

/// The file name LoadGen gives the accuracy log.
pub const ACCURACY_LOG: &str = "mlperf_log_accuracy.json";

/// One response, its data decoded from hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedSample {
    pub seq_id: u64,
    pub qsl_idx: usize,
    pub data: Vec<u8>,
    /// LoadGen's `token_count`, in runs that report tokens.
    pub token_count: Option<u64>,
}

#[derive(Deserialize)]
struct RawEntry {
    seq_id: u64,
    qsl_idx: usize,
    data: String,
    #[serde(default)]
    token_count: Option<u64>,
}

/// Reads an accuracy log; errors name the file and, for a bad entry, its
/// position in the list and its `qsl_idx`.
pub fn read_accuracy_log(path: &Path) -> Result<Vec<LoggedSample>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::file(path, e))?;
    parse_accuracy_log(&text, path)
}

/// Parses accuracy-log text; `path` only names the file in errors.
pub fn parse_accuracy_log(text: &str, path: &Path) -> Result<Vec<LoggedSample>, DatasetError> {
    let raw: Vec<RawEntry> = serde_json::from_str(text).map_err(|e| {
        DatasetError::file(
            path,
            format!("not a LoadGen accuracy log (a list of {{seq_id, qsl_idx, data}}): {e}"),
        )
    })?;
    raw.into_iter()
        .enumerate()
        .map(|(position, entry)| {
            let data = decode_hex(&entry.data).map_err(|reason| {
                DatasetError::file(
                    path,
                    format!(
                        "entry {position} (qsl_idx {}): data is not hex: {reason}",
                        entry.qsl_idx
                    ),
                )
            })?;
            Ok(LoggedSample {
                seq_id: entry.seq_id,
                qsl_idx: entry.qsl_idx,
                data,
                token_count: entry.token_count,
            })
        })
        .collect()
}

/// The first entry of each sample, in log order, and the coverage of a data
/// set of `dataset_samples` samples. A `qsl_idx` outside the data set is an
/// error: the log and the reference do not belong together.
pub fn first_per_sample<'a>(
    entries: &'a [LoggedSample],
    dataset_samples: usize,
    reference: &Path,
) -> Result<(Vec<&'a LoggedSample>, Coverage), DatasetError> {
    let mut seen = HashSet::with_capacity(entries.len());
    let mut first = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.qsl_idx >= dataset_samples {
            return Err(DatasetError::file(
                reference,
                format!(
                    "the accuracy log has sample {} but this reference has {dataset_samples} \
                     samples (wrong labels or references for this run?)",
                    entry.qsl_idx
                ),
            ));
        }
        if seen.insert(entry.qsl_idx) {
            first.push(entry);
        }
    }
    let missing: Vec<usize> = (0..dataset_samples).filter(|i| !seen.contains(i)).collect();
    let coverage = Coverage {
        dataset_samples,
        logged_entries: entries.len(),
        scored_samples: first.len(),
        duplicate_entries: entries.len() - first.len(),
        missing_samples: missing.len(),
        missing_examples: missing.into_iter().take(MISSING_EXAMPLES).collect(),
        empty_responses: first.iter().filter(|e| e.data.is_empty()).count(),
    };
    Ok((first, coverage))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<LoggedSample>, DatasetError> {
        parse_accuracy_log(text, Path::new("mlperf_log_accuracy.json"))
    }

    #[test]
    fn reads_loadgens_layout() {
        let log = parse(
            "[\n{ \"seq_id\" : 0, \"qsl_idx\" : 7, \"data\" : \"0000803F\" },\n\
             { \"seq_id\" : 1, \"qsl_idx\" : 3, \"data\" : \"\", \"token_count\" : 4 }\n]\n",
        )
        .unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].qsl_idx, 7);
        assert_eq!(log[0].data, 1.0f32.to_le_bytes());
        assert_eq!(log[1].token_count, Some(4));
        assert!(parse("[\n]\n").unwrap().is_empty());
    }

    #[test]
    fn bad_logs_are_named() {
        let e = parse("{}").unwrap_err().to_string();
        assert!(
            e.starts_with("mlperf_log_accuracy.json: not a LoadGen"),
            "{e}"
        );
        let e = parse(r#"[{"seq_id":0,"qsl_idx":2,"data":"0G"}]"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("entry 0 (qsl_idx 2)"), "{e}");
    }

    #[test]
    fn duplicates_count_once_and_missing_are_listed() {
        let log = parse(
            r#"[{"seq_id":0,"qsl_idx":1,"data":"01"},{"seq_id":1,"qsl_idx":1,"data":"02"},
                {"seq_id":2,"qsl_idx":3,"data":""}]"#,
        )
        .unwrap();
        let (first, coverage) = first_per_sample(&log, 5, Path::new("val_map.txt")).unwrap();
        assert_eq!(first.len(), 2);
        // The first entry of sample 1 wins, as in MLPerf's scripts.
        assert_eq!(first[0].data, vec![1]);
        assert_eq!(coverage.duplicate_entries, 1);
        assert_eq!(coverage.missing_samples, 3);
        assert_eq!(coverage.missing_examples, vec![0, 2, 4]);
        assert_eq!(coverage.empty_responses, 1);
        assert!(!coverage.complete());
        let e = first_per_sample(&log, 2, Path::new("val_map.txt")).unwrap_err();
        assert!(e.to_string().contains("has sample 3"), "{e}");
    }
}
