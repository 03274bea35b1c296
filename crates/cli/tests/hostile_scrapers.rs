//! `joulebench exporter` against hostile scrapers on loopback (issue 20):
//! while clients stay silent, stall or trickle a request, send an endless
//! request line or header, pipeline requests and never read the replies,
//! or send garbage, a well-behaved scrape of /metrics is still answered
//! within 2 s; every hostile client is cut off within the client timeout
//! (plus slack); the exporter's memory and threads stay bounded; running out
//! of file descriptors does not end it.

mod common;

use common::{joulebench, FakeRapl};
use hostile_input::peer::{
    flood_without_reading, misbehave, thread_count, Ended, Misbehaviour, Outcome, ResidentWatch,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `--client-timeout` in these tests.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Slack on top of a timeout for a loaded two-core machine (debug build).
const SLACK: Duration = Duration::from_secs(5);
/// How long a hostile client keeps misbehaving if nobody stops it.
const LIMIT: Duration = Duration::from_secs(20);
/// The exporter's cap on connections served at once (`MAX_CONNECTIONS`).
const MAX_CONNECTIONS: u64 = 256;

struct Exporter {
    child: Child,
    addr: SocketAddr,
    _rapl: FakeRapl,
    _sys: tempfile::TempDir,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Exporter {
    /// The exporter on a free loopback port with `--client-timeout 1s`,
    /// under `ulimit -n` `fd_limit` when given.
    fn start(fd_limit: Option<u32>) -> Exporter {
        let sys = tempfile::tempdir().unwrap();
        let rapl = FakeRapl::start(sys.path(), 40.0);
        let mut cmd = match fd_limit {
            Some(n) => {
                let mut c = std::process::Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(common::BIN);
                c
            }
            None => joulebench(),
        };
        let mut child = cmd
            .args(["exporter", "--listen", "127.0.0.1:0", "--power", "rapl"])
            .args(["--client-timeout", "1s"])
            .args(["--power-interval", "50ms", "--sysfs-root"])
            .arg(sys.path())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        // Keep reading stderr, so that a warning never blocks the exporter.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        let exporter = Exporter {
            child,
            addr,
            _rapl: rapl,
            _sys: sys,
        };
        // Power needs two readings of the counter.
        let deadline = Instant::now() + SLACK;
        while !exporter.scrape(SLACK).1.contains("joulebench_power_watts{") {
            assert!(
                Instant::now() < deadline,
                "no power reading from the exporter"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        exporter
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn assert_alive(&mut self, what: &str) {
        assert!(
            matches!(self.child.try_wait(), Ok(None)),
            "the exporter ended {what}: {:?}",
            self.child.try_wait()
        );
    }

    /// A well-behaved scrape: status and body, and how long it took.
    fn scrape(&self, wait: Duration) -> (u16, String, Duration) {
        let started = Instant::now();
        let mut s = TcpStream::connect_timeout(&self.addr, wait).unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut bytes = Vec::new();
        let _ = s.read_to_end(&mut bytes);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let code = status(&text).unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (code, body, started.elapsed())
    }

    /// Scrapes and asserts a correct answer within `bound`.
    fn assert_scraped_within(&self, bound: Duration, what: &str) {
        let (code, body, took) = self.scrape(bound + SLACK);
        assert_eq!(code, 200, "{what}: {body}");
        assert!(
            body.contains("joulebench_power_watts{") && body.contains("joulebench_meter_up{"),
            "{what}: {body}"
        );
        assert!(took < bound, "{what}: answered after {took:?}");
    }

    fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).unwrap()
    }
}

fn status(response: &str) -> Option<u16> {
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
}

/// Waits until the server has closed `s` (EOF or reset), at most `wait`;
/// false if it is still open then.
fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Waits for the exporter's threads to come back to at most `most`.
fn threads_settle(pid: u32, most: u64, wait: Duration) -> u64 {
    let deadline = Instant::now() + wait;
    loop {
        let n = thread_count(pid).unwrap();
        if n <= most || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_scrape_is_answered_while_hostile_scrapers_misbehave() {
    let mut exporter = Exporter::start(None);
    exporter.assert_scraped_within(Duration::from_secs(2), "before any hostile client");
    let pid = exporter.pid();
    let baseline = thread_count(pid).unwrap();
    let watch = ResidentWatch::start(pid).unwrap();

    let mut silent: Vec<TcpStream> = (0..200).map(|_| exporter.connect()).collect();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", exporter.addr);
    let cases: Vec<(&str, Vec<u8>, Misbehaviour)> = vec![
        (
            "endless request line",
            b"GET /".to_vec(),
            Misbehaviour::EndlessLine,
        ),
        (
            "endless header",
            b"GET /metrics HTTP/1.1\r\nX-Long: ".to_vec(),
            Misbehaviour::EndlessLine,
        ),
        (
            "request line stalled",
            Vec::new(),
            Misbehaviour::StallMidLine(b"GET /metr".to_vec()),
        ),
        (
            "headers stalled",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n".to_vec(),
            Misbehaviour::StallMidLine(b"Accept: te".to_vec()),
        ),
        (
            "slow loris (header trickled)",
            b"GET /metrics HTTP/1.1\r\nX-Slow: ".to_vec(),
            Misbehaviour::Trickle(Duration::from_millis(50)),
        ),
        ("silent", Vec::new(), Misbehaviour::Silent),
        (
            "silent after one request (keep-alive)",
            request.clone().into_bytes(),
            Misbehaviour::Silent,
        ),
        (
            "garbage",
            Vec::new(),
            Misbehaviour::each()
                .into_iter()
                .find(|m| matches!(m, Misbehaviour::Garbage(_)))
                .unwrap(),
        ),
        (
            "close mid-request",
            b"GET /metrics HT".to_vec(),
            Misbehaviour::Close,
        ),
    ];
    let mut hostile = Vec::new();
    for (name, prefix, how) in cases {
        let mut s = exporter.connect();
        s.write_all(&prefix).unwrap();
        hostile.push((
            name.to_string(),
            how.clone(),
            std::thread::spawn(move || misbehave(s, &how, LIMIT)),
        ));
    }
    let flood = {
        let s = exporter.connect();
        let request = request.clone();
        std::thread::spawn(move || flood_without_reading(s, request.as_bytes(), LIMIT))
    };

    std::thread::sleep(Duration::from_millis(300));
    let during = thread_count(pid).unwrap();
    for i in 0..3 {
        exporter.assert_scraped_within(
            Duration::from_secs(2),
            &format!("scrape {i} among hostile clients"),
        );
    }
    assert!(
        during <= baseline + MAX_CONNECTIONS + 4,
        "{during} threads with {} connections (baseline {baseline})",
        silent.len() + 11
    );

    for (name, how, thread) in hostile {
        let out: Outcome = thread.join().unwrap();
        assert_ne!(
            out.ended,
            Ended::LimitPassed,
            "{name}: never cut off: {out:?}"
        );
        if how.needs_a_timeout() {
            assert_eq!(out.ended, Ended::OtherSideClosed, "{name}: {out:?}");
            assert!(out.after < TIMEOUT + SLACK, "{name}: {out:?}");
        }
        if how == Misbehaviour::EndlessLine {
            assert_eq!(out.ended, Ended::OtherSideClosed, "{name}: {out:?}");
            assert!(out.after < SLACK, "{name}: {out:?}");
            assert!(
                out.bytes_sent < 32 << 20,
                "{name}: took {} bytes",
                out.bytes_sent
            );
        }
    }
    let out = flood.join().unwrap();
    assert_eq!(
        out.ended,
        Ended::OtherSideClosed,
        "a client that never reads: {out:?}"
    );
    assert!(
        out.after < TIMEOUT + SLACK,
        "a client that never reads: {out:?}"
    );

    for (i, s) in silent.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, TIMEOUT + SLACK),
            "silent connection {i} still open"
        );
    }
    drop(silent);
    let after = threads_settle(pid, baseline + 1, SLACK);
    assert!(
        after <= baseline + 1,
        "{after} threads once the clients are gone, {baseline} before"
    );
    let growth = watch.peak_growth_kib().unwrap();
    assert!(growth < 64 << 10, "the exporter grew by {growth} KiB");
    exporter.assert_alive("after the hostile clients");
    exporter.assert_scraped_within(Duration::from_secs(2), "after the hostile clients");
}

#[test]
fn garbage_requests_get_a_4xx_or_a_close_never_a_crash() {
    let mut exporter = Exporter::start(None);
    let long_header = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    // (what, bytes, the status expected; None: any 4xx/5xx or a plain close)
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        (
            "binary garbage",
            b"\xff\xfe\x00garbage\r\n\x1b[2J,,,\r\n-1e999\n\r\n".to_vec(),
            Some(400),
        ),
        ("blank lines", b"\r\n\r\n".to_vec(), Some(400)),
        (
            "unknown protocol",
            b"BREW /pot HTCPCP/1.0\r\n\r\n".to_vec(),
            Some(400),
        ),
        (
            "HTTP/9.9",
            b"GET /metrics HTTP/9.9\r\n\r\n".to_vec(),
            Some(505),
        ),
        (
            "header without a colon",
            b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n".to_vec(),
            Some(400),
        ),
        (
            "non-UTF-8 path",
            b"GET /\xff\xfe HTTP/1.1\r\n\r\n".to_vec(),
            Some(400),
        ),
        (
            "POST announcing 100 MB",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 100000000\r\n\r\nabc".to_vec(),
            Some(405),
        ),
        (
            "DELETE",
            b"DELETE /metrics HTTP/1.1\r\n\r\n".to_vec(),
            Some(405),
        ),
        ("a 9 KB header", long_header.into_bytes(), Some(431)),
        (
            "a TLS ClientHello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            None,
        ),
        (
            "unknown path",
            b"GET /../../etc/passwd HTTP/1.0\r\n\r\n".to_vec(),
            Some(404),
        ),
    ];
    for (what, bytes, expected) in cases {
        let started = Instant::now();
        let mut s = exporter.connect();
        s.write_all(&bytes).unwrap();
        s.set_read_timeout(Some(TIMEOUT + SLACK)).unwrap();
        let mut reply = Vec::new();
        let read = s.read_to_end(&mut reply);
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&reply);
        assert!(
            took < TIMEOUT + SLACK,
            "{what}: the connection was still open after {took:?} ({read:?}, {text:?})"
        );
        match (status(&text), expected) {
            (Some(code), Some(want)) => assert_eq!(code, want, "{what}: {text}"),
            (Some(code), None) => assert!((400..600).contains(&code), "{what}: {text}"),
            (None, None) => assert!(reply.is_empty(), "{what}: {text:?}"),
            (None, Some(want)) => panic!("{what}: expected {want}, got {text:?}"),
        }
        exporter.assert_alive(what);
    }
    exporter.assert_scraped_within(Duration::from_secs(2), "after the garbage");
}

