//! Language models as systems under test: `minilm` (a BERT sentence encoder
//! answering with embeddings) and `gpt2` (a decoder generating tokens, with
//! token latencies). Architecture, weights, tokenizer and data are read and
//! checked against each other before anything is timed.

use super::{calibrate, BuildError, Built, ModelOptions};
use crate::batcher::{BatchingSut, DeviceGroup};
use crate::text::dataset::{read_text_dataset, Framing, TextQsl};
use crate::text::decoder::{read_gpt2_config, Gpt2, Gpt2Config};
use crate::text::encoder::{minilm_l6_v2_config, read_bert_config, SentenceEncoder};
use crate::text::serve::{EncoderModel, GenerationPolicy, GenerationSut};
use crate::text::tokens::{Cut, TextTokenizer};
use crate::weights::WeightSource;
use crate::WorkloadError;
use loadgen::{QuerySampleIndex, QuerySampleLibrary};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextModel {
    /// all-MiniLM-L6-v2-shaped BERT sentence encoder.
    MiniLm,
    /// GPT-2 small-shaped decoder.
    Gpt2,
}

impl TextModel {
    pub fn name(self) -> &'static str {
        match self {
            TextModel::MiniLm => "minilm",
            TextModel::Gpt2 => "gpt2",
        }
    }
}

/// The text-specific inputs.
#[derive(Debug, Clone)]
pub struct TextOptions {
    /// tokenizer.json; `None`: the one beside the weights, if any.
    pub tokenizer: Option<PathBuf>,
    /// JSON Lines, a JSON list or SQuAD JSON; `None`: synthetic tokens.
    pub dataset: Option<PathBuf>,
    /// gpt2: most tokens generated per sample.
    pub max_new_tokens: usize,
    /// Longest input in tokens; `None`: the model's default.
    pub seq_len: Option<usize>,
    /// A Hugging Face config.json; `None`: the one beside the weights, else
    /// the built-in architecture.
    pub model_config: Option<PathBuf>,
}

/// What a text model is given, resolved.
struct Inputs {
    weights: WeightSource,
    config_path: Option<PathBuf>,
    tokenizer_path: Option<PathBuf>,
    dtype: candle_core::DType,
}

impl Inputs {
    fn resolve(options: &ModelOptions, text: &TextOptions) -> Result<Inputs, BuildError> {
        options.check()?;
        if text.max_new_tokens == 0 {
            return Err(BuildError::AtLeastOne("--max-new-tokens"));
        }
        let weights = options.weight_source()?;
        if options.accuracy && text.dataset.is_none() {
            return Err(BuildError::SyntheticDataForAccuracy);
        }
        // config.json and tokenizer.json beside the weights, unless named.
        let folder = match &weights {
            WeightSource::File(path) => path.parent().map(Path::to_path_buf),
            WeightSource::Random { .. } => None,
        };
        let beside = |name: &str| {
            folder
                .as_ref()
                .map(|f| f.join(name))
                .filter(|p| p.is_file())
        };
        Ok(Inputs {
            config_path: text.model_config.clone().or_else(|| beside("config.json")),
            tokenizer_path: text.tokenizer.clone().or_else(|| beside("tokenizer.json")),
            dtype: options.device.default_dtype(),
            weights,
        })
    }

    fn dtype_name(&self) -> String {
        format!("{:?}", self.dtype).to_lowercase()
    }

    fn describe_config(&self, builtin: &str) -> String {
        self.config_path
            .as_deref()
            .map_or_else(|| builtin.to_string(), |p| p.display().to_string())
    }

    fn tokenizer(&self, vocab_size: usize) -> Result<Option<TextTokenizer>, BuildError> {
        let Some(path) = &self.tokenizer_path else {
            return Ok(None);
        };
        let tokenizer = TextTokenizer::from_file(path)?;
        if tokenizer.vocab_size() > vocab_size {
            return Err(BuildError::TokenizerTooLarge {
                path: path.clone(),
                tokens: tokenizer.vocab_size(),
                vocab_size,
            });
        }
        Ok(Some(tokenizer))
    }

    fn announce(&self, kind: TextModel, options: &ModelOptions) {
        eprintln!(
            "loading {} on {} ({}, weights: {})",
            kind.name(),
            options.device,
            self.dtype_name(),
            self.weights.describe()
        );
    }
}

fn describe_tokenizer(tokenizer: Option<&TextTokenizer>) -> String {
    tokenizer.map_or_else(
        || "none: synthetic token stream".to_string(),
        |t| t.path().display().to_string(),
    )
}

