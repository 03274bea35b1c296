//! Test support: a scripted HTTP/1.1 server on loopback. Each request's
//! answer (status, body, or a stream of timed chunks, and how the stream
//! ends) comes from a closure, so timings and faults are exact. Used by this
//! crate's tests and the CLI's; it binds loopback only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How a stream ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum End {
    /// The last chunk of the chunked body: a complete response.
    Complete,
    /// The connection is closed mid-body (a killed server).
    Cut,
    /// Nothing more is sent, the connection stays open, for this long.
    Hang(Duration),
    /// A complete response, but the next request on this connection is read
    /// and the connection closed without an answer (llama.cpp's server
    /// after a stream, though it announces keep-alive).
    CompleteThenDropNext,
}

pub enum Answer {
    Json(u16, String),
    /// SSE events (`data` payloads), each sent after its delay.
    Stream(Vec<(Duration, String)>, End),
    /// Raw bytes as the body of a 200 text/event-stream answer.
    RawStream(Vec<u8>, End),
    /// Accept the request and close without answering.
    Close,
}

type Script = dyn Fn(&Seen) -> Answer + Send + Sync;

pub struct FakeServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
    https: bool,
}

impl FakeServer {
    /// Plain HTTP.
    pub fn start(script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> FakeServer {
        FakeServer::listen(None, script)
    }

    /// HTTPS with the certificate chain and key given (PEM).
    pub fn start_tls(
        cert_pem: &[u8],
        key_pem: &[u8],
        script: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
    ) -> FakeServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .expect("certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(key_pem).expect("key PEM");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key");
        FakeServer::listen(Some(Arc::new(config)), script)
    }

    fn listen(
        tls: Option<Arc<rustls::ServerConfig>>,
        script: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let https = tls.is_some();
        {
            let seen = Arc::clone(&seen);
            let connections = Arc::clone(&connections);
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    connections.fetch_add(1, Ordering::Relaxed);
                    let script = Arc::clone(&script);
                    let seen = Arc::clone(&seen);
                    let tls = tls.clone();
                    std::thread::spawn(move || {
                        let _ = stream.set_nodelay(true);
                        let _ = match tls {
                            None => serve(stream, &*script, &seen),
                            Some(config) => match rustls::ServerConnection::new(config) {
                                Ok(c) => {
                                    serve(rustls::StreamOwned::new(c, stream), &*script, &seen)
                                }
                                Err(_) => Ok(()),
                            },
                        };
                    });
                }
            });
        }
        FakeServer {
            addr,
            seen,
            connections,
            https,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(
    stream: impl Read + Write,
    script: &Script,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut drop_next = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let request = read_request(&line, &mut reader)?;
        if drop_next {
            return Ok(());
        }
        seen.lock().unwrap().push(request.clone());
        let out = reader.get_mut();
        match script(&request) {
            Answer::Json(status, body) => {
                write!(
                    out,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )?;
                out.flush()?;
            }
            Answer::Close => return Ok(()),
            Answer::Stream(events, end) => {
                start_stream(out)?;
                for (delay, data) in events {
                    std::thread::sleep(delay);
                    chunk(out, format!("data: {data}\n\n").as_bytes())?;
                }
                drop_next = end == End::CompleteThenDropNext;
                if !finish(out, end)? {
                    return Ok(());
                }
            }
            Answer::RawStream(bytes, end) => {
                start_stream(out)?;
                chunk(out, &bytes)?;
                if !finish(out, end)? {
                    return Ok(());
                }
            }
        }
    }
}

fn read_request(line: &str, reader: &mut impl BufRead) -> std::io::Result<Seen> {
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Seen {
        method,
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    })
}

fn start_stream(out: &mut impl Write) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )?;
    out.flush()
}

fn chunk(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    write!(out, "{:x}\r\n", bytes.len())?;
    out.write_all(bytes)?;
    write!(out, "\r\n")?;
    out.flush()
}

/// Ends the body as `end` says; false when the connection is done.
fn finish(out: &mut impl Write, end: End) -> std::io::Result<bool> {
    match end {
        End::Complete | End::CompleteThenDropNext => {
            write!(out, "0\r\n\r\n")?;
            out.flush()?;
            Ok(true)
        }
        // Returning drops, hence closes, the connection.
        End::Cut => Ok(false),
        End::Hang(d) => {
            std::thread::sleep(d);
            Ok(false)
        }
    }
}

/// A chat stream as llama.cpp's server sends it: a role-only chunk, then
/// `tokens` one-token chunks (the first after `ttft`, then one per `tpot`),
/// a finish_reason, then usage (when `usage`) and `[DONE]`.
pub fn llama_like_chat(
    tokens: usize,
    ttft: Duration,
    tpot: Duration,
    usage: bool,
) -> Vec<(Duration, String)> {
    let mut events = vec![(
        Duration::ZERO,
        r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"object":"chat.completion.chunk"}"#.to_string(),
    )];
    for i in 0..tokens {
        let delay = if i == 0 { ttft } else { tpot };
        let finish = if i + 1 == tokens {
            r#""length""#
        } else {
            "null"
        };
        events.push((
            delay,
            format!(r#"{{"choices":[{{"finish_reason":{finish},"index":0,"delta":{{"content":" w{i}"}}}}],"object":"chat.completion.chunk"}}"#),
        ));
    }
    if usage {
        events.push((
            Duration::ZERO,
            format!(r#"{{"choices":[],"usage":{{"completion_tokens":{tokens},"prompt_tokens":7,"total_tokens":{}}},"timings":{{"prompt_n":7,"prompt_ms":1.5,"predicted_n":{tokens},"predicted_ms":{}}}}}"#, tokens + 7, tpot.as_secs_f64() * 1e3 * tokens as f64),
        ));
    }
    events.push((Duration::ZERO, "[DONE]".to_string()));
    events
}
