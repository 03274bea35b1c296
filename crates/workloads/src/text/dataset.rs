//! Text data sets and the query sample library of token sequences.
//!
//! Files read (`.jsonl`/`.ndjson` as JSON Lines, anything else as one JSON
//! document):
//! - plain prompts, one object a line or a JSON array of them:
//!   `{"text": "..."}` or `{"prompt": "..."}`, optionally with `"id"` and
//!   reference answers (`"answers"`, `"references"` or `"reference"`) for
//!   accuracy scoring; `{"question", "context"}` objects are read too;
//! - SQuAD (v1.1 / v2.0): `{"data":[{"paragraphs":[{"context","qas":
//!   [{"id","question","answers":[{"text"}]}]}]}]}`.
//!
//! Every error names the file and line. Text is tokenized when the library
//! is built, before the timed run (MLPerf lets preprocessing happen there).

use super::tokens::{synthetic_tokens, TextTokenizer};
use super::TextError;
use crate::image_qsl::SampleError;
use loadgen::{QuerySampleIndex, QuerySampleLibrary};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// What one sample asks.
#[derive(Debug, Clone, PartialEq)]
pub enum TextInput {
    /// A prompt or sentence.
    Plain(String),
    /// A question about a passage (SQuAD).
    Question { question: String, context: String },
}

impl TextInput {
    /// The text a generative model is prompted with.
    pub fn prompt(&self) -> String {
        match self {
            TextInput::Plain(text) => text.clone(),
            TextInput::Question { question, context } => {
                format!("Context: {context}\nQuestion: {question}\nAnswer:")
            }
        }
    }
}

/// One record of a text data set.
#[derive(Debug, Clone, PartialEq)]
pub struct TextRecord {
    /// The record's id (SQuAD's `id`, a line's `"id"`, else its position).
    pub id: String,
    pub input: TextInput,
    /// Acceptable answers, for accuracy scoring; empty when the file has none.
    pub references: Vec<String>,
    /// Line in the file where the record starts (1-based).
    pub line: usize,
}

/// A plain-prompt object (a JSONL line or an array element).
#[derive(Debug, Deserialize)]
struct PromptObject {
    text: Option<String>,
    prompt: Option<String>,
    question: Option<String>,
    context: Option<String>,
    id: Option<serde_json::Value>,
    answers: Option<Answers>,
    references: Option<Vec<String>>,
    reference: Option<String>,
}

/// `"answers"`: SQuAD's `[{"text": ...}]`, a list of strings, or one string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Answers {
    Squad(Vec<SquadAnswer>),
    Texts(Vec<String>),
    Text(String),
}

impl Answers {
    fn into_texts(self) -> Vec<String> {
        match self {
            Answers::Squad(a) => a.into_iter().map(|a| a.text).collect(),
            Answers::Texts(t) => t,
            Answers::Text(t) => vec![t],
        }
    }
}

#[derive(Debug, Deserialize)]
struct SquadFile {
    data: Vec<SquadArticle>,
}

#[derive(Debug, Deserialize)]
struct SquadArticle {
    paragraphs: Vec<SquadParagraph>,
}

#[derive(Debug, Deserialize)]
struct SquadParagraph {
    context: String,
    qas: Vec<SquadQuestion>,
}

#[derive(Debug, Deserialize)]
struct SquadQuestion {
    id: serde_json::Value,
    question: String,
    #[serde(default)]
    answers: Vec<SquadAnswer>,
}

#[derive(Debug, Deserialize)]
struct SquadAnswer {
    text: String,
}

