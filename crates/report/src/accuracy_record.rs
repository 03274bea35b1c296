//! A run's accuracy score written into its `result.json` (`joulebench
//! accuracy`), leaving everything else in the file as it was written: the
//! `accuracy` record gains its `score`, `files` the scores' file; no other
//! byte changes.

use std::path::{Path, PathBuf};

/// Where the score went.
#[derive(Debug, PartialEq)]
pub enum Recorded {
    /// Into this `result.json`.
    InResult(PathBuf),
    /// This `result.json` has no accuracy record (not an accuracy run).
    NotAnAccuracyRun(PathBuf),
    /// The folder has no `result.json`.
    NoResult,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a joulebench result object: {source}", path.display())]
    NotAResult {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("serialising the score: {0}")]
    Json(#[source] serde_json::Error),
    #[error(transparent)]
    Write(#[from] atomic_file::AtomicWriteError),
}

fn pretty<T: serde::Serialize>(value: &T) -> Result<String, RecordError> {
    serde_json::to_string_pretty(value).map_err(RecordError::Json)
}

/// Puts the scores into the run's `result.json` (`accuracy.score`) and lists
/// the scores file among its files, when the directory has a result with an
/// accuracy record. Everything else in the file stays byte for byte as it
/// was (same order, same text); the file is rewritten atomically.
pub fn record_score(
    dir: &Path,
    scores: &Path,
    score: serde_json::Value,
) -> Result<Recorded, RecordError> {
    let path = dir.join(crate::schema::RESULT_FILE);
    if !path.is_file() {
        return Ok(Recorded::NoResult);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| RecordError::Read {
        path: path.clone(),
        source,
    })?;
    let Entries(top) = serde_json::from_str(&text).map_err(|source| RecordError::NotAResult {
        path: path.clone(),
        source,
    })?;
    let accuracy = top
        .iter()
        .find(|(k, _)| k == "accuracy")
        .and_then(|(_, v)| serde_json::from_str::<Entries>(v.get()).ok());
    let Some(Entries(accuracy)) = accuracy else {
        return Ok(Recorded::NotAnAccuracyRun(path));
    };
    // The accuracy object, at depth 1, with `score` (depth 2) set.
    let mut fields: Vec<(String, String)> = accuracy
        .into_iter()
        .filter(|(k, _)| k != "score")
        .map(|(k, v)| (k, v.get().to_string()))
        .collect();
    fields.push(("score".into(), indent(&pretty(&score)?, 4)));
    let accuracy_text = render(&fields, 1)?;
    let mut out: Vec<(String, String)> = Vec::with_capacity(top.len());
    for (key, value) in top {
        let text = match key.as_str() {
            "accuracy" => accuracy_text.clone(),
            // Files are listed relative to the result's directory.
            "files" => match (
                scores.strip_prefix(dir),
                serde_json::from_str::<Vec<String>>(value.get()),
            ) {
                (Ok(relative), Ok(mut files)) => {
                    let name = relative.display().to_string();
                    if !files.contains(&name) {
                        files.push(name);
                    }
                    indent(&pretty(&files)?, 2)
                }
                _ => value.get().to_string(),
            },
            _ => value.get().to_string(),
        };
        out.push((key, text));
    }
    // Ends as it ended (joulebench writes no final newline).
    let ending = if text.ends_with('\n') { "\n" } else { "" };
    let text = render(&out, 0)? + ending;
    atomic_file::write(&path, text.as_bytes())?;
    Ok(Recorded::InResult(path))
}

/// A JSON object's entries in file order, values as their original text.
struct Entries(Vec<(String, Box<serde_json::value::RawValue>)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Indents every line but the first by `spaces` (a pretty-printed value
/// placed at a deeper level).
fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 {
                line.to_string()
            } else {
                format!("{pad}{line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An object at nesting `depth`, as serde_json's pretty printer lays it out.
fn render(entries: &[(String, String)], depth: usize) -> Result<String, RecordError> {
    let pad = "  ".repeat(depth + 1);
    let mut lines = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        lines.push(format!(
            "{pad}{}: {value}",
            serde_json::to_string(key).map_err(RecordError::Json)?
        ));
    }
    Ok(format!(
        "{{\n{}\n{}}}",
        lines.join(",\n"),
        "  ".repeat(depth)
    ))
}