#[test]
fn more_clients_than_the_cap_wait_and_threads_stay_bounded() {
    let mut exporter = Exporter::start(None);
    let pid = exporter.pid();
    let baseline = thread_count(pid).unwrap();
    // 300 silent clients: 256 served (and cut off after the timeout), the
    // others wait in the listen backlog, then are served and cut off too.
    let mut silent: Vec<TcpStream> = (0..300).map(|_| exporter.connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let most = thread_count(pid).unwrap();
    assert!(
        most <= baseline + MAX_CONNECTIONS + 1,
        "{most} threads with 300 connections (baseline {baseline})"
    );
    // Queued behind a full house: answered once the first round is cut off.
    exporter.assert_scraped_within(TIMEOUT * 2 + SLACK, "behind 300 silent clients");
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, TIMEOUT * 2 + SLACK),
            "silent connection {i} still open"
        );
    }
    drop(silent);
    let after = threads_settle(pid, baseline + 1, SLACK);
    assert!(
        after <= baseline + 1,
        "{after} threads once the clients are gone, {baseline} before"
    );
    exporter.assert_alive("after 300 silent clients");
}

#[test]
fn running_out_of_file_descriptors_does_not_end_the_exporter() {
    // Under `ulimit -n 64` the exporter runs out of descriptors after some
    // 50 connections; accept fails until the silent ones are cut off.
    let mut exporter = Exporter::start(Some(64));
    let addr = exporter.addr;
    let mut silent: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    exporter.assert_alive("out of file descriptors");
    // Three rounds of silent clients (about 50 each) are cut off first.
    exporter.assert_scraped_within(TIMEOUT * 3 + SLACK, "behind 120 silent clients");
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, TIMEOUT * 3 + SLACK),
            "silent connection {i} still open"
        );
    }
    exporter.assert_alive("after the descriptors came back");
    exporter.assert_scraped_within(Duration::from_secs(2), "after the descriptors came back");
}
