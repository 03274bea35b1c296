//! The Redfish meter against a hostile BMC on loopback (issue 20): at each
//! step (the chassis collection, the chassis, its metrics resource while
//! probing, the metrics resource when read) and in each part of the answer
//! (before the status line, in the headers, in the body) the fake BMC goes
//! silent, stalls mid-line, trickles bytes, sends an endless line, sends
//! garbage or closes. `probe()` and `read()` must return an error that names
//! the resource within the configured timeout (plus slack), never hang,
//! never panic, and never take an endless header or body into memory.

use hostile_input::peer::{misbehave, Ended, Misbehaviour, Outcome, ResidentWatch};
use power::meter::redfish::{probe, RedfishConfig, MAX_BODY_BYTES};
use power::meter::{Meter, MeterError, Probe};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The client's timeout per request in these tests.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Slack on top of it for a loaded two-core machine (debug build).
const SLACK: Duration = Duration::from_secs(5);
/// The timeout when the BMC sends an endless line: the size limits must
/// end it well before.
const ENDLESS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the BMC keeps misbehaving if the client never gives up.
const LIMIT: Duration = Duration::from_secs(20);

const COLLECTION: &str = "/redfish/v1/Chassis";
const CHASSIS: &str = "/redfish/v1/Chassis/1";
const METRICS: &str = "/redfish/v1/Chassis/1/EnvironmentMetrics";

fn resource(path: &str) -> Option<&'static str> {
    match path {
        COLLECTION => Some(r#"{"Members":[{"@odata.id":"/redfish/v1/Chassis/1"}]}"#),
        CHASSIS => Some(
            r#"{"Id":"1","ChassisType":"RackMount",
                "EnvironmentMetrics":{"@odata.id":"/redfish/v1/Chassis/1/EnvironmentMetrics"}}"#,
        ),
        METRICS => Some(r#"{"PowerWatts":{"Reading":312.5}}"#),
        _ => None,
    }
}

/// Where the BMC misbehaves: on which request, and in which part of its
/// answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Collection,
    Chassis,
    MetricsWhileProbing,
    MetricsWhenRead,
}

