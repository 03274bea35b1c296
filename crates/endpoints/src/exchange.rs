//! One request and its answer, timed on the client: sent, first content,
//! done. Every wait is bounded (the request deadline, and between chunks
//! the idle limit); every way it can go wrong ends as a [`Failure`].

use crate::client::ClientOptions;
use crate::failure::{quote_error_body, Failure};
use crate::openai::{self, OpenAiApi, PieceError, ServerTimings, Usage};
use crate::sse::SseDecoder;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::time::timeout_at;

/// The largest non-streamed answer read (a runaway server must not take
/// the client's memory).
const MAX_BODY_BYTES: usize = 64 << 20;

/// What one request gave, success or not.
#[derive(Debug)]
pub struct Outcome {
    pub sent: Instant,
    pub first_content: Option<Instant>,
    pub done: Instant,
    pub text: String,
    /// Bytes of `text` the first content chunk carried.
    pub first_chunk_len: usize,
    pub content_chunks: u64,
    pub usage: Option<Usage>,
    pub timings: Option<ServerTimings>,
    pub result: Result<(), Failure>,
}

/// What every request of a run shares.
pub struct Wire<'a> {
    pub client: &'a reqwest::Client,
    /// Opens a new connection for every request (the resend).
    pub fresh_client: &'a reqwest::Client,
    pub url: &'a reqwest::Url,
    pub auth: Option<&'a HeaderValue>,
    pub options: &'a ClientOptions,
    /// Requests sent again on a fresh connection (see [`Wire::send`]).
    pub resent: &'a AtomicU64,
}

/// Whether `e` is hyper's "connection closed before message completed":
/// the server closed the connection without a byte of answer.
fn closed_before_answer(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        source = s.source();
    }
    false
}

