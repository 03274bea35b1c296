//! `joulebench power-server` answering power-dev's client byte for byte, and
//! its answers to bad input.
//!
//! The client side here replays the lines power-dev's client sends
//! (`ptd_client_server/lib/client.py` at power-dev's v3: the magic, `time`
//! before `new` and before each stage, `new,{label},{uuid}`,
//! `session,{id},start|stop,ranging|testing`, `session,{id},done`, one
//! `download,{id},{file}` per file of its `FETCH_FILES_LIST`, `cleanup,{id}`),
//! each terminated by `\r\n`, and reads the replies as it does (lines, and
//! chunked files `{len}\r\n{bytes}` ending with `0\r\n`).

mod common;

use common::power_dev::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

struct Peer {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Peer {
    fn connect(port: u16) -> Peer {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Peer {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }
    fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    }
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        assert!(l.ends_with("\r\n"), "reply {l:?} does not end with CRLF");
        l.trim_end_matches("\r\n").to_string()
    }
    fn cmd(&mut self, line: &str) -> String {
        self.send(line);
        self.line()
    }
    fn file(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let n: usize = self.line().parse().expect("chunk length");
            if n == 0 {
                return out;
            }
            let mut chunk = vec![0; n];
            self.r.read_exact(&mut chunk).unwrap();
            out.extend(chunk);
        }
    }
}

#[test]
fn our_server_answers_power_devs_client_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let trace = trace(dir.path(), 300.0, 0.0);
    let wrapper = wrapper(dir.path(), &trace, "--rehearsal-model WT310");
    let srv = PowerServer::start(dir.path(), &wrapper, &sntp(), "200ms", &[]);
    let port = srv.port;
    let mut p = Peer::connect(port);
    assert_eq!(
        p.cmd("mlcommons/power client v3"),
        "mlcommons/power server v3"
    );
    let t: f64 = p.cmd("time").parse().unwrap();
    assert!((t - mlperf_power::summary::unix_now_s()).abs() < 1.0);
    let uuid = "8d8ac610-566d-4ef0-9c22-186b2a5ed793";
    let reply = p.cmd(&format!("new,replay,{uuid}"));
    let (id, server_uuid) = reply.strip_prefix("OK ").unwrap().split_once(',').unwrap();
    assert!(
        id.ends_with("_replay") && id.len() == "2026-11-24_10-00-00_replay".len(),
        "{id}"
    );
    assert_eq!(server_uuid.len(), 36);
    let id = id.to_string();
    p.cmd("time");
    assert_eq!(p.cmd(&format!("session,{id},start,ranging")), "OK");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(p.cmd(&format!("session,{id},stop,ranging")), "OK");
    p.cmd("time");
    assert_eq!(p.cmd(&format!("session,{id},start,testing")), "OK");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(p.cmd(&format!("session,{id},stop,testing")), "OK");
    assert_eq!(p.cmd(&format!("session,{id},done")), "OK");
    // power-dev's FETCH_FILES_LIST, in its order.
    for f in [
        "power/ptd_logs.txt",
        "ranging/spl.txt",
        "power/server.json",
        "power/server.log",
        "run_1/spl.txt",
    ] {
        p.send(&format!("download,{id},{f}"));
        let bytes = p.file();
        assert!(!bytes.is_empty(), "{f} is empty");
        if f == "power/server.json" {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["uuid"]["client"], uuid);
            assert_eq!(v["session_name"], id.as_str());
            let msgs = v["messages"].as_array().unwrap();
            // magic, time, new, time, start, stop, time, start, stop (done is not listed)
            assert_eq!(msgs.len(), 9, "{msgs:?}");
            let cmds: Vec<&str> = v["ptd_messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["cmd"].as_str().unwrap())
                .collect();
            assert_eq!(
                &cmds[..6],
                [
                    "Hello",
                    "Identify",
                    "RR",
                    "SR,V,Auto",
                    "SR,A,Auto",
                    "SR,A,Auto"
                ]
            );
            assert_eq!(cmds[6], format!("Go,1000,0,{id}_ranging"));
            assert_eq!(&cmds[cmds.len() - 2..], ["SR,V,Auto", "SR,A,Auto"]);
            assert_ptd_config_is_power_devs(&v["ptd_config"], &wrapper);
        }
        if f.ends_with("spl.txt") {
            let text = String::from_utf8(bytes).unwrap();
            let samples = text.lines().filter(|l| l.starts_with("Time,")).count();
            assert!(samples >= 2, "{f}: {text}");
        }
    }
    assert_eq!(p.cmd(&format!("cleanup,{id}")), "OK");
    assert!(!dir.path().join("server").join(&id).exists());
}

