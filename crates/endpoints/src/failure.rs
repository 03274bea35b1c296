//! Why a request failed, by kind. A failure is recorded and counted, never
//! retried: a retry would change the arrival process and hide the latency.
//! Each kind has a stable label (the counts in `result.json` and LoadGen's
//! detail log use it) and says what happened to this request.

use std::fmt;
use std::time::Duration;

/// The ways one request can fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing listens at the address (ECONNREFUSED), or the name does not resolve.
    Connect(String),
    /// No connection or response headers within the connect/request timeout.
    Timeout { what: &'static str, after: Duration },
    /// 401 or 403: the credential was refused. The run stops at once.
    Auth { status: u16, message: String },
    /// Another non-success status (400 prompt too long, 404, 429, 5xx).
    Status { status: u16, message: String },
    /// The server closed or reset the connection before any answer (a
    /// crash, an overloaded accept queue, a proxy in the way).
    NoAnswer(String),
    /// The stream went silent for longer than the idle timeout.
    Idle(Duration),
    /// The body ended (or the connection broke) before the response was
    /// complete: no `[DONE]`, no `finish_reason`. Its partial tokens count
    /// for energy, not as a success.
    Truncated(String),
    /// Not the protocol: malformed SSE, JSON, or a missing field.
    Malformed(String),
    /// The server said so inside a 200 response (`{"error": ...}` in a stream).
    ServerError(String),
}

impl Failure {
    /// The label failures are counted by.
    pub fn kind(&self) -> String {
        match self {
            Failure::Connect(_) => "connect".into(),
            Failure::Timeout { what, .. } => format!("{what}_timeout"),
            Failure::Auth { status, .. } | Failure::Status { status, .. } => {
                format!("http_{status}")
            }
            Failure::NoAnswer(_) => "no_answer".into(),
            Failure::Idle(_) => "idle_timeout".into(),
            Failure::Truncated(_) => "truncated".into(),
            Failure::Malformed(_) => "malformed".into(),
            Failure::ServerError(_) => "server_error".into(),
        }
    }

    /// For loadgen, which counts the sample as failed by this kind.
    pub fn to_sample_failure(&self) -> loadgen::SampleFailure {
        loadgen::SampleFailure {
            kind: self.kind(),
            message: self.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "could not connect: {e}"),
            Failure::Timeout { what, after } => {
                write!(f, "no {what} within {:.1} s", after.as_secs_f64())
            }
            Failure::Auth { status, message } => write!(
                f,
                "HTTP {status}: the server refused the credential: {message}"
            ),
            Failure::Status { status, message } if *status == 400 => write!(
                f,
                "HTTP 400 (the prompt may be longer than the model's context): {message}"
            ),
            Failure::Status { status, message } => write!(f, "HTTP {status}: {message}"),
            Failure::NoAnswer(e) => write!(f, "the connection ended before any answer: {e}"),
            Failure::Idle(after) => write!(
                f,
                "the stream sent nothing for {:.1} s (the idle timeout)",
                after.as_secs_f64()
            ),
            Failure::Truncated(e) => write!(f, "the response ended before it was complete: {e}"),
            Failure::Malformed(e) => write!(f, "malformed response: {e}"),
            Failure::ServerError(e) => write!(f, "the server reported an error: {e}"),
        }
    }
}

/// At most this much of a server's error body is quoted.
const QUOTED_BODY_BYTES: usize = 300;

/// A server's error body, shortened for a message: the `error.message` of
/// an OpenAI-style error object when there is one, else the text.
pub fn quote_error_body(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let message = v
            .pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"));
        if let Some(m) = message {
            let text = m
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| m.to_string());
            return shorten(&text);
        }
    }
    shorten(&String::from_utf8_lossy(body))
}

fn shorten(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(QUOTED_BODY_BYTES) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_stable_labels() {
        assert_eq!(Failure::Connect("x".into()).kind(), "connect");
        let t = Failure::Timeout {
            what: "connect",
            after: Duration::from_secs(1),
        };
        assert_eq!(t.kind(), "connect_timeout");
        let s = Failure::Status {
            status: 429,
            message: String::new(),
        };
        assert_eq!(s.kind(), "http_429");
        assert_eq!(Failure::Idle(Duration::from_secs(2)).kind(), "idle_timeout");
    }

    #[test]
    fn error_bodies_are_quoted_by_their_message() {
        let llama =
            br#"{"error":{"code":401,"message":"Invalid API Key","type":"authentication_error"}}"#;
        assert_eq!(quote_error_body(llama), "Invalid API Key");
        assert_eq!(quote_error_body(b"  plain text\n"), "plain text");
        let long = "é".repeat(1000);
        assert_eq!(quote_error_body(long.as_bytes()).chars().count(), 301);
    }
}
