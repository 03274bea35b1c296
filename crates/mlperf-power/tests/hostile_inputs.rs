//! Hostile input to every text reader of the power workflow: power-dev's
//! protocol lines (parsed and read off a socket), its `server.conf`,
//! PTDaemon's command line as `ptd-serve` takes it, and the checker's
//! readers of a result folder (`spl.txt`, LoadGen's detail log). Arbitrary
//! bytes and structured mutations of valid inputs (truncated, duplicated,
//! reordered lines; huge numbers, NaN, negative counts, non-UTF-8, CRLF,
//! very long lines) must never panic, must finish quickly, and errors must
//! name where (file and line, the peer, or the offending text).

use hostile_input::strategies::{config, mutate, mutations, nasty_value, timed};
use mlperf_power::checker::{average_watts, CheckError};
use mlperf_power::loadgen_logs::{power_window, time_in_line};
use mlperf_power::protocol::{BadCommand, Command, LineConn, ProtocolError, Waits, MAX_LINE_BYTES};
use mlperf_power::ptd_daemon::{DaemonError, PtdCommandLine, UsageError};
use mlperf_power::server::{PowerDevConfig, ServerError};
use proptest::prelude::*;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

// ---------------------------------------------------------------- protocol

const VALID_COMMANDS: &[&str] = &[
    "time",
    "set_ntp",
    "stop",
    "new,my_run-1,0f8fad5b-d9cb-469f-a165-70867728950e",
    "session,abc,start,ranging",
    "session,abc,start,testing",
    "session,abc,start,testing,300,2.5",
    "session,abc,stop,ranging",
    "session,abc,stop,testing",
    "session,abc,done",
    "download,abc,spl.txt",
    "cleanup,abc",
    "joulebench-token,secret",
];

/// A rejected command names the offending text, taken from the line.
fn check_command(line: &str) {
    match timed("Command::parse", || Command::parse(line)) {
        Ok(c) => {
            // What parses round-trips: the server and client agree on it.
            assert_eq!(Command::parse(&c.to_line()).as_ref(), Ok(&c), "{line:?}");
        }
        Err(BadCommand::InvalidLabel { label }) => assert!(line.contains(&label)),
        Err(BadCommand::InvalidClientUuid { uuid }) => assert!(line.contains(&uuid)),
        Err(BadCommand::UnknownSessionCommand { action }) => {
            assert!(line.contains(&action.join(",")), "{line:?} {action:?}")
        }
        Err(BadCommand::UnknownCommand { line: l }) => assert_eq!(l, line),
    }
}

