//! The endpoint SUT against a scripted server on loopback: token timings
//! reach LoadGen exactly, and every kind of failure is counted, makes the
//! result INVALID with its reason, and never hangs the run.

use endpoints::client::{ApiKey, ClientOptions};
use endpoints::openai::{Generation, OpenAiApi};
use endpoints::plain::PlainProtocol;
use endpoints::prompts::synthetic;
use endpoints::testing::{llama_like_chat, Answer, End, FakeServer};
use endpoints::{EndpointConfig, EndpointSut, Protocol};
use loadgen::{start_test, LogSettings, RunControl, Scenario, TestOutput, TestSettings};
use report::serving::ServingRecord;
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);

fn chat(stream: bool) -> Protocol {
    Protocol::OpenAi {
        api: OpenAiApi::Chat,
        generation: Generation {
            model: "m".into(),
            max_tokens: Some(8),
            ignore_eos: true,
            stream,
            extra: Default::default(),
        },
    }
}

struct Run {
    output: TestOutput,
    serving: ServingRecord,
    detail: String,
    took: Duration,
}

fn run(url: &str, protocol: Protocol, settings: TestSettings, client: ClientOptions) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let control = RunControl {
        sut_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let sut = EndpointSut::new(
        EndpointConfig {
            url: endpoints::client::parse_url(url).unwrap(),
            protocol,
            prompts: synthetic(8, 4, 1),
            client,
            max_concurrency: Some(4),
            threads: 1,
            tokenizer: None,
            name: None,
        },
        control.clone(),
    )
    .unwrap();
    let qsl = endpoints::prompts::PromptQsl {
        name: "prompts".into(),
        total: 8,
        performance: 8,
    };
    let started = Instant::now();
    let output = start_test(
        &sut,
        &qsl,
        &settings,
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &control,
    )
    .unwrap();
    let took = started.elapsed();
    let window_s = output
        .power_window
        .as_ref()
        .map_or(0.0, |w| (w.end_ns - w.begin_ns) as f64 / 1e9);
    let serving = sut.tally().record(window_s);
    let detail = std::fs::read_to_string(dir.path().join("mlperf_log_detail.txt")).unwrap();
    Run {
        output,
        serving,
        detail,
        took,
    }
}

fn single_stream(queries: u64, tokens: bool) -> TestSettings {
    TestSettings {
        scenario: Scenario::SingleStream,
        min_query_count: queries,
        max_query_count: queries,
        min_duration_ms: 0,
        use_token_latencies: tokens,
        ..Default::default()
    }
}

#[test]
fn token_latencies_reach_loadgen_from_the_first_content_not_the_role_chunk() {
    let server = FakeServer::start(|_| {
        Answer::Stream(llama_like_chat(6, 60 * MS, 15 * MS, true), End::Complete)
    });
    let r = run(
        &format!("{}/v1/chat/completions", server.url()),
        chat(true),
        single_stream(4, true),
        ClientOptions::default(),
    );
    let perf = r.output.performance.as_ref().unwrap();
    let ttft = perf.first_token.as_ref().unwrap();
    let tpot = perf.time_per_output_token.as_ref().unwrap();
    // LoadGen's clock starts at issue, a little before the request is sent.
    assert!(
        ttft.min_ns >= 60_000_000 && ttft.max_ns < 90_000_000,
        "{ttft:?}"
    );
    assert!(
        tpot.min_ns >= 14_000_000 && tpot.max_ns < 25_000_000,
        "{tpot:?}"
    );
    assert_eq!(perf.result.token_count, 4 * 6, "tokens from usage");
    let s = &r.serving;
    assert_eq!((s.requests.succeeded, s.requests.failed), (4, 0));
    assert_eq!(s.tokens.source, "usage");
    assert_eq!(s.tokens.input, Some(28));
    let client_ttft = s.ttft_ms.as_ref().unwrap();
    assert!(
        client_ttft.p50 >= 60.0 && client_ttft.p50 < 80.0,
        "{client_ttft:?}"
    );
    // One token per chunk: the two definitions agree.
    let (a, b) = (
        s.tpot_ms.as_ref().unwrap(),
        s.tpot_endpoints_ms.as_ref().unwrap(),
    );
    assert!((a.p50 - b.p50).abs() < 1e-9);
    assert!(s.server.as_ref().unwrap().ms_per_output_token_mean > 14.0);
    // The request the server saw.
    let seen = &server.requests()[0];
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.body["stream"], true);
    assert_eq!(seen.body["stream_options"]["include_usage"], true);
    assert_eq!(seen.body["ignore_eos"], true);
    assert_eq!(seen.body["max_tokens"], 8);
    // Four queries are too few for early stopping; the run itself is whole.
    assert!(perf.validity.run_complete, "{:?}", perf.validity.reasons);
}

