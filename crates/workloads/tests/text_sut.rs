//! The language SUTs driven by LoadGen (tiny random models, so debug builds
//! stay fast): the encoder answers every sample with an embedding, and the
//! decoder's first tokens arrive before its completions, so time to first
//! token, time per output token and the token count come out of the run.

use candle_core::DType;
use loadgen::{start_test, LogSettings, Mode, RunControl, Scenario, TestSettings};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::batcher::{BatchPolicy, BatchingSut};
use workloads::device::DeviceSpec;
use workloads::text::dataset::TextQsl;
use workloads::text::decoder::{Gpt2, Gpt2Config};
use workloads::text::encoder::{minilm_l6_v2_config, BertConfig, SentenceEncoder};
use workloads::text::serve::{tokens_from_bytes, EncoderModel, GenerationPolicy, GenerationSut};
use workloads::weights::WeightSource;

fn policy(max_batch: usize) -> BatchPolicy {
    BatchPolicy {
        max_batch,
        max_wait: Duration::from_millis(1),
        workers: 2,
    }
}

fn short_run(scenario: Scenario, mode: Mode, token_latencies: bool) -> TestSettings {
    TestSettings {
        scenario,
        mode,
        min_duration_ms: 0,
        min_query_count: 24,
        offline_expected_qps: 10.0,
        server_target_qps: 200.0,
        single_stream_expected_latency_ns: 1e6,
        use_token_latencies: token_latencies,
        ..Default::default()
    }
}

/// `(qsl_idx, data)` of every entry of an accuracy log.
fn accuracy_log(dir: &std::path::Path) -> Vec<(usize, Vec<u8>)> {
    let text = std::fs::read_to_string(dir.join("mlperf_log_accuracy.json")).unwrap();
    let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    entries
        .iter()
        .map(|e| {
            let hex = e["data"].as_str().unwrap();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (e["qsl_idx"].as_u64().unwrap() as usize, bytes)
        })
        .collect()
}

#[test]
fn encoder_sut_answers_every_sample_with_its_embedding() {
    let config = BertConfig {
        vocab_size: 200,
        hidden_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 32,
        ..minilm_l6_v2_config()
    };
    let encoder = SentenceEncoder::load(
        config,
        WeightSource::Random { seed: 1 },
        DeviceSpec::Cpu,
        DType::F32,
        true,
    )
    .unwrap();
    let qsl = Arc::new(TextQsl::synthetic(12, 12, 5, 16, 200));
    let model = Arc::new(EncoderModel {
        encoder,
        qsl: Arc::clone(&qsl),
    });
    let sut = BatchingSut::new("encoder".into(), model, policy(4));
    let dir = tempfile::tempdir().unwrap();
    let out = start_test(
        &sut,
        &*qsl,
        &short_run(Scenario::Offline, Mode::AccuracyOnly, false),
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &RunControl::default(),
    )
    .unwrap();
    assert!(out.accuracy.unwrap().complete);
    assert!(sut.errors().is_empty(), "{:?}", sut.errors());
    let logged = accuracy_log(dir.path());
    assert_eq!(
        logged.len(),
        12,
        "accuracy mode covers the whole library once"
    );
    for (_, bytes) in &logged {
        assert_eq!(bytes.len(), 32 * 4, "32 little-endian f32 values");
        let norm: f32 = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).powi(2))
            .sum();
        assert!((norm - 1.0).abs() < 1e-4, "a unit vector, not {norm}");
    }
}

fn tiny_decoder() -> Arc<Gpt2> {
    let config = Gpt2Config {
        vocab_size: 200,
        n_positions: 64,
        n_embd: 32,
        n_layer: 2,
        n_head: 4,
        eos_token_id: None,
        ..Gpt2Config::gpt2_small()
    };
    Arc::new(
        Gpt2::load(
            config,
            WeightSource::Random { seed: 3 },
            DeviceSpec::Cpu,
            DType::F32,
        )
        .unwrap(),
    )
}

#[test]
fn decoder_sut_reports_first_tokens_before_completions_and_counts_tokens() {
    const NEW_TOKENS: usize = 8;
    for scenario in [Scenario::Offline, Scenario::Server, Scenario::SingleStream] {
        let qsl = Arc::new(TextQsl::synthetic(16, 16, 2, 10, 200));
        let sut = GenerationSut::new(
            "gpt2".into(),
            tiny_decoder(),
            Arc::clone(&qsl),
            GenerationPolicy {
                batching: policy(8),
                max_new_tokens: NEW_TOKENS,
                eos: None,
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let out = start_test(
            &sut,
            &*qsl,
            &short_run(scenario, Mode::PerformanceOnly, true),
            &LogSettings::in_dir(dir.path().to_path_buf()),
            Instant::now(),
            &RunControl::default(),
        )
        .unwrap();
        assert!(sut.errors().is_empty(), "{:?}", sut.errors());
        let perf = out.performance.unwrap();
        assert!(perf.run_problems.is_empty(), "{:?}", perf.run_problems);
        let completed = perf.result.samples_completed;
        assert!(completed >= 24, "{scenario}: {completed} samples");
        assert_eq!(
            perf.result.token_count,
            completed * NEW_TOKENS as u64,
            "{scenario}: every sample's tokens counted"
        );
        let ttft = perf.first_token.as_ref().expect("time to first token");
        let tpot = perf
            .time_per_output_token
            .as_ref()
            .expect("time per output token");
        let latency = perf.sample.as_ref().unwrap();
        assert_eq!(
            ttft.count as u64, completed,
            "{scenario}: a first token per sample"
        );
        assert!(
            ttft.mean_ns < latency.mean_ns,
            "{scenario}: first tokens ({} ns) must come before completions ({} ns)",
            ttft.mean_ns,
            latency.mean_ns
        );
        assert!(tpot.mean_ns > 0, "{scenario}");
    }
}

#[test]
fn decoder_sut_logs_generated_token_ids_in_accuracy_mode() {
    let qsl = Arc::new(TextQsl::synthetic(6, 6, 4, 5, 200));
    let model = tiny_decoder();
    let sut = GenerationSut::new(
        "gpt2".into(),
        Arc::clone(&model),
        Arc::clone(&qsl),
        GenerationPolicy {
            batching: policy(4),
            max_new_tokens: 5,
            eos: None,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    start_test(
        &sut,
        &*qsl,
        &short_run(Scenario::Offline, Mode::AccuracyOnly, true),
        &LogSettings::in_dir(dir.path().to_path_buf()),
        Instant::now(),
        &RunControl::default(),
    )
    .unwrap();
    let logged = accuracy_log(dir.path());
    assert_eq!(logged.len(), 6);
    for (index, bytes) in logged {
        let tokens = tokens_from_bytes(&bytes);
        let prompt = workloads::text::tokens::synthetic_tokens(4, index, 5, 200);
        let alone = model.generate(&[&prompt], 5, None, |_| {}).unwrap();
        assert_eq!(tokens, alone[0], "sample {index}");
    }
}
