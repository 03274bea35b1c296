//! The exporter's HTTP/1.1 server, a small one of our own (std only;
//! tiny_http bounded none of what follows), because whoever can reach the
//! port may send anything, and every cost a client can impose is bounded
//! here:
//! - each connection has its own thread, so a client that is slow, silent
//!   or does not read its replies delays nobody else;
//! - at most [`MAX_CONNECTIONS`] are served at once; more wait in the
//!   listen backlog (they are not refused) until one ends;
//! - a request head must arrive whole within `--client-timeout` and be at
//!   most [`MAX_HEAD_BYTES`] (else 408 or 431, then the connection is
//!   closed); a keep-alive connection idle that long is closed; each reply
//!   must be taken within the same timeout;
//! - request bodies are never read (none is needed): a request that
//!   announces one is answered and the connection closed;
//! - a failed `accept` (out of file descriptors, say) is retried after a
//!   pause, never the end of the server.

use super::Page;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// Longest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Stack of a connection thread: it parses a head of at most 8 KiB and
/// renders a page of a few KiB.
const CONNECTION_STACK: usize = 256 * 1024;

/// Decrements the count of open connections when a connection ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts for ever, one thread per connection, at most `MAX_CONNECTIONS`.
pub fn serve(listener: TcpListener, page: Arc<Page>, timeout: Duration) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut last_warning: Option<Instant> = None;
    loop {
        if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                ) =>
            {
                continue
            }
            Err(e) => {
                // Out of file descriptors, most likely: retry once some
                // connection has ended; say so at most once a minute.
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!("exporter: accepting a connection: {e} (retrying)");
                    last_warning = Some(Instant::now());
                }
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        open.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(Arc::clone(&open));
        let page = Arc::clone(&page);
        let spawned = std::thread::Builder::new()
            .name("exporter-http".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let _slot = slot;
                if let Err(e) = serve_connection(stream, &page, timeout) {
                    tracing::debug!("exporter: connection ended: {e}");
                }
            });
        if let Err(e) = spawned {
            // The closure (stream and slot) was dropped: the client sees a
            // close, the slot is free again.
            tracing::warn!("exporter: starting a connection thread: {e}");
            std::thread::sleep(ACCEPT_BACKOFF);
        }
    }
}

/// A request's head, as far as the exporter needs it.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    path: String,
    /// The client may send another request on this connection (never
    /// after a request that announces a body, which is not read).
    keep_alive: bool,
}

/// Why a head was refused: the status to answer with.
#[derive(Debug, PartialEq, Eq)]
struct Refused(u16);

/// Parses a request head (without its final blank line).
fn parse_head(bytes: &[u8]) -> Result<Head, Refused> {
    let text = std::str::from_utf8(bytes).map_err(|_| Refused(400))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().ok_or(Refused(400))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused(400));
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(method) || !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(Refused(400));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => return Err(Refused(505)),
        _ => return Err(Refused(400)),
    };
    let mut keep_alive = http11;
    let mut has_body = false;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(Refused(400))?;
        if !token(name) {
            return Err(Refused(400));
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            let value = value.to_ascii_lowercase();
            if value.contains("close") {
                keep_alive = false;
            } else if value.contains("keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value != "0")
        {
            has_body = true;
        }
    }
    let path = target.split('?').next().unwrap_or(target).to_string();
    Ok(Head {
        method: method.to_string(),
        path,
        keep_alive: keep_alive && !has_body,
    })
}

/// Where the head ends in `buf`, looking at line ends from `from` on: the
/// head's length (without its last line end) and the index after the blank
/// line that ends it.
fn head_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    for i in from..buf.len() {
        if buf[i] != b'\n' {
            continue;
        }
        let prior = if buf[..i].ends_with(b"\n") {
            i - 1
        } else if buf[..i].ends_with(b"\n\r") {
            i - 2
        } else {
            continue;
        };
        let head = if prior > 0 && buf[prior - 1] == b'\r' {
            prior - 1
        } else {
            prior
        };
        return Some((head, i + 1));
    }
    None
}

/// How reading a head ended short of a head.
enum NoHead {
    /// The client closed, or went silent, before sending anything.
    Gone,
    /// The head did not arrive whole in time.
    Late,
    TooLarge,
    Io(std::io::Error),
}

/// Reads until `buf` holds a whole head or `deadline` passes; returns the
/// head's length and where what follows it begins.
fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(usize, usize), NoHead> {
    let mut chunk = [0u8; 2048];
    let mut scanned = 0;
    loop {
        if let Some(end) = head_end(buf, scanned) {
            if end.0 > MAX_HEAD_BYTES {
                return Err(NoHead::TooLarge);
            }
            return Ok(end);
        }
        scanned = buf.len();
        if buf.len() > MAX_HEAD_BYTES {
            return Err(NoHead::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(if buf.is_empty() {
                NoHead::Gone
            } else {
                NoHead::Late
            });
        }
        stream.set_read_timeout(Some(left)).map_err(NoHead::Io)?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(NoHead::Gone),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(NoHead::Io(e)),
        }
    }
}

