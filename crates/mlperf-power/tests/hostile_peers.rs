//! power-dev's protocol against peers that misbehave, on loopback: the line
//! framing both roles share ([`LineConn`]), and our client (`joulebench
//! power-client`'s session) against a director that misbehaves at each
//! step. Each ends in an error that names the peer within the waits set,
//! closes the connection, and takes no more than a line's worth of an
//! endless line. (`crates/cli/tests/hostile_power_clients.rs` does the same
//! to the server process.)

use hostile_input::peer::{misbehave, read_line, Ended, Misbehaviour, Outcome};
use mlperf_power::client::{self, ClientConfig, ClientError};
use mlperf_power::ntp::SntpResponder;
use mlperf_power::protocol::{LineConn, ProtocolError, Waits, MAGIC_SERVER, MAX_LINE_BYTES};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Short waits, so that each case ends quickly.
const LINE_END: Duration = Duration::from_millis(600);
/// How much later than its wait an error may come on a loaded machine.
const SLACK: Duration = Duration::from_secs(4);
/// What an endless line may get into us before we refuse it: the line
/// limit, our read buffer, and the kernel's socket buffers on both sides.
const ENDLESS_BOUND_BYTES: u64 = MAX_LINE_BYTES as u64 + (16 << 20);

/// A peer that connects to `listener` and misbehaves from its first byte.
fn hostile_client(listener: &TcpListener, how: Misbehaviour) -> JoinHandle<Outcome> {
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let stream = TcpStream::connect(addr).unwrap();
        misbehave(stream, &how, Duration::from_secs(30))
    })
}

/// What our side's `recv` did, and how long it took.
fn recv_against(
    how: &Misbehaviour,
    waits: Waits,
    stop: Option<Arc<AtomicBool>>,
) -> (Result<Option<String>, ProtocolError>, Duration, Outcome) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = hostile_client(&listener, how.clone());
    let (stream, _) = listener.accept().unwrap();
    let mut conn = LineConn::new(stream, waits).unwrap();
    if let Some(stop) = stop {
        conn = conn.watching(stop);
    }
    let t = Instant::now();
    let got = conn.recv();
    let took = t.elapsed();
    drop(conn);
    (got, took, peer.join().unwrap())
}

/// The error `recv` must give for each misbehaviour, checked with its
/// timing and with what the peer saw.
fn check_recv(
    how: &Misbehaviour,
    got: Result<Option<String>, ProtocolError>,
    took: Duration,
    peer: Outcome,
    line_start: Option<Duration>,
) {
    let ctx = format!("{how:?}: {got:?} after {took:?}; peer {peer:?}");
    match how {
        Misbehaviour::Silent => {
            let wait = line_start.expect("a silent peer needs a bound");
            assert!(matches!(got, Err(ProtocolError::Timeout { .. })), "{ctx}");
            assert!(took >= wait && took < wait + SLACK, "{ctx}");
        }
        Misbehaviour::StallMidLine(_) | Misbehaviour::Trickle(_) => {
            assert!(matches!(got, Err(ProtocolError::Stalled { .. })), "{ctx}");
            assert!(took >= LINE_END && took < LINE_END + SLACK, "{ctx}");
        }
        Misbehaviour::EndlessLine => {
            let Err(ProtocolError::Malformed { reason, .. }) = &got else {
                panic!("{ctx}")
            };
            assert!(reason.contains("longer than"), "{ctx}");
            assert!(peer.bytes_sent < ENDLESS_BOUND_BYTES, "{ctx}");
        }
        Misbehaviour::Garbage(_) => {
            let Err(ProtocolError::Malformed { reason, .. }) = &got else {
                panic!("{ctx}")
            };
            assert!(reason.contains("UTF-8"), "{ctx}");
        }
        Misbehaviour::Close => assert!(matches!(got, Ok(None)), "{ctx}"),
    }
    if !matches!(how, Misbehaviour::Close | Misbehaviour::Garbage(_)) {
        // We hung up: the peer saw it, long before its own 30 s limit.
        assert_eq!(peer.ended, Ended::OtherSideClosed, "{ctx}");
    }
    if let Err(e) = got {
        assert!(
            e.to_string().starts_with("127.0.0.1:"),
            "names the peer: {e}"
        );
    }
}

#[test]
fn a_client_waiting_for_replies_gives_up_on_each_misbehaviour_within_its_waits() {
    let waits = Waits {
        line_start: Some(Duration::from_millis(800)),
        line_end: LINE_END,
    };
    for how in Misbehaviour::each() {
        let (got, took, peer) = recv_against(&how, waits, None);
        check_recv(&how, got, took, peer, waits.line_start);
    }
}