impl Step {
    /// The resource, and which request for it (1: the first).
    fn target(self) -> (&'static str, usize) {
        match self {
            Step::Collection => (COLLECTION, 1),
            Step::Chassis => (CHASSIS, 1),
            Step::MetricsWhileProbing => (METRICS, 1),
            Step::MetricsWhenRead => (METRICS, 2),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Nothing of the answer yet.
    StatusLine,
    /// The status line and a header sent.
    Headers,
    /// The headers (no length: the body ends at the close) and the start
    /// of the body sent.
    Body,
}

const STEPS: [Step; 4] = [
    Step::Collection,
    Step::Chassis,
    Step::MetricsWhileProbing,
    Step::MetricsWhenRead,
];
const PARTS: [Part; 3] = [Part::StatusLine, Part::Headers, Part::Body];

/// A BMC that answers well except for the one request of `step`, where it
/// sends `part` and then misbehaves `how`.
struct HostileBmc {
    port: u16,
    outcome: Arc<Mutex<Option<Outcome>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for HostileBmc {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl HostileBmc {
    fn start(step: Step, part: Part, how: Misbehaviour) -> HostileBmc {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let outcome = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (slot, stopping) = (Arc::clone(&outcome), Arc::clone(&stop));
        std::thread::spawn(move || {
            let hits = Arc::new(Mutex::new(std::collections::HashMap::<String, usize>::new()));
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (hits, slot, how) = (Arc::clone(&hits), Arc::clone(&slot), how.clone());
                std::thread::spawn(move || answer(stream, step, part, &how, &hits, &slot));
            }
        });
        HostileBmc {
            port,
            outcome,
            stop,
        }
    }

    fn config(&self, timeout: Duration) -> RedfishConfig {
        RedfishConfig {
            base_url: format!("http://127.0.0.1:{}", self.port),
            credentials: None,
            accept_invalid_certs: false,
            timeout,
        }
    }

    /// How the misbehaviour ended, once it has (at most `wait`).
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
    step: Step,
    part: Part,
    how: &Misbehaviour,
    hits: &Mutex<std::collections::HashMap<String, usize>>,
    slot: &Mutex<Option<Outcome>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or_default();
    let hit = {
        let mut hits = hits.lock().unwrap();
        let n = hits.entry(path.to_string()).or_default();
        *n += 1;
        *n
    };
    let mut out = stream;
    if step.target() != (path, hit) {
        let (status, body) = match resource(path) {
            Some(body) => ("200 OK", body),
            None => ("404 Not Found", "{}"),
        };
        let _ = write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let prefix: &[u8] = match part {
        Part::StatusLine => b"",
        Part::Headers => b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n",
        Part::Body => {
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
              {\"Members\":[{\"@odata.id\":\"/redfish/v1/Chassis/"
        }
    };
    let _ = out.write_all(prefix);
    let outcome = misbehave(out, how, LIMIT);
    *slot.lock().unwrap() = Some(outcome);
}

/// Runs one case: the error it gave (from probe, or from read for
/// `MetricsWhenRead`) and how long that took.
fn run_case(bmc: &HostileBmc, step: Step, timeout: Duration) -> (MeterError, Duration) {
    let config = bmc.config(timeout);
    let started = Instant::now();
    let probes = probe(&config);
    let mut errors: Vec<MeterError> = Vec::new();
    let mut meters: Vec<Box<dyn Meter>> = Vec::new();
    for p in probes {
        match p {
            Probe::Usable(m) => meters.push(m),
            Probe::Unusable { error, .. } => errors.push(error),
        }
    }
    if step != Step::MetricsWhenRead {
        assert!(meters.is_empty(), "{step:?}: a meter from a hostile BMC");
        assert_eq!(errors.len(), 1, "{step:?}: {errors:?}");
        return (errors.remove(0), started.elapsed());
    }
    assert!(errors.is_empty(), "{step:?}: {errors:?}");
    assert_eq!(meters.len(), 1, "{step:?}");
    let started = Instant::now();
    let e = meters[0].read().expect_err("a reading from a hostile BMC");
    (e, started.elapsed())
}

fn check(step: Step, part: Part, how: &Misbehaviour) -> Outcome {
    let case = format!("{step:?}, {part:?}, {how:?}");
    let bmc = HostileBmc::start(step, part, how.clone());
    let (error, took) = std::thread::scope(|s| {
        s.spawn(|| run_case(&bmc, step, TIMEOUT))
            .join()
            .unwrap_or_else(|_| panic!("{case}: the Redfish client panicked"))
    });
    let text = error.to_string();
    let (path, _) = step.target();
    // The BMC answered the connection: a read failure, not "no BMC here".
    assert!(matches!(error, MeterError::Read { .. }), "{case}: {text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}{path}", bmc.port)),
        "{case}: the error does not name {path}: {text}"
    );
    assert!(
        took < TIMEOUT + SLACK,
        "{case}: gave up after {took:?}: {text}"
    );
    // Once the client gave up, it closed the connection: the BMC's
    // misbehaviour ended too, long before its own limit.
    let out = bmc
        .outcome(SLACK)
        .unwrap_or_else(|| panic!("{case}: the client still holds the connection ({text})"));
    assert_ne!(out.ended, Ended::LimitPassed, "{case}: {out:?}");
    out
}

#[test]
fn a_bmc_that_stalls_trickles_garbles_or_closes_gives_an_error_in_time() {
    // These cost the client nothing but time: all at once.
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
    let started = Instant::now();
    std::thread::scope(|s| {
        let running: Vec<_> = cases
            .iter()
            .map(|(step, part, how)| s.spawn(move || check(*step, *part, how)))
            .collect();
        for r in running {
            r.join().unwrap();
        }
    });
    eprintln!("{} cases in {:?}", cases.len(), started.elapsed());
}

#[test]
fn an_endless_status_line_header_or_body_is_refused_with_bounded_memory() {
    let watch = ResidentWatch::start(std::process::id()).unwrap();
    for step in STEPS {
        for part in PARTS {
            let how = Misbehaviour::EndlessLine;
            let case = format!("{step:?}, {part:?}");
            let bmc = HostileBmc::start(step, part, how.clone());
            // Time enough to take MAX_BODY_BYTES: the size limit, not the
            // timeout, must end an endless body.
            let (error, took) = run_case(&bmc, step, ENDLESS_TIMEOUT);
            let text = error.to_string();
            assert!(matches!(error, MeterError::Read { .. }), "{case}: {text}");
            assert!(
                took < ENDLESS_TIMEOUT,
                "{case}: gave up after {took:?}: {text}"
            );
            assert!(text.contains(step.target().0), "{case}: {text}");
            if part == Part::Body {
                assert!(
                    text.contains("larger than") && text.contains(&MAX_BODY_BYTES.to_string()),
                    "{case}: {text}"
                );
            }
            let out = bmc.outcome(SLACK).unwrap();
            assert_eq!(out.ended, Ended::OtherSideClosed, "{case}: {out:?}");
            assert!(
                out.bytes_sent < MAX_BODY_BYTES + (16 << 20),
                "{case}: the client took {} bytes",
                out.bytes_sent
            );
        }
    }
    let growth = watch.peak_growth_kib().unwrap();
    assert!(growth < 64 << 10, "this process grew by {growth} KiB");
}