impl Wire<'_> {
    /// Sends `body`. A request whose kept-alive connection the server had
    /// closed (it answered nothing) is sent once more on a new connection,
    /// as curl does: llama.cpp's server closes the connection after every
    /// streamed answer while announcing keep-alive, so the next request on
    /// it dies unseen. That is the only resend; every other failure counts.
    async fn send(
        &self,
        body: Vec<u8>,
        deadline: tokio::time::Instant,
    ) -> Result<reqwest::Response, Failure> {
        let body = bytes::Bytes::from(body);
        let mut resent = false;
        let response = loop {
            // The resend must not land on another dead kept-alive connection.
            let client = if resent {
                self.fresh_client
            } else {
                self.client
            };
            let mut request = client
                .post(self.url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(auth) = self.auth {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            match timeout_at(deadline, request.send()).await {
                Err(_) => return Err(self.deadline_passed()),
                Ok(Err(e)) if e.is_connect() && e.is_timeout() => {
                    return Err(Failure::Timeout {
                        what: "connect",
                        after: self.options.connect_timeout,
                    })
                }
                Ok(Err(e)) if e.is_connect() => return Err(Failure::Connect(error_chain(&e))),
                Ok(Err(e)) if !resent && closed_before_answer(&e) => {
                    resent = true;
                    self.resent.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => return Err(Failure::NoAnswer(error_chain(&e))),
                Ok(Ok(r)) => break r,
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // The error body, briefly: it says why (llama.cpp: exceed_context_size_error).
        let body = read_body(response, deadline, 64 << 10)
            .await
            .unwrap_or_default();
        let message = quote_error_body(&body);
        Err(match status.as_u16() {
            s @ (401 | 403) => Failure::Auth { status: s, message },
            s => Failure::Status { status: s, message },
        })
    }

    fn deadline_passed(&self) -> Failure {
        Failure::Timeout {
            what: "response",
            after: self.options.request_timeout,
        }
    }
}

/// Every cause in a reqwest error ("error sending request: connection refused").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

async fn read_body(
    mut response: reqwest::Response,
    deadline: tokio::time::Instant,
    limit: usize,
) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        match timeout_at(deadline, response.chunk()).await {
            Err(_) => {
                return Err(Failure::Timeout {
                    what: "response",
                    after: Duration::ZERO,
                })
            }
            Ok(Err(e)) => return Err(Failure::Truncated(error_chain(&e))),
            Ok(Ok(None)) => return Ok(body),
            Ok(Ok(Some(bytes))) => {
                if body.len() + bytes.len() > limit {
                    return Err(Failure::Malformed(format!(
                        "an answer larger than {} MiB",
                        limit >> 20
                    )));
                }
                body.extend_from_slice(&bytes);
            }
        }
    }
}

impl Outcome {
    fn new(sent: Instant) -> Outcome {
        Outcome {
            sent,
            first_content: None,
            done: sent,
            text: String::new(),
            first_chunk_len: 0,
            content_chunks: 0,
            usage: None,
            timings: None,
            result: Ok(()),
        }
    }

    fn finish(mut self, result: Result<(), Failure>) -> Outcome {
        self.done = Instant::now();
        self.result = result;
        self
    }

    /// Adds a piece's content; reports the first one through `on_first`.
    fn take(&mut self, piece: openai::Piece, on_first: &mut Option<impl FnOnce(&str)>) {
        if piece.usage.is_some() {
            self.usage = piece.usage;
        }
        if piece.timings.is_some() {
            self.timings = piece.timings;
        }
        if piece.content.is_empty() {
            return;
        }
        if self.first_content.is_none() {
            self.first_content = Some(Instant::now());
            self.first_chunk_len = piece.content.len();
            if let Some(f) = on_first.take() {
                f(&piece.content);
            }
        }
        self.content_chunks += 1;
        self.text.push_str(&piece.content);
    }
}

/// An OpenAI-style request; `on_first` is called the moment the first
/// non-empty content arrives (streaming), or with the whole answer.
pub async fn openai(
    wire: &Wire<'_>,
    api: OpenAiApi,
    streaming: bool,
    body: Vec<u8>,
    on_first: impl FnOnce(&str),
) -> Outcome {
    let sent = Instant::now();
    let deadline = tokio::time::Instant::from_std(sent + wire.options.request_timeout);
    let mut out = Outcome::new(sent);
    let mut on_first = Some(on_first);
    let response = match wire.send(body, deadline).await {
        Ok(r) => r,
        Err(f) => return out.finish(Err(f)),
    };
    let is_sse = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !(streaming && is_sse) {
        // Not streamed (asked so, or the server ignored `stream`): one answer.
        let result = match read_body(response, deadline, MAX_BODY_BYTES).await {
            Err(Failure::Timeout { .. }) => Err(wire.deadline_passed()),
            Err(f) => Err(f),
            Ok(body) => match openai::parse(api, &String::from_utf8_lossy(&body), false) {
                Ok(piece) => {
                    let finished = piece.finish_reason.is_some();
                    out.take(piece, &mut on_first);
                    if finished {
                        Ok(())
                    } else {
                        Err(Failure::Malformed("the answer has no finish_reason".into()))
                    }
                }
                Err(e) => Err(piece_failure(e)),
            },
        };
        return out.finish(result);
    }
    let mut response = response;
    let result = stream(wire, api, &mut response, deadline, &mut out, &mut on_first).await;
    let out = out.finish(result);
    // The body's end (after `[DONE]`) is read off the timed path, so the
    // connection goes back to the pool instead of being closed.
    tokio::spawn(drain(response));
    out
}

/// Reads what is left of a body, for at most a second.
async fn drain(mut response: reqwest::Response) {
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Ok(Some(_))) = timeout_at(until, response.chunk()).await {}
}

async fn stream(
    wire: &Wire<'_>,
    api: OpenAiApi,
    response: &mut reqwest::Response,
    deadline: tokio::time::Instant,
    out: &mut Outcome,
    on_first: &mut Option<impl FnOnce(&str)>,
) -> Result<(), Failure> {
    let mut decoder = SseDecoder::default();
    let mut finished = false;
    loop {
        let idle_until = tokio::time::Instant::now() + wire.options.idle_timeout;
        let chunk = match timeout_at(idle_until.min(deadline), response.chunk()).await {
            Err(_) if idle_until < deadline => {
                return Err(Failure::Idle(wire.options.idle_timeout))
            }
            Err(_) => return Err(wire.deadline_passed()),
            Ok(Err(e)) => return Err(Failure::Truncated(error_chain(&e))),
            Ok(Ok(None)) => {
                return if finished && !decoder.pending() {
                    Ok(())
                } else {
                    Err(Failure::Truncated(
                        "the stream ended without [DONE] or a finish_reason".into(),
                    ))
                };
            }
            Ok(Ok(Some(bytes))) => bytes,
        };
        let events = decoder
            .feed(&chunk)
            .map_err(|e| Failure::Malformed(format!("the event stream: {e}")))?;
        for data in events {
            if data.trim() == "[DONE]" {
                return Ok(());
            }
            let piece = openai::parse(api, &data, true).map_err(piece_failure)?;
            finished |= piece.finish_reason.is_some();
            out.take(piece, on_first);
        }
    }
}

fn piece_failure(e: PieceError) -> Failure {
    match e {
        PieceError::Malformed(m) => Failure::Malformed(m),
        PieceError::Server(m) => Failure::ServerError(m),
    }
}

/// A plain JSON request; `output` reads the answer's text.
pub async fn plain(
    wire: &Wire<'_>,
    body: Vec<u8>,
    output: impl FnOnce(&[u8]) -> Result<String, String>,
) -> Outcome {
    let sent = Instant::now();
    let deadline = tokio::time::Instant::from_std(sent + wire.options.request_timeout);
    let mut out = Outcome::new(sent);
    let response = match wire.send(body, deadline).await {
        Ok(r) => r,
        Err(f) => return out.finish(Err(f)),
    };
    let result = match read_body(response, deadline, MAX_BODY_BYTES).await {
        Err(Failure::Timeout { .. }) => Err(wire.deadline_passed()),
        Err(f) => Err(f),
        Ok(body) => output(&body)
            .map(|text| {
                out.first_content = Some(Instant::now());
                out.first_chunk_len = text.len();
                out.content_chunks = 1;
                out.text = text;
            })
            .map_err(Failure::Malformed),
    };
    out.finish(result)
}
