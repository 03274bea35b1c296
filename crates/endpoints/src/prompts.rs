//! The prompts a run sends: a JSON Lines file (or one JSON list) of
//! `{"prompt": "..."}`, `{"text": "..."}` or `{"messages": [...]}` objects,
//! each optionally with its own `max_tokens`; or seeded synthetic prompts.
//! Also the query sample library over them (nothing to load: a prompt is
//! its own sample).

use loadgen::{QuerySampleIndex, QuerySampleLibrary};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One prompt as the data set gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    /// A chat conversation, passed to the server as written.
    Messages(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromptRecord {
    pub prompt: Prompt,
    /// This sample's output length, overriding the run's `max_tokens`.
    pub max_tokens: Option<u64>,
}

impl PromptRecord {
    /// The prompt as one text (a conversation's contents, one per line):
    /// what a completions or plain JSON endpoint is sent.
    pub fn text(&self) -> String {
        match &self.prompt {
            Prompt::Text(t) => t.clone(),
            Prompt::Messages(m) => m
                .iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromptsError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {what}", path.display())]
    Bad {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{}: no prompts in the file", path.display())]
    Empty { path: PathBuf },
}

/// Reads prompts from JSON Lines (one object per line; blank lines
/// skipped) or a JSON list of the same objects.
pub fn load(path: &Path) -> Result<Vec<PromptRecord>, PromptsError> {
    let text = std::fs::read_to_string(path).map_err(|source| PromptsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |line: usize, what: String| PromptsError::Bad {
        path: path.to_path_buf(),
        line,
        what,
    };
    let mut records = Vec::new();
    if text.trim_start().starts_with('[') {
        let list: Vec<Value> =
            serde_json::from_str(&text).map_err(|e| bad(e.line(), e.to_string()))?;
        for (i, v) in list.iter().enumerate() {
            records.push(record(v).map_err(|what| bad(1, format!("item {i}: {what}")))?);
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .map_err(|e| bad(i + 1, format!("not a JSON object: {e}")))?;
            records.push(record(&v).map_err(|what| bad(i + 1, what))?);
        }
    }
    if records.is_empty() {
        return Err(PromptsError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(records)
}

fn record(v: &Value) -> Result<PromptRecord, String> {
    let object = v
        .as_object()
        .ok_or_else(|| format!("expected an object, found {v}"))?;
    let prompt = if let Some(m) = object.get("messages") {
        let list = m
            .as_array()
            .filter(|l| !l.is_empty())
            .ok_or("field `messages`: expected a non-empty list of {\"role\", \"content\"}")?;
        Prompt::Messages(list.clone())
    } else if let Some(t) = object.get("prompt").or_else(|| object.get("text")) {
        let text = t
            .as_str()
            .ok_or("field `prompt`/`text`: expected a string")?;
        Prompt::Text(text.to_string())
    } else {
        return Err("no `prompt`, `text` or `messages` field".into());
    };
    let max_tokens = match object
        .get("max_tokens")
        .or_else(|| object.get("output_len"))
    {
        None | Some(Value::Null) => None,
        Some(n) => Some(
            n.as_u64()
                .filter(|&n| n > 0)
                .ok_or("field `max_tokens`: expected a positive integer")?,
        ),
    };
    Ok(PromptRecord { prompt, max_tokens })
}

/// Words synthetic prompts are made of.
const WORDS: [&str; 16] = [
    "energy", "river", "circuit", "garden", "winter", "signal", "harbor", "copper", "forest",
    "engine", "silver", "market", "planet", "bridge", "thunder", "lantern",
];

/// `count` prompts of `words` words each, the same for the same seed:
/// "Write about ..." followed by seeded words.
pub fn synthetic(count: usize, words: usize, seed: u64) -> Vec<PromptRecord> {
    // SplitMix64: tiny, seeded, and the same on every platform.
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| {
            let body: Vec<&str> = (0..words)
                .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
                .collect();
            PromptRecord {
                prompt: Prompt::Text(format!("Write about {}.", body.join(" "))),
                max_tokens: None,
            }
        })
        .collect()
}

/// The query sample library over a prompt set.
pub struct PromptQsl {
    pub name: String,
    pub total: usize,
    pub performance: usize,
}

impl QuerySampleLibrary for PromptQsl {
    fn name(&self) -> &str {
        &self.name
    }
    fn total_sample_count(&self) -> usize {
        self.total
    }
    fn performance_sample_count(&self) -> usize {
        self.performance
    }
    fn load_samples_to_ram(
        &self,
        _samples: &[QuerySampleIndex],
    ) -> Result<(), loadgen::qsl::QslError> {
        Ok(())
    }
    fn unload_samples_from_ram(&self, _samples: &[QuerySampleIndex]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn lines_and_lists_give_the_same_records() {
        let lines = write(
            "{\"prompt\": \"a\"}\n\n{\"text\": \"b\", \"max_tokens\": 7}\n{\"messages\": [{\"role\": \"user\", \"content\": \"c\"}]}\n",
        );
        let list = write(
            "[{\"prompt\": \"a\"}, {\"text\": \"b\", \"max_tokens\": 7}, {\"messages\": [{\"role\": \"user\", \"content\": \"c\"}]}]",
        );
        let a = load(lines.path()).unwrap();
        assert_eq!(a, load(list.path()).unwrap());
        assert_eq!(a[1].max_tokens, Some(7));
        assert_eq!(a[2].text(), "c");
    }

    #[test]
    fn bad_lines_name_file_line_and_field() {
        let f = write("{\"prompt\": \"a\"}\n{\"prompt\": 3}\n");
        let e = load(f.path()).unwrap_err().to_string();
        assert!(
            e.ends_with(":2: field `prompt`/`text`: expected a string"),
            "{e}"
        );
        let f = write("{\"prompt\": \"a\", \"max_tokens\": -1}\n");
        assert!(load(f.path())
            .unwrap_err()
            .to_string()
            .contains(":1: field `max_tokens`"));
        let f = write("{\"question\": \"a\"}\nnot json\n");
        assert!(load(f.path())
            .unwrap_err()
            .to_string()
            .contains(":1: no `prompt`"));
        let f = write("\n\n");
        assert!(load(f.path())
            .unwrap_err()
            .to_string()
            .contains("no prompts"));
    }

    #[test]
    fn synthetic_prompts_follow_the_seed() {
        assert_eq!(synthetic(5, 8, 1), synthetic(5, 8, 1));
        assert_ne!(synthetic(5, 8, 1), synthetic(5, 8, 2));
        assert_eq!(synthetic(3, 4, 9)[0].text().split(' ').count(), 6);
    }
}
