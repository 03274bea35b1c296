//! Top-1 accuracy of a classifier, as MLPerf's `accuracy-imagenet.py`
//! computes it.
//!
//! Each response holds the predicted class as its first element, little
//! endian; MLPerf's script reads it with `np.frombuffer(data, dtype)` and
//! `--dtype` float32 (its default, and what our classifier SUT writes),
//! int32 or int64 (some submitters' back ends), then `int(data[0])`. The
//! label of sample N is line N of `val_map.txt`. Each sample counts once,
//! at its first entry; the accuracy is over the samples scored, and
//! samples missing from the log are reported beside it.

use super::accuracy_log::{first_per_sample, LoggedSample};
use super::labels::LabelEntry;
use super::{AccuracyReport, DatasetError, ResponseProblem};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

/// How a response encodes the predicted class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassEncoding {
    /// `f32` little endian (MLPerf's default; joulebench's classifier).
    Float32,
    Int32,
    Int64,
}

impl ClassEncoding {
    fn width_bytes(self) -> usize {
        match self {
            ClassEncoding::Float32 | ClassEncoding::Int32 => 4,
            ClassEncoding::Int64 => 8,
        }
    }

    /// The first element as a class, `None` when it is not one (NaN).
    fn first_class(self, data: &[u8]) -> Option<i64> {
        match self {
            ClassEncoding::Float32 => {
                let v = f32::from_le_bytes(data[..4].try_into().ok()?);
                // int() truncates toward zero; NaN and infinities are no class.
                v.is_finite().then(|| v.trunc() as i64)
            }
            ClassEncoding::Int32 => Some(i64::from(i32::from_le_bytes(data[..4].try_into().ok()?))),
            ClassEncoding::Int64 => Some(i64::from_le_bytes(data[..8].try_into().ok()?)),
        }
    }
}

/// A class encoding name that is none of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown class encoding '{given}' (float32, int32, int64)")]
pub struct UnknownEncoding {
    pub given: String,
}

impl FromStr for ClassEncoding {
    type Err = UnknownEncoding;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "float32" | "f32" => Ok(ClassEncoding::Float32),
            "int32" | "i32" => Ok(ClassEncoding::Int32),
            "int64" | "i64" => Ok(ClassEncoding::Int64),
            _ => Err(UnknownEncoding { given: s.into() }),
        }
    }
}

/// How many wrong answers a report lists.
const MISMATCH_EXAMPLES: usize = 10;