#[test]
fn a_server_waiting_for_ever_between_lines_still_bounds_a_line_and_stops_when_told() {
    let waits = Waits {
        line_start: None,
        line_end: LINE_END,
    };
    for how in Misbehaviour::each() {
        let stop = Arc::new(AtomicBool::new(false));
        let setter = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1500));
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        };
        let (got, took, peer) = recv_against(&how, waits, Some(stop));
        setter.join().unwrap();
        if how == Misbehaviour::Silent {
            // No bound on a silent client, but the stop flag ends the wait.
            let ctx = format!("{got:?} after {took:?}");
            assert!(matches!(got, Err(ProtocolError::Stopped { .. })), "{ctx}");
            assert!(took < Duration::from_millis(1500) + SLACK, "{ctx}");
            assert_eq!(peer.ended, Ended::OtherSideClosed);
        } else {
            check_recv(&how, got, took, peer, None);
        }
    }
}

/// A transfer that announces a chunk and trickles it, or sends more than
/// a file may hold, is refused; a peer that never reads what we send does
/// not block us beyond the write wait.
#[test]
fn file_transfers_are_bounded_in_time_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let waits = Waits::replies_within(LINE_END);
    let serve = |script: Box<dyn FnOnce(TcpStream) + Send>| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || script(TcpStream::connect(addr).unwrap()));
        let (stream, _) = listener.accept().unwrap();
        (LineConn::new(stream, waits).unwrap(), peer)
    };

    // A chunk announced, then trickled.
    let (mut conn, peer) = serve(Box::new(|mut s| {
        use std::io::Write;
        s.write_all(b"1000\r\nab").unwrap();
        misbehave(
            s,
            &Misbehaviour::Trickle(Duration::from_millis(50)),
            Duration::from_secs(30),
        );
    }));
    let t = Instant::now();
    let e = conn.recv_file(&dir.path().join("a")).unwrap_err();
    assert!(matches!(e, ProtocolError::Stalled { .. }), "{e}");
    assert!(t.elapsed() < LINE_END + SLACK, "{:?}", t.elapsed());
    assert!(e.to_string().contains("a chunk of 1000 bytes"), "{e}");
    drop(conn);
    peer.join().unwrap();
    assert!(!dir.path().join("a").exists(), "a partial file was left");

    // Chunks that add up past the file limit.
    let (mut conn, peer) = serve(Box::new(|mut s| {
        use std::io::Write;
        let chunk = vec![b'x'; 32 << 20];
        for _ in 0..9 {
            if s.write_all(b"33554432\r\n").is_err() || s.write_all(&chunk).is_err() {
                return;
            }
        }
    }));
    let e = conn.recv_file(&dir.path().join("b")).unwrap_err();
    assert!(e.to_string().contains("file larger than"), "{e}");
    drop(conn);
    peer.join().unwrap();
    assert!(!dir.path().join("b").exists(), "a partial file was left");

    // We send a file to a peer that never reads.
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'y'; 64 << 20]).unwrap();
    let (mut conn, peer) = serve(Box::new(|s| {
        std::thread::sleep(Duration::from_secs(8));
        drop(s);
    }));
    let t = Instant::now();
    let e = conn.send_file(&big).unwrap_err();
    assert!(matches!(e, ProtocolError::Timeout { .. }), "{e}");
    assert!(t.elapsed() < LINE_END + SLACK, "{:?}", t.elapsed());
    drop(conn);
    peer.join().unwrap();
}

// ------------------------------------------------ our client, hostile server

/// The steps of a session at which the director may misbehave: the reply
/// it owes to each command our client sends, in order, up to the end of
/// the ranging run.
const STEPS: [&str; 6] = [
    "greeting",
    "time",
    "new",
    "time before ranging",
    "start ranging",
    "stop ranging",
];

/// A director that answers as power-dev's does until `step`, then
/// misbehaves in its reply to that step.
fn hostile_director(
    listener: TcpListener,
    step: usize,
    how: Misbehaviour,
) -> JoinHandle<Option<Outcome>> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().ok()?;
        for i in 0..STEPS.len() {
            let cmd = read_line(&mut s, Duration::from_secs(30))?;
            if i == step {
                return Some(misbehave(s, &how, Duration::from_secs(30)));
            }
            let reply = match i {
                0 => MAGIC_SERVER.to_string(),
                1 | 3 => format!("{}", mlperf_power::summary::unix_now_s()),
                2 => "OK 2026-12-05_10-00-00_hostile,8d8ac610-566d-4ef0-9c22-186b2a5ed793".into(),
                _ => "OK".into(),
            };
            assert!(!cmd.is_empty());
            std::io::Write::write_all(&mut s, format!("{reply}\r\n").as_bytes()).ok()?;
        }
        None
    })
}

fn client_config(dir: &Path, server: String, ntp: &SntpResponder) -> ClientConfig {
    ClientConfig {
        server,
        ntp_server: ntp.addr().to_string(),
        workload: "true".into(),
        loadgen_logs: dir.join("logs"),
        output: dir.join("out"),
        label: "hostile".into(),
        stop_server: false,
        token: None,
        reply_timeout: LINE_END,
    }
}