/// The samples: the data set tokenized, or synthetic tokens.
fn library(
    options: &ModelOptions,
    text: &TextOptions,
    tokenizer: Option<&mut TextTokenizer>,
    framing: Framing,
    seq_len: usize,
    vocab_size: usize,
) -> Result<TextQsl, BuildError> {
    let qsl = match (&text.dataset, tokenizer) {
        (Some(path), Some(tokenizer)) => {
            let cut = match framing {
                Framing::Encoder => Cut::End,
                Framing::Decoder => Cut::Start,
            };
            tokenizer.set_max_tokens(Some(seq_len), cut)?;
            let records = read_text_dataset(path)?;
            TextQsl::from_records(
                path,
                &records,
                tokenizer,
                framing,
                options.performance_samples,
            )?
        }
        (Some(path), None) => return Err(BuildError::DatasetWithoutTokenizer(path.clone())),
        (None, _) => TextQsl::synthetic(
            options.samples,
            options.performance_samples,
            options.seed,
            seq_len,
            vocab_size,
        ),
    };
    if let Some(max) = qsl.max_token_id() {
        if max as usize >= vocab_size {
            return Err(BuildError::TokenOutsideVocabulary { max, vocab_size });
        }
    }
    Ok(qsl)
}

/// The samples of `indices` as token arrays, for calibration.
fn tokens(qsl: &TextQsl, indices: &[QuerySampleIndex]) -> Result<Vec<Arc<[u32]>>, WorkloadError> {
    qsl.batch(indices)
        .map_err(|reason| WorkloadError::Inference {
            model: qsl.name().to_string(),
            reason: reason.to_string(),
        })
}

fn announce_calibration(capacity_per_s: f64, batch: usize, single_s: f64) {
    eprintln!(
        "calibrated: {capacity_per_s:.1} samples/s at batch {batch}, {:.2} ms for one sample",
        single_s * 1e3
    );
}

pub fn build(
    kind: TextModel,
    options: &ModelOptions,
    text: &TextOptions,
) -> Result<Built, BuildError> {
    let inputs = Inputs::resolve(options, text)?;
    match kind {
        TextModel::MiniLm => minilm(options, text, &inputs),
        TextModel::Gpt2 => gpt2(options, text, &inputs),
    }
}

