//! Language models as systems under test: `minilm` (a BERT sentence
//! encoder answering with embeddings) and `gpt2` (a decoder generating
//! tokens, with token latencies). Everything a run needs — architecture,
//! weights, tokenizer, data — is read and checked against each other here,
//! before the timed run; then a short untimed calibration sets default
//! targets from what the model really does on this device.

use crate::model_workload::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use loadgen::{QuerySampleIndex, QuerySampleLibrary, SystemUnderTest};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use workloads::batcher::{BatchPolicy, BatchingSut, DeviceGroup};
use workloads::text::dataset::{read_text_dataset, Framing, TextQsl};
use workloads::text::decoder::{read_gpt2_config, Gpt2, Gpt2Config};
use workloads::text::encoder::{minilm_l6_v2_config, read_bert_config, SentenceEncoder};
use workloads::text::serve::{EncoderModel, GenerationPolicy, GenerationSut};
use workloads::text::tokens::{Cut, TextTokenizer};
use workloads::weights::WeightSource;

/// Where `joulebench run --help` lists these options.
const HEADING: &str = "Text models (minilm, gpt2)";

#[derive(Debug, Clone, Args)]
pub struct TextArgs {
    /// tokenizer.json. Default: the one beside --weights; with none, inputs are a synthetic
    /// token stream (random weights and no --dataset only).
    #[arg(long, value_name = "FILE", help_heading = HEADING)]
    pub tokenizer: Option<PathBuf>,

    /// Text data set, tokenized before the run: JSON Lines or a JSON list of {"text": ...} or
    /// {"prompt": ...} objects, or SQuAD JSON. Default: a synthetic token stream.
    #[arg(long, value_name = "FILE", help_heading = HEADING)]
    pub dataset: Option<PathBuf>,

    /// gpt2: most tokens generated per sample (greedy; real text stops at end of text).
    #[arg(long, value_name = "TOKENS", default_value = "32", help_heading = HEADING)]
    pub max_new_tokens: usize,

    /// Longest input in tokens (longer ones are cut); synthetic inputs have exactly this
    /// many. Default: 128 for minilm, 64 for gpt2.
    #[arg(long, value_name = "TOKENS", help_heading = HEADING)]
    pub seq_len: Option<usize>,

    /// The architecture as a Hugging Face config.json (layers, widths, vocabulary). Default:
    /// config.json beside --weights, else all-MiniLM-L6-v2 or GPT-2 small.
    #[arg(long, value_name = "FILE", help_heading = HEADING)]
    pub model_config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextModel {
    /// all-MiniLM-L6-v2-shaped BERT sentence encoder.
    MiniLm,
    /// GPT-2 small-shaped decoder.
    Gpt2,
}

impl TextModel {
    fn name(self) -> &'static str {
        match self {
            TextModel::MiniLm => "minilm",
            TextModel::Gpt2 => "gpt2",
        }
    }
}

pub struct TextWorkload {
    pub sut: Box<dyn SystemUnderTest>,
    /// The encoder's batching SUT (per-device work and errors after the run).
    pub batching: Option<Arc<BatchingSut>>,
    pub qsl: Arc<TextQsl>,
    pub parameters: serde_json::Value,
    pub capacity_per_s: f64,
    pub latency_ns: f64,
}

/// Where the weights' companion files (config.json, tokenizer.json) live.
fn weights_folder(weights: &WeightSource) -> Option<PathBuf> {
    match weights {
        WeightSource::File(path) => path.parent().map(Path::to_path_buf),
        WeightSource::Random { .. } => None,
    }
}

/// `--model-config`, else `config.json` beside the weights.
fn config_file(text: &TextArgs, folder: Option<&Path>) -> Option<PathBuf> {
    text.model_config.clone().or_else(|| {
        folder
            .map(|f| f.join("config.json"))
            .filter(|p| p.is_file())
    })
}

/// `--tokenizer`, else `tokenizer.json` beside the weights.
fn tokenizer_file(text: &TextArgs, folder: Option<&Path>) -> Option<PathBuf> {
    text.tokenizer.clone().or_else(|| {
        folder
            .map(|f| f.join("tokenizer.json"))
            .filter(|p| p.is_file())
    })
}

