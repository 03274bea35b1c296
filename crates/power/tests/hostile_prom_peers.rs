//! The Prometheus meter against a hostile exporter on loopback: on the
//! probe's GET or a later read's, and in each part of the answer (before the
//! status line, in the headers, in the body) the exporter goes silent,
//! stalls mid-line, trickles bytes, sends an endless line, sends garbage or
//! closes. `probe()` and `read()` must return a read error naming the URL
//! within the configured timeout (plus slack), never hang, never panic, and
//! never take an endless header or body into memory.

use hostile_input::peer::{misbehave, Ended, Misbehaviour, Outcome, ResidentWatch};
use power::meter::prom::{probe, PromConfig, MAX_BODY_BYTES};
use power::meter::{Meter, MeterError, Probe};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The client's timeout per request in these tests.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Slack on top of it for a loaded two-core machine (debug build).
const SLACK: Duration = Duration::from_secs(5);
/// The timeout when the exporter sends an endless line: the size limits
/// must end it well before.
const ENDLESS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the exporter keeps misbehaving if the client never gives up.
const LIMIT: Duration = Duration::from_secs(20);

const PAGE: &str = "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).\n\
                    # TYPE DCGM_FI_DEV_POWER_USAGE gauge\n\
                    DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"GPU-5fd4\",Hostname=\"node1\"} 71.5\n";

/// Which GET misbehaves: the probe's (1) or the first read's (2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Probe,
    Read,
}

