//! The PTDaemon client against a loopback peer that speaks PTDaemon's protocol
//! (the replies of `shared/reference/ptd-protocol.md`), including a peer that
//! misbehaves: malformed lines, slow answers, a connection dropped mid-session,
//! and each of `hostile_input`'s misbehaviours at each command of a session.

use hostile_input::peer::{misbehave, Ended, Misbehaviour, Outcome};
use power::meter::ptd::{PtdClient, PtdError, PtdMeter, PtdTimeouts, RangeQuantity, RangeSetting};
use power::meter::{Meter, MeterError, Reading};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
struct Behaviour {
    /// Answer `RL,*,*` with multichannel lines instead of refusing it.
    multichannel: bool,
    /// Wait this long before answering commands starting with the prefix.
    slow: Option<(&'static str, Duration)>,
    /// Close the connection instead of answering commands with this prefix.
    drop_on: Option<&'static str>,
    /// Announce three samples in `RL`, send one, then close.
    drop_mid_rl: bool,
    /// Put a malformed line between good ones in `RL`.
    malformed_rl: bool,
    /// Answer `Hello` with this instead.
    hello: Option<&'static str>,
    /// Misbehave instead of answering the command with this index (0:
    /// the first), until the client hangs up.
    misbehave_at: Option<(usize, Misbehaviour)>,
}

struct FakePtd {
    port: u16,
    commands: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<Option<Outcome>>>,
}

impl FakePtd {
    fn start(behaviour: Behaviour) -> FakePtd {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&commands);
        let thread = std::thread::spawn(move || {
            let (stream, _) = listener.accept().ok()?;
            serve(stream, &behaviour, &log)
        });
        FakePtd {
            port,
            commands,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("ptd://127.0.0.1:{}", self.port)
    }

    fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }

    fn finish(self) -> Vec<String> {
        self.finish_misbehaving().0
    }

    /// The commands it got, and what its misbehaviour came to.
    fn finish_misbehaving(mut self) -> (Vec<String>, Option<Outcome>) {
        let outcome = self.thread.take().and_then(|t| t.join().unwrap());
        (self.commands(), outcome)
    }
}

struct State {
    amps: String,
    volts: String,
    mark: Option<String>,
    last_mark: String,
    tick: u32,
}

fn serve(stream: TcpStream, b: &Behaviour, log: &Mutex<Vec<String>>) -> Option<Outcome> {
    let mut out = stream.try_clone().unwrap();
    let reader = BufReader::new(stream);
    let mut st = State {
        amps: "5.000000".into(),
        volts: "Auto".into(),
        mark: None,
        last_mark: "notset".into(),
        tick: 0,
    };
    for (i, line) in reader.lines().enumerate() {
        let cmd = line.ok()?.trim_end_matches('\r').to_string();
        log.lock().unwrap().push(cmd.clone());
        if let Some((at, how)) = &b.misbehave_at {
            if i == *at {
                return Some(misbehave(out, how, Duration::from_secs(30)));
            }
        }
        if let Some(prefix) = b.drop_on {
            if cmd.starts_with(prefix) {
                return None;
            }
        }
        if let Some((prefix, delay)) = b.slow {
            if cmd.starts_with(prefix) {
                std::thread::sleep(delay);
            }
        }
        let mut replies = answer(&cmd, b, &mut st);
        if b.drop_mid_rl && cmd.starts_with("RL") {
            // Announce one sample more than is sent, then hang up.
            replies[0] = format!("Last {} samples", replies.len());
            let text: String = replies.iter().map(|r| format!("{r}\r\n")).collect();
            let _ = out.write_all(text.as_bytes());
            return None;
        }
        let text: String = replies.iter().map(|r| format!("{r}\r\n")).collect();
        out.write_all(text.as_bytes()).ok()?;
    }
    None
}