fn id_text(id: &serde_json::Value) -> String {
    match id {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn data_error(path: &Path, line: usize, reason: impl Into<String>) -> TextError {
    TextError::Dataset {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn json_error(path: &Path, e: &serde_json::Error) -> TextError {
    // serde_json says "... at line L column C"; the line goes in front.
    let text = e.to_string();
    let reason = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(r, _)| r)
        .to_string();
    data_error(path, e.line(), format!("{reason} (column {})", e.column()))
}

impl PromptObject {
    fn into_record(
        self,
        path: &Path,
        line: usize,
        position: usize,
    ) -> Result<TextRecord, TextError> {
        let input = match (self.text, self.prompt, self.question, self.context) {
            (Some(t), None, None, None) | (None, Some(t), None, None) => TextInput::Plain(t),
            (None, None, Some(question), Some(context)) => {
                TextInput::Question { question, context }
            }
            (None, None, Some(_), None) => {
                return Err(data_error(
                    path,
                    line,
                    "a \"question\" needs its \"context\"",
                ))
            }
            (None, None, None, _) => return Err(data_error(
                path,
                line,
                "no text: give \"text\" or \"prompt\" (a string), or \"question\" and \"context\"",
            )),
            _ => return Err(data_error(
                path,
                line,
                "give one of \"text\", \"prompt\", or \"question\" with \"context\", not several",
            )),
        };
        let empty = match &input {
            TextInput::Plain(t) => t.trim().is_empty(),
            TextInput::Question { question, context } => {
                question.trim().is_empty() || context.trim().is_empty()
            }
        };
        if empty {
            return Err(data_error(path, line, "the text is empty"));
        }
        let mut references = self.answers.map(Answers::into_texts).unwrap_or_default();
        references.extend(self.references.unwrap_or_default());
        references.extend(self.reference);
        Ok(TextRecord {
            id: self
                .id
                .as_ref()
                .map_or_else(|| position.to_string(), id_text),
            input,
            references,
            line,
        })
    }
}

/// Reads a text data set (see the module docs for the formats).
pub fn read_text_dataset(path: &Path) -> Result<Vec<TextRecord>, TextError> {
    let content = std::fs::read_to_string(path).map_err(|e| data_error(path, 0, e.to_string()))?;
    let jsonl = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson"));
    let records = if jsonl {
        parse_jsonl(path, &content)?
    } else {
        parse_json(path, &content)?
    };
    if records.is_empty() {
        return Err(data_error(path, 0, "no records"));
    }
    Ok(records)
}

fn parse_jsonl(path: &Path, content: &str) -> Result<Vec<TextRecord>, TextError> {
    let mut records = Vec::new();
    for (i, line) in content.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let object: PromptObject = serde_json::from_str(line).map_err(|e| {
            data_error(path, line_no, format!("{e}").replace(" at line 1 ", " at "))
        })?;
        records.push(object.into_record(path, line_no, records.len())?);
    }
    Ok(records)
}

fn parse_json(path: &Path, content: &str) -> Result<Vec<TextRecord>, TextError> {
    let value: serde_json::Value =
        serde_json::from_str(content).map_err(|e| json_error(path, &e))?;
    match value {
        serde_json::Value::Object(map) if map.contains_key("data") => parse_squad(path, content),
        serde_json::Value::Array(_) => parse_prompt_array(path, content),
        serde_json::Value::Object(_) => Err(data_error(
            path,
            1,
            "neither SQuAD ({\"data\": [...]}) nor a list of prompts; for one prompt per line name the file .jsonl",
        )),
        _ => Err(data_error(path, 1, "expected a JSON object or array")),
    }
}

/// Where each top-level array element (or SQuAD question) starts: the lines
/// of the `{` that opens the n-th object at the given nesting depth.
fn object_lines(content: &str, depth_wanted: usize) -> Vec<usize> {
    let (mut depth, mut line, mut in_string, mut escaped) = (0usize, 1usize, false, false);
    let mut lines = Vec::new();
    for c in content.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => {
                depth += 1;
                if c == '{' && depth == depth_wanted {
                    lines.push(line);
                }
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    lines
}

fn parse_prompt_array(path: &Path, content: &str) -> Result<Vec<TextRecord>, TextError> {
    let objects: Vec<PromptObject> =
        serde_json::from_str(content).map_err(|e| json_error(path, &e))?;
    let lines = object_lines(content, 2);
    objects
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let line = lines.get(i).copied().unwrap_or(0);
            o.into_record(path, line, i)
        })
        .collect()
}

fn parse_squad(path: &Path, content: &str) -> Result<Vec<TextRecord>, TextError> {
    let squad: SquadFile = serde_json::from_str(content).map_err(|e| json_error(path, &e))?;
    // data[] > paragraphs[] > qas[]: question objects open at depth 7.
    let lines = object_lines(content, 7);
    let mut records = Vec::new();
    for article in squad.data {
        for paragraph in article.paragraphs {
            for qa in paragraph.qas {
                let line = lines.get(records.len()).copied().unwrap_or(0);
                if qa.question.trim().is_empty() {
                    return Err(data_error(path, line, "the question is empty"));
                }
                records.push(TextRecord {
                    id: id_text(&qa.id),
                    input: TextInput::Question {
                        question: qa.question,
                        context: paragraph.context.clone(),
                    },
                    references: qa.answers.into_iter().map(|a| a.text).collect(),
                    line,
                });
            }
        }
    }
    Ok(records)
}

/// How samples are turned into tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// An encoder input: questions are encoded as a `(question, context)`
    /// pair, as BERT-family models take them.
    Encoder,
    /// A decoder prompt: questions become a `Context: … Question: … Answer:`
    /// prompt.
    Decoder,
}

/// A query sample library of token sequences, tokenized when built.
pub struct TextQsl {
    name: String,
    description: String,
    tokens: Vec<Arc<[u32]>>,
    references: Vec<Vec<String>>,
    performance: usize,
    loaded: RwLock<HashMap<QuerySampleIndex, Arc<[u32]>>>,
}

