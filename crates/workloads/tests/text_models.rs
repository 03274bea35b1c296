//! The language models with seeded random weights (tiny shapes, so debug
//! builds stay fast): output shapes, determinism, batching that does not
//! change answers, a key/value cache that agrees with a fresh prefill, and
//! bad weights or configs refused with the file named.

use candle_core::DType;
use std::path::Path;
use workloads::device::DeviceSpec;
use workloads::text::decoder::{read_gpt2_config, GenerationEvent, Gpt2, Gpt2Config};
use workloads::text::encoder::{
    minilm_l6_v2_config, read_bert_config, BertConfig, SentenceEncoder,
};
use workloads::weights::WeightSource;

fn tiny_bert() -> BertConfig {
    BertConfig {
        vocab_size: 100,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 64,
        ..minilm_l6_v2_config()
    }
}

fn tiny_gpt2() -> Gpt2Config {
    Gpt2Config {
        vocab_size: 100,
        n_positions: 64,
        n_embd: 32,
        n_layer: 2,
        n_head: 4,
        ..Gpt2Config::gpt2_small()
    }
}

fn encoder(seed: u64) -> SentenceEncoder {
    SentenceEncoder::load(
        tiny_bert(),
        WeightSource::Random { seed },
        DeviceSpec::Cpu,
        DType::F32,
        true,
    )
    .unwrap()
}

