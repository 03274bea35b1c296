//! Reference answers and texts for the text scorers, and the decoding of
//! text responses.
//!
//! A reference file lists, for sample N, the N-th question's acceptable
//! answers (SQuAD) or the N-th reference text (ROUGE). Accepted layouts:
//!
//! - SQuAD JSON (v1.1 or v2.0): `{"data": [{"paragraphs": [{"qas": [{"answers":
//!   [{"text": …}]}]}]}]}`, questions in file order; a v2.0 question with no
//!   answer has the empty answer, as SQuAD v2.0's script scores it;
//! - JSON Lines, or one JSON list, one item per sample: a string, or an
//!   object with any of `answers` (a list of strings or of `{"text": …}`, a
//!   string, or Hugging Face's `{"text": [...]}`), `references` (a list of
//!   strings), `reference`, `answer`, `target`, `output` (strings).
//!
//! The object fields are those `joulebench run --dataset` reads for text
//! workloads (`answers`, `references`, `reference`), so a text data set
//! file is its own reference file.

use super::accuracy_log::LoggedSample;
use super::{DatasetError, ResponseProblem};
use serde_json::Value;
use std::path::Path;

/// Reads a reference file: the acceptable texts of each sample.
pub fn read_references(path: &Path) -> Result<Vec<Vec<String>>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::file(path, e))?;
    parse_references(&text, path)
}

/// Parses reference text; `path` only names the file in errors.
pub fn parse_references(text: &str, path: &Path) -> Result<Vec<Vec<String>>, DatasetError> {
    let references = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(root)) if root.contains_key("data") => squad_references(&root, path)?,
        Ok(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                texts_of(item).map_err(|r| DatasetError::file(path, format!("item {i}: {r}")))
            })
            .collect::<Result<_, _>>()?,
        // JSON Lines (one object alone is a file of one line).
        _ => {
            let mut references = Vec::new();
            for (number, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let item: Value = serde_json::from_str(line)
                    .map_err(|e| DatasetError::line(path, number + 1, e))?;
                references
                    .push(texts_of(&item).map_err(|r| DatasetError::line(path, number + 1, r))?);
            }
            references
        }
    };
    if references.is_empty() {
        return Err(DatasetError::file(path, "no samples with references"));
    }
    Ok(references)
}

fn squad_references(
    root: &serde_json::Map<String, Value>,
    path: &Path,
) -> Result<Vec<Vec<String>>, DatasetError> {
    let data = root
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| DatasetError::file(path, "SQuAD's `data` is not a list"))?;
    let mut references = Vec::new();
    for article in data {
        let paragraphs = article.get("paragraphs").and_then(Value::as_array);
        for paragraph in paragraphs.into_iter().flatten() {
            let questions = paragraph.get("qas").and_then(Value::as_array);
            for question in questions.into_iter().flatten() {
                let answers = match question.get("answers") {
                    None => Ok(Vec::new()),
                    Some(answers) => answer_texts(answers),
                };
                let mut answers = answers.map_err(|reason| {
                    let id = question.get("id").map_or("?".into(), Value::to_string);
                    DatasetError::file(path, format!("question {id}: {reason}"))
                })?;
                if answers.is_empty() {
                    // SQuAD v2.0: unanswerable, the right answer is no answer.
                    answers.push(String::new());
                }
                references.push(answers);
            }
        }
    }
    Ok(references)
}

/// `answers` in any of its layouts.
fn answer_texts(answers: &Value) -> Result<Vec<String>, ReferenceError> {
    let text_of = |v: &Value| -> Option<String> {
        v.as_str()
            .or_else(|| v.get("text").and_then(Value::as_str))
            .map(str::to_string)
    };
    match answers {
        Value::String(one) => Some(vec![one.clone()]),
        Value::Array(list) => list.iter().map(text_of).collect::<Option<Vec<_>>>(),
        Value::Object(hf) => hf.get("text").and_then(Value::as_array).and_then(|l| {
            l.iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        }),
        _ => None,
    }
    .ok_or(ReferenceError::Answers)
}

