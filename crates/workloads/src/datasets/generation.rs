//! Accuracy of generated text: ROUGE against reference texts, and
//! perplexity from per-token log-likelihoods.
//!
//! ROUGE follows Google's `rouge_score` package (what MLPerf's GPT-J and
//! Llama accuracy scripts call): text lower-cased, every run of characters
//! other than `a-z0-9` a separator; ROUGE-1 and ROUGE-2 over n-gram counts,
//! ROUGE-L over the longest common subsequence, ROUGE-Lsum over the union
//! LCS of sentences (lines). Each is the F-measure per sample, averaged
//! over the samples scored, ×100, as MLPerf reports it. Two differences
//! from MLPerf's setting, both lowering scores slightly: no Porter stemming
//! (MLPerf passes `use_stemmer=True`), and sentences for ROUGE-Lsum are the
//! response's lines (MLPerf first splits with NLTK's Punkt).
//!
//! Response formats:
//! - ROUGE: generated token ids, `u32` little endian (decoded with the
//!   model's tokenizer, special tokens skipped, as MLPerf does), or the
//!   text itself as UTF-8 ([`ResponseText`]);
//! - perplexity: the negative log-likelihood of each reference token given
//!   the ones before it (teacher forcing), natural log, `f32` little endian.
//!   Perplexity is `exp(sum of NLL / number of tokens)` over all samples.
//!
//! References for ROUGE: see [`super::references`]; with several for one
//! sample, each ROUGE score is the best over them (`rouge_score`'s
//! `score_multi`).

use super::accuracy_log::{first_per_sample, LoggedSample};
use super::references::{decode_response, ResponseText};
use super::{AccuracyReport, DatasetError, ResponseProblem};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Precision, recall and F-measure of one comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rouge {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl Rouge {
    fn new(hits: usize, predicted: usize, expected: usize) -> Rouge {
        let precision = hits as f64 / predicted.max(1) as f64;
        let recall = hits as f64 / expected.max(1) as f64;
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Rouge {
            precision,
            recall,
            fmeasure,
        }
    }
}

/// `rouge_score`'s tokenizer without stemming.
pub fn rouge_tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for gram in tokens.windows(n) {
        *counts.entry(gram).or_default() += 1;
    }
    counts
}

/// ROUGE-N of a prediction against a reference (both tokenised).
pub fn rouge_n(prediction: &[String], reference: &[String], n: usize) -> Rouge {
    let expected = ngrams(reference, n);
    let predicted = ngrams(prediction, n);
    let hits = expected
        .iter()
        .map(|(gram, &count)| count.min(predicted.get(gram).copied().unwrap_or(0)))
        .sum();
    Rouge::new(hits, predicted.values().sum(), expected.values().sum())
}

/// The LCS length table of `a` (rows) and `b` (columns).
fn lcs_table(a: &[String], b: &[String]) -> Vec<Vec<usize>> {
    let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            t[i][j] = if a[i - 1] == b[j - 1] {
                t[i - 1][j - 1] + 1
            } else {
                t[i - 1][j].max(t[i][j - 1])
            };
        }
    }
    t
}

/// ROUGE-L: longest common subsequence.
pub fn rouge_l(prediction: &[String], reference: &[String]) -> Rouge {
    if prediction.is_empty() || reference.is_empty() {
        return Rouge::new(0, 1, 1);
    }
    let lcs = lcs_table(reference, prediction)[reference.len()][prediction.len()];
    Rouge::new(lcs, prediction.len(), reference.len())
}

