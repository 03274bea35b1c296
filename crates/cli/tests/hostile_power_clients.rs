//! `joulebench power-server` against clients that misbehave: before the
//! greeting, after it with no session open, and in the middle of a session.
//! The server serves one client at a time (as power-dev's), so a client
//! that could hold it would lock out every other; each misbehaviour must end
//! within the server's waits (`--client-line-timeout`,
//! `--client-idle-timeout`), with bounded memory for an endless line, the
//! session marked incomplete, and the next client served.
//! (`crates/mlperf-power/tests/hostile_peers.rs` does the same to the client
//! and to the line framing both share.)

mod common;

use common::power_dev::*;
use hostile_input::peer::{
    misbehave, read_line, resident_anonymous_kib, Ended, Misbehaviour, Outcome,
};
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

const LINE_TIMEOUT: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How much later than its wait the server may hang up on a loaded machine.
const SLACK: Duration = Duration::from_secs(5);
/// How much the server's resident memory may grow while a client sends an
/// endless line (its line limit is 64 KiB).
const RSS_GROWTH_BOUND_KIB: u64 = 32 * 1024;

/// Where in the conversation the client starts to misbehave.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    BeforeGreeting,
    NoSession,
    InSession,
}

fn server(dir: &Path) -> PowerServer {
    let trace = trace(dir, 300.0, 0.0);
    let wrapper = wrapper(dir, &trace, "");
    PowerServer::start(
        dir,
        &wrapper,
        &sntp(),
        "200ms",
        &["--client-line-timeout", "1s", "--client-idle-timeout", "2s"],
    )
}

fn send_and_read(s: &mut TcpStream, line: &str) -> String {
    s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    read_line(s, Duration::from_secs(30)).expect("a reply")
}

/// Connects and talks as power-dev's client does up to `step`; returns the
/// stream and the session's id, if one was opened.
fn converse_until(port: u16, step: Step) -> (TcpStream, Option<String>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    if step == Step::BeforeGreeting {
        return (s, None);
    }
    assert_eq!(
        send_and_read(&mut s, "mlcommons/power client v3"),
        "mlcommons/power server v3"
    );
    if step == Step::NoSession {
        return (s, None);
    }
    let mut reply = send_and_read(&mut s, "new,hostile,8d8ac610-566d-4ef0-9c22-186b2a5ed793");
    // Session ids are stamped to the second.
    while reply.contains("already exists") {
        std::thread::sleep(Duration::from_millis(300));
        reply = send_and_read(&mut s, "new,hostile,8d8ac610-566d-4ef0-9c22-186b2a5ed793");
    }
    let id = reply[3..].split(',').next().unwrap().to_string();
    assert_eq!(
        send_and_read(&mut s, &format!("session,{id},start,ranging")),
        "OK"
    );
    (s, Some(id))
}

/// Runs `how` on `stream` while sampling the server's anonymous resident
/// memory (its heap: where a hostile line would be buffered);
/// returns the outcome and the largest growth seen, in KiB.
fn misbehave_watching_memory(pid: u32, stream: TcpStream, how: &Misbehaviour) -> (Outcome, u64) {
    let before = resident_anonymous_kib(pid).unwrap();
    let how = how.clone();
    let peer = std::thread::spawn(move || misbehave(stream, &how, Duration::from_secs(30)));
    let mut most = before;
    while !peer.is_finished() {
        most = most.max(resident_anonymous_kib(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    (peer.join().unwrap(), most.saturating_sub(before))
}

/// How long the server may take to hang up on `how` at `step`.
fn wait_for(how: &Misbehaviour, step: Step) -> Duration {
    match (how, step) {
        (Misbehaviour::Silent, Step::NoSession) => IDLE_TIMEOUT,
        _ => LINE_TIMEOUT,
    }
}

fn wait_for_file(path: &Path, bound: Duration) -> String {
    let deadline = Instant::now() + bound;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_server_outlasts_a_hostile_client_at_each_step_and_serves_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path());
    for step in [Step::BeforeGreeting, Step::NoSession, Step::InSession] {
        for how in Misbehaviour::each() {
            if step == Step::InSession && how == Misbehaviour::Silent {
                // No bound by design: the client runs the workload between
                // two commands. Ctrl-C still works (the test below).
                continue;
            }
            let (stream, session) = converse_until(srv.port, step);
            let (out, growth_kib) = misbehave_watching_memory(srv.child.id(), stream, &how);
            let ctx = format!("{step:?}, {how:?}: {out:?}, memory +{growth_kib} KiB");
            if !matches!(how, Misbehaviour::Close | Misbehaviour::Garbage(_)) {
                assert_eq!(out.ended, Ended::OtherSideClosed, "{ctx}");
                assert!(out.after < wait_for(&how, step) + SLACK, "{ctx}");
            }
            if how.needs_a_timeout() {
                assert!(
                    out.after >= wait_for(&how, step) - Duration::from_millis(100),
                    "{ctx}"
                );
            }
            assert!(growth_kib < RSS_GROWTH_BOUND_KIB, "{ctx}");
            if let Some(id) = session {
                let folder = dir.path().join("server").join(format!("{id}.incomplete"));
                let why = wait_for_file(&folder.join("INCOMPLETE.txt"), SLACK);
                assert!(why.contains("client"), "{ctx}: {why}");
            }
            // The next client is served at once.
            let t = Instant::now();
            let (s, _) = converse_until(srv.port, Step::NoSession);
            assert!(
                t.elapsed() < SLACK,
                "{ctx}: next client waited {:?}",
                t.elapsed()
            );
            drop(s);
        }
    }
}

#[test]
fn sigterm_ends_the_server_promptly_while_a_client_in_a_session_is_silent() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = server(dir.path());
    let (stream, session) = converse_until(srv.port, Step::InSession);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &srv.child.id().to_string()])
        .status()
        .unwrap();
    while srv.child.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < SLACK,
            "the server did not exit within {SLACK:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let folder = dir
        .path()
        .join("server")
        .join(format!("{}.incomplete", session.unwrap()));
    let why = std::fs::read_to_string(folder.join("INCOMPLETE.txt")).unwrap();
    assert!(why.contains("server was stopped"), "{why}");
    drop(stream);
}