/// `ptd_config` exactly as power-dev's director writes it and MLPerf's
/// checker reads it: a **list**, one entry per analyzer.
///
/// - power-dev (mlcommons/power-dev, `ptd_client_server/lib/server.py`,
///   commit c4b3ad8): `ServerConfig` builds `ptd_summary[i] = {"command",
///   "device_type", "interface_flag", "dc_flag", "device_port", "channel"}`
///   per `[analyzerN]` (`command` = `[ptd, "-l", log, "-p", port, *(-b N),
///   *(-c CH,CH), *(dcFlag), *(interfaceFlag), device_type, device_port]`), and
///   `Server.handle_connection` stores the list of them as
///   `summary.ptd_config`.
/// - the checker (mlcommons/inference,
///   `tools/submission/submission_checker/checks/power/power_checker.py`,
///   commit b66003e): `check_ptd_config` runs `for analyzer in ptd_config:
///   dev_num = analyzer["device_type"]` (an object there raises `TypeError:
///   string indices must be integers`), and for device 77 reads the `-c`
///   value after `"-c"` in `analyzer["command"]` and `analyzer["channel"]`.
fn assert_ptd_config_is_power_devs(cfg: &serde_json::Value, ptd: &std::path::Path) {
    let list = cfg
        .as_array()
        .unwrap_or_else(|| panic!("ptd_config is not a list: {cfg}"));
    assert_eq!(list.len(), 1, "one entry per analyzer: {cfg}");
    let a = list[0].as_object().unwrap();
    let mut keys: Vec<&str> = a.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "channel",
            "command",
            "dc_flag",
            "device_port",
            "device_type",
            "interface_flag"
        ]
    );
    assert_eq!(a["device_type"], 49);
    assert_eq!(a["interface_flag"], "");
    assert_eq!(a["dc_flag"], serde_json::Value::Null);
    assert_eq!(a["device_port"], "/dev/null");
    assert_eq!(a["channel"], serde_json::Value::Null);
    let command: Vec<&str> = a["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(command.len(), 7, "{command:?}");
    assert_eq!(command[0], ptd.to_str().unwrap());
    assert_eq!(command[1], "-l");
    assert!(command[2].ends_with("ptd_logfile_1.log"), "{command:?}");
    assert_eq!(command[3], "-p");
    assert!(command[4].parse::<u16>().is_ok(), "{command:?}");
    assert_eq!(&command[5..], ["49", "/dev/null"]);
}

