//! `joulebench power-client` + `power-server` + `ptd-serve` on loopback,
//! with an SNTP responder of the test's own: the result folder MLPerf's
//! checker reads, checked by our checker; and the bad inputs of issue 10.

mod common;

use common::joulebench;
use common::power_dev::*;
use mlperf_power::checker::{self, Outcome};
use std::time::Duration;

#[test]
fn client_server_and_virtual_analyzer_produce_a_folder_that_passes_all_but_the_source_checks() {
    let dir = tempfile::tempdir().unwrap();
    let ntp = sntp();
    let trace = trace(dir.path(), 200.0, 20.0);
    let wrapper = wrapper(dir.path(), &trace, "--rehearsal-model WT310");
    let mut srv = PowerServer::start(dir.path(), &wrapper, &ntp, "300ms", &[]);
    let port = srv.port;
    let lg = dir.path().join("loadgen");
    let out = dir.path().join("out");
    let workload = format!(
        "{} run --workload sleep --duration 3 --quiet --power none -o {}",
        common::BIN,
        lg.display()
    );
    let run = joulebench()
        .args([
            "power-client",
            "-a",
            &format!("127.0.0.1:{port}"),
            "-n",
            &ntp,
            "-l",
            "e2e",
            "-S",
        ])
        .args(["-w", &workload, "-L"])
        .arg(&lg)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let folder = std::path::PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        folder.is_dir() && !folder.to_string_lossy().ends_with(".incomplete"),
        "{stdout}"
    );
    let status = srv.child.wait().unwrap(); // -S: the server exits after this client
    assert!(status.success());

    let results = checker::check(&folder, None);
    assert_eq!(results.len(), 11);
    for r in &results {
        let source_check = r.name.contains("sources checksum");
        match (&r.outcome, source_check) {
            (Outcome::Failed(_), true) => {}
            (Outcome::Failed(e), false) => panic!("{} failed: {e}", r.name),
            (_, true) => panic!("{} passed: joulebench must never pass it", r.name),
            _ => {}
        }
    }
    // The average power the checker computes matches the trace within 0.5 %.
    let detail = folder.join("run_1/mlperf_log_detail.txt");
    let (b, e) = mlperf_power::loadgen_logs::power_window(&detail)
        .unwrap()
        .unwrap();
    let avg = checker::average_watts(&folder.join("run_1/spl.txt"), b, e).unwrap();
    assert!(
        (avg - 200.0).abs() / 200.0 < 0.005,
        "run_1 averages {avg} W, trace 200 W"
    );
    // A rehearsal says so.
    assert!(folder.join("REHEARSAL.txt").is_file());
    let logs = std::fs::read_to_string(folder.join("power/ptd_logs.txt")).unwrap();
    assert!(logs.contains("REHEARSAL"), "{logs}");
    let client_json = std::fs::read_to_string(folder.join("power/client.json")).unwrap();
    assert!(client_json.contains("\"rehearsal\": true"));
    // `--check` prints the same verdict.
    let check = joulebench()
        .args(["power-client", "--check"])
        .arg(&folder)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(text.contains("9 passed, 2 failed"), "{text}");
    assert_eq!(check.status.code(), Some(1));
}

#[test]
fn a_failing_workload_leaves_a_marked_incomplete_folder_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let ntp = sntp();
    let trace = trace(dir.path(), 150.0, 0.0);
    let wrapper = wrapper(dir.path(), &trace, "");
    let srv = PowerServer::start(dir.path(), &wrapper, &ntp, "300ms", &[]);
    let port = srv.port;
    let out = dir.path().join("out");
    let run = joulebench()
        .args([
            "power-client",
            "-a",
            &format!("127.0.0.1:{port}"),
            "-n",
            &ntp,
        ])
        .args(["-w", "exit 3", "-L"])
        .arg(dir.path().join("lg"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("workload") && err.contains("incomplete"),
        "{err}"
    );
    let client_dirs: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().collect();
    assert_eq!(client_dirs.len(), 1);
    let d = client_dirs[0].path();
    assert!(d.to_string_lossy().ends_with(".incomplete"));
    assert!(std::fs::read_to_string(d.join("INCOMPLETE.txt"))
        .unwrap()
        .contains("workload"));
    // The server saw the client go away mid-session and marked its folder.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let marked = std::fs::read_dir(dir.path().join("server"))
            .unwrap()
            .flatten()
            .any(|e| e.path().join("INCOMPLETE.txt").is_file());
        if marked {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server folder not marked"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_clock_off_by_more_than_400_ms_is_refused_and_says_by_how_much() {
    let dir = tempfile::tempdir().unwrap();
    let good = mlperf_power::ntp::SntpResponder::bind("127.0.0.1:0", 0.0).unwrap();
    let bad = mlperf_power::ntp::SntpResponder::bind("127.0.0.1:0", 0.9).unwrap();
    let trace = trace(dir.path(), 150.0, 0.0);
    let wrapper = wrapper(dir.path(), &trace, "");
    let srv = PowerServer::start(dir.path(), &wrapper, &good.addr().to_string(), "300ms", &[]);
    let port = srv.port;
    let run = joulebench()
        .args(["power-client", "-a", &format!("127.0.0.1:{port}"), "-n"])
        .arg(bad.addr().to_string())
        .args(["-w", "true", "-L"])
        .arg(dir.path().join("lg"))
        .arg("-o")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("+9") && err.contains("400 ms"), "{err}");
    assert!(err.contains("never sets the clock"), "{err}");
}

