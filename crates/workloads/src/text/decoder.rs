//! GPT-2: a decoder-only language model that generates tokens, in Hugging
//! Face's layout and weight names (`wte`, `wpe`, `h.N.attn.c_attn`, … with
//! Conv1D weights stored `[in, out]`), so GPT-2 / DistilGPT-2 safetensors
//! load as they are.
//!
//! The model holds no per-request state: each [`Gpt2::generate`] call owns
//! its key/value cache, so one loaded model serves several worker threads.
//! Batches of prompts of different lengths are padded on the left and
//! masked, and rows leave the batch as soon as they finish.

use super::{model_type, read_config, ModelConfigError, TextError};
use crate::device::DeviceSpec;
use crate::weights::WeightSource;
use crate::WorkloadError;
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Init, LayerNorm, VarBuilder};
use serde::Deserialize;
use std::path::Path;

/// GPT-2's architecture, as in a Hugging Face `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    /// Longest sequence (prompt plus generated tokens).
    #[serde(alias = "max_position_embeddings")]
    pub n_positions: usize,
    #[serde(alias = "hidden_size")]
    pub n_embd: usize,
    #[serde(alias = "num_hidden_layers")]
    pub n_layer: usize,
    #[serde(alias = "num_attention_heads")]
    pub n_head: usize,
    /// Width of the MLP; `None` means 4 × `n_embd`.
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_layer_norm_epsilon")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_activation")]
    pub activation_function: String,
    /// `<|endoftext|>`: generation stops there.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_layer_norm_epsilon() -> f64 {
    1e-5
}

fn default_activation() -> String {
    "gelu_new".into()
}

impl Gpt2Config {
    /// GPT-2 small (124M parameters): 12 layers, 768 wide, 12 heads.
    pub fn gpt2_small() -> Gpt2Config {
        Gpt2Config {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_inner: None,
            layer_norm_epsilon: 1e-5,
            activation_function: "gelu_new".into(),
            eos_token_id: Some(50256),
            model_type: Some("gpt2".into()),
        }
    }

    fn check(&self) -> Result<Activation, ModelConfigError> {
        if self.vocab_size == 0
            || self.n_positions == 0
            || self.n_embd == 0
            || self.n_layer == 0
            || self.n_head == 0
            || self.n_inner == Some(0)
        {
            return Err(ModelConfigError::ZeroSize);
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(ModelConfigError::HeadsDoNotDivide {
                width_key: "n_embd",
                width: self.n_embd,
                heads_key: "n_head",
                heads: self.n_head,
            });
        }
        Activation::parse(&self.activation_function)
    }

    /// Parameters, for FLOP estimates: 2 × this many FLOPs per token.
    pub fn parameter_count(&self) -> usize {
        let (e, inner) = (self.n_embd, self.n_inner.unwrap_or(4 * self.n_embd));
        let block =
            4 * e + (e * 3 * e + 3 * e) + (e * e + e) + (e * inner + inner) + (inner * e + e);
        self.vocab_size * e + self.n_positions * e + self.n_layer * block + 2 * e
    }
}

/// Reads a GPT-2 `config.json`, refusing other architectures.
pub fn read_gpt2_config(path: &Path) -> Result<Gpt2Config, TextError> {
    let err = |reason: String| TextError::Config {
        path: path.to_path_buf(),
        reason,
    };
    match model_type(path)?.as_deref() {
        None | Some("gpt2") => {}
        Some(other) => {
            return Err(err(format!(
                "model_type \"{other}\" is not GPT-2 (this workload runs model_type \"gpt2\")"
            )))
        }
    }
    let config: Gpt2Config = read_config(path)?;
    config.check().map_err(|error| TextError::Unbuildable {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(config)
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    /// Tanh approximation ("gelu_new", GPT-2's own).
    GeluTanh,
    Gelu,
    Relu,
}

impl Activation {
    fn parse(name: &str) -> Result<Activation, ModelConfigError> {
        match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "gelu" => Ok(Activation::Gelu),
            "relu" => Ok(Activation::Relu),
            other => Err(ModelConfigError::Activation { name: other.into() }),
        }
    }

    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::GeluTanh => x.gelu(),
            Activation::Gelu => x.gelu_erf(),
            Activation::Relu => x.relu(),
        }
    }
}