fn gpt2(config: Gpt2Config, weights: WeightSource) -> Gpt2 {
    Gpt2::load(config, weights, DeviceSpec::Cpu, DType::F32).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn encoder_gives_one_unit_embedding_per_input_the_same_for_the_same_seed() {
    let inputs: [&[u32]; 3] = [&[1, 5, 9, 2], &[1, 7, 2], &[1, 3, 4, 5, 6, 7, 8, 2]];
    let a = encoder(3).embed(&inputs).unwrap();
    assert_eq!(a.len(), 3);
    for e in &a {
        assert_eq!(e.len(), 32);
        let norm: f32 = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        assert!(e.iter().all(|v| v.is_finite()));
    }
    assert_eq!(
        a,
        encoder(3).embed(&inputs).unwrap(),
        "same seed, same network"
    );
    let other = encoder(4).embed(&inputs).unwrap();
    assert!(
        max_abs_diff(&a[0], &other[0]) > 1e-3,
        "another seed, another network"
    );
    assert!(max_abs_diff(&a[0], &a[1]) > 1e-3, "different inputs differ");
}

#[test]
fn encoder_padding_does_not_change_an_embedding() {
    let enc = encoder(5);
    let short: &[u32] = &[1, 7, 2];
    let long: &[u32] = &[1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 2];
    let alone = enc.embed(&[short]).unwrap();
    let padded = enc.embed(&[long, short]).unwrap();
    let d = max_abs_diff(&alone[0], &padded[1]);
    assert!(d < 1e-5, "padding changed the embedding by {d}");
}

#[test]
fn encoder_rejects_inputs_it_cannot_hold() {
    let too_long = vec![1u32; 65];
    let err = encoder(1).embed(&[&too_long]).unwrap_err().to_string();
    assert!(err.contains("65 tokens") && err.contains("64"), "{err}");
    let err = encoder(1).embed(&[&[1, 100]]).unwrap_err().to_string();
    assert!(
        err.contains("token id 100") && err.contains("vocabulary"),
        "{err}"
    );
}

#[test]
fn decoder_generates_the_same_tokens_batched_or_alone() {
    let model = gpt2(tiny_gpt2(), WeightSource::Random { seed: 9 });
    let prompts: [&[u32]; 3] = [&[5, 6, 7, 8, 9], &[11], &[20, 21, 22]];
    let batched = model.generate(&prompts, 6, None, |_| {}).unwrap();
    assert_eq!(batched.len(), 3);
    for (i, p) in prompts.iter().enumerate() {
        assert_eq!(batched[i].len(), 6);
        assert!(batched[i].iter().all(|&t| t < 100));
        let alone = model.generate(&[p], 6, None, |_| {}).unwrap();
        assert_eq!(
            alone[0], batched[i],
            "prompt {i}: left padding changed the answer"
        );
    }
    let again = gpt2(tiny_gpt2(), WeightSource::Random { seed: 9 })
        .generate(&prompts, 6, None, |_| {})
        .unwrap();
    assert_eq!(again, batched, "same seed, same tokens");
}

#[test]
fn decoder_cache_agrees_with_a_fresh_prefill() {
    let model = gpt2(tiny_gpt2(), WeightSource::Random { seed: 2 });
    let prompt = [3u32, 14, 15, 92, 65];
    let cached = model
        .generate(&[&prompt], 4, None, |_| {})
        .unwrap()
        .remove(0);
    // The prompt extended by the first three generated tokens, prefilled at
    // once, must predict the fourth.
    let mut extended = prompt.to_vec();
    extended.extend_from_slice(&cached[..3]);
    let fresh = model.generate(&[&extended], 1, None, |_| {}).unwrap();
    assert_eq!(fresh[0], [cached[3]]);
}

#[test]
fn decoder_reports_each_first_token_before_its_completion() {
    let model = gpt2(tiny_gpt2(), WeightSource::Random { seed: 4 });
    let prompts: [&[u32]; 2] = [&[1, 2, 3], &[4, 5]];
    let mut events = Vec::new();
    let out = model
        .generate(&prompts, 5, None, |e| match e {
            GenerationEvent::FirstToken { row, token } => {
                events.push((std::time::Instant::now(), row, "first", vec![token]))
            }
            GenerationEvent::Done { row, tokens } => {
                events.push((std::time::Instant::now(), row, "done", tokens.to_vec()))
            }
        })
        .unwrap();
    assert_eq!(events.len(), 4);
    for (row, tokens) in out.iter().enumerate() {
        let first = events
            .iter()
            .position(|e| e.1 == row && e.2 == "first")
            .unwrap();
        let done = events
            .iter()
            .position(|e| e.1 == row && e.2 == "done")
            .unwrap();
        assert!(first < done && events[first].0 < events[done].0);
        assert_eq!(events[first].3[0], tokens[0]);
        assert_eq!(&events[done].3, tokens);
    }
    // Both first tokens come from the prefill, before any prompt finishes.
    assert_eq!(events[0].2, "first");
    assert_eq!(events[1].2, "first");
}

#[test]
fn decoder_stops_a_prompt_at_end_of_text_and_keeps_the_others_going() {
    let model = gpt2(tiny_gpt2(), WeightSource::Random { seed: 6 });
    let prompts: [&[u32]; 2] = [&[7, 8, 9], &[30, 31, 32, 33]];
    let free = model.generate(&prompts, 6, None, |_| {}).unwrap();
    // Make the first prompt's second token the end of text.
    let eos = free[0][1];
    let stopped = model.generate(&prompts, 6, Some(eos), |_| {}).unwrap();
    let cut = free[0].iter().position(|&t| t == eos).unwrap() + 1;
    assert_eq!(stopped[0], free[0][..cut]);
    let other_cut = free[1]
        .iter()
        .position(|&t| t == eos)
        .map_or(free[1].len(), |p| p + 1);
    assert_eq!(
        stopped[1],
        free[1][..other_cut],
        "the other row is unaffected"
    );
}

#[test]
fn decoder_refuses_prompts_it_cannot_hold() {
    let model = gpt2(tiny_gpt2(), WeightSource::Random { seed: 1 });
    let long = vec![1u32; 60];
    let err = model
        .generate(&[&long], 5, None, |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("64 positions"), "{err}");
    let err = model
        .generate(&[&[100]], 1, None, |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("token id 100") && err.contains("vocabulary"),
        "{err}"
    );
    let err = model
        .generate(&[&[]], 1, None, |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty prompt"), "{err}");
}

#[test]
fn encoder_weights_from_a_file_match_the_same_random_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let tensors = SentenceEncoder::export_random_weights(&tiny_bert(), 11, &path).unwrap();
    // Embeddings (3 tables + LayerNorm's 2) and 16 per layer.
    assert_eq!(tensors, 5 + 2 * 16);
    let from_file = SentenceEncoder::load(
        tiny_bert(),
        WeightSource::from_arg(path.to_str().unwrap()).unwrap(),
        DeviceSpec::Cpu,
        DType::F32,
        true,
    )
    .unwrap();
    let inputs: [&[u32]; 2] = [&[1, 2, 3, 4], &[1, 50, 2]];
    assert_eq!(
        from_file.embed(&inputs).unwrap(),
        encoder(11).embed(&inputs).unwrap()
    );
}

fn export_gpt2(path: &Path, seed: u64) {
    let tensors = Gpt2::export_random_weights(&tiny_gpt2(), seed, path).unwrap();
    // wte, wpe, ln_f's 2, and 12 per block.
    assert_eq!(tensors, 4 + 2 * 12);
}

#[test]
fn decoder_weights_from_a_file_match_the_same_random_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    export_gpt2(&path, 12);
    let from_file = gpt2(tiny_gpt2(), WeightSource::File(path));
    let random = gpt2(tiny_gpt2(), WeightSource::Random { seed: 12 });
    let prompts: [&[u32]; 2] = [&[1, 2, 3], &[9, 8]];
    assert_eq!(
        from_file.generate(&prompts, 4, None, |_| {}).unwrap(),
        random.generate(&prompts, 4, None, |_| {}).unwrap()
    );
}