#[test]
fn without_usage_tokens_are_counted_per_chunk_and_said_so() {
    let server = FakeServer::start(|_| {
        Answer::Stream(llama_like_chat(5, 5 * MS, 2 * MS, false), End::Complete)
    });
    let r = run(
        &server.url(),
        chat(true),
        single_stream(3, true),
        ClientOptions::default(),
    );
    assert_eq!(r.serving.tokens.source, "chunks");
    assert_eq!(r.serving.tokens.output, 15);
}

#[test]
fn a_non_streaming_answer_is_one_piece() {
    let server = FakeServer::start(|_| {
        Answer::Json(
            200,
            r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#.into(),
        )
    });
    let r = run(
        &server.url(),
        chat(false),
        single_stream(3, false),
        ClientOptions::default(),
    );
    assert_eq!(r.serving.requests.succeeded, 3);
    assert_eq!(r.serving.tokens.output, 6);
    assert!(!r.serving.streaming);
    assert_eq!(server.requests()[0].body["stream"], false);
}

/// The run with every sample answered by `answer`: it ends (fast), it is
/// INVALID, and its failures are all of `kind`.
fn fails_as(
    kind: &str,
    answer: impl Fn() -> Answer + Send + Sync + 'static,
    client: ClientOptions,
) -> Run {
    let server = FakeServer::start(move |_| answer());
    let r = run(&server.url(), chat(true), single_stream(3, true), client);
    let perf = r.output.performance.as_ref().unwrap();
    assert!(!perf.validity.valid, "{kind}");
    assert_eq!(
        r.serving.requests.failures.get(kind),
        Some(&3),
        "{:?}",
        r.serving.requests
    );
    assert_eq!(r.serving.requests.succeeded, 0);
    assert!(
        perf.validity
            .reasons
            .iter()
            .any(|x| x.contains(&format!("3 × {kind}"))),
        "{:?}",
        perf.validity.reasons
    );
    assert!(r.took < Duration::from_secs(10), "{kind} took {:?}", r.took);
    r
}

#[test]
fn http_errors_are_counted_by_status_with_the_servers_reason() {
    let r = fails_as(
        "http_400",
        || {
            Answer::Json(
                400,
                r#"{"error":{"code":400,"message":"the request exceeds the available context size","type":"exceed_context_size_error"}}"#.into(),
            )
        },
        ClientOptions::default(),
    );
    assert!(r.detail.contains("exceeds the available context size"));
    assert!(
        r.detail.contains("sample "),
        "the detail log names the sample"
    );
    fails_as(
        "http_429",
        || Answer::Json(429, "{}".into()),
        ClientOptions::default(),
    );
    fails_as(
        "http_503",
        || Answer::Json(503, "busy".into()),
        ClientOptions::default(),
    );
}