/// The samples: the data set tokenized, or synthetic tokens.
#[allow(clippy::too_many_arguments)]
fn library(
    text: &TextArgs,
    tokenizer: Option<&mut TextTokenizer>,
    framing: Framing,
    seq_len: usize,
    vocab_size: usize,
    seed: u64,
    samples: usize,
    performance_samples: usize,
) -> Result<TextQsl> {
    let qsl = match (&text.dataset, tokenizer) {
        (Some(path), Some(tokenizer)) => {
            let cut = match framing {
                Framing::Encoder => Cut::End,
                Framing::Decoder => Cut::Start,
            };
            tokenizer.set_max_tokens(Some(seq_len), cut)?;
            let records = read_text_dataset(path)?;
            TextQsl::from_records(path, &records, tokenizer, framing, performance_samples)?
        }
        (Some(path), None) => bail!(
            "--dataset {}: text needs a tokenizer (--tokenizer FILE, or --weights with a folder that has tokenizer.json)",
            path.display()
        ),
        (None, _) => TextQsl::synthetic(samples, performance_samples, seed, seq_len, vocab_size),
    };
    if let Some(max) = qsl.max_token_id() {
        if max as usize >= vocab_size {
            bail!(
                "token id {max} in the samples is outside the model's vocabulary of {vocab_size}: \
                 the tokenizer does not belong to this model (check --tokenizer and --model-config)"
            );
        }
    }
    Ok(qsl)
}

fn open_tokenizer(path: Option<&PathBuf>, vocab_size: usize) -> Result<Option<TextTokenizer>> {
    let Some(path) = path else { return Ok(None) };
    let tokenizer = TextTokenizer::from_file(path)?;
    if tokenizer.vocab_size() > vocab_size {
        bail!(
            "tokenizer {}: {} tokens, but the model's vocabulary has {vocab_size}: they do not belong together",
            path.display(),
            tokenizer.vocab_size()
        );
    }
    Ok(Some(tokenizer))
}