/// A loopback peer that answers as power-dev's server does (its
/// `lib/server.py`: replies `OK`, `OK {id},{uuid}`, a bare float for `time`,
/// chunked files for `download`, `Error` for a file not in its list) and
/// records every byte our client sends.
#[test]
fn our_client_sends_power_devs_sequence_to_a_power_dev_server() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let ntp = sntp();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let id = "2026-11-24_10-00-00_pd";
    let server_uuid = "0f3c2a40-9d7e-4a53-8a2b-5d2c6f1e9a10";
    let peer = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut received = Vec::<u8>::new();
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).unwrap() == 0 {
                return received;
            }
            received.extend(&line);
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            let f: Vec<&str> = text.split(',').collect();
            let reply = match f[0] {
                "mlcommons/power client v3" => "mlcommons/power server v3".to_string(),
                "time" => format!("{}", mlperf_power::summary::unix_now_s()),
                "new" => format!("OK {id},{server_uuid}"),
                "session" | "cleanup" => "OK".to_string(),
                "download" if f[2] == "run_1/ptd_out.txt" => "Error".to_string(),
                "download" => {
                    let body = match f[2] {
                        "power/server.json" => "{\"joulebench\": {}}".to_string(),
                        name if name.ends_with("spl.txt") => format!(
                            "Time,11-24-2026 10:00:00.000,Watts,100.0,Volts,230.0,Amps,0.43,PF,1.0,Mark,{id}\n"
                        ),
                        name => format!("{name} from power-dev\n"),
                    };
                    // Two chunks, then the end, as send_file writes them.
                    let (a, b) = body.split_at(body.len() / 2);
                    w.write_all(format!("{}\r\n", a.len()).as_bytes()).unwrap();
                    w.write_all(a.as_bytes()).unwrap();
                    w.write_all(format!("{}\r\n", b.len()).as_bytes()).unwrap();
                    w.write_all(b.as_bytes()).unwrap();
                    w.write_all(b"0\r\n").unwrap();
                    continue;
                }
                _ => "Error".to_string(),
            };
            w.write_all(format!("{reply}\r\n").as_bytes()).unwrap();
        }
    });
    let lg = dir.path().join("lg");
    let stamp = "date -u '+%m-%d-%Y %H:%M:%S.%3N'";
    let workload = format!(
        "mkdir -p {lg}; sleep 0.2; B=$({stamp}); sleep 0.3; E=$({stamp}); sleep 0.2; \
         printf ':::MLLOG power_begin \"%s\"\\n:::MLLOG power_end \"%s\"\\n' \"$B\" \"$E\" > {lg}/mlperf_log_detail.txt; \
         echo summary > {lg}/mlperf_log_summary.txt",
        lg = lg.display()
    );
    let run = joulebench()
        .args([
            "power-client",
            "-a",
            &format!("127.0.0.1:{port}"),
            "-n",
            &ntp,
            "-l",
            "pd",
        ])
        .args(["-w", &workload, "-L"])
        .arg(&lg)
        .arg("-o")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let received = String::from_utf8(peer.join().unwrap()).unwrap();
    let uuid = received
        .lines()
        .find_map(|l| l.strip_prefix("new,pd,"))
        .unwrap()
        .trim_end()
        .to_string();
    let mut expected = String::from("mlcommons/power client v3\r\ntime\r\n");
    expected += &format!("new,pd,{uuid}\r\ntime\r\n");
    expected += &format!("session,{id},start,ranging\r\nsession,{id},stop,ranging\r\ntime\r\n");
    expected += &format!("session,{id},start,testing\r\nsession,{id},stop,testing\r\n");
    expected += &format!("session,{id},done\r\n");
    for f in [
        "power/ptd_logs.txt",
        "ranging/spl.txt",
        "power/server.json",
        "power/server.log",
        "run_1/spl.txt",
        "run_1/ptd_out.txt",
    ] {
        expected += &format!("download,{id},{f}\r\n");
    }
    expected += &format!("cleanup,{id}\r\n");
    assert_eq!(received, expected);
    let folder = dir.path().join("out").join(id);
    assert!(mlperf_power::result_folder::missing_files(&folder).is_empty());
    assert_eq!(
        std::fs::read_to_string(folder.join("power/server.log")).unwrap(),
        "power/server.log from power-dev\n"
    );
}