#[test]
fn weights_that_do_not_fit_the_architecture_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bert = dir.path().join("bert.safetensors");
    SentenceEncoder::export_random_weights(&tiny_bert(), 1, &bert).unwrap();
    let load_bert = |config: BertConfig, path: &Path| {
        SentenceEncoder::load(
            config,
            WeightSource::File(path.to_path_buf()),
            DeviceSpec::Cpu,
            DType::F32,
            true,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let wider = load_bert(
        BertConfig {
            hidden_size: 64,
            ..tiny_bert()
        },
        &bert,
    );
    assert!(
        wider.contains("bert.safetensors") && wider.contains("shape"),
        "{wider}"
    );
    let deeper = load_bert(
        BertConfig {
            num_hidden_layers: 3,
            ..tiny_bert()
        },
        &bert,
    );
    assert!(
        deeper.contains("bert.safetensors") && deeper.contains("layer.2"),
        "{deeper}"
    );
    // GPT-2 weights are not a BERT, and the other way round.
    let gpt = dir.path().join("gpt2.safetensors");
    export_gpt2(&gpt, 1);
    let err = load_bert(tiny_bert(), &gpt);
    assert!(
        err.contains("gpt2.safetensors") && err.contains("embeddings"),
        "{err}"
    );
    let err = Gpt2::load(
        tiny_gpt2(),
        WeightSource::File(bert.clone()),
        DeviceSpec::Cpu,
        DType::F32,
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("bert.safetensors") && err.contains("wte"),
        "{err}"
    );
    let err = Gpt2::load(
        Gpt2Config {
            n_embd: 64,
            ..tiny_gpt2()
        },
        WeightSource::File(gpt),
        DeviceSpec::Cpu,
        DType::F32,
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("gpt2.safetensors") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn corrupt_or_missing_weight_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\0\0\0\0\0\0\0{\"a\": trunc").unwrap();
    let err = Gpt2::load(
        tiny_gpt2(),
        WeightSource::File(corrupt),
        DeviceSpec::Cpu,
        DType::F32,
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("corrupt.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );
    let missing = dir.path().join("none");
    let err = WeightSource::from_arg(missing.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("none"), "{err}");
}

fn write(dir: &Path, name: &str, content: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn configs_of_another_architecture_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bert_json = write(
        dir.path(),
        "bert.json",
        r#"{"model_type": "bert", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "max_position_embeddings": 64, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0}"#,
    );
    let c = read_bert_config(&bert_json).unwrap();
    assert_eq!((c.hidden_size, c.num_hidden_layers), (32, 2));
    let err = read_gpt2_config(&bert_json).unwrap_err().to_string();
    assert!(
        err.contains("bert.json") && err.contains("\"bert\" is not GPT-2"),
        "{err}"
    );

    let gpt_json = write(
        dir.path(),
        "gpt2.json",
        r#"{"model_type": "gpt2", "vocab_size": 100, "n_positions": 64, "n_embd": 32,
            "n_layer": 2, "n_head": 4, "eos_token_id": 99}"#,
    );
    let c = read_gpt2_config(&gpt_json).unwrap();
    assert_eq!(
        (c.n_embd, c.eos_token_id, c.layer_norm_epsilon),
        (32, Some(99), 1e-5)
    );
    let err = read_bert_config(&gpt_json).unwrap_err().to_string();
    assert!(
        err.contains("gpt2.json") && err.contains("not a BERT"),
        "{err}"
    );

    let odd = write(
        dir.path(),
        "odd.json",
        r#"{"vocab_size": 100, "n_positions": 64, "n_embd": 30, "n_layer": 2, "n_head": 4}"#,
    );
    let err = read_gpt2_config(&odd).unwrap_err().to_string();
    assert!(
        err.contains("odd.json") && err.contains("multiple"),
        "{err}"
    );
    let act = write(
        dir.path(),
        "act.json",
        r#"{"vocab_size": 100, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 4,
            "activation_function": "swish"}"#,
    );
    let err = read_gpt2_config(&act).unwrap_err().to_string();
    assert!(err.contains("act.json") && err.contains("swish"), "{err}");
    let broken = write(dir.path(), "broken.json", "{\"n_embd\": ");
    let err = read_gpt2_config(&broken).unwrap_err().to_string();
    assert!(err.contains("broken.json"), "{err}");
}

/// Our GPT-2 against Hugging Face transformers' `GPT2LMHeadModel` on the
/// same seeded weights. `data/gpt2_tiny_reference.json` was made by
/// exporting the weights (`Gpt2::export_random_weights(&config, 12, path)`)
/// and running, in Python with torch and transformers:
///
/// ```text
/// sd = safetensors.torch.load_file(path)
/// m = GPT2LMHeadModel(GPT2Config(vocab_size=1000, n_positions=128, n_embd=64,
///                                n_layer=2, n_head=4)).eval()
/// m.transformer.load_state_dict(sd, strict=False); m.tie_weights()
/// top = m(torch.tensor([tokens])).logits[0].topk(5, dim=-1)
/// ```
///
/// (all logits agreed to 3.3e-7 when it was made).
#[test]
fn decoder_logits_match_transformers_gpt2_on_the_same_weights() {
    #[derive(serde::Deserialize)]
    struct Reference {
        tokens: Vec<u32>,
        top_ids: Vec<Vec<usize>>,
        top_logits: Vec<Vec<f32>>,
    }
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gpt2_tiny_reference.json"),
    )
    .unwrap();
    let reference: Reference = serde_json::from_str(&text).unwrap();
    let config = Gpt2Config {
        vocab_size: 1000,
        n_positions: 128,
        n_embd: 64,
        n_layer: 2,
        n_head: 4,
        ..Gpt2Config::gpt2_small()
    };
    let model = gpt2(config, WeightSource::Random { seed: 12 });
    let logits = model.logits(&reference.tokens).unwrap();
    assert_eq!(logits.len(), reference.tokens.len());
    for (pos, (ids, values)) in reference
        .top_ids
        .iter()
        .zip(&reference.top_logits)
        .enumerate()
    {
        for (&id, &want) in ids.iter().zip(values) {
            let got = logits[pos][id];
            assert!(
                (got - want).abs() < 1e-5,
                "position {pos}, token {id}: {got} vs transformers' {want}"
            );
        }
        let best = (0..logits[pos].len())
            .max_by(|&a, &b| logits[pos][a].total_cmp(&logits[pos][b]))
            .unwrap();
        assert_eq!(best, ids[0], "position {pos}: greedy choice differs");
    }
}