fn answer(cmd: &str, b: &Behaviour, st: &mut State) -> Vec<String> {
    let one = |s: &str| vec![s.to_string()];
    let fields: Vec<&str> = cmd.split(',').collect();
    match fields.as_slice() {
        ["Hello"] => one(b.hello.unwrap_or("Hello, PTDaemon here!")),
        ["Identify"] => one("WT310,Fake PTDaemon for tests,version=1.11.1-test"),
        ["RR"] => {
            let amps = match st.amps.as_str() {
                "Auto" => "1,-1.000000".to_string(),
                a => format!("0,{a}"),
            };
            let volts = match st.volts.as_str() {
                "Auto" => "1,-1.000000".to_string(),
                v => format!("0,{v}"),
            };
            one(&format!("Ranges,{amps},{volts}"))
        }
        ["SR", q @ ("V" | "A"), value] => {
            // A WT310: current ranges up to 20 A, voltage ranges up to 600 V.
            let max = if *q == "A" { 20.0 } else { 600.0 };
            let ok = *value == "Auto" || value.parse::<f64>().is_ok_and(|v| v > 0.0 && v <= max);
            if !ok {
                return one("Error: range out of bounds");
            }
            if *q == "V" {
                st.volts = value.to_string();
            } else {
                st.amps = value.to_string();
            }
            one(&format!("Range {q} changed"))
        }
        ["Go", "1000", "0", mark] => {
            st.mark = Some(mark.to_string());
            st.last_mark = mark.to_string();
            one("Starting untimed measurement, maximum 500000 samples at 1000ms with 0 rampup samples")
        }
        ["Stop"] => match st.mark.take() {
            Some(_) => one("Stopping untimed measurement"),
            None => one("Error: no measurement to stop"),
        },
        ["Watts"] => one("Watts,123.450000"),
        ["Uncertainty"] => one("Uncertainty,0.081200"),
        ["RL", "*", "*"] if !b.multichannel => one("Error: Invalid number of parameters"),
        ["RL", "*", "*"] | ["RL"] => {
            let mut lines = Vec::new();
            if st.mark.is_some() {
                for _ in 0..2 {
                    st.tick += 1;
                    lines.push(sample_line(st.tick, &st.last_mark, b.multichannel));
                }
            }
            if b.malformed_rl {
                lines.insert(1, "Time,11-24-2026 10:00:99.000,Watts,1,Mark,x".to_string());
            }
            let mut reply = vec![format!("Last {} samples", lines.len())];
            reply.extend(lines);
            reply
        }
        _ => one("Error: Unknown command"),
    }
}

fn sample_line(tick: u32, mark: &str, multichannel: bool) -> String {
    let time = format!("11-24-2026 10:00:{:02}.000", tick % 60);
    let volts = 229.0 + f64::from(tick);
    let amps = 0.5 + 0.1 * f64::from(tick);
    if multichannel {
        format!(
            "Time,{time},Watts,{:.6},Volts,-1.000000,Amps,-1.000000,PF,-1.000000,Mark,{mark},\
             Ch1,Watts,{:.6},Volts,{volts:.6},Amps,{amps:.6},PF,0.950000,\
             Ch2,Watts,{:.6},Volts,{volts:.6},Amps,{amps:.6},PF,0.950000",
            2.0 * volts * amps * 0.95,
            volts * amps * 0.95,
            volts * amps * 0.95
        )
    } else {
        format!(
            "Time,{time},Watts,{:.6},Volts,{volts:.6},Amps,{amps:.6},PF,0.950000,Mark,{mark}",
            volts * amps * 0.95
        )
    }
}

fn quick() -> PtdTimeouts {
    PtdTimeouts {
        connect: Duration::from_secs(2),
        reply: Duration::from_secs(2),
    }
}

fn client(fake: &FakePtd, timeouts: PtdTimeouts) -> PtdClient {
    PtdClient::connect("127.0.0.1", fake.port, timeouts).unwrap()
}