/// Indices into `reference` of one LCS with `candidate` (`rouge_score`'s
/// `_backtrack_norec`, so ties break the same way).
fn lcs_indices(reference: &[String], candidate: &[String]) -> Vec<usize> {
    let t = lcs_table(reference, candidate);
    let (mut i, mut j) = (reference.len(), candidate.len());
    let mut found = Vec::new();
    while i > 0 && j > 0 {
        if reference[i - 1] == candidate[j - 1] {
            found.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i][j - 1] > t[i - 1][j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    found
}

/// ROUGE-Lsum: summary-level union LCS over sentences (here: lines).
pub fn rouge_lsum(prediction: &str, reference: &str) -> Rouge {
    let sentences = |text: &str| -> Vec<Vec<String>> {
        text.split('\n')
            .filter(|s| !s.is_empty())
            .map(rouge_tokens)
            .collect()
    };
    let expected = sentences(reference);
    let predicted = sentences(prediction);
    let m: usize = expected.iter().map(Vec::len).sum();
    let n: usize = predicted.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return Rouge::new(0, 1, 1);
    }
    let count = |sents: &[Vec<String>]| {
        let mut c: HashMap<String, usize> = HashMap::new();
        for t in sents.iter().flatten() {
            *c.entry(t.clone()).or_default() += 1;
        }
        c
    };
    let (mut left_expected, mut left_predicted) = (count(&expected), count(&predicted));
    let mut hits = 0;
    for sentence in &expected {
        let union: HashSet<usize> = predicted
            .iter()
            .flat_map(|p| lcs_indices(sentence, p))
            .collect();
        let mut union: Vec<usize> = union.into_iter().collect();
        union.sort_unstable();
        for token in union.into_iter().map(|i| &sentence[i]) {
            let (e, p) = (left_expected.get_mut(token), left_predicted.get_mut(token));
            if let (Some(e), Some(p)) = (e, p) {
                if *e > 0 && *p > 0 {
                    hits += 1;
                    *e -= 1;
                    *p -= 1;
                }
            }
        }
    }
    Rouge::new(hits, n, m)
}

/// Scores generated texts against references with ROUGE.
pub fn score_rouge(
    entries: &[LoggedSample],
    references: &[Vec<String>],
    references_path: &Path,
    response: &ResponseText,
) -> Result<AccuracyReport, DatasetError> {
    let (first, coverage) = first_per_sample(entries, references.len(), references_path)?;
    if first.is_empty() {
        return Err(DatasetError::NoResponses);
    }
    let mut sums = [0.0f64; 4];
    let mut generated_tokens = 0usize;
    for entry in &first {
        let decoded = decode_response(entry, response)?;
        generated_tokens += decoded.tokens.unwrap_or(0);
        // MLPerf strips both texts before scoring.
        let prediction = decoded.text.trim();
        let p = rouge_tokens(prediction);
        let mut best = [0.0f64; 4];
        for reference in &references[entry.qsl_idx] {
            let reference = reference.trim();
            let r = rouge_tokens(reference);
            let scores = [
                rouge_n(&p, &r, 1).fmeasure,
                rouge_n(&p, &r, 2).fmeasure,
                rouge_l(&p, &r).fmeasure,
                rouge_lsum(prediction, reference).fmeasure,
            ];
            for (b, s) in best.iter_mut().zip(scores) {
                *b = b.max(s);
            }
        }
        for (sum, b) in sums.iter_mut().zip(best) {
            *sum += b;
        }
    }
    let scored = first.len() as f64;
    let names = ["rouge1", "rouge2", "rougeL", "rougeLsum"];
    let mut metrics = BTreeMap::new();
    for (name, sum) in names.iter().zip(sums) {
        metrics.insert(format!("{name}_percent"), 100.0 * sum / scored);
    }
    let mut mlperf_line = names
        .iter()
        .map(|n| format!("'{n}': {:.4}", metrics[&format!("{n}_percent")]))
        .collect::<Vec<_>>();
    if let ResponseText::TokenIds(_) = response {
        metrics.insert("generated_tokens".into(), generated_tokens as f64);
        mlperf_line.push(format!("'gen_len': {generated_tokens}"));
    }
    mlperf_line.push(format!("'gen_num': {}", first.len()));
    Ok(AccuracyReport {
        kind: "rouge".into(),
        metrics,
        mlperf_line: format!("{{{}}}", mlperf_line.join(", ")),
        coverage,
        mismatch_examples: Vec::new(),
    })
}

/// Perplexity from per-token negative log-likelihoods. `dataset_samples`:
/// the data set's size when known (to report missing samples); otherwise
/// the highest sample index logged + 1.
pub fn score_perplexity(
    entries: &[LoggedSample],
    dataset_samples: Option<usize>,
    log_path: &Path,
) -> Result<AccuracyReport, DatasetError> {
    let samples =
        dataset_samples.unwrap_or_else(|| entries.iter().map(|e| e.qsl_idx + 1).max().unwrap_or(0));
    let (first, coverage) = first_per_sample(entries, samples, log_path)?;
    let (mut nll_sum, mut tokens) = (0.0f64, 0usize);
    for entry in &first {
        if !entry.data.len().is_multiple_of(4) {
            return Err(DatasetError::Response {
                sample: entry.qsl_idx,
                problem: ResponseProblem::LikelihoodWidth {
                    len: entry.data.len(),
                },
            });
        }
        for b in entry.data.chunks_exact(4) {
            let nll = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if !(nll.is_finite() && nll >= 0.0) {
                return Err(DatasetError::Response {
                    sample: entry.qsl_idx,
                    problem: ResponseProblem::Likelihood { nll },
                });
            }
            nll_sum += f64::from(nll);
            tokens += 1;
        }
    }
    if tokens == 0 {
        return Err(DatasetError::NoTokenLikelihoods);
    }
    let mean_nll = nll_sum / tokens as f64;
    let perplexity = mean_nll.exp();
    let mut metrics = BTreeMap::new();
    metrics.insert("perplexity".into(), perplexity);
    metrics.insert("mean_nll_nats".into(), mean_nll);
    metrics.insert("scored_tokens".into(), tokens as f64);
    Ok(AccuracyReport {
        kind: "perplexity".into(),
        metrics,
        mlperf_line: format!(
            "perplexity={perplexity:.4}, tokens={tokens}, samples={}",
            first.len()
        ),
        coverage,
        mismatch_examples: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::references::DetokenizeError;

    fn t(s: &str) -> Vec<String> {
        rouge_tokens(s)
    }

    #[test]
    fn tokenizer_matches_rouge_score() {
        assert_eq!(
            t("The cat's hat, 2024!"),
            vec!["the", "cat", "s", "hat", "2024"]
        );
        assert_eq!(t("Café  naïve"), vec!["caf", "na", "ve"]);
    }

    #[test]
    fn rouge_known_values() {
        // rouge_score: scorer.score("the cat was found under the bed",
        //                           "the cat was under the bed")
        // rouge1 P 1.0 R 6/7; rouge2 P 4/5 R 4/6; rougeL P 1.0 R 6/7.
        let reference = t("the cat was found under the bed");
        let prediction = t("the cat was under the bed");
        let r1 = rouge_n(&prediction, &reference, 1);
        assert!((r1.precision - 1.0).abs() < 1e-12 && (r1.recall - 6.0 / 7.0).abs() < 1e-12);
        let r2 = rouge_n(&prediction, &reference, 2);
        assert!((r2.precision - 0.8).abs() < 1e-12 && (r2.recall - 4.0 / 6.0).abs() < 1e-12);
        let rl = rouge_l(&prediction, &reference);
        assert!((rl.fmeasure - 2.0 * (6.0 / 7.0) / (1.0 + 6.0 / 7.0)).abs() < 1e-12);
        assert_eq!(rouge_l(&[], &reference).fmeasure, 0.0);
    }

    #[test]
    fn rouge_lsum_unions_sentences() {
        // rouge_score's own example for summary-level LCS (Lin 2004):
        // reference "w1 w2 w3 w4 w5", candidates "w1 w2 w6 w7 w8" and
        // "w1 w3 w8 w9 w5": union LCS w1 w2 w3 w5 → 4 hits, R 4/5, P 4/10.
        let r = rouge_lsum("w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5", "w1 w2 w3 w4 w5");
        assert!((r.recall - 0.8).abs() < 1e-12, "{r:?}");
        assert!((r.precision - 0.4).abs() < 1e-12, "{r:?}");
    }

    #[test]
    fn matches_rouge_score_on_two_sentence_texts() {
        // Values printed by rouge_score 0.1.2 (use_stemmer=False) for
        // score(target=reference, prediction).
        let reference = "The quick brown fox.\nIt jumped over the lazy dog!";
        let prediction = "A quick brown dog\njumps over the fox, lazily.";
        let (p, r) = (t(prediction), t(reference));
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(rouge_n(&p, &r, 1).fmeasure, 0.631578947368421));
        assert!(close(rouge_n(&p, &r, 2).fmeasure, 0.23529411764705882));
        assert!(close(rouge_l(&p, &r).fmeasure, 0.4210526315789474));
        assert!(close(
            rouge_lsum(prediction, reference).fmeasure,
            0.631578947368421
        ));
    }

    #[test]
    fn scores_token_ids_and_text() {
        let refs = vec![
            vec!["the cat sat".to_string()],
            // Two references: the better one counts.
            vec!["a dog ran".to_string(), "the dog ran far".to_string()],
        ];
        let vocab = ["the", "cat", "sat", "a", "dog", "ran", "far"];
        let decode = |ids: &[u32]| -> Result<String, DetokenizeError> {
            ids.iter()
                .map(|&i| {
                    vocab
                        .get(i as usize)
                        .copied()
                        .ok_or_else(|| format!("no token {i}").into())
                })
                .collect::<Result<Vec<_>, DetokenizeError>>()
                .map(|w| w.join(" "))
        };
        let ids = |v: &[u32]| v.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>();
        let log = vec![
            LoggedSample {
                seq_id: 0,
                qsl_idx: 0,
                data: ids(&[0, 1, 2]),
                token_count: Some(3),
            },
            LoggedSample {
                seq_id: 1,
                qsl_idx: 1,
                data: ids(&[4, 5, 6]),
                token_count: Some(3),
            },
        ];
        let r = score_rouge(
            &log,
            &refs,
            Path::new("refs"),
            &ResponseText::TokenIds(&decode),
        )
        .unwrap();
        // Sample 0 exact (F 1); sample 1 "dog ran far" shares 3 of 4 words
        // with the second reference: P 1, R 3/4, F 6/7 (the first gives 2/3).
        assert!((r.metrics["rouge1_percent"] - 100.0 * (1.0 + 6.0 / 7.0) / 2.0).abs() < 1e-9);
        assert_eq!(r.metrics["generated_tokens"], 6.0);
        assert!(r.mlperf_line.contains("'gen_num': 2"), "{}", r.mlperf_line);
        let text = vec![LoggedSample {
            seq_id: 0,
            qsl_idx: 0,
            data: b"The cat sat.".to_vec(),
            token_count: None,
        }];
        let r = score_rouge(&text, &refs, Path::new("refs"), &ResponseText::Utf8).unwrap();
        assert_eq!(r.metrics["rougeL_percent"], 100.0);
        assert_eq!(r.coverage.missing_examples, vec![1]);
        let bad = vec![LoggedSample {
            seq_id: 0,
            qsl_idx: 0,
            data: vec![1, 2],
            token_count: None,
        }];
        assert!(score_rouge(
            &bad,
            &refs,
            Path::new("r"),
            &ResponseText::TokenIds(&decode)
        )
        .is_err());
    }

    #[test]
    fn perplexity_is_exp_mean_nll() {
        let nll = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let log = vec![
            LoggedSample {
                seq_id: 0,
                qsl_idx: 0,
                data: nll(&[1.0, 2.0]),
                token_count: None,
            },
            LoggedSample {
                seq_id: 1,
                qsl_idx: 2,
                data: nll(&[3.0]),
                token_count: None,
            },
        ];
        let r = score_perplexity(&log, None, Path::new("log")).unwrap();
        assert!((r.metrics["perplexity"] - 2.0f64.exp()).abs() < 1e-9);
        assert_eq!(r.metrics["scored_tokens"], 3.0);
        assert_eq!(r.coverage.missing_examples, vec![1]);
        let bad = vec![LoggedSample {
            seq_id: 0,
            qsl_idx: 0,
            data: nll(&[f32::NAN]),
            token_count: None,
        }];
        assert!(score_perplexity(&bad, None, Path::new("log")).is_err());
    }
}