pub fn build(
    kind: TextModel,
    model: &ModelArgs,
    text: &TextArgs,
    seed: u64,
    samples: usize,
    performance_samples: usize,
    accuracy: bool,
) -> Result<TextWorkload> {
    anyhow::ensure!(model.batch_size >= 1, "--batch-size must be at least 1");
    anyhow::ensure!(model.workers() >= 1, "--workers must be at least 1");
    anyhow::ensure!(
        text.max_new_tokens >= 1,
        "--max-new-tokens must be at least 1"
    );
    let weights = match &model.weights {
        Some(arg) => WeightSource::from_arg(arg)?,
        None => WeightSource::Random { seed },
    };
    if accuracy && weights.is_random() {
        bail!("accuracy mode needs real weights (--weights): random weights make accuracy meaningless");
    }
    let folder = weights_folder(&weights);
    let config_path = config_file(text, folder.as_deref());
    let tokenizer_path = tokenizer_file(text, folder.as_deref());
    if accuracy && text.dataset.is_none() {
        bail!("accuracy mode needs real data (--dataset FILE): synthetic tokens have no answers");
    }
    let dtype = model.device.default_dtype();
    let dtype_name = format!("{dtype:?}").to_lowercase();
    match kind {
        TextModel::MiniLm => {
            let config = match &config_path {
                Some(p) => read_bert_config(p)?,
                None => minilm_l6_v2_config(),
            };
            // Default: 128 tokens, or all the model takes if fewer.
            let seq_len = text
                .seq_len
                .unwrap_or(128.min(config.max_position_embeddings));
            anyhow::ensure!(seq_len >= 1, "--seq-len must be at least 1");
            if seq_len > config.max_position_embeddings {
                bail!(
                    "--seq-len {seq_len}: the model takes at most {} tokens (max_position_embeddings)",
                    config.max_position_embeddings
                );
            }
            let mut tokenizer = open_tokenizer(tokenizer_path.as_ref(), config.vocab_size)?;
            let qsl = Arc::new(library(
                text,
                tokenizer.as_mut(),
                Framing::Encoder,
                seq_len,
                config.vocab_size,
                seed,
                samples,
                performance_samples,
            )?);
            describe_load(kind, model, &dtype_name, &weights);
            // One encoder per device (--devices); calibration runs on the first.
            let devices = crate::model_workload::devices(model)?;
            let device_names: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
            let mut encoders = devices
                .iter()
                .map(|&d| SentenceEncoder::load(config.clone(), weights.clone(), d, dtype, true))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let encoder = encoders.remove(0);
            let (capacity_per_s, latency_ns) = calibrate(&qsl, model.batch_size, |batch| {
                let inputs: Vec<&[u32]> = batch.iter().map(|t| &t[..]).collect();
                encoder.embed(&inputs).map(|_| ()).map_err(Into::into)
            })?;
            let parameters = serde_json::json!({
                "model": kind.name(),
                "architecture": format!(
                    "BERT, {} layers, {} wide, {} heads, vocabulary {}",
                    config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.vocab_size
                ),
                "config": describe_config(config_path.as_deref(), "built-in all-MiniLM-L6-v2"),
                "device": device_names.join(","),
                "devices": device_names,
                "dtype": dtype_name,
                "weights": weights.describe(),
                "random_weights": weights.is_random(),
                "tokenizer": describe_tokenizer(tokenizer.as_ref()),
                "data": qsl.describe(),
                "seq_len": seq_len,
                "output": format!("mean-pooled, L2-normalised embedding: {} little-endian f32", config.hidden_size),
                "batch_size": model.batch_size,
                "max_wait_ns": model.max_wait.as_nanos() as u64,
                "workers": model.workers(),
                "calibrated_samples_per_s": capacity_per_s,
            });
            let groups = std::iter::once(encoder)
                .chain(encoders)
                .zip(&device_names)
                .map(|(encoder, label)| DeviceGroup {
                    label: label.clone(),
                    model: Arc::new(EncoderModel {
                        encoder,
                        qsl: Arc::clone(&qsl),
                    }),
                })
                .collect();
            let sut = Arc::new(BatchingSut::across(
                format!("joulebench-{}-{}", kind.name(), device_names.join("+")),
                groups,
                policy(model),
            ));
            // Planning target for the node: the first device's rate times the devices.
            let capacity_per_s = capacity_per_s * devices.len() as f64;
            Ok(TextWorkload {
                sut: Box::new(Arc::clone(&sut)),
                batching: Some(sut),
                qsl,
                parameters,
                capacity_per_s,
                latency_ns,
            })
        }
        TextModel::Gpt2 => {
            anyhow::ensure!(
                model.devices.is_none(),
                "--devices: gpt2 runs on one device; choose it with --device"
            );
            let config = match &config_path {
                Some(p) => read_gpt2_config(p)?,
                None => Gpt2Config::gpt2_small(),
            };
            // Default: 64 tokens, or what leaves room for the new ones.
            let seq_len = text.seq_len.unwrap_or(
                64.min(config.n_positions.saturating_sub(text.max_new_tokens))
                    .max(1),
            );
            anyhow::ensure!(seq_len >= 1, "--seq-len must be at least 1");
            if seq_len + text.max_new_tokens > config.n_positions {
                bail!(
                    "--seq-len {seq_len} plus --max-new-tokens {} exceed the model's {} positions (n_positions)",
                    text.max_new_tokens,
                    config.n_positions
                );
            }
            let mut tokenizer = open_tokenizer(tokenizer_path.as_ref(), config.vocab_size)?;
            let qsl = Arc::new(library(
                text,
                tokenizer.as_mut(),
                Framing::Decoder,
                seq_len,
                config.vocab_size,
                seed,
                samples,
                performance_samples,
            )?);
            // Real text stops at end of text; synthetic prompts always
            // generate --max-new-tokens, so every sample costs the same.
            let eos = if text.dataset.is_some() {
                tokenizer
                    .as_ref()
                    .and_then(|t| t.token_id("<|endoftext|>"))
                    .or(config.eos_token_id)
            } else {
                None
            };
            describe_load(kind, model, &dtype_name, &weights);
            let decoder = Arc::new(Gpt2::load(
                config.clone(),
                weights.clone(),
                model.device,
                dtype,
            )?);
            let max_new_tokens = text.max_new_tokens;
            let (capacity_per_s, latency_ns) = calibrate(&qsl, model.batch_size, |batch| {
                let prompts: Vec<&[u32]> = batch.iter().map(|t| &t[..]).collect();
                decoder
                    .generate(&prompts, max_new_tokens, eos, |_| {})
                    .map(|_| ())
                    .map_err(Into::into)
            })?;
            let parameters = serde_json::json!({
                "model": kind.name(),
                "architecture": format!(
                    "GPT-2, {} layers, {} wide, {} heads, vocabulary {}, {} positions",
                    config.n_layer, config.n_embd, config.n_head, config.vocab_size, config.n_positions
                ),
                "config": describe_config(config_path.as_deref(), "built-in GPT-2 small"),
                "device": model.device.to_string(),
                "dtype": dtype_name,
                "weights": weights.describe(),
                "random_weights": weights.is_random(),
                "tokenizer": describe_tokenizer(tokenizer.as_ref()),
                "data": qsl.describe(),
                "seq_len": seq_len,
                "max_new_tokens": max_new_tokens,
                "decoding": "greedy",
                "eos_token_id": eos,
                "output": "generated token ids, little-endian u32; the first token is reported on its own",
                "batch_size": model.batch_size,
                "max_wait_ns": model.max_wait.as_nanos() as u64,
                "workers": model.workers(),
                "calibrated_samples_per_s": capacity_per_s,
            });
            let sut = GenerationSut::new(
                format!("joulebench-{}-{}", kind.name(), model.device),
                decoder,
                Arc::clone(&qsl),
                GenerationPolicy {
                    batching: policy(model),
                    max_new_tokens,
                    eos,
                },
            );
            Ok(TextWorkload {
                sut: Box::new(sut),
                batching: None,
                qsl,
                parameters,
                capacity_per_s,
                latency_ns,
            })
        }
    }
}