#[test]
fn broken_streams_are_failures_not_successes() {
    let cut = || {
        let mut events = llama_like_chat(4, MS, MS, true);
        events.truncate(3);
        Answer::Stream(events, End::Cut)
    };
    let r = fails_as("truncated", cut, ClientOptions::default());
    assert!(
        r.serving.tokens.output_of_failed > 0,
        "partial tokens still count"
    );
    // A complete body without [DONE] or finish_reason is cut short too.
    fails_as(
        "truncated",
        || {
            let mut events = llama_like_chat(4, MS, MS, false);
            events.truncate(3);
            Answer::Stream(events, End::Complete)
        },
        ClientOptions::default(),
    );
    fails_as(
        "malformed",
        || Answer::RawStream(b"data: {not json}\n\n".to_vec(), End::Complete),
        ClientOptions::default(),
    );
    fails_as(
        "server_error",
        || {
            Answer::Stream(
                vec![(MS, r#"{"error":{"message":"out of memory"}}"#.into())],
                End::Complete,
            )
        },
        ClientOptions::default(),
    );
    // Closed before any answer, and again on the fresh connection.
    fails_as("no_answer", || Answer::Close, ClientOptions::default());
}

#[test]
fn a_silent_stream_ends_at_the_idle_timeout() {
    let client = ClientOptions {
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let r = fails_as(
        "idle_timeout",
        || {
            let mut events = llama_like_chat(4, MS, MS, true);
            events.truncate(2);
            Answer::Stream(events, End::Hang(Duration::from_secs(5)))
        },
        client,
    );
    assert!(r.took < Duration::from_secs(3), "{:?}", r.took);
}

#[test]
fn a_refused_connection_is_counted_not_hung() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = run(
        &format!("http://127.0.0.1:{port}"),
        chat(true),
        single_stream(3, true),
        ClientOptions::default(),
    );
    assert_eq!(r.serving.requests.failures.get("connect"), Some(&3));
    assert!(!r.output.performance.unwrap().validity.valid);
}

#[test]
fn a_refused_credential_stops_the_run_at_once_and_names_its_source_not_the_key() {
    let server = FakeServer::start(|seen| {
        if seen.header("authorization") == Some("Bearer right") {
            Answer::Stream(llama_like_chat(2, MS, MS, true), End::Complete)
        } else {
            Answer::Json(401, r#"{"error":{"code":401,"message":"Invalid API Key","type":"authentication_error"}}"#.into())
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "sk-wrong-secret\n").unwrap();
    let client = ClientOptions {
        api_key: ApiKey::find(Some(&key_file)).unwrap(),
        ..Default::default()
    };
    let r = run(&server.url(), chat(true), single_stream(50, true), client);
    assert!(
        r.serving.requests.issued < 50,
        "issuing stopped: {:?}",
        r.serving.requests
    );
    let perf = r.output.performance.unwrap();
    let reasons = perf.validity.reasons.join("\n");
    assert!(
        reasons.contains("refused the credential from file"),
        "{reasons}"
    );
    assert!(reasons.contains("Invalid API Key"), "{reasons}");
    assert!(!r.detail.contains("sk-wrong-secret") && !reasons.contains("sk-wrong-secret"));
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer sk-wrong-secret"),
        "the key is sent as a bearer token"
    );
}

#[test]
fn loadgen_over_network_asks_the_name_and_posts_queries() {
    let server = FakeServer::start(|seen| match seen.path.as_str() {
        "/getname/" => Answer::Json(200, r#"{"name": "Demo SUT (Network SUT) node"}"#.into()),
        "/predict/" => Answer::Json(
            200,
            format!(
                r#"{{"result": "echo {}"}}"#,
                seen.body["query"].as_str().unwrap_or("?").len()
            ),
        ),
        _ => Answer::Json(404, "{}".into()),
    });
    let r = run(
        &server.url(),
        Protocol::Plain {
            protocol: PlainProtocol::Lon,
            max_tokens: None,
        },
        TestSettings {
            scenario: Scenario::Server,
            server_target_qps: 200.0,
            min_query_count: 20,
            min_duration_ms: 0,
            ..Default::default()
        },
        ClientOptions::default(),
    );
    let perf = r.output.performance.as_ref().unwrap();
    assert_eq!(
        perf.sut_name,
        "Demo SUT (Network SUT) node (joulebench QDL, Network SUT)"
    );
    assert_eq!(
        r.serving.requests.succeeded, perf.result.samples_issued,
        "{:?} {:?}",
        r.serving.requests, perf.validity.reasons
    );
    assert_eq!(r.serving.api, "lon");
    let seen = server.requests();
    assert_eq!(seen[0].method, "GET");
    assert!(seen[1..]
        .iter()
        .all(|s| s.path == "/predict/" && s.body["query"].is_string()));
}

#[test]
fn a_connection_the_server_closed_unseen_is_resent_once_not_failed() {
    // llama.cpp's server: keep-alive announced, yet the next request on the
    // connection after a stream is read and dropped.
    let server = FakeServer::start(|_| {
        Answer::Stream(llama_like_chat(3, MS, MS, true), End::CompleteThenDropNext)
    });
    let r = run(
        &server.url(),
        chat(true),
        single_stream(30, true),
        ClientOptions::default(),
    );
    assert_eq!(r.serving.requests.failed, 0, "{:?}", r.serving.requests);
    assert_eq!(r.serving.requests.succeeded, 30);
    assert!(r.serving.requests.resent >= 1, "{:?}", r.serving.requests);
    assert!(
        server
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
            > 1
    );
}

#[test]
fn https_with_a_private_ca_works_with_cacert_and_is_refused_without() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    // tests/data: a test CA (ca.pem) and a certificate it signed for
    // localhost and 127.0.0.1 (server.pem, server.key), made with openssl.
    let server = FakeServer::start_tls(
        &std::fs::read(data.join("server.pem")).unwrap(),
        &std::fs::read(data.join("server.key")).unwrap(),
        |_| Answer::Stream(llama_like_chat(2, MS, MS, true), End::Complete),
    );
    assert!(server.url().starts_with("https://"));
    let trusted = ClientOptions {
        cacert: Some(data.join("ca.pem")),
        ..Default::default()
    };
    let r = run(&server.url(), chat(true), single_stream(3, true), trusted);
    assert_eq!(r.serving.requests.succeeded, 3, "{:?}", r.serving.requests);
    // Without the CA the certificate is not trusted: every request fails to connect.
    let r = run(
        &server.url(),
        chat(true),
        single_stream(3, true),
        ClientOptions::default(),
    );
    assert_eq!(r.serving.requests.failures.get("connect"), Some(&3));
    assert!(r.detail.contains("certificate"), "the detail log says why");
}

#[test]
fn a_tokenizer_counts_tokens_and_gives_endpoints_tpot_when_a_chunk_holds_several() {
    // A word-level tokenizer.json: every whitespace-separated word is one token.
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = dir.path().join("tokenizer.json");
    std::fs::write(
        &tokenizer,
        r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
            "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"[UNK]":0,"a":1},"unk_token":"[UNK]"}}"#,
    )
    .unwrap();
    let piece = |text: &str, finish: &str| {
        format!(
            r#"{{"choices":[{{"finish_reason":{finish},"index":0,"delta":{{"content":"{text}"}}}}]}}"#
        )
    };
    let events = vec![
        (5 * MS, piece(" a b c", "null")),
        (20 * MS, piece(" d", "null")),
        (20 * MS, piece(" e", r#""stop""#)),
        (MS, "[DONE]".to_string()),
    ];
    let server = FakeServer::start(move |_| Answer::Stream(events.clone(), End::Complete));
    let sut = EndpointSut::new(
        EndpointConfig {
            url: endpoints::client::parse_url(&server.url()).unwrap(),
            protocol: chat(true),
            prompts: synthetic(2, 3, 1),
            client: ClientOptions::default(),
            max_concurrency: None,
            threads: 1,
            tokenizer: Some(tokenizer),
            name: None,
        },
        RunControl::default(),
    )
    .unwrap();
    let out = start_test(
        &sut,
        &endpoints::prompts::PromptQsl {
            name: "p".into(),
            total: 2,
            performance: 2,
        },
        &single_stream(3, true),
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &RunControl::default(),
    )
    .unwrap();
    let s = sut.tally().record(1.0);
    assert_eq!(s.tokens.source, "tokenizer");
    assert_eq!(s.tokens.output, 15, "5 words per answer");
    assert_eq!(out.performance.unwrap().result.token_count, 15);
    // LoadGen: decode time / 4; MLPerf Endpoints: / 2 (tokens after the first chunk).
    let (loadgen, ours) = (s.tpot_ms.unwrap().p50, s.tpot_endpoints_ms.unwrap().p50);
    assert!((ours / loadgen - 2.0).abs() < 0.01, "{loadgen} vs {ours}");
}
