//! Real data sets and the accuracy scoring MLPerf pairs with them.
//!
//! - Images: [`image_folder::ImageFolder`], a query sample library over a
//!   folder of JPEG/PNG files listed in an ImageNet-style `val_map.txt`
//!   ([`labels`]), preprocessed at load time the way MLPerf's ResNet-50
//!   reference does ([`preprocess`]).
//! - Real data to prove it on: scikit-learn's 8×8 handwritten digits turned
//!   into such a folder ([`digits`]).
//! - Scoring `mlperf_log_accuracy.json` ([`accuracy_log`]): top-1 for
//!   classification ([`top1`]), exact match and F1 for SQuAD-style answers
//!   ([`squad`]), ROUGE and perplexity for generated text ([`generation`]),
//!   against reference files read by [`references`].
//!   Each scorer returns an [`AccuracyReport`]; `docs/accuracy.md` gives the
//!   data layouts and the response formats.

pub mod accuracy_log;
pub mod digits;
pub mod generation;
pub mod image_folder;
pub mod labels;
pub mod preprocess;
pub mod references;
pub mod squad;
pub mod top1;

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a data set, a reference file or an accuracy log could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A line of a text file (label map, CSV, JSONL) is wrong.
    #[error("{}:{line}: {reason}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A file is missing, unreadable, undecodable or malformed as a whole.
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// Preprocessing settings that cannot produce an image.
    #[error("preprocessing: {0}")]
    Preprocess(preprocess::PreprocessError),
    /// The accuracy log holds no response to score.
    #[error("the accuracy log has no responses (was the run in accuracy mode?)")]
    NoResponses,
    #[error("the accuracy log has no token log-likelihoods (was the run in accuracy mode?)")]
    NoTokenLikelihoods,
    /// One logged response cannot be read as the scorer expects.
    #[error("sample {sample}: {problem}")]
    Response {
        sample: usize,
        problem: ResponseProblem,
    },
    #[error("sample index {index} is outside the data set ({size} images in {})", labels.display())]
    OutOfRange {
        index: usize,
        size: usize,
        labels: PathBuf,
    },
    /// A decoded sample does not make a tensor of the preprocessing's shape.
    #[error("sample {index}: {error}")]
    Tensor {
        index: usize,
        error: candle_core::Error,
    },
    /// A digit's grey levels do not fill its 8×8 image.
    #[error("digit {index}: {levels} grey levels do not make a {side}×{side} image")]
    DigitSize {
        index: usize,
        levels: usize,
        side: usize,
    },
}

/// Why one logged response cannot be scored.
#[derive(Debug, thiserror::Error)]
pub enum ResponseProblem {
    #[error("the response has NUL bytes, so it is not text (token ids? give the tokenizer)")]
    NulBytes,
    #[error(transparent)]
    TokenIds(#[from] references::TokenIdBytes),
    /// The tokenizer refused the ids.
    #[error("cannot decode tokens: {0}")]
    Detokenize(references::DetokenizeError),
    #[error(
        "{len} response bytes are not a whole number of {encoding:?} values (try another --dtype)"
    )]
    ClassWidth {
        len: usize,
        encoding: top1::ClassEncoding,
    },
    #[error("{len} bytes are not a whole number of f32 log-likelihoods")]
    LikelihoodWidth { len: usize },
    #[error("token negative log-likelihood {nll} is not a finite non-negative number")]
    Likelihood { nll: f32 },
}

impl DatasetError {
    pub(crate) fn file(path: &Path, reason: impl std::fmt::Display) -> DatasetError {
        DatasetError::File {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
    pub(crate) fn line(path: &Path, line: usize, reason: impl std::fmt::Display) -> DatasetError {
        DatasetError::Line {
            path: path.to_path_buf(),
            line,
            reason: reason.to_string(),
        }
    }
}

/// How much of the data set an accuracy log covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// Samples the reference (labels, answers) has.
    pub dataset_samples: usize,
    /// Entries in the accuracy log, duplicates included.
    pub logged_entries: usize,
    /// Distinct samples scored (MLPerf's `total`).
    pub scored_samples: usize,
    /// Entries skipped because their `qsl_idx` was already scored; LoadGen
    /// may issue a sample more than once and MLPerf's scripts count it once.
    pub duplicate_entries: usize,
    /// Samples of the data set with no entry in the log.
    pub missing_samples: usize,
    /// The first few missing sample indices, to find them again.
    pub missing_examples: Vec<usize>,
    /// Responses with no data (the SUT failed on them): scored as wrong.
    pub empty_responses: usize,
}

impl Coverage {
    /// Every sample of the data set was scored.
    pub fn complete(&self) -> bool {
        self.missing_samples == 0
    }
}

/// How many missing indices a report lists.
const MISSING_EXAMPLES: usize = 10;

/// A scorer's outcome: what `joulebench accuracy` prints and writes to
/// `accuracy.json`.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyReport {
    /// `top1`, `squad`, `rouge` or `perplexity`.
    pub kind: String,
    /// Metric name (with its unit) → value, e.g. `accuracy_percent`.
    pub metrics: BTreeMap<String, f64>,
    pub coverage: Coverage,
    /// The line MLPerf's reference script prints for this metric.
    pub mlperf_line: String,
    /// A few wrong answers (sample, expected, found), for a first look.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mismatch_examples: Vec<String>,
}

/// Why a response's hex text is not bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HexError {
    #[error("odd number of hex digits ({digits})")]
    OddLength { digits: usize },
    #[error("'{found}' is not a hex digit")]
    NotHex { found: char },
}

/// Upper-case hex text of bytes → bytes.
pub(crate) fn decode_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(HexError::OddLength {
            digits: bytes.len(),
        });
    }
    let digit = |c: u8| -> Result<u8, HexError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(HexError::NotHex {
                found: char::from(c),
            }),
        }
    };
    bytes
        .chunks_exact(2)
        .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// joulebench's cache: `$JOULEBENCH_CACHE`, else `~/.cache/joulebench`
/// (data sets fetched by the bench scripts, TensorRT's engines); `None`
/// with neither set.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    match std::env::var_os("JOULEBENCH_CACHE") {
        Some(dir) if !dir.is_empty() => Some(dir.into()),
        _ => Some(std::path::PathBuf::from(std::env::var_os("HOME")?).join(".cache/joulebench")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_both_cases_and_rejects_junk() {
        assert_eq!(decode_hex("00ff7Fa0").unwrap(), vec![0, 255, 127, 160]);
        assert_eq!(decode_hex("").unwrap(), Vec::<u8>::new());
        assert_eq!(
            decode_hex("abc").unwrap_err(),
            HexError::OddLength { digits: 3 }
        );
        assert!(decode_hex("zz")
            .unwrap_err()
            .to_string()
            .contains("not a hex digit"));
    }
}