/// The field names a reference object may use.
const FIELDS: &str = "answers, references, reference, answer, target, output";

/// Why one item of a reference file gives no reference texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("`answers` must be a string, a list of strings or of {{\"text\": …}}")]
    Answers,
    #[error("expected a string or an object with one of {FIELDS}")]
    NotAnObject,
    #[error("`references` must be a list of strings")]
    References,
    #[error("`{field}` must be a string")]
    NotAString { field: &'static str },
    #[error("no reference: expected one of {FIELDS}")]
    Missing,
}

/// The references of one item (a string or an object).
fn texts_of(item: &Value) -> Result<Vec<String>, ReferenceError> {
    if let Some(s) = item.as_str() {
        return Ok(vec![s.to_string()]);
    }
    let Some(object) = item.as_object() else {
        return Err(ReferenceError::NotAnObject);
    };
    let mut found = false;
    let mut texts = Vec::new();
    if let Some(answers) = object.get("answers") {
        found = true;
        texts.extend(answer_texts(answers)?);
    }
    if let Some(list) = object.get("references") {
        found = true;
        let list = list
            .as_array()
            .and_then(|l| l.iter().map(|v| v.as_str().map(str::to_string)).collect())
            .ok_or(ReferenceError::References)?;
        texts.extend::<Vec<String>>(list);
    }
    for field in ["reference", "answer", "target", "output"] {
        if let Some(v) = object.get(field) {
            found = true;
            texts.push(
                v.as_str()
                    .ok_or(ReferenceError::NotAString { field })?
                    .to_string(),
            );
        }
    }
    if !found {
        return Err(ReferenceError::Missing);
    }
    if texts.is_empty() {
        // An empty answer list: unanswerable, as in SQuAD v2.0.
        texts.push(String::new());
    }
    Ok(texts)
}

/// Why token ids did not turn into text: the tokenizer's own error, or the
/// caller's reason (no tokenizer given).
pub type DetokenizeError = Box<dyn std::error::Error + Send + Sync>;

/// Turns token ids into text (the model's tokenizer).
pub type Detokenize<'a> = &'a dyn Fn(&[u32]) -> Result<String, DetokenizeError>;

/// How text responses are encoded in the accuracy log.
pub enum ResponseText<'a> {
    /// The text itself, UTF-8.
    Utf8,
    /// Generated token ids, `u32` little endian, and how to decode them.
    TokenIds(Detokenize<'a>),
}

/// One response as text.
pub(crate) struct Decoded {
    pub text: String,
    /// Token ids in the response (token-id responses only).
    pub tokens: Option<usize>,
    /// Bytes that were not UTF-8 were replaced.
    pub replaced: bool,
}

/// Response bytes that are not whole `u32` token ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{len} bytes are not a whole number of u32 token ids")]
pub struct TokenIdBytes {
    pub len: usize,
}