#[test]
fn ranging_then_testing_session_sends_the_mlperf_command_sequence() {
    let fake = FakePtd::start(Behaviour::default());
    let mut c = client(&fake, quick());
    let greeting = c.start_session().unwrap();
    assert_eq!(greeting.identity.model, "WT310");
    assert_eq!(greeting.identity.version.as_deref(), Some("1.11.1-test"));
    let (restore_v, restore_a) = greeting.initial_ranges.restore_settings();
    assert_eq!(restore_v, RangeSetting::Auto);
    assert_eq!(restore_a, RangeSetting::Fixed(5.0));

    c.set_auto_ranges().unwrap();
    c.go("s1_ranging").unwrap();
    let mut ranging = c.read_samples().unwrap();
    ranging.extend(c.read_samples().unwrap());
    assert_eq!(ranging.len(), 4);
    assert!(ranging.iter().all(|s| s.mark == "s1_ranging"));
    assert!(c.stop().unwrap());

    // The testing ranges MLPerf's rule takes from these samples
    // (mlperf_power::ranging's tests check the rule itself).
    let max_volts = ranging
        .iter()
        .filter_map(|s| s.max_volts())
        .fold(0.0, f64::max);
    let max_amps = ranging
        .iter()
        .filter_map(|s| s.max_amps())
        .fold(0.0, f64::max);
    assert_eq!(max_volts, 233.0);
    assert_eq!(max_amps, 0.9);
    c.set_fixed_ranges(max_volts, max_amps * 1.1).unwrap();
    c.go("s1_testing").unwrap();
    let testing = c.read_samples().unwrap();
    assert!(testing.iter().all(|s| s.mark == "s1_testing"));
    assert_eq!(c.watts().unwrap(), 123.45);
    let (raw, value) = c.uncertainty().unwrap();
    assert_eq!(raw, "Uncertainty,0.081200");
    assert_eq!(value, Some(0.0812));
    assert!(c.stop().unwrap());
    assert!(!c.stop().unwrap(), "second Stop: nothing running");
    c.set_range(RangeQuantity::Volts, restore_v).unwrap();
    c.set_range(RangeQuantity::Amps, restore_a).unwrap();
    assert_eq!(c.read_ranges().unwrap(), greeting.initial_ranges);
    drop(c);

    let expected = [
        "Hello",
        "Identify",
        "RR",
        "SR,V,Auto",
        "SR,A,Auto",
        "Go,1000,0,s1_ranging",
        "RL,*,*",
        "RL",
        "RL",
        "Stop",
        "SR,V,233",
        "SR,A,0.99",
        "Go,1000,0,s1_testing",
        "RL",
        "Watts",
        "Uncertainty",
        "Stop",
        "Stop",
        "SR,V,Auto",
        "SR,A,5",
        "RR",
    ];
    assert_eq!(fake.finish(), expected);
}

#[test]
fn multichannel_analyzer_answers_rl_star_and_channels_are_parsed() {
    let fake = FakePtd::start(Behaviour {
        multichannel: true,
        ..Behaviour::default()
    });
    let mut c = client(&fake, quick());
    c.start_session().unwrap();
    c.go("m_ranging").unwrap();
    let samples = c.read_samples().unwrap();
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].channels.len(), 2);
    assert_eq!(samples[0].volts, None);
    assert_eq!(samples[0].max_volts(), Some(230.0));
    c.read_samples().unwrap();
    drop(c);
    let cmds = fake.finish();
    assert_eq!(cmds.iter().filter(|c| *c == "RL,*,*").count(), 2);
    assert!(!cmds.contains(&"RL".to_string()));
}

#[test]
fn meter_reads_watts_before_go_and_full_samples_after() {
    let fake = FakePtd::start(Behaviour::default());
    let mut meter = PtdMeter::connect(&fake.url(), quick()).unwrap();
    assert_eq!(meter.info().id, "ptd");
    assert_eq!(meter.greeting().identity.model, "WT310");
    assert_eq!(meter.read().unwrap(), Reading::watts(123.45));
    meter.client().lock().unwrap().go("run_testing").unwrap();
    match meter.read().unwrap() {
        Reading::Power {
            watts,
            volts,
            amps,
            power_factor,
        } => {
            // The newest of the two samples the fake logged (tick 2).
            assert_eq!(volts, Some(231.0));
            assert_eq!(amps, Some(0.7));
            assert_eq!(power_factor, Some(0.95));
            assert!((watts - 231.0 * 0.7 * 0.95).abs() < 1e-5);
        }
        other => panic!("expected power, got {other:?}"),
    }
    assert_eq!(
        meter.last_sample_time().map(|t| t.to_string()),
        Some("11-24-2026 10:00:02.000".to_string())
    );
    drop(meter);
    fake.finish();
}