/// GPT-2's initialisation: weights N(0, 0.02), biases 0.
const WEIGHT_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// Hugging Face's Conv1D: a linear layer with its weight stored `[in, out]`.
struct Conv1D {
    weight: Tensor,
    bias: Tensor,
}

impl Conv1D {
    fn load(inputs: usize, outputs: usize, vb: VarBuilder) -> candle_core::Result<Conv1D> {
        Ok(Conv1D {
            weight: vb.get_with_hints((inputs, outputs), "weight", WEIGHT_INIT)?,
            bias: vb.get_with_hints(outputs, "bias", Init::Const(0.0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, inputs) = x.dims3()?;
        x.reshape((b * t, inputs))?
            .matmul(&self.weight)?
            .broadcast_add(&self.bias)?
            .reshape((b, t, ()))
    }
}

fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    candle_nn::layer_norm(size, eps, vb)
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Conv1D,
    attn_proj: Conv1D,
    ln_2: LayerNorm,
    c_fc: Conv1D,
    mlp_proj: Conv1D,
}

/// One layer's cached keys and values, `[batch, heads, positions, head_dim]`.
type LayerCache = Option<(Tensor, Tensor)>;

impl Block {
    fn load(c: &Gpt2Config, vb: VarBuilder) -> candle_core::Result<Block> {
        let e = c.n_embd;
        let inner = c.n_inner.unwrap_or(4 * e);
        Ok(Block {
            ln_1: layer_norm(e, c.layer_norm_epsilon, vb.pp("ln_1"))?,
            c_attn: Conv1D::load(e, 3 * e, vb.pp("attn.c_attn"))?,
            attn_proj: Conv1D::load(e, e, vb.pp("attn.c_proj"))?,
            ln_2: layer_norm(e, c.layer_norm_epsilon, vb.pp("ln_2"))?,
            c_fc: Conv1D::load(e, inner, vb.pp("mlp.c_fc"))?,
            mlp_proj: Conv1D::load(inner, e, vb.pp("mlp.c_proj"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        cache: &mut LayerCache,
        heads: usize,
        activation: Activation,
    ) -> candle_core::Result<Tensor> {
        let (b, t, e) = x.dims3()?;
        let head_dim = e / heads;
        let qkv = self.c_attn.forward(&self.ln_1.forward(x)?)?;
        let split = |i: usize| -> candle_core::Result<Tensor> {
            qkv.narrow(2, i * e, e)?
                .reshape((b, t, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, mut k, mut v) = (split(0)?, split(1)?, split(2)?);
        if let Some((past_k, past_v)) = cache.as_ref() {
            k = Tensor::cat(&[past_k, &k], 2)?;
            v = Tensor::cat(&[past_v, &v], 2)?;
        }
        *cache = Some((k.clone(), v.clone()));
        let scale = 1.0 / (head_dim as f64).sqrt();
        // Scores, mask and softmax in f32: the mask's large negatives and
        // the exponentials stay exact whatever the compute type.
        let scores = (q.matmul(&k.t()?)? * scale)?
            .to_dtype(DType::F32)?
            .broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(x.dtype())?;
        let attended = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, e))?;
        let x = (x + self.attn_proj.forward(&attended)?)?;
        let hidden = activation.apply(&self.c_fc.forward(&self.ln_2.forward(&x)?)?)?;
        x + self.mlp_proj.forward(&hidden)?
    }
}

/// What [`Gpt2::generate`] reports as it goes (`row` is the prompt's index).
#[derive(Debug)]
pub enum GenerationEvent<'a> {
    /// A prompt's first generated token, as soon as it exists.
    FirstToken { row: usize, token: u32 },
    /// A prompt is finished (end of text, or the token limit).
    Done { row: usize, tokens: &'a [u32] },
}

/// A loaded GPT-2 on one device.
pub struct Gpt2 {
    pub config: Gpt2Config,
    pub device: Device,
    pub device_spec: DeviceSpec,
    pub dtype: DType,
    pub weights: WeightSource,
    activation: Activation,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
}

/// Added to the scores of keys a query may not see.
const MASKED: f32 = -1.0e9;

impl Gpt2 {
    pub fn load(
        config: Gpt2Config,
        weights: WeightSource,
        device_spec: DeviceSpec,
        dtype: DType,
    ) -> Result<Gpt2, TextError> {
        let activation = config.check().map_err(|error| WorkloadError::Config {
            model: "gpt2",
            error,
        })?;
        let device = device_spec.open().map_err(WorkloadError::Device)?;
        let vb = weights.var_builder(dtype, &device)?;
        // GPT2LMHeadModel checkpoints prefix the body with "transformer.";
        // GPT2Model ones (the original gpt2 files) do not.
        let vb = if !weights.is_random() && vb.contains_tensor("transformer.wte.weight") {
            vb.pp("transformer")
        } else {
            vb
        };
        // Synchronised: worker threads run on streams of their own.
        let built = Self::build(vb, &config).and_then(|b| device.synchronize().map(|()| b));
        let (wte, wpe, blocks, ln_f) = built.map_err(|e| match &weights {
            WeightSource::File(path) => WorkloadError::Weights {
                path: path.clone(),
                reason: format!("does not fit this GPT-2 config: {e}"),
            },
            WeightSource::Random { .. } => WorkloadError::Model {
                model: "gpt2".into(),
                reason: e.to_string(),
            },
        })?;
        Ok(Gpt2 {
            config,
            device,
            device_spec,
            dtype,
            weights,
            activation,
            wte,
            wpe,
            blocks,
            ln_f,
        })
    }

    #[allow(clippy::type_complexity)]
    fn build(
        vb: VarBuilder,
        c: &Gpt2Config,
    ) -> candle_core::Result<(Tensor, Tensor, Vec<Block>, LayerNorm)> {
        let wte = vb.get_with_hints((c.vocab_size, c.n_embd), "wte.weight", WEIGHT_INIT)?;
        let wpe = vb.get_with_hints(
            (c.n_positions, c.n_embd),
            "wpe.weight",
            Init::Randn {
                mean: 0.0,
                stdev: 0.01,
            },
        )?;
        let blocks = (0..c.n_layer)
            .map(|i| Block::load(c, vb.pp(format!("h.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let ln_f = layer_norm(c.n_embd, c.layer_norm_epsilon, vb.pp("ln_f"))?;
        Ok((wte, wpe, blocks, ln_f))
    }

    /// Writes the seeded random weights `config` gets with `seed` to a
    /// safetensors file (in GPT2Model's names), so a peer runtime or a test
    /// can load the identical network. Returns the number of tensors.
    pub fn export_random_weights(
        config: &Gpt2Config,
        seed: u64,
        path: &Path,
    ) -> Result<usize, WorkloadError> {
        crate::weights::export_random(seed, path, |vb| Self::build(vb, config).map(|_| ()))
    }

    /// Final hidden states `[batch, t, n_embd]`, extending `cache`.
    fn hidden(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: &mut [LayerCache],
    ) -> candle_core::Result<Tensor> {
        let tokens = candle_nn::Embedding::new(self.wte.clone(), self.config.n_embd);
        let places = candle_nn::Embedding::new(self.wpe.clone(), self.config.n_embd);
        let mut x = (tokens.forward(ids)? + places.forward(positions)?)?;
        for (block, layer_cache) in self.blocks.iter().zip(cache.iter_mut()) {
            x = block.forward(&x, mask, layer_cache, self.config.n_head, self.activation)?;
        }
        Ok(x)
    }

    /// Logits (f32) of hidden states `[rows, n_embd]`: the output layer is
    /// the token embedding, transposed (tied weights).
    fn project(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.ln_f
            .forward(hidden)?
            .matmul(&self.wte.t()?)?
            .to_dtype(DType::F32)
    }

    /// Logits `[batch, vocab]` (f32) of the last position, extending `cache`.
    fn forward(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: &mut [LayerCache],
    ) -> candle_core::Result<Tensor> {
        let (_, t) = ids.dims2()?;
        let x = self.hidden(ids, positions, mask, cache)?;
        self.project(&x.narrow(1, t - 1, 1)?.squeeze(1)?)
    }

    /// Next-token logits after every position of one sequence, `[len][vocab]`
    /// (teacher forcing: for perplexity, and to check against a reference).
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, WorkloadError> {
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let len = tokens.len();
            if len == 0 || len > self.config.n_positions {
                candle_core::bail!(
                    "a sequence of {len} tokens; this model takes 1 to {}",
                    self.config.n_positions
                );
            }
            if let Some(bad) = tokens
                .iter()
                .find(|&&id| id as usize >= self.config.vocab_size)
            {
                candle_core::bail!(
                    "token id {bad} is outside the vocabulary ({} tokens)",
                    self.config.vocab_size
                );
            }
            let mask: Vec<f32> = (0..len)
                .flat_map(|i| (0..len).map(move |j| if j <= i { 0.0 } else { MASKED }))
                .collect();
            let mut cache: Vec<LayerCache> = vec![None; self.blocks.len()];
            let x = self.hidden(
                &Tensor::from_slice(tokens, (1, len), &self.device)?,
                &Tensor::arange(0u32, len as u32, &self.device)?.reshape((1, len))?,
                &Tensor::from_vec(mask, (1, 1, len, len), &self.device)?,
                &mut cache,
            )?;
            self.project(&x.squeeze(0)?)?
                .to_device(&Device::Cpu)?
                .to_vec2::<f32>()
        };
        run().map_err(|e| WorkloadError::Inference {
            model: "gpt2".into(),
            reason: e.to_string(),
        })
    }

    /// Greedy decoding: up to `max_new_tokens` tokens for each prompt,
    /// stopping a prompt early at `eos` (kept in its output). `on_event`
    /// hears each prompt's first token and its completion as they happen.
    pub fn generate(
        &self,
        prompts: &[&[u32]],
        max_new_tokens: usize,
        eos: Option<u32>,
        on_event: impl FnMut(GenerationEvent<'_>),
    ) -> Result<Vec<Vec<u32>>, WorkloadError> {
        self.generate_inner(prompts, max_new_tokens, eos, on_event)
            .map_err(|e| WorkloadError::Inference {
                model: "gpt2".into(),
                reason: e.to_string(),
            })
    }

    fn generate_inner(
        &self,
        prompts: &[&[u32]],
        max_new_tokens: usize,
        eos: Option<u32>,
        mut on_event: impl FnMut(GenerationEvent<'_>),
    ) -> candle_core::Result<Vec<Vec<u32>>> {
        let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
        if prompts.is_empty() {
            return Ok(outputs);
        }
        let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        if prompts.iter().any(|p| p.is_empty()) {
            candle_core::bail!("an empty prompt: GPT-2 needs at least one token");
        }
        if max_new_tokens == 0 {
            candle_core::bail!("max_new_tokens must be at least 1");
        }
        if longest + max_new_tokens > self.config.n_positions {
            candle_core::bail!(
                "a prompt of {longest} tokens plus {max_new_tokens} new ones exceeds the model's {} positions",
                self.config.n_positions
            );
        }
        if let Some(bad) = prompts
            .iter()
            .flat_map(|p| p.iter())
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            candle_core::bail!(
                "token id {bad} is outside the vocabulary ({} tokens)",
                self.config.vocab_size
            );
        }
        let batch = prompts.len();
        // Prefill: prompts padded on the left to the longest.
        let mut ids = Vec::with_capacity(batch * longest);
        let mut positions = Vec::with_capacity(batch * longest);
        let mut key_valid: Vec<Vec<bool>> = Vec::with_capacity(batch);
        for p in prompts {
            let pad = longest - p.len();
            ids.extend(std::iter::repeat_n(0u32, pad));
            ids.extend_from_slice(p);
            positions.extend((0..longest).map(|j| j.saturating_sub(pad) as u32));
            key_valid.push((0..longest).map(|j| j >= pad).collect());
        }
        let mut mask = Vec::with_capacity(batch * longest * longest);
        for valid in &key_valid {
            for i in 0..longest {
                mask.extend((0..longest).map(|j| if j <= i && valid[j] { 0.0 } else { MASKED }));
            }
        }
        let mut cache: Vec<LayerCache> = vec![None; self.blocks.len()];
        let mut logits = self.forward(
            &Tensor::from_vec(ids, (batch, longest), &self.device)?,
            &Tensor::from_vec(positions, (batch, longest), &self.device)?,
            &Tensor::from_vec(mask, (batch, 1, longest, longest), &self.device)?,
            &mut cache,
        )?;
        // Rows still generating, as indices into `prompts`.
        let mut active: Vec<usize> = (0..batch).collect();
        loop {
            let next = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            let mut keep = Vec::with_capacity(active.len());
            for (slot, (&row, &token)) in active.iter().zip(&next).enumerate() {
                outputs[row].push(token);
                if outputs[row].len() == 1 {
                    on_event(GenerationEvent::FirstToken { row, token });
                }
                if outputs[row].len() >= max_new_tokens || Some(token) == eos {
                    on_event(GenerationEvent::Done {
                        row,
                        tokens: &outputs[row],
                    });
                } else {
                    keep.push(slot);
                }
            }
            if keep.is_empty() {
                return Ok(outputs);
            }
            if keep.len() < active.len() {
                // Finished rows leave the batch (and the cache).
                let rows = Tensor::from_vec(
                    keep.iter().map(|&s| s as u32).collect::<Vec<_>>(),
                    keep.len(),
                    &self.device,
                )?;
                for layer in cache.iter_mut() {
                    if let Some((k, v)) = layer.take() {
                        *layer = Some((k.index_select(&rows, 0)?, v.index_select(&rows, 0)?));
                    }
                }
                key_valid = keep
                    .iter()
                    .map(|&s| std::mem::take(&mut key_valid[s]))
                    .collect();
                active = keep.iter().map(|&s| active[s]).collect();
            }
            // One decoding step: each row feeds its last token.
            let fed: Vec<u32> = active
                .iter()
                .map(|&r| *outputs[r].last().unwrap_or(&0))
                .collect();
            let places: Vec<u32> = active
                .iter()
                .map(|&r| (prompts[r].len() + outputs[r].len() - 1) as u32)
                .collect();
            let mut mask = Vec::new();
            for valid in key_valid.iter_mut() {
                valid.push(true);
                mask.extend(valid.iter().map(|&v| if v { 0.0f32 } else { MASKED }));
            }
            let (rows, keys) = (active.len(), key_valid.first().map_or(0, |v| v.len()));
            logits = self.forward(
                &Tensor::from_vec(fed, (rows, 1), &self.device)?,
                &Tensor::from_vec(places, (rows, 1), &self.device)?,
                &Tensor::from_vec(mask, (rows, 1, 1, keys), &self.device)?,
                &mut cache,
            )?;
        }
    }
}