#[test]
fn valid_commands_parse() {
    for line in VALID_COMMANDS {
        let c = Command::parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(&c.to_line(), line);
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn command_parse_survives_arbitrary_text(line in "\\PC{0,300}") {
        check_command(&line);
    }

    #[test]
    fn command_parse_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_command(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn command_parse_survives_mutated_commands(
        pick in 0..VALID_COMMANDS.len(),
        fields in proptest::collection::vec((0usize..8, nasty_value()), 0..4),
        extra in proptest::option::of(nasty_value()),
    ) {
        let mut f: Vec<String> = VALID_COMMANDS[pick].split(',').map(str::to_string).collect();
        for (i, v) in fields {
            let n = f.len();
            f[i % n] = v;
        }
        if let Some(e) = extra {
            f.push(e);
        }
        check_command(&f.join(","));
    }
}

/// Feeds `bytes` to a [`LineConn`] over loopback and reads lines until the
/// peer closes or an error.
fn read_lines_from(bytes: Vec<u8>) -> (Vec<String>, Option<ProtocolError>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let writer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        // The reader may stop early (an over-long line): ignore the reset.
        let _ = s.write_all(&bytes);
    });
    let (stream, _) = listener.accept().unwrap();
    let mut conn = LineConn::new(stream, Waits::replies_within(Duration::from_secs(10))).unwrap();
    let mut lines = Vec::new();
    let err = loop {
        match conn.recv() {
            Ok(Some(l)) => lines.push(l),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    drop(conn);
    writer.join().unwrap();
    (lines, err)
}

fn check_line_reader(bytes: Vec<u8>) {
    let (lines, err) = timed("LineConn::recv", || read_lines_from(bytes.clone()));
    for l in &lines {
        assert!(!l.contains('\n') && !l.ends_with('\r'));
        assert!(l.len() <= MAX_LINE_BYTES);
    }
    match err {
        None => {
            // Every byte was delivered as lines: the stream ended on a line end.
            assert!(bytes.is_empty() || bytes.ends_with(b"\n"));
        }
        Some(e @ ProtocolError::Malformed { .. })
        | Some(e @ ProtocolError::Disconnected { .. }) => {
            // The error names the peer, and a malformed line shows its text.
            assert!(e.to_string().starts_with("127.0.0.1:"), "{e}");
        }
        Some(e) => panic!("unexpected error {e}"),
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn line_reader_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        check_line_reader(bytes);
    }

    #[test]
    fn line_reader_survives_mutated_sessions(muts in mutations(0..6)) {
        let valid = VALID_COMMANDS.join("\n") + "\n";
        let bytes = mutate(&valid, &muts);
        check_line_reader(bytes);
    }
}

#[test]
fn line_reader_rejects_an_endless_line_with_its_start() {
    let mut bytes = b"session,".to_vec();
    bytes.extend(std::iter::repeat_n(b'a', 3 * MAX_LINE_BYTES));
    let (lines, err) = read_lines_from(bytes);
    assert!(lines.is_empty());
    let e = err.expect("an over-long line is an error");
    assert!(e.to_string().contains("session,aaa"), "{e}");
}

#[test]
fn line_reader_names_a_line_that_is_not_utf8() {
    let (lines, err) = read_lines_from(b"time\r\nne\xffw\r\n".to_vec());
    assert_eq!(lines, ["time"]);
    let e = err.unwrap();
    assert!(matches!(e, ProtocolError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("ne\u{FFFD}w"), "{e}");
}

// ------------------------------------------------------------- server.conf

const SERVER_CONF: &str = "[server]\nntpServer: 127.0.0.1\nlisten: 127.0.0.1 4951\nrangingMode: AUTO\n\n\
    [ptd]\nptd: /opt/ptd-wrapper\nanalyzerCount: 2\n\n\
    [analyzer1]\ninterfaceFlag: -y\ndeviceType: 49\ndevicePort: /dev/usbtmc0\nnetworkPort: 8888\nchannel: 1,2\n\n\
    ; a comment\n[analyzer2]\ndeviceType = 8\ndevicePort = COM1\nnetworkPort = 8889\ngpibBoard = 0\n";

fn check_server_conf(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let path = Path::new("/etc/power/server.conf");
    match timed("PowerDevConfig::parse", || {
        PowerDevConfig::parse(&text, path)
    }) {
        Ok(c) => assert!(!c.analyzers.is_empty()),
        Err(ServerError::Config { path: p, message }) => {
            assert_eq!(p, path);
            // Either the line, or the missing `[section] key`.
            let line = message
                .strip_prefix("line ")
                .and_then(|m| m.split_once(':'))
                .map(|(n, _)| n.parse::<usize>().expect("a line number"));
            match line {
                Some(n) => assert!(n >= 1 && n <= text.lines().count(), "{message}"),
                None => assert!(message.contains("missing"), "{message}"),
            }
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn valid_server_conf_parses() {
    let c = PowerDevConfig::parse(SERVER_CONF, Path::new("server.conf")).unwrap();
    assert_eq!(c.analyzers.len(), 2);
    assert_eq!(c.analyzers[1].network_port, 8889);
    let crlf = SERVER_CONF.replace('\n', "\r\n");
    let c = PowerDevConfig::parse(&crlf, Path::new("server.conf")).unwrap();
    assert_eq!(c.analyzers[0].device_port, "/dev/usbtmc0");
}

#[test]
fn server_conf_with_a_huge_analyzer_count_names_the_missing_section() {
    let text = SERVER_CONF.replace("analyzerCount: 2", "analyzerCount: 18446744073709551615");
    let e = PowerDevConfig::parse(&text, Path::new("server.conf"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("[analyzer3]"), "{e}");
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn server_conf_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        check_server_conf(&bytes);
    }

    #[test]
    fn server_conf_survives_mutations(muts in mutations(0..6)) {
        check_server_conf(&mutate(SERVER_CONF, &muts));
    }
}

// ------------------------------------------------------ PTDaemon's command line

const PTD_ARGS: &[&str] = &[
    "-l",
    "/tmp/ptd.log",
    "-p",
    "8888",
    "-b",
    "0",
    "-c",
    "1,2",
    "-y",
    "49",
    "/dev/usbtmc0",
];

fn check_ptd_args(args: &[String]) {
    match timed("PtdCommandLine::parse", || PtdCommandLine::parse(args)) {
        Ok(c) => assert!(c.port != 0),
        Err(DaemonError::Usage(u)) => {
            let e = DaemonError::Usage(u.clone()).to_string();
            match &u {
                UsageError::BadPort { value }
                | UsageError::BadBoard { value }
                | UsageError::BadDeviceType { value } => {
                    assert!(args.contains(value), "{u:?}");
                    assert!(e.contains(value.as_str()), "{e}");
                }
                UsageError::MissingValue { flag } => {
                    assert!(args.last().map(String::as_str) == Some(*flag))
                }
                UsageError::Positional { positional } => {
                    assert!(positional.len() != 2);
                    assert!(positional.iter().all(|p| args.contains(p)));
                }
                UsageError::NoLogfile | UsageError::NoPort => {}
            }
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn valid_ptd_command_line_parses() {
    let args: Vec<String> = PTD_ARGS.iter().map(|a| a.to_string()).collect();
    let c = PtdCommandLine::parse(&args).unwrap();
    assert_eq!((c.port, c.device_type, c.gpib_board), (8888, 49, Some(0)));
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn ptd_command_line_survives_arbitrary_args(args in proptest::collection::vec("\\PC{0,12}|-[lpbc]", 0..14)) {
        check_ptd_args(&args);
    }

    #[test]
    fn ptd_command_line_survives_mutations(
        muts in mutations(0..6),
    ) {
        // One argument a line, so the line mutations apply to arguments.
        let bytes = mutate(&PTD_ARGS.join("\n"), &muts);
        let text = String::from_utf8_lossy(&bytes);
        let args: Vec<String> = text.lines().map(str::to_string).collect();
        check_ptd_args(&args);
    }
}

// ------------------------------------------------------- result folder text

const SPL: &str =
    "Time,01-02-2026 10:00:00.000,Watts,100.5,Volts,230.0,Amps,0.5,PF,0.9,Mark,notset\n\
    Time,01-02-2026 10:00:01.000,Watts,101.5,Volts,230.0,Amps,0.5,PF,0.9,Mark,notset\n\
    Time,01-02-2026 10:00:02.000,Watts,99.0,Volts,230.0,Amps,0.5,PF,0.9,Mark,notset\n";

const DETAIL: &str =
    ":::MLLOG {\"key\": \"power_begin\", \"value\": \"01-02-2026 10:00:00.500\", \"time_ms\": 1}\n\
    :::MLLOG {\"key\": \"result_validity\", \"value\": \"VALID\"}\n\
    :::MLLOG {\"key\": \"power_end\", \"value\": \"01-02-2026 10:00:01.500\", \"time_ms\": 2}\n";

fn check_spl(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let spl = dir.path().join("spl.txt");
    std::fs::write(&spl, bytes).unwrap();
    // A wide window: every parsable sample is inside.
    match timed("average_watts", || average_watts(&spl, 0.0, 4e9)) {
        Ok(w) => assert!(w > 0.0 || w.is_nan(), "{w}"),
        Err(e @ (CheckError::NoSamples { .. } | CheckError::Io { .. })) => {
            assert!(e.to_string().contains(&*spl.to_string_lossy()), "{e}")
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn check_detail(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let detail = dir.path().join("mlperf_log_detail.txt");
    std::fs::write(&detail, bytes).unwrap();
    if let Ok(Some((b, e))) = timed("power_window", || power_window(&detail)) {
        assert!(b.is_finite() && e.is_finite());
    }
}

#[test]
fn valid_result_folder_text_reads() {
    let dir = tempfile::tempdir().unwrap();
    let spl = dir.path().join("spl.txt");
    std::fs::write(&spl, SPL).unwrap();
    let w = average_watts(&spl, 0.0, 4e9).unwrap();
    assert!((w - (100.5 + 101.5 + 99.0) / 3.0).abs() < 1e-9);
    let detail = dir.path().join("mlperf_log_detail.txt");
    std::fs::write(&detail, DETAIL.replace('\n', "\r\n")).unwrap();
    let (b, e) = power_window(&detail).unwrap().unwrap();
    assert!((e - b - 1.0).abs() < 1e-9);
}

#[test]
fn time_in_line_is_fast_on_a_long_line_of_date_like_text() {
    // Every offset starts a candidate date: must not be quadratic in parses.
    let line = "1-1-1 1:1:1.1 ".repeat(5_000);
    timed("time_in_line", || time_in_line(&line));
    let digits = "1".repeat(70_000);
    timed("time_in_line", || time_in_line(&digits));
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn spl_reader_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        check_spl(&bytes);
    }

    #[test]
    fn spl_reader_survives_mutations(muts in mutations(0..6)) {
        check_spl(&mutate(SPL, &muts));
    }

    #[test]
    fn detail_log_reader_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        check_detail(&bytes);
    }

    #[test]
    fn detail_log_reader_survives_mutations(muts in mutations(0..6)) {
        check_detail(&mutate(DETAIL, &muts));
    }

    #[test]
    fn time_in_line_survives_arbitrary_text(line in "[0-9 :.\\-]{0,400}|\\PC{0,400}") {
        if let Some(t) = timed("time_in_line", || time_in_line(&line)) {
            prop_assert!(t.is_finite());
        }
    }
}

// ------------------------------------------------------------ the checker

use mlperf_power::checker::{check, Outcome};
use mlperf_power::result_folder::REQUIRED_FILES;
use serde_json::{json, Value};

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        "\\PC{0,30}".prop_map(Value::from),
        Just(Value::from("01-02-2026 10:00:00.500")),
        Just(Value::from("0f8fad5b-d9cb-469f-a165-70867728950e")),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A `client.json` or `server.json` with every field the checker requires,
/// each holding anything.
fn summary_json() -> impl Strategy<Value = Vec<u8>> {
    let keys = [
        "version",
        "timezone",
        "modules",
        "sources",
        "messages",
        "uuid",
        "session_name",
        "results",
        "phases",
        "ptd_messages",
        "ptd_config",
        "debug",
    ];
    prop_oneof![
        4 => proptest::collection::vec(json_value(), keys.len()).prop_map(move |vs| {
            let mut o = serde_json::Map::new();
            for (k, v) in keys.iter().zip(vs) {
                o.insert(k.to_string(), v);
            }
            // A plausible shape for the nested fields, with hostile leaves.
            o.insert("phases".into(), json!({"ranging": [[1, 2], [f64::MAX, -1], ["x"]], "testing": o["phases"].clone()}));
            serde_json::to_vec(&o).unwrap()
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..500),
    ]
}

fn text_file() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        Just(Some(SPL.as_bytes().to_vec())),
        Just(Some(DETAIL.as_bytes().to_vec())),
        mutations(0..6).prop_map(|m| Some(mutate(SPL, &m))),
        mutations(0..6).prop_map(|m| Some(mutate(DETAIL, &m))),
        proptest::collection::vec(any::<u8>(), 0..500).prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn checker_survives_hostile_result_folders(
        client in summary_json(),
        server in summary_json(),
        others in proptest::collection::vec(text_file(), REQUIRED_FILES.len()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        for (f, bytes) in REQUIRED_FILES.iter().zip(others) {
            let bytes = match *f {
                "power/client.json" => Some(client.clone()),
                "power/server.json" => Some(server.clone()),
                _ => bytes,
            };
            if let Some(b) = bytes {
                let p = dir.path().join(f);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, b).unwrap();
            }
        }
        let results = timed("check", || check(dir.path(), None));
        prop_assert_eq!(results.len(), 11);
        // A client.json that is not JSON fails its check, naming the file.
        if serde_json::from_slice::<Value>(&client).is_err() {
            match &results[0].outcome {
                Outcome::Failed(m) => prop_assert!(m.contains("power/client.json"), "{}", m),
                o => prop_assert!(false, "{:?}", o),
            }
        }
    }
}

/// Feeds `bytes` to [`LineConn::recv_file`] over loopback.
fn recv_file_from(bytes: Vec<u8>, dest: &Path) -> Result<u64, ProtocolError> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let writer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(&bytes);
    });
    let (stream, _) = listener.accept().unwrap();
    let mut conn = LineConn::new(stream, Waits::replies_within(Duration::from_secs(10))).unwrap();
    let r = conn.recv_file(dest);
    drop(conn);
    writer.join().unwrap();
    r
}

fn file_transfer() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        // Chunks whose lengths may lie, then maybe the end mark.
        (
            proptest::collection::vec((0usize..40, -2i64..40, any::<bool>()), 0..5),
            any::<bool>(),
        )
            .prop_map(|(chunks, end)| {
                let mut b = Vec::new();
                for (real, said, crlf) in chunks {
                    b.extend(format!("{said}{}", if crlf { "\r\n" } else { "\n" }).bytes());
                    b.extend(std::iter::repeat_n(b'z', real));
                }
                if end {
                    b.extend(b"0\r\n");
                }
                b
            }),
        Just(b"99999999999999999999\r\n".to_vec()),
        Just(b"67108865\r\n".to_vec()),
        Just(b"Error: no such file\r\n".to_vec()),
    ]
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn file_receiver_survives_hostile_transfers(bytes in file_transfer()) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("spl.txt");
        match timed("recv_file", || recv_file_from(bytes.clone(), &dest)) {
            Ok(n) => prop_assert_eq!(std::fs::metadata(&dest).unwrap().len(), n),
            Err(e) => {
                // Nothing half-written is left under the name.
                prop_assert!(!dest.exists(), "{}", e);
                let m = e.to_string();
                prop_assert!(m.starts_with("127.0.0.1:"), "{}", m);
            }
        }
    }
}

#[test]
fn file_receiver_names_the_line_that_is_not_a_chunk_length() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("spl.txt");
    let e = recv_file_from(b"Error: no such file\r\n".to_vec(), &dest).unwrap_err();
    assert!(e.to_string().contains("Error: no such file"), "{e}");
    let e = recv_file_from(b"67108865\r\n".to_vec(), &dest).unwrap_err();
    assert!(e.to_string().contains("67108865"), "{e}");
    assert!(!dest.exists());
}

#[test]
fn file_receiver_takes_chunks_larger_than_its_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("spl.txt");
    let len = 3 * (1 << 20) + 5;
    let mut bytes = format!("{len}\r\n").into_bytes();
    bytes.extend((0..len).map(|i| (i % 251) as u8));
    bytes.extend(b"2\r\nok0\r\n");
    assert_eq!(
        recv_file_from(bytes.clone(), &dest).unwrap(),
        len as u64 + 2
    );
    let got = std::fs::read(&dest).unwrap();
    assert_eq!(got.len(), len + 2);
    assert_eq!(&got[..len], &bytes[9..9 + len]);
    // A chunk announced large that stops short is a disconnection, and
    // nothing is left under the name.
    let dest = dir.path().join("short.txt");
    let e = recv_file_from(b"60000000\r\nabc".to_vec(), &dest).unwrap_err();
    assert!(matches!(e, ProtocolError::Disconnected { .. }), "{e}");
    assert!(!dest.exists());
}
