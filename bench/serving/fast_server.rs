//! A scripted OpenAI-compatible streaming server for client benchmarks
//! (bench/serving.sh): every chat or completions request is answered with a
//! stream whose timing is fixed by flags, so that anything a client measures
//! above those numbers is the client's (or the shared machine's) own cost.
//!
//! One file, standard library only (no crate can be added to the workspace):
//!     rustc -O --edition 2021 bench/serving/fast_server.rs -o $OUT/fast_server
//!     fast_server --port 0 --ttft-ms 20 --itl-ms 10 --tokens 16 --port-file FILE
//!
//! A thread per connection (64 KiB stacks; 1,000+ open streams is fine),
//! HTTP/1.1 keep-alive, chunked `text/event-stream` answers: the role chunk
//! and the first content chunk at TTFT after the request's body was read,
//! then one content chunk (one token) every ITL on an absolute schedule (no
//! drift), the finish_reason chunk, a `usage` chunk and `data: [DONE]`.
//! `--tokens 0` means: the request's max_tokens / max_completion_tokens.
//! `--end-together` writes `data: [DONE]` and the body's terminating chunk
//! in one write (by default they are two writes, as llama.cpp's server and
//! uvicorn send them).
//!
//! GET /health            {"status":"ok"}
//! GET /v1/models         one model
//! GET /stats             what the server itself measured since the last reset:
//!                        requests, open streams now and at most, and its own
//!                        TTFT (body read → first content written) spread in µs
//! POST /stats/reset      clears the above
//! GET /metrics           404 (AIPerf asks for it)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Config {
    ttft: Duration,
    itl: Duration,
    tokens: u64,
    token_text: String,
    /// Write `data: [DONE]` and the chunked body's terminator in one write
    /// (by default two, as llama.cpp's and uvicorn's servers do).
    end_together: bool,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    open: AtomicU64,
    open_max: AtomicU64,
    connections: AtomicU64,
    /// Server-side TTFT of each streamed request, µs.
    ttft_us: Mutex<Vec<u64>>,
    /// Last content chunk written − request body read, µs (the stream's own length).
    stream_us: Mutex<Vec<u64>>,
}

extern "C" {
    fn listen(fd: i32, backlog: i32) -> i32;
}

fn main() {
    let mut port: u16 = 0;
    let mut host = "127.0.0.1".to_string();
    let mut ttft_ms = 20.0f64;
    let mut itl_ms = 10.0f64;
    let mut tokens = 0u64;
    let mut port_file: Option<String> = None;
    let mut end_together = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--end-together" {
            end_together = true;
            i += 1;
            continue;
        }
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--port" => port = v.parse().expect("--port N"),
            "--host" => host = v,
            "--ttft-ms" => ttft_ms = v.parse().expect("--ttft-ms MS"),
            "--itl-ms" => itl_ms = v.parse().expect("--itl-ms MS"),
            "--tokens" => tokens = v.parse().expect("--tokens N"),
            "--port-file" => port_file = Some(v),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    let listener = TcpListener::bind((host.as_str(), port)).expect("bind");
    // A burst of 1,000 connects must not overflow the accept queue (a
    // dropped SYN costs the client a 1 s retransmission, seen as TTFT).
    #[cfg(unix)]
    unsafe {
        use std::os::unix::io::AsRawFd;
        listen(listener.as_raw_fd(), 4096);
    }
    let bound = listener.local_addr().expect("local_addr").port();
    if let Some(f) = port_file {
        std::fs::write(&f, format!("{bound}\n")).expect("port file");
    }
    eprintln!("fast_server on {host}:{bound}: TTFT {ttft_ms} ms, ITL {itl_ms} ms, tokens {tokens}");
    let config = Arc::new(Config {
        ttft: Duration::from_secs_f64(ttft_ms / 1e3),
        itl: Duration::from_secs_f64(itl_ms / 1e3),
        tokens,
        token_text: " tok".into(),
        end_together,
    });
    let stats = Arc::new(Stats::default());
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let config = Arc::clone(&config);
        let stats = Arc::clone(&stats);
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let _ = serve(conn, &config, &stats);
            });
        if let Err(e) = spawned {
            eprintln!("thread: {e}");
        }
    }
}