fn policy(model: &ModelArgs) -> BatchPolicy {
    BatchPolicy {
        max_batch: model.batch_size,
        max_wait: model.max_wait,
        workers: model.workers(),
    }
}

fn describe_load(kind: TextModel, model: &ModelArgs, dtype: &str, weights: &WeightSource) {
    eprintln!(
        "loading {} on {} ({dtype}, weights: {})",
        kind.name(),
        model.device,
        weights.describe()
    );
}

fn describe_config(path: Option<&Path>, builtin: &str) -> String {
    path.map_or_else(|| builtin.to_string(), |p| p.display().to_string())
}

fn describe_tokenizer(tokenizer: Option<&TextTokenizer>) -> String {
    tokenizer.map_or_else(
        || "none: synthetic token stream".to_string(),
        |t| t.path().display().to_string(),
    )
}

/// Untimed: a warm-up at both sizes (a first batch of a new shape pays
/// one-time set-up: on an H100 MiniLM's first b64 batch measured 5× slower
/// than the run), then one full batch and one single sample, timed.
/// Returns (samples/s at the full batch, ns for one sample).
fn calibrate(
    qsl: &TextQsl,
    batch_size: usize,
    run: impl Fn(&[Arc<[u32]>]) -> Result<()>,
) -> Result<(f64, f64)> {
    let indices: Vec<QuerySampleIndex> = (0..batch_size.min(qsl.total_sample_count())).collect();
    qsl.load_samples_to_ram(&indices)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let outcome = (|| -> Result<(f64, f64)> {
        let batch = qsl.batch(&indices)?;
        run(&batch).context("warm-up inference")?;
        run(&batch[..1]).context("warm-up inference")?;
        let t = Instant::now();
        run(&batch).context("calibration inference")?;
        let batch_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        run(&batch[..1]).context("calibration inference")?;
        let single_s = t.elapsed().as_secs_f64();
        let capacity_per_s = batch.len() as f64 / batch_s;
        eprintln!(
            "calibrated: {capacity_per_s:.1} samples/s at batch {}, {:.2} ms for one sample",
            batch.len(),
            single_s * 1e3
        );
        Ok((capacity_per_s, single_s * 1e9))
    })();
    qsl.unload_samples_from_ram(&indices);
    outcome
}