#[test]
fn malformed_sample_line_is_an_error_and_the_stream_stays_in_step() {
    let fake = FakePtd::start(Behaviour {
        malformed_rl: true,
        ..Behaviour::default()
    });
    let mut c = client(&fake, quick());
    c.start_session().unwrap();
    c.go("x").unwrap();
    match c.read_samples() {
        Err(PtdError::Malformed { line, reason }) => {
            assert!(line.contains("10:00:99.000"), "{line}");
            assert!(reason.contains("MM-DD-YYYY"), "{reason}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    // All announced lines were consumed: the next reply belongs to Watts.
    assert_eq!(c.watts().unwrap(), 123.45);
    drop(c);
    fake.finish();
}

#[test]
fn a_peer_that_is_not_ptdaemon_is_refused_at_hello() {
    let fake = FakePtd::start(Behaviour {
        hello: Some("HTTP/1.1 400 Bad Request"),
        ..Behaviour::default()
    });
    match PtdMeter::connect(&fake.url(), quick()) {
        Err(MeterError::Config { reason, .. }) => {
            assert!(reason.contains("Hello, PTDaemon here!"), "{reason}");
        }
        Err(e) => panic!("expected Config error, got {e}"),
        Ok(_) => panic!("connected to a non-PTDaemon peer"),
    }
    fake.finish();
}

#[test]
fn slow_answer_times_out_with_the_command_named_and_the_client_refuses_more() {
    let fake = FakePtd::start(Behaviour {
        slow: Some(("Watts", Duration::from_millis(1500))),
        ..Behaviour::default()
    });
    let mut c = client(
        &fake,
        PtdTimeouts {
            connect: Duration::from_secs(2),
            reply: Duration::from_millis(200),
        },
    );
    c.hello().unwrap();
    let started = Instant::now();
    let err = c.watts().unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, PtdError::Timeout { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("`Watts`") && text.contains("200 ms"),
        "{text}"
    );
    assert!(waited < Duration::from_millis(1000), "waited {waited:?}");
    // A late reply could now be taken for the next command's: refuse.
    assert!(matches!(c.hello(), Err(PtdError::Broken { .. })));
    drop(c);
    fake.finish();
}

#[test]
fn connection_dropped_mid_session_gives_a_clear_error_not_a_hang() {
    let fake = FakePtd::start(Behaviour {
        drop_on: Some("Go"),
        ..Behaviour::default()
    });
    let mut meter = PtdMeter::connect(&fake.url(), quick()).unwrap();
    let started = Instant::now();
    let err = meter.client().lock().unwrap().go("x").unwrap_err();
    assert!(matches!(err, PtdError::Closed { .. }), "{err:?}");
    assert!(err.to_string().contains("`Go,1000,0,x`"), "{err}");
    match meter.read() {
        Err(MeterError::Read { meter, reason }) => {
            assert_eq!(meter, "ptd");
            assert!(reason.contains("unusable"), "{reason}");
        }
        other => panic!("expected Read error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(meter);
    fake.finish();
}

#[test]
fn connection_dropped_inside_an_rl_reply_is_reported() {
    let fake = FakePtd::start(Behaviour {
        multichannel: true,
        drop_mid_rl: true,
        ..Behaviour::default()
    });
    let mut c = client(&fake, quick());
    c.start_session().unwrap();
    c.go("x").unwrap();
    // The fake announces three samples, sends two, then hangs up.
    let started = Instant::now();
    let err = c.read_samples().unwrap_err();
    assert!(matches!(err, PtdError::Closed { .. }), "{err:?}");
    assert!(err.to_string().contains("`RL,*,*`"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(c.watts(), Err(PtdError::Broken { .. })));
    drop(c);
    fake.finish();
}

#[test]
fn daemon_error_reply_to_a_range_change_is_an_error() {
    let fake = FakePtd::start(Behaviour::default());
    let mut c = client(&fake, quick());
    c.start_session().unwrap();
    let err = c
        .set_range(RangeQuantity::Amps, RangeSetting::Fixed(50.0))
        .unwrap_err();
    match &err {
        PtdError::Daemon { command, reply } => {
            assert_eq!(command, "SR,A,50");
            assert_eq!(reply, "Error: range out of bounds");
        }
        other => panic!("expected Daemon error, got {other:?}"),
    }
    assert!(matches!(
        c.set_range(RangeQuantity::Volts, RangeSetting::Fixed(f64::NAN)),
        Err(PtdError::InvalidRange { range }) if range.is_nan()
    ));
    assert!(matches!(
        c.go("bad,mark"),
        Err(PtdError::InvalidMark { mark }) if mark == "bad,mark"
    ));
    drop(c);
    let cmds = fake.finish();
    assert!(!cmds.iter().any(|c| c.contains("NaN") || c.contains("bad")));
}

#[test]
fn nobody_listening_is_not_present_with_a_hint() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    match PtdMeter::connect(&format!("ptd://127.0.0.1:{port}"), quick()) {
        Err(MeterError::NotPresent { reason, .. }) => {
            assert!(reason.contains("PTDaemon running"), "{reason}")
        }
        Err(e) => panic!("expected NotPresent, got {e}"),
        Ok(_) => panic!("connected to nobody"),
    }
}

/// A session's commands in order, as MLPerf's server sends them: each call
/// sends one command, except reading samples (`RL,*,*`, refused by a
/// single-channel analyzer, then `RL`).
const SESSION: [&str; 10] = [
    "Hello",
    "Identify",
    "RR",
    "SR,V,Auto",
    "SR,A,Auto",
    "Go",
    "Watts",
    "Stop",
    "RL,*,*",
    "RL",
];

fn session_step(c: &mut PtdClient, command: usize) -> Result<(), PtdError> {
    match command {
        0 => c.hello(),
        1 => c.identify().map(drop),
        2 => c.read_ranges().map(drop),
        3 => c.set_range(RangeQuantity::Volts, RangeSetting::Auto),
        4 => c.set_range(RangeQuantity::Amps, RangeSetting::Auto),
        5 => c.go("hostile"),
        6 => c.watts().map(drop),
        7 => c.stop().map(drop),
        _ => c.read_samples().map(drop),
    }
}

#[test]
fn each_misbehaviour_at_each_command_is_an_error_within_the_reply_wait() {
    const REPLY: Duration = Duration::from_millis(500);
    const SLACK: Duration = Duration::from_secs(4);
    for (at, command) in SESSION.iter().enumerate() {
        for how in Misbehaviour::each() {
            let fake = FakePtd::start(Behaviour {
                misbehave_at: Some((at, how.clone())),
                ..Behaviour::default()
            });
            let mut c = client(
                &fake,
                PtdTimeouts {
                    connect: Duration::from_secs(2),
                    reply: REPLY,
                },
            );
            let started = Instant::now();
            let mut failed = None;
            for step in 0..9 {
                if let Err(e) = session_step(&mut c, step) {
                    failed = Some(e);
                    break;
                }
            }
            let took = started.elapsed();
            let ctx = format!("{command} ({at}), {how:?}: {failed:?} after {took:?}");
            let err = failed.unwrap_or_else(|| panic!("{ctx}: no error"));
            assert!(took < REPLY + SLACK, "{ctx}");
            let text = err.to_string();
            assert!(text.contains(command) || text.contains("PTDaemon"), "{ctx}");
            // A late or partial reply could be taken for the next
            // command's: the client refuses more. (A whole line of garbage
            // leaves the stream in step: the next reply is read as such.)
            if !matches!(how, Misbehaviour::Garbage(_)) {
                assert!(matches!(c.watts(), Err(PtdError::Broken { .. })), "{ctx}");
            }
            drop(c);
            let (_, outcome) = fake.finish_misbehaving();
            let outcome = outcome.unwrap_or_else(|| panic!("{ctx}: the fake did not misbehave"));
            if !matches!(how, Misbehaviour::Close | Misbehaviour::Garbage(_)) {
                assert_eq!(outcome.ended, Ended::OtherSideClosed, "{ctx}");
                // One reply line's limit, plus the sockets' buffers.
                assert!(outcome.bytes_sent < 16 << 20, "{ctx}: {outcome:?}");
            }
        }
    }
}