/// Scores classification responses against `labels` (read from `labels_path`).
pub fn score_top1(
    entries: &[LoggedSample],
    labels: &[LabelEntry],
    labels_path: &Path,
    encoding: ClassEncoding,
) -> Result<AccuracyReport, DatasetError> {
    let (first, coverage) = first_per_sample(entries, labels.len(), labels_path)?;
    if first.is_empty() {
        return Err(DatasetError::NoResponses);
    }
    let width = encoding.width_bytes();
    let mut good = 0usize;
    let mut no_class = 0usize;
    let mut mismatch_examples = Vec::new();
    for entry in &first {
        if entry.data.is_empty() {
            // The SUT failed on this sample; counted in coverage.empty_responses.
            continue;
        }
        if !entry.data.len().is_multiple_of(width) {
            return Err(DatasetError::Response {
                sample: entry.qsl_idx,
                problem: ResponseProblem::ClassWidth {
                    len: entry.data.len(),
                    encoding,
                },
            });
        }
        let expected = labels[entry.qsl_idx].label;
        match encoding.first_class(&entry.data) {
            Some(found) if found == i64::from(expected) => good += 1,
            found => {
                if found.is_none() {
                    no_class += 1;
                }
                if mismatch_examples.len() < MISMATCH_EXAMPLES {
                    let found = found.map_or_else(|| "no class (NaN)".into(), |c| c.to_string());
                    mismatch_examples.push(format!(
                        "sample {} ({}): expected {expected}, found {found}",
                        entry.qsl_idx, labels[entry.qsl_idx].file
                    ));
                }
            }
        }
    }
    let total = first.len();
    let accuracy_percent = 100.0 * good as f64 / total as f64;
    let mut metrics = BTreeMap::new();
    metrics.insert("accuracy_percent".to_string(), accuracy_percent);
    metrics.insert("good_samples".to_string(), good as f64);
    metrics.insert("not_a_class_responses".to_string(), no_class as f64);
    Ok(AccuracyReport {
        kind: "top1".into(),
        metrics,
        mlperf_line: format!("accuracy={accuracy_percent:.3}%, good={good}, total={total}"),
        coverage,
        mismatch_examples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::accuracy_log::parse_accuracy_log;

    fn labels(classes: &[u32]) -> Vec<LabelEntry> {
        classes
            .iter()
            .enumerate()
            .map(|(i, &label)| LabelEntry {
                file: format!("img{i}.png"),
                label,
                line: i + 1,
            })
            .collect()
    }

    fn entry(qsl_idx: usize, data: Vec<u8>) -> LoggedSample {
        LoggedSample {
            seq_id: qsl_idx as u64,
            qsl_idx,
            data,
            token_count: None,
        }
    }

    #[test]
    fn counts_like_accuracy_imagenet_py() {
        let labels = labels(&[3, 1, 4, 1]);
        let f = |c: f32| c.to_le_bytes().to_vec();
        let log = vec![
            entry(0, f(3.0)),
            entry(1, f(2.0)),
            entry(2, f(4.0)),
            // A repeat of sample 0 with another answer: ignored.
            entry(0, f(9.0)),
        ];
        let r = score_top1(
            &log,
            &labels,
            Path::new("val_map.txt"),
            ClassEncoding::Float32,
        )
        .unwrap();
        assert_eq!(r.mlperf_line, "accuracy=66.667%, good=2, total=3");
        assert_eq!(r.metrics["good_samples"], 2.0);
        assert_eq!(r.coverage.duplicate_entries, 1);
        assert_eq!(r.coverage.missing_examples, vec![3]);
        assert_eq!(
            r.mismatch_examples,
            vec!["sample 1 (img1.png): expected 1, found 2"]
        );
    }

    #[test]
    fn integer_encodings_and_bad_data() {
        let labels = labels(&[7, 8]);
        let log = parse_accuracy_log(
            r#"[{"seq_id":0,"qsl_idx":0,"data":"0700000000000000"},
                {"seq_id":1,"qsl_idx":1,"data":"0800000000000000"}]"#,
            Path::new("log"),
        )
        .unwrap();
        let r = score_top1(&log, &labels, Path::new("v"), ClassEncoding::Int64).unwrap();
        assert_eq!(r.metrics["accuracy_percent"], 100.0);
        // As int32, the first element is the class too (the rest is ignored).
        let r = score_top1(&log, &labels, Path::new("v"), ClassEncoding::Int32).unwrap();
        assert_eq!(r.metrics["good_samples"], 2.0);
        let odd = vec![entry(0, vec![1, 2, 3])];
        let e = score_top1(&odd, &labels, Path::new("v"), ClassEncoding::Float32).unwrap_err();
        assert!(e.to_string().contains("3 response bytes"), "{e}");
        let nan = vec![entry(0, f32::NAN.to_le_bytes().to_vec()), entry(1, vec![])];
        let r = score_top1(&nan, &labels, Path::new("v"), ClassEncoding::Float32).unwrap();
        assert_eq!(r.mlperf_line, "accuracy=0.000%, good=0, total=2");
        assert_eq!(r.metrics["not_a_class_responses"], 1.0);
        assert_eq!(r.coverage.empty_responses, 1);
        assert!(score_top1(&[], &labels, Path::new("v"), ClassEncoding::Float32).is_err());
    }

    #[test]
    fn encodings_parse() {
        assert_eq!("float32".parse(), Ok(ClassEncoding::Float32));
        assert_eq!("int64".parse(), Ok(ClassEncoding::Int64));
        assert!("u8".parse::<ClassEncoding>().is_err());
    }
}
