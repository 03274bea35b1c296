//! Plain JSON endpoints: one POST per sample, one JSON answer.
//!
//! - MLPerf's LoadGen-over-Network demo (`mlcommons/inference`,
//!   `loadgen/demos/lon/sut_over_network_demo.py`, b66003e): `POST
//!   {base}/predict/` with `{"query": ...}` answers `{"result": ...}`, and
//!   `GET {base}/getname/` answers `{"name": "..."}`, the SUT's name.
//! - A template: any JSON body in which the strings `{{prompt}}`,
//!   `{{index}}` and `{{max_tokens}}` are replaced per sample, and a JSON
//!   pointer saying where the answer's text is.

use crate::prompts::PromptRecord;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub enum PlainProtocol {
    Lon,
    Template {
        body: Value,
        /// Where the output text is in the answer (`/choices/0/text`);
        /// `None`: the whole answer.
        response_pointer: Option<String>,
    },
}

impl PlainProtocol {
    pub fn name(&self) -> &'static str {
        match self {
            PlainProtocol::Lon => "lon",
            PlainProtocol::Template { .. } => "template",
        }
    }

    /// The request body for sample `index`.
    pub fn body(&self, record: &PromptRecord, index: usize, max_tokens: Option<u64>) -> Value {
        match self {
            PlainProtocol::Lon => json!({ "query": record.text() }),
            PlainProtocol::Template { body, .. } => fill(
                body,
                &record.text(),
                index,
                record.max_tokens.or(max_tokens),
            ),
        }
    }

    /// The answer's output text.
    pub fn output(&self, answer: &[u8]) -> Result<String, String> {
        let v: Value = serde_json::from_slice(answer).map_err(|e| {
            format!(
                "not JSON ({e}): {}",
                crate::openai::clip(&String::from_utf8_lossy(answer))
            )
        })?;
        let found = match self {
            PlainProtocol::Lon => v.get("result"),
            PlainProtocol::Template {
                response_pointer: Some(p),
                ..
            } => v.pointer(p),
            PlainProtocol::Template {
                response_pointer: None,
                ..
            } => Some(&v),
        };
        let want = match self {
            PlainProtocol::Lon => "`result`".to_string(),
            PlainProtocol::Template {
                response_pointer, ..
            } => format!("`{}`", response_pointer.as_deref().unwrap_or("")),
        };
        match found {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Ok(other.to_string()),
            None => Err(format!(
                "no {want} in the answer: {}",
                crate::openai::clip(&v.to_string())
            )),
        }
    }
}

/// `template` with its placeholders replaced. A string that is exactly
/// `{{index}}` or `{{max_tokens}}` becomes a number; inside longer strings
/// they are text. The prompt is always text (escaped as JSON needs).
fn fill(template: &Value, prompt: &str, index: usize, max_tokens: Option<u64>) -> Value {
    match template {
        Value::String(s) => match s.as_str() {
            "{{index}}" => json!(index),
            "{{max_tokens}}" => max_tokens.map_or(Value::Null, |n| json!(n)),
            _ => Value::String(
                s.replace("{{prompt}}", prompt)
                    .replace("{{index}}", &index.to_string())
                    .replace(
                        "{{max_tokens}}",
                        &max_tokens.map(|n| n.to_string()).unwrap_or_default(),
                    ),
            ),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| fill(v, prompt, index, max_tokens))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill(v, prompt, index, max_tokens)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Checks a template before the run: it must use `{{prompt}}` somewhere,
/// else every request would be the same.
pub fn check_template(template: &Value) -> Result<(), String> {
    fn mentions(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains("{{prompt}}"),
            Value::Array(a) => a.iter().any(mentions),
            Value::Object(m) => m.values().any(mentions),
            _ => false,
        }
    }
    if mentions(template) {
        Ok(())
    } else {
        Err(
            "the request template has no \"{{prompt}}\" string: every request would be the same"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompts::Prompt;

    fn record(text: &str) -> PromptRecord {
        PromptRecord {
            prompt: Prompt::Text(text.into()),
            max_tokens: None,
        }
    }

    #[test]
    fn templates_fill_every_placeholder_with_the_right_type() {
        let t: Value = serde_json::from_str(
            r#"{"inputs": "Q: {{prompt}}", "parameters": {"max_new_tokens": "{{max_tokens}}", "id": "{{index}}", "tag": "s{{index}}"}, "list": ["{{prompt}}", 1]}"#,
        )
        .unwrap();
        check_template(&t).unwrap();
        let p = PlainProtocol::Template {
            body: t,
            response_pointer: Some("/generated_text".into()),
        };
        let body = p.body(&record("say \"hi\"\n"), 7, Some(32));
        assert_eq!(body["inputs"], "Q: say \"hi\"\n");
        assert_eq!(body["parameters"]["max_new_tokens"], 32);
        assert_eq!(body["parameters"]["id"], 7);
        assert_eq!(body["parameters"]["tag"], "s7");
        assert_eq!(body["list"][0], "say \"hi\"\n");
        assert_eq!(p.output(br#"{"generated_text": "ok"}"#).unwrap(), "ok");
        assert!(p
            .output(br#"{"other": 1}"#)
            .unwrap_err()
            .contains("/generated_text"));
        assert!(check_template(&json!({"x": "fixed"})).is_err());
    }

    #[test]
    fn lon_speaks_the_demo_shapes() {
        let p = PlainProtocol::Lon;
        assert_eq!(p.body(&record("q"), 0, None), json!({"query": "q"}));
        assert_eq!(p.output(br#"{"result": "r"}"#).unwrap(), "r");
        assert_eq!(p.output(br#"{"result": [1, 2]}"#).unwrap(), "[1,2]");
        assert!(p.output(b"<html>").is_err());
    }
}
