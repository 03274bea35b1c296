//! Exact match and F1 of extracted answers, with the SQuAD v1.1 evaluation
//! rules (the ones MLPerf's BERT `accuracy-squad.py` applies).
//!
//! An answer is normalised before comparison: lower case, ASCII punctuation
//! removed, the articles `a`, `an`, `the` removed as whole words, whitespace
//! collapsed. Exact match is 1 when the normalised prediction equals a
//! normalised reference answer; F1 is over the normalised words (bag of
//! words, repeated words counted). Both take the best over the question's
//! reference answers, and both are averaged over every question of the
//! reference, an unanswered question scoring 0, as SQuAD's script does.
//!
//! Responses: the answer text as UTF-8, or generated token ids decoded
//! with the model's tokenizer ([`ResponseText`]). References: see
//! [`super::references`] (SQuAD JSON, or JSON Lines / a JSON list with
//! `answers`).

use super::accuracy_log::{first_per_sample, LoggedSample};
use super::references::{decode_response, ResponseText};
use super::{AccuracyReport, DatasetError};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// SQuAD's `normalize_answer`.
pub fn normalize_answer(text: &str) -> String {
    let lower = text.to_lowercase();
    // Python's string.punctuation is exactly ASCII punctuation.
    let no_punctuation: Vec<char> = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    let no_articles = remove_articles(&no_punctuation);
    no_articles.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `re.sub(r"\b(a|an|the)\b", " ", text)` with Python's Unicode `\w`.
fn remove_articles(chars: &[char]) -> String {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let boundary_after = |end: usize| end == chars.len() || !word(chars[end]);
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    'scan: while i < chars.len() {
        if i == 0 || !word(chars[i - 1]) {
            for article in ["a", "an", "the"] {
                let n = article.len();
                let matches = chars.len() >= i + n
                    && chars[i..i + n].iter().copied().eq(article.chars())
                    && boundary_after(i + n);
                if matches {
                    out.push(' ');
                    i += n;
                    continue 'scan;
                }
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Exact match after normalisation.
pub fn exact_match(prediction: &str, truth: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(truth)
}

/// Word-level F1 after normalisation, in [0, 1].
pub fn f1_score(prediction: &str, truth: &str) -> f64 {
    let prediction = normalize_answer(prediction);
    let truth = normalize_answer(truth);
    let predicted: Vec<&str> = prediction.split_whitespace().collect();
    let expected: Vec<&str> = truth.split_whitespace().collect();
    let mut available: HashMap<&str, usize> = HashMap::new();
    for w in &expected {
        *available.entry(w).or_default() += 1;
    }
    let mut same = 0usize;
    for w in &predicted {
        if let Some(n) = available.get_mut(w) {
            if *n > 0 {
                *n -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / predicted.len() as f64;
    let recall = same as f64 / expected.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Scores answer responses against the references (acceptable answers per
/// sample).
pub fn score_squad(
    entries: &[LoggedSample],
    references: &[Vec<String>],
    references_path: &Path,
    response: &ResponseText,
) -> Result<AccuracyReport, DatasetError> {
    let (first, coverage) = first_per_sample(entries, references.len(), references_path)?;
    if first.is_empty() {
        return Err(DatasetError::NoResponses);
    }
    let (mut exact, mut f1, mut not_utf8) = (0.0f64, 0.0f64, 0usize);
    let mut mismatch_examples = Vec::new();
    for entry in &first {
        let decoded = decode_response(entry, response)?;
        not_utf8 += usize::from(decoded.replaced);
        let prediction = decoded.text;
        let truths = &references[entry.qsl_idx];
        let em = truths.iter().any(|t| exact_match(&prediction, t));
        exact += f64::from(u8::from(em));
        f1 += truths
            .iter()
            .map(|t| f1_score(&prediction, t))
            .fold(0.0, f64::max);
        if !em && mismatch_examples.len() < 10 {
            mismatch_examples.push(format!(
                "sample {}: expected {:?}, found {:?}",
                entry.qsl_idx, truths[0], prediction
            ));
        }
    }
    // SQuAD's script divides by every question, answered or not.
    let total = references.len() as f64;
    let exact_match_percent = 100.0 * exact / total;
    let f1_percent = 100.0 * f1 / total;
    let mut metrics = BTreeMap::new();
    metrics.insert("exact_match_percent".to_string(), exact_match_percent);
    metrics.insert("f1_percent".to_string(), f1_percent);
    metrics.insert("not_utf8_responses".to_string(), not_utf8 as f64);
    Ok(AccuracyReport {
        kind: "squad".into(),
        metrics,
        mlperf_line: format!(
            "{{\"exact_match\": {exact_match_percent:?}, \"f1\": {f1_percent:?}}}"
        ),
        coverage,
        mismatch_examples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_follows_squad() {
        assert_eq!(
            normalize_answer("The  Quick, brown fox!"),
            "quick brown fox"
        );
        assert_eq!(normalize_answer("an apple a day"), "apple day");
        // Articles only as whole words: "theory", "another" stay.
        assert_eq!(normalize_answer("Theory of another"), "theory of another");
        // Punctuation goes first, so "the-end" becomes "theend", not "end".
        assert_eq!(normalize_answer("the-end"), "theend");
        // Non-ASCII punctuation is not punctuation to SQuAD, but is a word boundary.
        assert_eq!(normalize_answer("the’s"), "’s");
        assert_eq!(normalize_answer("  "), "");
    }

    #[test]
    fn exact_match_and_f1_known_examples() {
        // SQuAD v1.1 dev, "Which NFL team represented the AFC at Super Bowl 50?"
        assert!(exact_match("the Denver Broncos", "Denver Broncos"));
        assert!(!exact_match("Denver Broncos won", "Denver Broncos"));
        // 2 of 3 predicted words right, both expected words found: F1 = 0.8.
        assert!((f1_score("Denver Broncos won", "Denver Broncos") - 0.8).abs() < 1e-12);
        // Repeated words count as many times as they appear in both.
        assert!((f1_score("b b", "b b c") - 0.8).abs() < 1e-12);
        assert_eq!(f1_score("Carolina Panthers", "Denver Broncos"), 0.0);
        assert_eq!(f1_score("", "Denver Broncos"), 0.0);
    }

    #[test]
    fn scores_over_every_question() {
        let refs = vec![
            vec!["Denver Broncos".to_string()],
            vec!["Santa Clara".to_string(), "Levi's Stadium".to_string()],
            vec!["February 7, 2016".to_string()],
        ];
        let entry = |i: usize, text: &str| LoggedSample {
            seq_id: i as u64,
            qsl_idx: i,
            data: text.as_bytes().to_vec(),
            token_count: None,
        };
        let log = vec![
            entry(0, "the Denver Broncos"),
            entry(1, "Levi's Stadium in Santa Clara"),
            entry(1, "ignored duplicate"),
        ];
        let r = score_squad(&log, &refs, Path::new("refs"), &ResponseText::Utf8).unwrap();
        // EM: 1 of 3 questions (the third is unanswered and scores 0).
        assert!((r.metrics["exact_match_percent"] - 100.0 / 3.0).abs() < 1e-9);
        // F1 of sample 1 ("levis stadium in santa clara"), either answer:
        // 2 words shared, p 2/5, r 1 → 4/7.
        let expected_f1 = 100.0 * (1.0 + 4.0 / 7.0) / 3.0;
        assert!((r.metrics["f1_percent"] - expected_f1).abs() < 1e-9);
        assert_eq!(r.coverage.missing_examples, vec![2]);
        assert_eq!(r.coverage.duplicate_entries, 1);
        assert!(
            r.mlperf_line.starts_with("{\"exact_match\": 33.33"),
            "{}",
            r.mlperf_line
        );
    }
}