/// Token ids from response bytes (`u32` little endian).
pub fn token_ids(data: &[u8]) -> Result<Vec<u32>, TokenIdBytes> {
    if !data.len().is_multiple_of(4) {
        return Err(TokenIdBytes { len: data.len() });
    }
    Ok(data
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Decodes one response. A "text" response with NUL bytes is refused: it
/// is almost surely token ids, and scoring it as text would be a silent
/// wrong result.
pub(crate) fn decode_response(
    entry: &LoggedSample,
    how: &ResponseText,
) -> Result<Decoded, DatasetError> {
    let sample = entry.qsl_idx;
    match how {
        ResponseText::Utf8 => {
            if entry.data.contains(&0) {
                return Err(DatasetError::Response {
                    sample,
                    problem: ResponseProblem::NulBytes,
                });
            }
            Ok(Decoded {
                text: String::from_utf8_lossy(&entry.data).into_owned(),
                tokens: None,
                replaced: std::str::from_utf8(&entry.data).is_err(),
            })
        }
        ResponseText::TokenIds(decode) => {
            let ids = token_ids(&entry.data).map_err(|e| DatasetError::Response {
                sample,
                problem: e.into(),
            })?;
            let text = decode(&ids).map_err(|e| DatasetError::Response {
                sample,
                problem: ResponseProblem::Detokenize(e),
            })?;
            Ok(Decoded {
                text,
                tokens: Some(ids.len()),
                replaced: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_json_in_file_order_with_v2_unanswerable() {
        let squad = r#"{"version":"1.1","data":[{"title":"t","paragraphs":[{"context":"c",
            "qas":[{"id":"q1","question":"?","answers":[{"text":"Denver Broncos","answer_start":0}]},
                   {"id":"q2","question":"?","answers":[{"text":"a"},{"text":"b"}]},
                   {"id":"q3","question":"?","answers":[],"is_impossible":true}]}]}]}"#;
        assert_eq!(
            parse_references(squad, Path::new("dev.json")).unwrap(),
            vec![
                vec!["Denver Broncos".to_string()],
                vec!["a".into(), "b".into()],
                vec![String::new()]
            ]
        );
    }

    #[test]
    fn text_dataset_lines_are_references() {
        // The layouts `joulebench run --dataset` reads for text workloads.
        let jsonl = "{\"text\": \"p\", \"answers\": [\"x\", \"y\"]}\n\n\
                     {\"prompt\": \"p\", \"references\": [\"z\"], \"reference\": \"w\"}\n\
                     {\"question\": \"q\", \"context\": \"c\", \"answers\": [{\"text\": \"v\"}]}\n\
                     {\"answers\": {\"text\": [\"u\"], \"answer_start\": [3]}}\n\
                     \"plain\"\n";
        let refs = parse_references(jsonl, Path::new("refs.jsonl")).unwrap();
        assert_eq!(refs[0], vec!["x", "y"]);
        assert_eq!(refs[1], vec!["z", "w"]);
        assert_eq!(refs[2], vec!["v"]);
        assert_eq!(refs[3], vec!["u"]);
        assert_eq!(refs[4], vec!["plain"]);
        let list = r#"[{"target": "a"}, {"output": "b"}]"#;
        assert_eq!(
            parse_references(list, Path::new("r")).unwrap()[1],
            vec!["b"]
        );
    }

    #[test]
    fn missing_references_name_the_line() {
        let e = parse_references(
            "{\"answers\": [\"x\"]}\n{\"text\": \"no answer\"}\n",
            Path::new("refs"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("refs:2: no reference"), "{e}");
        let e = parse_references("{\"answers\": 3}\n", Path::new("refs")).unwrap_err();
        assert!(
            e.to_string().starts_with("refs:1: `answers` must be"),
            "{e}"
        );
        assert!(parse_references("\n", Path::new("refs")).is_err());
    }

    #[test]
    fn responses_decode_or_are_refused() {
        let entry = |data: Vec<u8>| LoggedSample {
            seq_id: 0,
            qsl_idx: 4,
            data,
            token_count: None,
        };
        let text = decode_response(&entry(b"Denver".to_vec()), &ResponseText::Utf8).unwrap();
        assert_eq!(text.text, "Denver");
        // Token ids read as text: refused, not scored as garbage.
        let ids = entry(vec![7, 0, 0, 0]);
        let e = decode_response(&ids, &ResponseText::Utf8).err().unwrap();
        assert!(
            e.to_string()
                .contains("sample 4: the response has NUL bytes"),
            "{e}"
        );
        let decode = |t: &[u32]| Ok(format!("{t:?}"));
        let d = decode_response(&ids, &ResponseText::TokenIds(&decode)).unwrap();
        assert_eq!((d.text.as_str(), d.tokens), ("[7]", Some(1)));
        assert!(decode_response(&entry(vec![1, 2]), &ResponseText::TokenIds(&decode)).is_err());
        let bad = decode_response(&entry(vec![0xff, b'a']), &ResponseText::Utf8).unwrap();
        assert!(bad.replaced);
    }
}