fn minilm(
    options: &ModelOptions,
    text: &TextOptions,
    inputs: &Inputs,
) -> Result<Built, BuildError> {
    let kind = TextModel::MiniLm;
    let config = match &inputs.config_path {
        Some(p) => read_bert_config(p)?,
        None => minilm_l6_v2_config(),
    };
    // Default: 128 tokens, or all the model takes if fewer.
    let seq_len = text
        .seq_len
        .unwrap_or(128.min(config.max_position_embeddings));
    if seq_len == 0 {
        return Err(BuildError::AtLeastOne("--seq-len"));
    }
    if seq_len > config.max_position_embeddings {
        return Err(BuildError::SeqLen {
            seq_len,
            reason: format!(
                "the model takes at most {} tokens (max_position_embeddings)",
                config.max_position_embeddings
            ),
        });
    }
    let mut tokenizer = inputs.tokenizer(config.vocab_size)?;
    let qsl = Arc::new(library(
        options,
        text,
        tokenizer.as_mut(),
        Framing::Encoder,
        seq_len,
        config.vocab_size,
    )?);
    inputs.announce(kind, options);
    // One encoder per device (--devices); calibration runs on the first.
    let devices = options.device_list()?;
    let device_names: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    let mut encoders = devices
        .iter()
        .map(|&d| {
            SentenceEncoder::load(
                config.clone(),
                inputs.weights.clone(),
                d,
                inputs.dtype,
                true,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let encoder = encoders.remove(0);
    let (batch_rate, single_s) = calibrate(&*qsl, options.batch_size, |indices| {
        let batch = tokens(&qsl, indices)?;
        let inputs: Vec<&[u32]> = batch.iter().map(|t| &t[..]).collect();
        encoder.embed(&inputs).map(|_| ())
    })?;
    announce_calibration(
        batch_rate,
        options.batch_size.min(qsl.total_sample_count()),
        single_s,
    );
    let workers = options.workers.unwrap_or(1);
    let parameters = serde_json::json!({
        "model": kind.name(),
        "architecture": format!(
            "BERT, {} layers, {} wide, {} heads, vocabulary {}",
            config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.vocab_size
        ),
        "config": inputs.describe_config("built-in all-MiniLM-L6-v2"),
        "device": device_names.join(","),
        "devices": device_names,
        "dtype": inputs.dtype_name(),
        "weights": inputs.weights.describe(),
        "random_weights": inputs.weights.is_random(),
        "tokenizer": describe_tokenizer(tokenizer.as_ref()),
        "data": qsl.describe(),
        "seq_len": seq_len,
        "output": format!("mean-pooled, L2-normalised embedding: {} little-endian f32", config.hidden_size),
        "batch_size": options.batch_size,
        "max_wait_ns": options.max_wait.as_nanos() as u64,
        "workers": workers,
        "calibrated_samples_per_s": batch_rate,
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
        options.policy(workers),
    ));
    // Planning target for the node: the first device's rate times the devices.
    let capacity_per_s = batch_rate * devices.len() as f64;
    Ok(Built {
        sut: Box::new(Arc::clone(&sut)),
        qsl: Box::new(super::SharedQsl(qsl)),
        parameters,
        capacity_per_s,
        offline_capacity_per_s: capacity_per_s,
        latency_ns: single_s * 1e9,
        batching: Some(sut),
    })
}

fn gpt2(options: &ModelOptions, text: &TextOptions, inputs: &Inputs) -> Result<Built, BuildError> {
    let kind = TextModel::Gpt2;
    if options.devices.is_some() {
        return Err(BuildError::OneDeviceOnly);
    }
    let config = match &inputs.config_path {
        Some(p) => read_gpt2_config(p)?,
        None => Gpt2Config::gpt2_small(),
    };
    // Default: 64 tokens, or what leaves room for the new ones.
    let seq_len = text.seq_len.unwrap_or(
        64.min(config.n_positions.saturating_sub(text.max_new_tokens))
            .max(1),
    );
    if seq_len == 0 {
        return Err(BuildError::AtLeastOne("--seq-len"));
    }
    if seq_len + text.max_new_tokens > config.n_positions {
        return Err(BuildError::SeqLen {
            seq_len,
            reason: format!(
                "plus --max-new-tokens {} exceed the model's {} positions (n_positions)",
                text.max_new_tokens, config.n_positions
            ),
        });
    }
    let mut tokenizer = inputs.tokenizer(config.vocab_size)?;
    let qsl = Arc::new(library(
        options,
        text,
        tokenizer.as_mut(),
        Framing::Decoder,
        seq_len,
        config.vocab_size,
    )?);
    // Real text stops at end of text; synthetic prompts always generate
    // max_new_tokens, so every sample costs the same.
    let eos = if text.dataset.is_some() {
        tokenizer
            .as_ref()
            .and_then(|t| t.token_id("<|endoftext|>"))
            .or(config.eos_token_id)
    } else {
        None
    };
    inputs.announce(kind, options);
    let decoder = Arc::new(Gpt2::load(
        config.clone(),
        inputs.weights.clone(),
        options.device,
        inputs.dtype,
    )?);
    let max_new_tokens = text.max_new_tokens;
    let (capacity_per_s, single_s) = calibrate(&*qsl, options.batch_size, |indices| {
        let batch = tokens(&qsl, indices)?;
        let prompts: Vec<&[u32]> = batch.iter().map(|t| &t[..]).collect();
        decoder
            .generate(&prompts, max_new_tokens, eos, |_| {})
            .map(|_| ())
    })?;
    announce_calibration(
        capacity_per_s,
        options.batch_size.min(qsl.total_sample_count()),
        single_s,
    );
    let workers = options.workers.unwrap_or(1);
    let parameters = serde_json::json!({
        "model": kind.name(),
        "architecture": format!(
            "GPT-2, {} layers, {} wide, {} heads, vocabulary {}, {} positions",
            config.n_layer, config.n_embd, config.n_head, config.vocab_size, config.n_positions
        ),
        "config": inputs.describe_config("built-in GPT-2 small"),
        "device": options.device.to_string(),
        "dtype": inputs.dtype_name(),
        "weights": inputs.weights.describe(),
        "random_weights": inputs.weights.is_random(),
        "tokenizer": describe_tokenizer(tokenizer.as_ref()),
        "data": qsl.describe(),
        "seq_len": seq_len,
        "max_new_tokens": max_new_tokens,
        "decoding": "greedy",
        "eos_token_id": eos,
        "output": "generated token ids, little-endian u32; the first token is reported on its own",
        "batch_size": options.batch_size,
        "max_wait_ns": options.max_wait.as_nanos() as u64,
        "workers": workers,
        "calibrated_samples_per_s": capacity_per_s,
    });
    let sut = GenerationSut::new(
        format!("joulebench-{}-{}", kind.name(), options.device),
        decoder,
        Arc::clone(&qsl),
        GenerationPolicy {
            batching: options.policy(workers),
            max_new_tokens,
            eos,
        },
    );
    Ok(Built {
        sut: Box::new(sut),
        qsl: Box::new(super::SharedQsl(qsl)),
        parameters,
        capacity_per_s,
        offline_capacity_per_s: capacity_per_s,
        latency_ns: single_s * 1e9,
        batching: None,
    })
}