/// Writes all of `bytes` by `deadline` (a client that does not read is cut
/// off).
fn write_by(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "the client did not take the reply in time",
            ));
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// One response, whole.
fn response(
    code: u16,
    body: &str,
    content_type: &str,
    keep_alive: bool,
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        reason(code),
        body.len()
    );
    if code == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Answers requests on one connection until the client closes, asks to
/// close, errs, or exceeds a bound.
fn serve_connection(mut stream: TcpStream, page: &Page, timeout: Duration) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    loop {
        let deadline = Instant::now() + timeout;
        let (head_len, next) = match read_head(&mut stream, &mut buf, deadline) {
            Ok(end) => end,
            Err(NoHead::Gone) => return Ok(()),
            Err(NoHead::Io(e)) => return Err(e),
            Err(NoHead::Late) => {
                let r = response(
                    408,
                    "request head not received in time\n",
                    TEXT,
                    false,
                    false,
                );
                return reply_and_close(stream, &r, timeout);
            }
            Err(NoHead::TooLarge) => {
                let body = format!("request head longer than {MAX_HEAD_BYTES} bytes\n");
                let r = response(431, &body, TEXT, false, false);
                return reply_and_close(stream, &r, timeout);
            }
        };
        let head = match parse_head(&buf[..head_len]) {
            Ok(head) => head,
            Err(Refused(code)) => {
                let r = response(code, "malformed request\n", TEXT, false, false);
                return reply_and_close(stream, &r, timeout);
            }
        };
        buf.drain(..next);
        let head_only = head.method == "HEAD";
        let keep_alive = head.keep_alive;
        let (code, body, content_type) = match (head.method.as_str(), head.path.as_str()) {
            ("GET" | "HEAD", "/metrics") => (
                200,
                page.metrics(),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            ("GET" | "HEAD", "/") => (
                200,
                "joulebench exporter: metrics at /metrics\n".into(),
                TEXT,
            ),
            ("GET" | "HEAD", _) => (404, "not found: try /metrics\n".into(), TEXT),
            _ => (405, "only GET and HEAD\n".into(), TEXT),
        };
        let r = response(code, &body, content_type, keep_alive, head_only);
        if !keep_alive {
            return reply_and_close(stream, &r, timeout);
        }
        write_by(&mut stream, &r, Instant::now() + timeout)?;
    }
}

/// Sends a last reply and closes. What the client sent that we did not
/// read (a body, pipelined requests, the rest of an endless header) would
/// turn a plain close into a reset that can destroy the reply in flight:
/// half-close, then drop what still comes for a moment (at most 0.5 s and
/// 256 KiB: a client that sends without end is not read for long).
fn reply_and_close(mut stream: TcpStream, reply: &[u8], timeout: Duration) -> std::io::Result<()> {
    write_by(&mut stream, reply, Instant::now() + timeout)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; 4096];
    let mut left: usize = 256 * 1024;
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until && left > 0 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_or_refused_with_the_right_status() {
        let h = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*").unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(h.path, "/metrics");
        assert!(h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.0\nHost: a").unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive").unwrap();
        assert!(h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.1\r\nConnection: close").unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"POST /metrics HTTP/1.1\r\nContent-Length: 5").unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.1\r\nContent-Length: 0").unwrap();
        assert!(h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked").unwrap();
        assert!(!h.keep_alive);
        for (bad, code) in [
            (&b""[..], 400),
            (b"GET", 400),
            (b"GET /metrics", 400),
            (b"GET /metrics HTTP/1.1 extra", 400),
            (b"GET  /metrics HTTP/1.1", 400),
            (b"GET metrics HTTP/1.1", 400),
            (b"G(T /metrics HTTP/1.1", 400),
            (b"GET /metrics HTTP/2.0", 505),
            (b"GET /metrics SPDY/3", 400),
            (b"GET /metrics HTTP/1.1\r\nno colon", 400),
            (b"GET /metrics HTTP/1.1\r\nbad name: x", 400),
            (b"GET /\xff HTTP/1.1", 400),
            (b"GET /\x1b[2J HTTP/1.1", 400),
        ] {
            assert_eq!(
                parse_head(bad),
                Err(Refused(code)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_head_ends_at_a_blank_line_with_or_without_cr() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest", 0), Some((14, 18)));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nrest", 0), Some((14, 16)));
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            Some((23, 27))
        );
        // Searching again from where the last search ended.
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n", 16), Some((14, 18)));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(head_end(b"\n\n", 0), Some((0, 2)));
        assert_eq!(head_end(b"", 0), None);
    }

    #[test]
    fn responses_carry_length_and_connection() {
        let r = String::from_utf8(response(200, "abc", TEXT, true, false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Length: 3\r\n") && r.contains("Connection: keep-alive\r\n"));
        assert!(r.ends_with("\r\n\r\nabc"));
        let r = String::from_utf8(response(200, "abc", TEXT, false, true)).unwrap();
        assert!(r.contains("Content-Length: 3\r\n") && r.ends_with("Connection: close\r\n\r\n"));
        let r = String::from_utf8(response(405, "x", TEXT, false, false)).unwrap();
        assert!(r.contains("Allow: GET, HEAD\r\n"));
    }
}
