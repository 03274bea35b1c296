//! `joulebench run --workload openai|http` end to end: against a real
//! OpenAI-compatible server (llama.cpp's llama-server, built from PyPI by
//! tools/llama-server/build.sh, with Gemma-3-270M), and against a scripted
//! server where exact behaviour matters (Ctrl-C, templates, energy labels).

mod common;

use common::{joulebench, read_json, skip};
use endpoints::testing::{llama_like_chat, Answer, End, FakeServer};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running llama-server.
struct Llama {
    _process: Killed,
    addr: String,
}

impl Llama {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// llama-server with Gemma-3-270M on a free loopback port, or `None` after
/// saying loudly why not (a failure in CI).
fn llama(test: &str, key_file: Option<&Path>) -> Option<Llama> {
    let (Some(server), Some(model)) = (
        std::env::var_os("JOULEBENCH_LLAMA_SERVER"),
        std::env::var_os("JOULEBENCH_LLAMA_MODEL"),
    ) else {
        skip(
            test,
            "JOULEBENCH_LLAMA_SERVER/JOULEBENCH_LLAMA_MODEL are not set \
             (bash tools/llama-server/build.sh prints them; about 4 minutes)",
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(server);
    command
        .arg("-m")
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["-t", "2", "-c", "2048", "--parallel", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(key) = key_file {
        command.arg("--api-key-file").arg(key);
    }
    let llama = Llama {
        _process: Killed(command.spawn().expect("starting llama-server")),
        addr: format!("127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(&llama.addr).is_ok()
            && common::http_get(&llama.addr, "/health").0 == 200
        {
            return Some(llama);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("llama-server did not become healthy in 60 s");
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_real_llama_server_under_server_load_gives_tokens_latencies_and_energy_per_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "sk-jb-right-key\n").unwrap();
    let Some(server) = llama("real llama-server", Some(&key)) else {
        return;
    };
    let out_dir = dir.path().join("run");
    let out = joulebench()
        .args(["run", "--workload", "openai", "--endpoint", &server.url()])
        .args([
            "--model",
            "gemma-3-270m",
            "--scenario",
            "server",
            "--duration",
            "4",
        ])
        .args([
            "--set",
            "target_qps=1.5",
            "--max-tokens",
            "12",
            "--ignore-eos",
        ])
        .args(["--sampling", "temperature=0", "--samples", "16", "-q"])
        .args(["--power", "estimate", "--tdp", "20"])
        .arg("-o")
        .arg(&out_dir)
        .env("OPENAI_API_KEY", "sk-jb-right-key")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{stdout}\n{stderr}"
    );
    let result = read_json(&out_dir.join("result.json"));
    let serving = &result["serving"];
    let succeeded = serving["requests"]["succeeded"].as_u64().unwrap();
    assert!(succeeded >= 4, "{serving}");
    assert_eq!(serving["requests"]["failed"], 0, "{serving}");
    assert_eq!(serving["tokens"]["source"], "usage");
    // ignore_eos: exactly --max-tokens per answer, as the server counted them.
    assert_eq!(
        serving["tokens"]["output"].as_u64().unwrap(),
        12 * succeeded
    );
    // The client's decode time per token agrees with the server's own clock.
    let client_tpot = serving["tpot_ms"]["mean"].as_f64().unwrap();
    let server_tpot = serving["server"]["ms_per_output_token_mean"]
        .as_f64()
        .unwrap();
    assert!(
        (client_tpot / server_tpot - 1.0).abs() < 0.35,
        "client {client_tpot} ms vs server {server_tpot} ms per token"
    );
    let energy = serving["energy"].as_array().unwrap();
    let total = energy
        .iter()
        .find(|e| e["basis"] == "estimated total")
        .unwrap_or_else(|| panic!("{serving}"));
    assert_eq!(total["provenance"], "estimated");
    let per_token = total["j_per_output_token"].as_f64().unwrap();
    let expected = total["energy_j"].as_f64().unwrap() / (12 * succeeded) as f64;
    assert!((per_token / expected - 1.0).abs() < 1e-9);
    assert!(stdout.contains("energy/token"), "{stdout}");
    // LoadGen's token keys are in the detail log.
    let detail = std::fs::read_to_string(out_dir.join("mlperf_log_detail.txt")).unwrap();
    for key in [
        "result_first_token_mean_latency_ns",
        "result_time_per_output_token_99.00_percentile_ns",
        "requested_use_token_latencies",
    ] {
        assert!(detail.contains(key), "no {key}");
    }
    // The key appears in no file and no output.
    for file in files_under(&out_dir) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("sk-jb-right-key"),
            "{} holds the key",
            file.display()
        );
    }
    assert!(!stdout.contains("sk-jb") && !stderr.contains("sk-jb"));
}

#[test]
fn a_wrong_key_stops_at_once_naming_where_the_key_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("server-key");
    std::fs::write(&key, "sk-jb-server\n").unwrap();
    let Some(server) = llama("llama-server with a key", Some(&key)) else {
        return;
    };
    let out_dir = dir.path().join("run");
    let started = Instant::now();
    let out = joulebench()
        .args(["run", "--workload", "openai", "--endpoint", &server.url()])
        .args([
            "--model",
            "m",
            "--scenario",
            "single-stream",
            "--duration",
            "30",
            "-q",
        ])
        .arg("-o")
        .arg(&out_dir)
        .env("OPENAI_API_KEY", "sk-jb-wrong")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        stderr.contains("refused the credential from OPENAI_API_KEY")
            && stderr.contains("Invalid API Key"),
        "{stderr}"
    );
    assert!(!stderr.contains("sk-jb-wrong"));
    let result = read_json(&out_dir.join("result.json"));
    assert!(result["serving"]["requests"]["failures"]["http_401"].as_u64() >= Some(1));
}

#[test]
fn a_prompt_longer_than_the_context_is_a_400_that_names_its_sample() {
    let Some(server) = llama("llama-server, prompt too long", None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    let long = "sea ".repeat(6000);
    std::fs::write(
        &prompts,
        format!("{{\"prompt\": \"Hello\"}}\n{{\"prompt\": \"{long}\"}}\n"),
    )
    .unwrap();
    let out_dir = dir.path().join("run");
    let out = joulebench()
        .args(["run", "--workload", "openai", "--endpoint", &server.url()])
        .args(["--model", "m", "--scenario", "offline", "--max-tokens", "4"])
        .args(["--mode", "accuracy", "-q"])
        .arg("--dataset")
        .arg(&prompts)
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = read_json(&out_dir.join("result.json"));
    assert!(result["serving"]["requests"]["failures"]["http_400"].as_u64() >= Some(1));
    let detail = std::fs::read_to_string(out_dir.join("mlperf_log_detail.txt")).unwrap();
    assert!(detail.contains("sample 1 ("), "the failing sample is named");
    assert!(detail.contains("context"), "the server's reason is quoted");
}

#[test]
fn ctrl_c_mid_stream_leaves_complete_logs_and_an_interrupted_result() {
    let server = FakeServer::start(|_| {
        Answer::Stream(
            llama_like_chat(
                50,
                Duration::from_millis(5),
                Duration::from_millis(40),
                true,
            ),
            End::Complete,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let mut child = joulebench()
        .args(["run", "--workload", "openai", "--endpoint", &server.url()])
        .args([
            "--model",
            "m",
            "--scenario",
            "server",
            "--set",
            "target_qps=20",
        ])
        .args(["--duration", "60", "-q"])
        .arg("-o")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { kill(child.id() as i32, 2) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let result = read_json(&dir.path().join("result.json"));
    assert_eq!(result["status"], "interrupted");
    assert!(result["serving"]["requests"]["issued"].as_u64() > Some(10));
    let detail = std::fs::read_to_string(dir.path().join("mlperf_log_detail.txt")).unwrap();
    for line in detail.lines() {
        serde_json::from_str::<serde_json::Value>(line.strip_prefix(":::MLLOG ").unwrap()).unwrap();
    }
    assert!(
        std::fs::read_to_string(dir.path().join("mlperf_log_summary.txt"))
            .unwrap()
            .contains("INVALID")
    );
}

#[test]
fn a_plain_json_endpoint_through_a_template() {
    let server = FakeServer::start(|seen| {
        let prompt = seen.body["inputs"].as_str().unwrap_or_default().to_string();
        Answer::Json(
            200,
            serde_json::json!({"generated_text": format!("echo: {prompt}")}).to_string(),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("t.json");
    std::fs::write(
        &template,
        r#"{"inputs": "{{prompt}}", "parameters": {"max_new_tokens": "{{max_tokens}}"}}"#,
    )
    .unwrap();
    let out_dir = dir.path().join("run");
    let out = joulebench()
        .args(["run", "--workload", "http", "--endpoint"])
        .arg(format!("{}/generate", server.url()))
        .arg("--request-template")
        .arg(&template)
        .args(["--response-pointer", "/generated_text", "--max-tokens", "9"])
        .args([
            "--scenario",
            "offline",
            "--set",
            "min_query_count=20",
            "--duration",
            "0.2",
            "-q",
        ])
        .args(["--mode", "accuracy", "--samples", "5"])
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = server.requests();
    assert!(seen.iter().all(|s| s.path == "/generate"));
    assert_eq!(seen[0].body["parameters"]["max_new_tokens"], 9);
    // Accuracy mode: each answer's text is in LoadGen's accuracy log (hex).
    let log = read_json(&out_dir.join("mlperf_log_accuracy.json"));
    let first = log.as_array().unwrap()[0]["data"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes: Vec<u8> = (0..first.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&first[i..i + 2], 16).unwrap())
        .collect();
    assert!(String::from_utf8(bytes)
        .unwrap()
        .starts_with("echo: Write about"));
}

#[test]
fn bad_endpoint_flags_fail_before_the_run_with_what_to_do() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--workload", "openai", "--model", "m"],
            "needs --endpoint",
        ),
        (
            &["--workload", "openai", "--endpoint", "http://127.0.0.1:9"],
            "needs --model",
        ),
        (
            &[
                "--workload",
                "openai",
                "--model",
                "m",
                "--endpoint",
                "http://u:sk-x@127.0.0.1:9",
            ],
            "OPENAI_API_KEY",
        ),
        (
            &[
                "--workload",
                "openai",
                "--model",
                "m",
                "--endpoint",
                "http://127.0.0.1:9",
                "--sampling",
                "stream=false",
            ],
            "set by joulebench itself",
        ),
    ];
    for (args, expected) in cases {
        let out = joulebench().arg("run").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn a_remote_serving_node_measured_through_its_exporter_gives_measured_joules_per_token() {
    // The "serving node": a RAPL package at 40 W behind `joulebench exporter`.
    let sys = tempfile::tempdir().unwrap();
    let _rapl = common::FakeRapl::start(sys.path(), 40.0);
    let mut child = joulebench()
        .args(["exporter", "--listen", "127.0.0.1:0", "--power", "rapl"])
        .args(["--power-interval", "50ms", "--sysfs-root"])
        .arg(sys.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = common::exporter_address(child.stderr.take().unwrap());
    let _exporter = Killed(child);
    let server = FakeServer::start(|_| {
        Answer::Stream(
            llama_like_chat(8, Duration::from_millis(5), Duration::from_millis(5), true),
            End::Complete,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let out = joulebench()
        .args(["run", "--workload", "openai", "--endpoint", &server.url()])
        .args([
            "--model",
            "m",
            "--scenario",
            "server",
            "--set",
            "target_qps=40",
        ])
        .args(["--duration", "2", "-q", "--power-interval", "100ms"])
        .arg("--power")
        .arg(format!("prom://{addr}/metrics"))
        .arg("-o")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = read_json(&dir.path().join("result.json"));
    let serving = &result["serving"];
    let tokens = serving["tokens"]["output"].as_u64().unwrap();
    assert_eq!(
        tokens,
        8 * serving["requests"]["succeeded"].as_u64().unwrap()
    );
    let measured = serving["energy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["basis"] == "measured total")
        .unwrap_or_else(|| panic!("{serving}\n{stdout}"));
    assert_eq!(measured["provenance"], "measured");
    assert!(
        measured["scope"].as_str().unwrap().starts_with("prom-"),
        "{measured}"
    );
    // 40 W over the timed window, per token.
    let window_s = result["timed_window"]["duration_s"].as_f64().unwrap();
    let per_token = measured["j_per_output_token"].as_f64().unwrap();
    let expected = 40.0 * window_s / tokens as f64;
    assert!(
        (per_token / expected - 1.0).abs() < 0.25,
        "{per_token} J/token, expected about {expected}"
    );
}

#[test]
fn a_concurrency_sweep_gives_one_closed_loop_per_level_and_the_pareto_page() {
    let server = FakeServer::start(|_| {
        Answer::Stream(
            llama_like_chat(6, Duration::from_millis(10), Duration::from_millis(3), true),
            End::Complete,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let out = joulebench()
        .args(["sweep", "--concurrency", "1,3", "--workload", "openai"])
        .args([
            "--endpoint",
            &server.url(),
            "--model",
            "m",
            "--duration",
            "0.5",
        ])
        .args([
            "--set",
            "min_query_count=12",
            "--power",
            "estimate",
            "--tdp",
            "10",
            "-q",
        ])
        .arg("-o")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Twenty-odd queries are too few for SingleStream's early stopping: INVALID is fine.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sweep = read_json(&dir.path().join("sweep.json"));
    let points = sweep["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    for (point, level) in points.iter().zip([1, 3]) {
        assert_eq!(point["concurrency"], level);
        let serving = &point["serving"];
        assert_eq!(serving["requests"]["failed"], 0);
        assert!(serving["tokens_per_s_per_user"].as_f64().unwrap() > 0.0);
        assert!(
            serving["energy"][0]["output_tokens_per_j"]
                .as_f64()
                .unwrap()
                > 0.0
        );
        let detail =
            std::fs::read_to_string(dir.path().join(format!("c{level}/mlperf_log_detail.txt")))
                .unwrap();
        assert_eq!(
            detail.contains("\"effective_closed_loop_streams\", \"value\": 3"),
            level == 3
        );
    }
    // Three streams move more tokens per second than one.
    assert!(
        points[1]["serving"]["system_tokens_per_s"].as_f64()
            > points[0]["serving"]["system_tokens_per_s"].as_f64()
    );
    let html = std::fs::read_to_string(dir.path().join("sweep.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("c=3"),
        "the Pareto chart"
    );
    assert!(stdout.contains("| concurrency |"), "{stdout}");
}

#[test]
fn a_server_killed_mid_stream_ends_in_failures_by_kind_not_a_hang() {
    let Some(server) = llama("llama-server killed mid-stream", None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut run = joulebench()
        .args(["run", "--workload", "openai", "--endpoint", &server.url()])
        .args([
            "--model",
            "m",
            "--scenario",
            "single-stream",
            "--streams",
            "2",
        ])
        .args(["--max-tokens", "400", "--ignore-eos", "--duration", "4"])
        .args(["--set", "min_query_count=4", "--idle-timeout", "1.5", "-q"])
        // Requests sent after the SIGTERM may be accepted and never answered.
        .args(["--request-timeout", "6", "--sut-timeout", "10"])
        .arg("-o")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SIGTERM: llama-server stops generating but holds the streams open,
    // silent, for up to 30 s before it exits.
    let pid = server._process.0.id() as i32;
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { kill(pid, 15) }, 0);
    let started = Instant::now();
    let status = run.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(1));
    let result = read_json(&dir.path().join("result.json"));
    let failures = &result["serving"]["requests"]["failures"];
    let by_kind = failures.as_object().unwrap();
    assert!(
        by_kind.contains_key("idle_timeout") || by_kind.contains_key("truncated"),
        "{failures}"
    );
    let reasons = result["performance"]["validity"]["reasons"].to_string();
    assert!(reasons.contains("failed in the SUT"), "{reasons}");
}