fn serve(conn: TcpStream, config: &Config, stats: &Stats) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::with_capacity(16 << 10, conn);
    let mut line = String::new();
    loop {
        // Request line and headers.
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let request_line = line.trim_end().to_string();
        if request_line.is_empty() {
            continue;
        }
        let mut content_length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim();
                if k == "content-length" {
                    content_length = v.parse().unwrap_or(0);
                } else if k == "connection" && v.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let mut body = vec![0u8; content_length];
        reader.read_exact(&mut body)?;
        let received = Instant::now();
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("");
        let path = path.split('?').next().unwrap_or("");
        match (method, path) {
            ("GET", "/health") => plain(&mut writer, 200, r#"{"status":"ok"}"#)?,
            ("GET", "/v1/models") => plain(
                &mut writer,
                200,
                r#"{"object":"list","data":[{"id":"fast","object":"model","owned_by":"bench"}]}"#,
            )?,
            ("GET", "/stats") => plain(&mut writer, 200, &stats_json(stats))?,
            ("POST", "/stats/reset") => {
                stats.requests.store(0, Ordering::Relaxed);
                stats.open_max.store(stats.open.load(Ordering::Relaxed), Ordering::Relaxed);
                stats.ttft_us.lock().unwrap().clear();
                stats.stream_us.lock().unwrap().clear();
                plain(&mut writer, 200, "{}")?
            }
            ("POST", p) if p.ends_with("/chat/completions") || p.ends_with("/completions") => {
                let chat = p.ends_with("/chat/completions");
                stats.requests.fetch_add(1, Ordering::Relaxed);
                let open = stats.open.fetch_add(1, Ordering::Relaxed) + 1;
                stats.open_max.fetch_max(open, Ordering::Relaxed);
                let r = stream(&mut writer, config, stats, chat, &body, received);
                stats.open.fetch_sub(1, Ordering::Relaxed);
                r?
            }
            _ => plain(&mut writer, 404, r#"{"error":{"message":"not found","code":404}}"#)?,
        }
        if close {
            return Ok(());
        }
    }
}

fn plain(w: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    w.write_all(head.as_bytes())
}

/// The number after `"key":` in a JSON body (enough for max_tokens).
fn json_number(body: &str, key: &str) -> Option<u64> {
    let at = body.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = body[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn sse(w: &mut TcpStream, buf: &mut Vec<u8>, data: &str) -> std::io::Result<()> {
    // One HTTP chunk per event, one write per chunk.
    buf.clear();
    let payload_len = data.len() + 8; // "data: " + data + "\n\n"
    write!(buf, "{payload_len:x}\r\ndata: {data}\n\n\r\n")?;
    w.write_all(buf)
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn stream(
    w: &mut TcpStream,
    config: &Config,
    stats: &Stats,
    chat: bool,
    body: &[u8],
    received: Instant,
) -> std::io::Result<()> {
    let body = String::from_utf8_lossy(body);
    let n = if config.tokens > 0 {
        config.tokens
    } else {
        json_number(&body, "max_tokens")
            .or_else(|| json_number(&body, "max_completion_tokens"))
            .unwrap_or(16)
    }
    .max(1);
    let wants_stream = body.contains("\"stream\":true") || body.contains("\"stream\": true");
    let id = stats.requests.load(Ordering::Relaxed);
    let object = if chat { "chat.completion.chunk" } else { "text_completion" };
    let content = |t: &str| {
        if chat {
            format!(r#""delta":{{"content":"{t}"}}"#)
        } else {
            format!(r#""text":"{t}""#)
        }
    };
    let piece = |inner: &str, finish: &str| {
        format!(
            r#"{{"id":"cmpl-{id}","object":"{object}","created":0,"model":"fast","choices":[{{"index":0,{inner},"finish_reason":{finish}}}]}}"#
        )
    };
    let usage = format!(
        r#"{{"id":"cmpl-{id}","object":"{object}","created":0,"model":"fast","choices":[],"usage":{{"prompt_tokens":8,"completion_tokens":{n},"total_tokens":{}}}}}"#,
        n + 8
    );
    if !wants_stream {
        sleep_until(received + config.ttft + config.itl * (n as u32 - 1));
        let text = config.token_text.repeat(n as usize);
        let inner = if chat {
            format!(r#""message":{{"role":"assistant","content":"{text}"}}"#)
        } else {
            format!(r#""text":"{text}""#)
        };
        let answer = format!(
            r#"{{"id":"cmpl-{id}","object":"{}","created":0,"model":"fast","choices":[{{"index":0,{inner},"finish_reason":"length"}}],"usage":{{"prompt_tokens":8,"completion_tokens":{n},"total_tokens":{}}}}}"#,
            if chat { "chat.completion" } else { "text_completion" },
            n + 8
        );
        return plain(w, 200, &answer);
    }
    w.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    let mut buf = Vec::with_capacity(512);
    let text_piece = content(&config.token_text);
    let start = received + config.ttft;
    sleep_until(start);
    if chat {
        sse(w, &mut buf, &piece(r#""delta":{"role":"assistant","content":null}"#, "null"))?;
    }
    sse(w, &mut buf, &piece(&text_piece, "null"))?;
    let ttft = received.elapsed();
    for k in 1..n {
        sleep_until(start + config.itl * k as u32);
        sse(w, &mut buf, &piece(&text_piece, "null"))?;
    }
    let total = received.elapsed();
    let finish = if chat { r#""delta":{}"# } else { r#""text":"""# };
    sse(w, &mut buf, &piece(finish, "\"length\""))?;
    sse(w, &mut buf, &usage)?;
    if config.end_together {
        buf.clear();
        buf.extend_from_slice(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
        w.write_all(&buf)?;
    } else {
        sse(w, &mut buf, "[DONE]")?;
        w.write_all(b"0\r\n\r\n")?;
    }
    stats.ttft_us.lock().unwrap().push(ttft.as_micros() as u64);
    stats.stream_us.lock().unwrap().push(total.as_micros() as u64);
    Ok(())
}

fn spread(v: &[u64]) -> String {
    if v.is_empty() {
        return "null".into();
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let n = s.len();
    let at = |p: f64| s[((n as f64 * p) as usize).min(n - 1)];
    let mean = s.iter().sum::<u64>() as f64 / n as f64;
    format!(
        r#"{{"count":{n},"mean":{mean:.1},"p50":{},"p90":{},"p99":{},"max":{}}}"#,
        at(0.5),
        at(0.9),
        at(0.99),
        s[n - 1]
    )
}

fn stats_json(stats: &Stats) -> String {
    format!(
        r#"{{"requests":{},"open":{},"open_max":{},"connections":{},"ttft_us":{},"stream_us":{}}}"#,
        stats.requests.load(Ordering::Relaxed),
        stats.open.load(Ordering::Relaxed),
        stats.open_max.load(Ordering::Relaxed),
        stats.connections.load(Ordering::Relaxed),
        spread(&stats.ttft_us.lock().unwrap()),
        spread(&stats.stream_us.lock().unwrap()),
    )
}
