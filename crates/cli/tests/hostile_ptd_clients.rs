//! `joulebench ptd-serve` against hostile clients on loopback (issue 20): a
//! client that, at some step of a PTDaemon conversation (before `Hello`,
//! after `Identify`, with a measurement running), goes silent, stalls
//! mid-line, trickles bytes, sends an endless line, sends garbage or closes.
//! ptd-serve serves one client at a time, like PTDaemon, so each must be cut
//! off within a bound (the line and idle timeouts, the line length), the
//! measurement it left running stopped, and the next client served at
//! once; an endless line must not grow ptd-serve's memory, and SIGTERM must
//! end it promptly whatever the client is doing.

mod common;

use common::joulebench;
use common::power_dev::{free_port, trace, wait_for_port};
use hostile_input::peer::{misbehave, read_line, Ended, Misbehaviour, ResidentWatch};
use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The line and idle timeouts given to ptd-serve in the tests that expect it
/// to cut a client off.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Slack on top of a timeout for a loaded two-core machine (debug build).
const SLACK: Duration = Duration::from_secs(5);
/// How long a hostile client keeps misbehaving if nobody stops it.
const LIMIT: Duration = Duration::from_secs(20);

struct PtdServe {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for PtdServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PtdServe {
    fn start(line_timeout: &str, idle_timeout: &str) -> PtdServe {
        let dir = tempfile::tempdir().unwrap();
        let trace = trace(dir.path(), 200.0, 0.0);
        let port = free_port();
        let child = joulebench()
            .args(["ptd-serve", "--read-period", "20ms"])
            .args(["--client-line-timeout", line_timeout])
            .args(["--client-idle-timeout", idle_timeout])
            .arg("--power")
            .arg(format!("replay:{}", trace.display()))
            .arg("-l")
            .arg(dir.path().join("ptd.log"))
            .args(["-p", &port.to_string(), "49", "/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, Duration::from_secs(20));
        PtdServe {
            child,
            port,
            _dir: dir,
        }
    }

    fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.port)).unwrap()
    }

    fn assert_alive(&mut self, what: &str) {
        assert!(
            matches!(self.child.try_wait(), Ok(None)),
            "ptd-serve ended after {what}"
        );
    }
}

/// Sends one command and returns the first reply line (within `SLACK`).
fn command(s: &mut TcpStream, line: &str) -> String {
    s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    read_line(s, SLACK).unwrap_or_else(|| panic!("no reply to {line:?}"))
}

/// Where in the conversation the hostile client begins to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    BeforeHello,
    AfterIdentify,
    /// After `Go` was answered: a measurement is running.
    Measuring,
}

const STEPS: [Step; 3] = [Step::BeforeHello, Step::AfterIdentify, Step::Measuring];

fn converse_up_to(s: &mut TcpStream, step: Step) {
    if step == Step::BeforeHello {
        return;
    }
    assert_eq!(command(s, "Hello"), "Hello, PTDaemon here!");
    assert!(command(s, "Identify").starts_with("joulebench-virtual,"));
    if step == Step::Measuring {
        let go = command(s, "Go,100,0,hostile");
        assert!(go.starts_with("Starting untimed measurement"), "{go}");
    }
}