impl Step {
    fn hit(self) -> usize {
        match self {
            Step::Probe => 1,
            Step::Read => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    StatusLine,
    Headers,
    /// The headers (no length: the body ends at the close) and the start
    /// of a page, cut inside a label value.
    Body,
}

const STEPS: [Step; 2] = [Step::Probe, Step::Read];
const PARTS: [Part; 3] = [Part::StatusLine, Part::Headers, Part::Body];

struct HostileExporter {
    port: u16,
    outcome: Arc<Mutex<Option<Outcome>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for HostileExporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl HostileExporter {
    fn start(step: Step, part: Part, how: Misbehaviour) -> HostileExporter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let outcome = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (slot, stopping) = (Arc::clone(&outcome), Arc::clone(&stop));
        std::thread::spawn(move || {
            let hits = Arc::new(AtomicUsize::new(0));
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let hit = hits.fetch_add(1, Ordering::SeqCst) + 1;
                let (slot, how) = (Arc::clone(&slot), how.clone());
                std::thread::spawn(move || answer(stream, hit == step.hit(), part, &how, &slot));
            }
        });
        HostileExporter {
            port,
            outcome,
            stop,
        }
    }

    fn config(&self, timeout: Duration) -> PromConfig {
        let mut c = PromConfig::from_spec(&format!("prom://127.0.0.1:{}", self.port)).unwrap();
        c.timeout = timeout;
        // Every read fetches, so the read step's GET happens.
        c.share_within = Duration::ZERO;
        c
    }

    fn outcome(&self, wait: Duration) -> Option<Outcome> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(out) = *self.outcome.lock().unwrap() {
                return Some(out);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn answer(
    stream: TcpStream,
    hostile: bool,
    part: Part,
    how: &Misbehaviour,
    slot: &Mutex<Option<Outcome>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let mut out = stream;
    if !hostile {
        let _ = write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{PAGE}",
            PAGE.len()
        );
        return;
    }
    let prefix: &[u8] = match part {
        Part::StatusLine => b"",
        Part::Headers => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
        Part::Body => {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n\
              # TYPE DCGM_FI_DEV_POWER_USAGE gauge\nDCGM_FI_DEV_POWER_USAGE{gpu=\"0"
        }
    };
    let _ = out.write_all(prefix);
    let outcome = misbehave(out, how, LIMIT);
    *slot.lock().unwrap() = Some(outcome);
}

/// The error of the misbehaving step, and how long that step took.
fn run_case(exporter: &HostileExporter, step: Step, timeout: Duration) -> (MeterError, Duration) {
    let started = Instant::now();
    let mut meters: Vec<Box<dyn Meter>> = Vec::new();
    let mut errors = Vec::new();
    for p in probe(&exporter.config(timeout)) {
        match p {
            Probe::Usable(m) => meters.push(m),
            Probe::Unusable { error, .. } => errors.push(error),
        }
    }
    if step == Step::Probe {
        assert!(meters.is_empty(), "a meter from a hostile exporter");
        assert_eq!(errors.len(), 1, "{errors:?}");
        return (errors.remove(0), started.elapsed());
    }
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(meters.len(), 1);
    let started = Instant::now();
    let e = meters[0]
        .read()
        .expect_err("a reading from a hostile exporter");
    (e, started.elapsed())
}

fn check(step: Step, part: Part, how: &Misbehaviour) {
    let case = format!("{step:?}, {part:?}, {how:?}");
    let exporter = HostileExporter::start(step, part, how.clone());
    let (error, took) = std::thread::scope(|s| {
        s.spawn(|| run_case(&exporter, step, TIMEOUT))
            .join()
            .unwrap_or_else(|_| panic!("{case}: the prom meter panicked"))
    });
    let text = error.to_string();
    assert!(matches!(error, MeterError::Read { .. }), "{case}: {text}");
    let url = format!("http://127.0.0.1:{}/metrics", exporter.port);
    assert!(
        text.contains(&url),
        "{case}: the error does not name {url}: {text}"
    );
    assert!(
        took < TIMEOUT + SLACK,
        "{case}: gave up after {took:?}: {text}"
    );
    let out = exporter
        .outcome(SLACK)
        .unwrap_or_else(|| panic!("{case}: the client still holds the connection ({text})"));
    assert_ne!(out.ended, Ended::LimitPassed, "{case}: {out:?}");
}

#[test]
fn an_exporter_that_stalls_trickles_garbles_or_closes_gives_an_error_in_time() {
    let mut cases = Vec::new();
    for step in STEPS {
        for part in PARTS {
            for how in Misbehaviour::each() {
                if how != Misbehaviour::EndlessLine {
                    cases.push((step, part, how));
                }
            }
        }
    }
    std::thread::scope(|s| {
        let running: Vec<_> = cases
            .iter()
            .map(|(step, part, how)| s.spawn(move || check(*step, *part, how)))
            .collect();
        for r in running {
            r.join().unwrap();
        }
    });
}

#[test]
fn an_endless_status_line_header_or_body_is_refused_with_bounded_memory() {
    let watch = ResidentWatch::start(std::process::id()).unwrap();
    for step in STEPS {
        for part in PARTS {
            let case = format!("{step:?}, {part:?}");
            let exporter = HostileExporter::start(step, part, Misbehaviour::EndlessLine);
            // Time enough to take MAX_BODY_BYTES: the size limit, not the
            // timeout, must end an endless body.
            let (error, took) = run_case(&exporter, step, ENDLESS_TIMEOUT);
            let text = error.to_string();
            assert!(matches!(error, MeterError::Read { .. }), "{case}: {text}");
            assert!(
                took < ENDLESS_TIMEOUT,
                "{case}: gave up after {took:?}: {text}"
            );
            assert!(text.contains("/metrics"), "{case}: {text}");
            if part == Part::Body {
                assert!(
                    text.contains("larger than") && text.contains(&MAX_BODY_BYTES.to_string()),
                    "{case}: {text}"
                );
            }
            let out = exporter.outcome(SLACK).unwrap();
            assert_eq!(out.ended, Ended::OtherSideClosed, "{case}: {out:?}");
            assert!(
                out.bytes_sent < MAX_BODY_BYTES + (16 << 20),
                "{case}: the client took {} bytes",
                out.bytes_sent
            );
        }
    }
    let growth = watch.peak_growth_kib().unwrap();
    assert!(growth < 96 << 10, "this process grew by {growth} KiB");
}