#[test]
fn bad_input_gets_clear_errors_and_the_session_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let trace = trace(dir.path(), 300.0, 0.0);
    let wrapper = wrapper(dir.path(), &trace, "");
    let srv = PowerServer::start(dir.path(), &wrapper, &sntp(), "200ms", &[]);
    let port = srv.port;
    let mut p = Peer::connect(port);
    assert_eq!(
        p.cmd("mlcommons/power client v3"),
        "mlcommons/power server v3"
    );
    assert_eq!(p.cmd("hello"), "Error: unknown command");
    assert_eq!(p.cmd("new,bad label,x"), "Error: invalid label");
    assert_eq!(
        p.cmd("session,nope,start,ranging"),
        "Error: unknown session"
    );
    let reply = p.cmd("new,bad,8d8ac610-566d-4ef0-9c22-186b2a5ed793");
    let id = reply[3..].split(',').next().unwrap().to_string();
    assert_eq!(
        p.cmd("session,other,start,ranging"),
        "Error: unknown session"
    );
    assert_eq!(
        p.cmd(&format!("session,{id},stop,testing")),
        "Error: command not valid in state Initial"
    );
    assert!(p
        .cmd(&format!("download,{id},power/server.json"))
        .starts_with("Error: unknown session"));
    assert!(p
        .cmd(&format!("download,{id},/etc/passwd"))
        .starts_with("Error"));
    assert_eq!(p.cmd(&format!("session,{id},start,ranging")), "OK");
    assert!(p
        .cmd(&format!("session,{id},done"))
        .starts_with("Error: `done` before"));
    drop(p); // disconnect mid-session
    let folder = dir.path().join("server").join(format!("{id}.incomplete"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !folder.join("INCOMPLETE.txt").is_file() {
        assert!(
            std::time::Instant::now() < deadline,
            "not marked incomplete"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let why = std::fs::read_to_string(folder.join("INCOMPLETE.txt")).unwrap();
    assert!(why.contains("client disconnected"), "{why}");
    // The analyzer was stopped: a new client can start a session at once.
    let mut p = Peer::connect(port);
    assert_eq!(
        p.cmd("mlcommons/power client v3"),
        "mlcommons/power server v3"
    );
    let reply = p.cmd("new,again,8d8ac610-566d-4ef0-9c22-186b2a5ed793");
    let id = reply[3..].split(',').next().unwrap().to_string();
    assert_eq!(p.cmd(&format!("session,{id},start,ranging")), "OK");
}

#[test]
fn a_ptdaemon_that_stops_answering_or_exits_ends_the_session_with_an_error() {
    for (how, expect) in [("kill -STOP", "no reply"), ("kill -TERM", "exited")] {
        let dir = tempfile::tempdir().unwrap();
        let trace = trace(dir.path(), 300.0, 0.0);
        let inner = wrapper(dir.path(), &trace, "");
        // The first start (the server's probe) behaves; later ones fail after 1 s.
        // The script ends its own child when the server stops it (SIGTERM).
        let flaky = dir.path().join("flaky.sh");
        std::fs::write(
            &flaky,
            format!(
                "#!/bin/sh\nif [ -e {probe} ]; then\n  {inner} \"$@\" & pid=$!\n  \
                 trap 'kill -CONT $pid; kill -TERM $pid; wait $pid; exit 1' TERM\n  \
                 sleep 1; {how} $pid\n  \
                 while kill -0 $pid 2>/dev/null; do sleep 0.2 & wait $!; done\n  exit 1\nfi\n\
                 touch {probe}\nexec {inner} \"$@\"\n",
                probe = dir.path().join("probed").display(),
                inner = inner.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&flaky, std::fs::Permissions::from_mode(0o755)).unwrap();
        let srv = PowerServer::start(
            dir.path(),
            &flaky,
            &sntp(),
            "200ms",
            &["--ptd-timeout", "1s"],
        );
        let port = srv.port;
        let mut p = Peer::connect(port);
        p.cmd("mlcommons/power client v3");
        let reply = p.cmd("new,flaky,8d8ac610-566d-4ef0-9c22-186b2a5ed793");
        let id = reply[3..].split(',').next().unwrap().to_string();
        assert_eq!(p.cmd(&format!("session,{id},start,ranging")), "OK");
        std::thread::sleep(Duration::from_millis(1500));
        let reply = p.cmd(&format!("session,{id},stop,ranging"));
        assert!(
            reply.starts_with("Error: analyzer 1:") && reply.contains(expect),
            "{how}: {reply}"
        );
        let why = std::fs::read_to_string(
            dir.path()
                .join("server")
                .join(format!("{id}.incomplete/INCOMPLETE.txt")),
        )
        .unwrap();
        assert!(why.contains(expect), "{why}");
        assert_eq!(
            p.cmd(&format!("session,{id},stop,ranging")),
            "Error: unknown session"
        );
    }
}

#[test]
fn a_server_with_a_token_takes_no_action_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let trace = trace(dir.path(), 300.0, 0.0);
    let wrapper = wrapper(dir.path(), &trace, "");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let srv = PowerServer::start(
        dir.path(),
        &wrapper,
        &sntp(),
        "200ms",
        &["--token-file", token.to_str().unwrap()],
    );
    let port = srv.port;
    let mut p = Peer::connect(port);
    p.cmd("mlcommons/power client v3");
    assert!(p
        .cmd("new,x,8d8ac610-566d-4ef0-9c22-186b2a5ed793")
        .starts_with("Error: this server requires a token"));
    assert_eq!(p.cmd("joulebench-token,wrong"), "Error: wrong token");
    assert_eq!(p.cmd("joulebench-token,s3cret"), "OK");
    assert!(p
        .cmd("new,x,8d8ac610-566d-4ef0-9c22-186b2a5ed793")
        .starts_with("OK "));
}