#[test]
fn our_client_ends_with_a_clear_error_when_the_director_misbehaves_at_any_step() {
    let ntp = SntpResponder::bind("127.0.0.1:0", 0.0).unwrap();
    let mut cases = Vec::new();
    for (step, name) in STEPS.iter().enumerate() {
        for how in Misbehaviour::each() {
            let dir = tempfile::tempdir().unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let cfg = client_config(dir.path(), listener.local_addr().unwrap().to_string(), &ntp);
            let director = hostile_director(listener, step, how.clone());
            let run = std::thread::spawn(move || {
                let t = Instant::now();
                let got = client::run(&cfg);
                (got, t.elapsed())
            });
            cases.push((dir, *name, step, how, director, run));
        }
    }
    for (dir, name, step, how, director, run) in cases {
        let (got, took) = run.join().unwrap();
        let peer = director.join().unwrap();
        let ctx = format!("step {name}, {how:?}: {got:?} after {took:?}; director {peer:?}");
        let e = got.expect_err(&ctx);
        // Each wait is for one line: at most the start and end waits, plus
        // the workload and clock checks before it.
        assert!(took < 2 * LINE_END + SLACK, "{ctx}");
        let text = e.to_string();
        match &e {
            ClientError::Protocol(_) => {
                assert!(step < 3 && text.contains("127.0.0.1:"), "{ctx}")
            }
            ClientError::Refused { .. } => assert!(step < 3, "{ctx}"),
            ClientError::Incomplete { reason, folder } => {
                // From `new` on, the partial folder is kept and says why.
                assert!(step >= 3, "{ctx}");
                assert!(
                    reason.contains("127.0.0.1:") || reason.contains("answered"),
                    "{ctx}"
                );
                let why = std::fs::read_to_string(folder.join("INCOMPLETE.txt")).unwrap();
                assert!(why.contains(reason.as_str()), "{ctx}: {why}");
            }
            other => panic!("{ctx}: unexpected kind {other:?}"),
        }
        if how.needs_a_timeout() || how == Misbehaviour::EndlessLine {
            let peer = peer.expect("the director reached its step");
            assert_eq!(peer.ended, Ended::OtherSideClosed, "{ctx}");
            assert!(peer.bytes_sent < ENDLESS_BOUND_BYTES, "{ctx}");
        }
        drop(dir);
    }
}

/// A `time` reply that is a number but not a time must not pass the
/// clock check (NaN compares false with every bound).
#[test]
fn a_time_reply_that_is_not_a_finite_number_is_refused() {
    let ntp = SntpResponder::bind("127.0.0.1:0", 0.0).unwrap();
    for bad in ["NaN", "-nan", "inf", "-inf", "1e999", ""] {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let cfg = client_config(dir.path(), listener.local_addr().unwrap().to_string(), &ntp);
        let director = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            for reply in [MAGIC_SERVER, bad] {
                read_line(&mut s, Duration::from_secs(30)).unwrap();
                std::io::Write::write_all(&mut s, format!("{reply}\r\n").as_bytes()).unwrap();
            }
            // Hold the connection until the client hangs up.
            misbehave(s, &Misbehaviour::Silent, Duration::from_secs(30))
        });
        let e = client::run(&cfg).unwrap_err();
        let refused = match &e {
            ClientError::Refused { command, .. } => command == "time",
            ClientError::ClockOffset { .. } => true,
            _ => false,
        };
        assert!(refused, "{bad}: {e}");
        director.join().unwrap();
    }
}

// ------------------------------------------------------- hostile NTP server

/// An SNTP "server" that answers each request with `reply`, with our
/// originate time copied in when `echo` (so the checks past it are
/// reached); `None` when it never answers.
fn ntp_peer(reply: Option<Vec<u8>>, echo: bool) -> (String, JoinHandle<()>) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let thread = std::thread::spawn(move || {
        let mut request = [0u8; 512];
        let Ok((n, from)) = socket.recv_from(&mut request) else {
            return;
        };
        if let Some(mut reply) = reply {
            if echo && n >= 48 && reply.len() >= 32 {
                reply[24..32].copy_from_slice(&request[40..48]);
            }
            let _ = socket.send_to(&reply, from);
        }
    });
    (addr, thread)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever datagram comes back is a reading near our clock (the
    /// peer's times are random, so only when they happen to be) or an
    /// error naming the server; never a panic or a NaN.
    #[test]
    fn an_ntp_answer_of_any_bytes_is_a_finite_reading_or_an_error_naming_the_server(
        reply in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
        echo in proptest::prelude::any::<bool>(),
    ) {
        let (addr, peer) = ntp_peer(Some(reply), echo);
        match mlperf_power::ntp::query(&addr, Duration::from_secs(2)) {
            Ok(r) => proptest::prop_assert!(r.offset_s.is_finite() && r.delay_s.is_finite()),
            Err(e) => proptest::prop_assert!(e.to_string().contains(&addr), "{}", e),
        }
        peer.join().unwrap();
    }
}

#[test]
fn a_silent_ntp_server_is_a_timeout_within_the_wait() {
    let (addr, peer) = ntp_peer(None, false);
    let t = Instant::now();
    let e = mlperf_power::ntp::check(&addr, Duration::from_millis(500)).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_millis(500) + SLACK,
        "{:?}",
        t.elapsed()
    );
    assert!(e.to_string().contains("no answer within 500 ms"), "{e}");
    peer.join().unwrap();
}