/// A well-behaved client's whole conversation, its own measurement included:
/// answered correctly and within a bound, whatever the client before it did.
fn good_client(server: &PtdServe, mark: &str) {
    let started = Instant::now();
    let mut s = server.connect();
    assert_eq!(command(&mut s, "Hello"), "Hello, PTDaemon here!");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "Hello answered after {waited:?}: the slot was not free"
    );
    assert!(command(&mut s, "Identify").starts_with("joulebench-virtual,"));
    assert_eq!(command(&mut s, "SR,V,Auto"), "Range V changed");
    let go = command(&mut s, &format!("Go,50,0,{mark}"));
    assert!(
        go.starts_with("Starting untimed measurement"),
        "{mark}: {go}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(command(&mut s, "Stop"), "Stopping untimed measurement");
    let header = command(&mut s, "RL");
    let n: usize = header
        .strip_prefix("Last ")
        .and_then(|h| h.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{mark}: RL answered {header:?}"));
    assert!(n >= 1, "{mark}: {header}");
    for _ in 0..n {
        let line = read_line(&mut s, SLACK).unwrap();
        let sample = power::meter::ptd::parse_sample_line(&line).unwrap();
        assert_eq!(
            sample.mark, mark,
            "a sample of another client's measurement"
        );
    }
}

#[test]
fn hostile_clients_at_each_step_are_cut_off_and_the_next_client_is_served() {
    let mut server = PtdServe::start("1s", "1s");
    let pid = server.child.id();
    let mut n = 0;
    for step in STEPS {
        for how in Misbehaviour::each() {
            let case = format!("{step:?}, {how:?}");
            if step == Step::Measuring && how == Misbehaviour::Silent {
                // A director is silent through the workload: see
                // a_client_silent_while_measuring_keeps_its_session.
                continue;
            }
            let mut s = server.connect();
            converse_up_to(&mut s, step);
            let watch = ResidentWatch::start(pid).unwrap();
            let out = misbehave(s, &how, LIMIT);
            let growth_kib = watch.peak_growth_kib().unwrap();
            assert_ne!(
                out.ended,
                Ended::LimitPassed,
                "{case}: never cut off: {out:?}"
            );
            if how.needs_a_timeout() {
                assert_eq!(out.ended, Ended::OtherSideClosed, "{case}: {out:?}");
                assert!(out.after < TIMEOUT + SLACK, "{case}: {out:?}");
            }
            if how == Misbehaviour::EndlessLine {
                assert!(out.after < SLACK, "{case}: {out:?}");
                // 64 KiB of line plus what the kernel's socket buffers hold.
                assert!(out.bytes_sent < 32 << 20, "{case}: {out:?}");
            }
            assert!(
                growth_kib < 64 << 10,
                "{case}: ptd-serve grew by {growth_kib} KiB"
            );
            server.assert_alive(&case);
            n += 1;
            good_client(&server, &format!("good_{n}"));
        }
    }
    server.assert_alive("the last good client");
}

#[test]
fn a_client_silent_while_measuring_keeps_its_session() {
    // power-dev's director sends nothing between `Go` and `Stop` while the
    // workload runs (minutes): the idle timeout must not apply then.
    let server = PtdServe::start("1s", "1s");
    let mut s = server.connect();
    converse_up_to(&mut s, Step::Measuring);
    let out = misbehave(s.try_clone().unwrap(), &Misbehaviour::Silent, TIMEOUT * 3);
    assert_eq!(out.ended, Ended::LimitPassed, "{out:?}");
    assert_eq!(command(&mut s, "Stop"), "Stopping untimed measurement");
    let header = command(&mut s, "RL");
    assert!(header.starts_with("Last "), "{header}");
}

#[test]
fn sigterm_ends_ptd_serve_promptly_while_a_hostile_client_is_connected() {
    let cases = [
        (Step::Measuring, Misbehaviour::Silent),
        (
            Step::AfterIdentify,
            Misbehaviour::StallMidLine(b"Go,1000".to_vec()),
        ),
        (
            Step::BeforeHello,
            Misbehaviour::Trickle(Duration::from_millis(20)),
        ),
        (Step::AfterIdentify, Misbehaviour::EndlessLine),
    ];
    for (step, how) in cases {
        let case = format!("{step:?}, {how:?}");
        // Timeouts far beyond the test: only SIGTERM can end this.
        let mut server = PtdServe::start("600s", "600s");
        let mut s = server.connect();
        converse_up_to(&mut s, step);
        let hostile = std::thread::spawn(move || misbehave(s, &how, LIMIT));
        std::thread::sleep(Duration::from_millis(500));
        server.assert_alive(&case);
        let _ = Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status();
        let asked = Instant::now();
        let status = loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                asked.elapsed() < SLACK,
                "{case}: still running {:?} after SIGTERM",
                asked.elapsed()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{case}: {status}");
        let out = hostile.join().unwrap();
        assert_eq!(out.ended, Ended::OtherSideClosed, "{case}: {out:?}");
        assert!(out.after < LIMIT, "{case}: {out:?}");
    }
}