impl TextQsl {
    /// `total` samples of exactly `len` synthetic tokens each, drawn from
    /// `[0, vocab_size)`: for random weights with no tokenizer.
    pub fn synthetic(
        total: usize,
        performance: usize,
        seed: u64,
        len: usize,
        vocab_size: usize,
    ) -> TextQsl {
        let tokens = (0..total)
            .map(|i| Arc::from(synthetic_tokens(seed, i, len.max(1), vocab_size)))
            .collect();
        TextQsl {
            name: "joulebench-synthetic-tokens".into(),
            description: format!(
                "synthetic token stream (seed {seed}, {} tokens a sample, ids below {vocab_size}); no tokenizer",
                len.max(1)
            ),
            tokens,
            references: vec![Vec::new(); total],
            performance: performance.min(total),
            loaded: RwLock::new(HashMap::new()),
        }
    }

    /// Tokenizes `records` (whose file is `path`) now, off the timed path.
    pub fn from_records(
        path: &Path,
        records: &[TextRecord],
        tokenizer: &TextTokenizer,
        framing: Framing,
        performance: usize,
    ) -> Result<TextQsl, TextError> {
        let mut tokens = Vec::with_capacity(records.len());
        for r in records {
            let ids = match (&r.input, framing) {
                (TextInput::Question { question, context }, Framing::Encoder) => {
                    tokenizer.encode_pair(question, context)
                }
                (input, _) => tokenizer.encode(&input.prompt()),
            }
            .map_err(|e| data_error(path, r.line, e.to_string()))?;
            if ids.is_empty() {
                return Err(data_error(path, r.line, "the text has no tokens"));
            }
            tokens.push(Arc::from(ids));
        }
        Ok(TextQsl {
            name: path
                .file_name()
                .map_or_else(|| "text".into(), |n| n.to_string_lossy().into_owned()),
            description: format!(
                "{} ({} records), tokenized at load with {}",
                path.display(),
                records.len(),
                tokenizer.path().display()
            ),
            references: records.iter().map(|r| r.references.clone()).collect(),
            performance: performance.min(records.len()),
            tokens,
            loaded: RwLock::new(HashMap::new()),
        })
    }

    /// What the samples are, for result parameters.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The longest sample, in tokens.
    pub fn max_tokens(&self) -> usize {
        self.tokens.iter().map(|t| t.len()).max().unwrap_or(0)
    }

    /// The largest token id in any sample (checked against the model's
    /// vocabulary before the run).
    pub fn max_token_id(&self) -> Option<u32> {
        self.tokens.iter().flat_map(|t| t.iter().copied()).max()
    }

    /// A sample's reference answers (accuracy scoring).
    pub fn references(&self, index: QuerySampleIndex) -> &[String] {
        self.references.get(index).map_or(&[], |r| r.as_slice())
    }

    /// The tokens of loaded samples, in order.
    pub fn batch(&self, indices: &[QuerySampleIndex]) -> Result<Vec<Arc<[u32]>>, SampleError> {
        let loaded = self.loaded.read().map_err(|_| SampleError::Poisoned)?;
        indices
            .iter()
            .map(|&index| {
                loaded
                    .get(&index)
                    .cloned()
                    .ok_or(SampleError::NotLoaded { index })
            })
            .collect()
    }
}

impl QuerySampleLibrary for TextQsl {
    fn name(&self) -> &str {
        &self.name
    }
    fn total_sample_count(&self) -> usize {
        self.tokens.len()
    }
    fn performance_sample_count(&self) -> usize {
        self.performance
    }
    fn load_samples_to_ram(
        &self,
        samples: &[QuerySampleIndex],
    ) -> Result<(), loadgen::qsl::QslError> {
        let mut loaded = self.loaded.write().map_err(|_| SampleError::Poisoned)?;
        for &i in samples {
            let tokens = self.tokens.get(i).ok_or(SampleError::OutOfRange {
                index: i,
                size: self.tokens.len(),
            })?;
            loaded.insert(i, Arc::clone(tokens));
        }
        Ok(())
    }
    fn unload_samples_from_ram(&self, samples: &[QuerySampleIndex]) {
        if let Ok(mut loaded) = self.loaded.write() {
            for i in samples {
                loaded.remove(i);
            }
        }
    }
}

/// A data set's path and records, for callers that read once and build
/// several things from it.
#[derive(Debug, Clone)]
pub struct TextDataset {
    pub path: PathBuf,
    pub records: Vec<TextRecord>,
}

impl TextDataset {
    pub fn read(path: &Path) -> Result<TextDataset, TextError> {
        Ok(TextDataset {
            path: path.to_path_buf(),
            records: read_text_dataset(path)?,
        })
    }
}
