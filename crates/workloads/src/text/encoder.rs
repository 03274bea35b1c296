//! A BERT-family sentence encoder: token ids in, one embedding per input
//! out, the way sentence-transformers runs all-MiniLM-L6-v2 (BERT, then mean
//! pooling over the real tokens, then L2 normalisation).
//!
//! The layers are written here, in BERT's layout and weight names, rather
//! than taken from candle-transformers' `BertModel`, for two reasons found
//! on the H100: its attention mask is `f32::MIN`, which becomes −∞ in
//! bf16/f16 and turns every unmasked score into NaN (0 × −∞); and its
//! attention scales, masks and normalises the `[batch, heads, len, len]`
//! scores with five generic broadcast kernels, which took over half the GPU
//! time of MiniLM. Here the query projection carries the 1/√d scale, the
//! three projections are one matrix product, the mask is added only when a
//! batch has padding, and on GPUs the whole attention is one kernel of ours
//! (`kernels::attention`; candle's ops elsewhere).

use super::{model_type, read_config, ModelConfigError, TextError};
use crate::device::DeviceSpec;
use crate::weights::WeightSource;
use crate::WorkloadError;
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::{HiddenAct, PositionEmbeddingType};
use kernels::epilogue::{linear_bias_residual_act, Activation};
use std::path::Path;

/// BERT's architecture, as in a Hugging Face `config.json`.
pub use candle_transformers::models::bert::Config as BertConfig;

/// all-MiniLM-L6-v2: 6 layers, 384 wide, 12 heads, WordPiece vocabulary of
/// 30522 (its `config.json`).
pub fn minilm_l6_v2_config() -> BertConfig {
    BertConfig {
        vocab_size: 30522,
        hidden_size: 384,
        num_hidden_layers: 6,
        num_attention_heads: 12,
        intermediate_size: 1536,
        hidden_act: HiddenAct::Gelu,
        hidden_dropout_prob: 0.1,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        initializer_range: 0.02,
        layer_norm_eps: 1e-12,
        pad_token_id: 0,
        position_embedding_type: PositionEmbeddingType::Absolute,
        use_cache: true,
        classifier_dropout: None,
        model_type: Some("bert".into()),
    }
}

/// Reads a BERT `config.json`, refusing other architectures.
pub fn read_bert_config(path: &Path) -> Result<BertConfig, TextError> {
    let err = |reason: String| TextError::Config {
        path: path.to_path_buf(),
        reason,
    };
    match model_type(path)?.as_deref() {
        None | Some("bert") => {}
        Some(other) => {
            return Err(err(format!(
            "model_type \"{other}\" is not a BERT encoder (this workload runs model_type \"bert\")"
        )))
        }
    }
    let config: BertConfig = read_config(path)?;
    check_bert_config(&config).map_err(|error| TextError::Unbuildable {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(config)
}

fn check_bert_config(c: &BertConfig) -> Result<(), ModelConfigError> {
    if c.vocab_size == 0
        || c.hidden_size == 0
        || c.num_hidden_layers == 0
        || c.num_attention_heads == 0
        || c.intermediate_size == 0
        || c.max_position_embeddings == 0
        || c.type_vocab_size == 0
    {
        return Err(ModelConfigError::ZeroSize);
    }
    if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
        return Err(ModelConfigError::HeadsDoNotDivide {
            width_key: "hidden_size",
            width: c.hidden_size,
            heads_key: "num_attention_heads",
            heads: c.num_attention_heads,
        });
    }
    Ok(())
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    layer_norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, c: &BertConfig) -> candle_core::Result<Embeddings> {
        Ok(Embeddings {
            word: candle_nn::embedding(c.vocab_size, c.hidden_size, vb.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                c.max_position_embeddings,
                c.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_type: candle_nn::embedding(
                c.type_vocab_size,
                c.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            layer_norm: candle_nn::layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (_, len) = ids.dims2()?;
        let positions = Tensor::arange(0u32, len as u32, ids.device())?;
        // One segment: token type 0 everywhere (a pair is still one sequence
        // of ids here, as sentence-transformers encodes it).
        let token_types = ids.zeros_like()?;
        let x = (self.word.forward(ids)? + self.token_type.forward(&token_types)?)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        self.layer_norm.forward(&x)
    }
}

/// One transformer layer (post-norm, as BERT).
struct Layer {
    /// Query (pre-scaled by 1/√d), key and value projections as one.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    out: Linear,
    out_norm: LayerNorm,
    heads: usize,
    activation: HiddenAct,
}

impl Layer {
    fn load(vb: VarBuilder, c: &BertConfig) -> candle_core::Result<Layer> {
        let h = c.hidden_size;
        let attention = vb.pp("attention");
        let q = candle_nn::linear(h, h, attention.pp("self.query"))?;
        let k = candle_nn::linear(h, h, attention.pp("self.key"))?;
        let v = candle_nn::linear(h, h, attention.pp("self.value"))?;
        let scale = 1.0 / ((h / c.num_attention_heads) as f64).sqrt();
        let bias = |l: &Linear| {
            l.bias()
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg("a projection without bias".into()))
        };
        let qkv = Linear::new(
            Tensor::cat(&[&(q.weight() * scale)?, k.weight(), v.weight()], 0)?,
            Some(Tensor::cat(
                &[&(bias(&q)? * scale)?, &bias(&k)?, &bias(&v)?],
                0,
            )?),
        );
        let eps = c.layer_norm_eps;
        Ok(Layer {
            qkv,
            attention_out: candle_nn::linear(h, h, attention.pp("output.dense"))?,
            attention_norm: candle_nn::layer_norm(h, eps, attention.pp("output.LayerNorm"))?,
            intermediate: candle_nn::linear(h, c.intermediate_size, vb.pp("intermediate.dense"))?,
            out: candle_nn::linear(c.intermediate_size, h, vb.pp("output.dense"))?,
            out_norm: candle_nn::layer_norm(h, eps, vb.pp("output.LayerNorm"))?,
            heads: c.num_attention_heads,
            activation: c.hidden_act,
        })
    }

    /// `x`: `[batch, len, hidden]`; `mask`: additive, `[batch, 1, 1, len]`.
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let (b, len, h) = x.dims3()?;
        let head_dim = h / self.heads;
        // One copy puts q, k and v head-major ([3, batch, heads, len, d]);
        // narrowing each projection out first cost two strided copies each
        // (candle's copy kernel was the largest item of a GPU batch).
        let qkv = dense(&self.qkv, x, None, Activation::None)?;
        // On GPUs one kernel reads q/k/v as they come and writes the context
        // as it goes on (kernels::attention); elsewhere candle's ops.
        let context = match kernels::attention::fused(&qkv, mask, self.heads)? {
            Some(context) => context,
            None => {
                let qkv = qkv
                    .reshape((b, len, 3, self.heads, head_dim))?
                    .permute((2, 0, 3, 1, 4))?
                    .contiguous()?;
                let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
                let mut scores = q.matmul(&k.t()?)?;
                if let Some(mask) = mask {
                    scores = scores.broadcast_add(mask)?;
                }
                let probs = candle_nn::ops::softmax_last_dim(&scores)?;
                probs.matmul(&v)?.transpose(1, 2)?.reshape((b, len, h))?
            }
        };
        let x = self.attention_norm.forward(&dense(
            &self.attention_out,
            &context,
            Some(x),
            Activation::None,
        )?)?;
        let act = match self.activation {
            HiddenAct::Gelu => Activation::Gelu,
            HiddenAct::GeluApproximate => Activation::GeluTanh,
            HiddenAct::Relu => Activation::Relu,
        };
        let hidden = dense(&self.intermediate, &x, None, act)?;
        self.out_norm
            .forward(&dense(&self.out, &hidden, Some(&x), Activation::None)?)
    }
}

/// `act(x · Wᵀ + b + residual)` for `x` `[batch, len, in]`: one matrix
/// product over every token, then bias, residual and activation in one pass
/// on a GPU ([`kernels::epilogue`]; candle's broadcast bias add was the slow
/// part of its `Linear`).
fn dense(
    layer: &Linear,
    x: &Tensor,
    residual: Option<&Tensor>,
    act: Activation,
) -> candle_core::Result<Tensor> {
    let (b, len, d_in) = x.dims3()?;
    let w = layer.weight();
    let y = x
        .reshape((b * len, d_in))?
        .matmul(&w.t()?)?
        .reshape((b, len, w.dim(0)?))?;
    let bias = layer
        .bias()
        .ok_or_else(|| candle_core::Error::Msg("a BERT linear layer without bias".into()))?;
    linear_bias_residual_act(y, bias, residual, act)
}

/// A loaded sentence encoder on one device.
pub struct SentenceEncoder {
    pub config: BertConfig,
    pub device: Device,
    pub device_spec: DeviceSpec,
    pub dtype: DType,
    pub weights: WeightSource,
    /// L2-normalise the pooled embedding (sentence-transformers' `Normalize`
    /// module, part of all-MiniLM-L6-v2).
    pub normalize: bool,
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl SentenceEncoder {
    pub fn load(
        config: BertConfig,
        weights: WeightSource,
        device_spec: DeviceSpec,
        dtype: DType,
        normalize: bool,
    ) -> Result<SentenceEncoder, TextError> {
        check_bert_config(&config).map_err(|error| WorkloadError::Config {
            model: "bert",
            error,
        })?;
        let device = device_spec.open().map_err(WorkloadError::Device)?;
        let vb = weights.var_builder(dtype, &device)?;
        // Checkpoints of BertFor* models prefix everything with "bert.";
        // sentence-transformers' files do not.
        let vb = if !weights.is_random()
            && vb.contains_tensor("bert.embeddings.word_embeddings.weight")
        {
            vb.pp("bert")
        } else {
            vb
        };
        // Synchronised: worker threads run on streams of their own.
        let built = Self::build(vb, &config).and_then(|b| device.synchronize().map(|()| b));
        let (embeddings, layers) = built.map_err(|e| match &weights {
            WeightSource::File(path) => WorkloadError::Weights {
                path: path.clone(),
                reason: format!("does not fit this BERT config: {e}"),
            },
            WeightSource::Random { .. } => WorkloadError::Model {
                model: "bert".into(),
                reason: e.to_string(),
            },
        })?;
        Ok(SentenceEncoder {
            config,
            device,
            device_spec,
            dtype,
            weights,
            normalize,
            embeddings,
            layers,
        })
    }

    fn build(vb: VarBuilder, config: &BertConfig) -> candle_core::Result<(Embeddings, Vec<Layer>)> {
        Ok((
            Embeddings::load(vb.pp("embeddings"), config)?,
            (0..config.num_hidden_layers)
                .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), config))
                .collect::<candle_core::Result<_>>()?,
        ))
    }

    /// Writes the seeded random weights `config` gets with `seed` to a
    /// safetensors file (in sentence-transformers' names), so a peer
    /// runtime or a test can load the identical network. Returns the
    /// number of tensors.
    pub fn export_random_weights(
        config: &BertConfig,
        seed: u64,
        path: &Path,
    ) -> Result<usize, WorkloadError> {
        crate::weights::export_random(seed, path, |vb| Self::build(vb, config).map(|_| ()))
    }

    /// Width of an embedding.
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    /// One embedding per input (f32, `hidden_size` long). Inputs of
    /// different lengths are padded to the longest and masked out.
    pub fn embed(&self, inputs: &[&[u32]]) -> Result<Vec<Vec<f32>>, WorkloadError> {
        self.embed_inner(inputs)
            .map_err(|e| WorkloadError::Inference {
                model: "bert".into(),
                reason: e.to_string(),
            })
    }

    fn embed_inner(&self, inputs: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let len = inputs.iter().map(|t| t.len()).max().unwrap_or(0);
        if len == 0 || len > self.config.max_position_embeddings {
            candle_core::bail!(
                "inputs of {len} tokens; this model takes 1 to {}",
                self.config.max_position_embeddings
            );
        }
        if let Some(bad) = inputs
            .iter()
            .flat_map(|t| t.iter())
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            candle_core::bail!(
                "token id {bad} is outside the vocabulary ({} tokens)",
                self.config.vocab_size
            );
        }
        let batch = inputs.len();
        let pad = self.config.pad_token_id as u32;
        let mut ids = Vec::with_capacity(batch * len);
        let mut keep = Vec::with_capacity(batch * len);
        for t in inputs {
            ids.extend_from_slice(t);
            ids.extend(std::iter::repeat_n(pad, len - t.len()));
            keep.extend(std::iter::repeat_n(1f32, t.len()));
            keep.extend(std::iter::repeat_n(0f32, len - t.len()));
        }
        let ids = Tensor::from_vec(ids, (batch, len), &self.device)?;
        let keep = Tensor::from_vec(keep, (batch, len), &self.device)?;
        // Additive mask, only when the batch has padding: 0 on tokens, a
        // large finite negative on padding (finite in the compute type, so
        // softmax never sees −∞ − −∞).
        let padded = inputs.iter().any(|t| t.len() < len);
        let additive = if padded {
            let masked = if self.dtype == DType::F16 {
                -3.0e4
            } else {
                -1.0e9
            };
            Some(
                keep.affine(-masked, masked)?
                    .to_dtype(self.dtype)?
                    .reshape((batch, 1, 1, len))?,
            )
        } else {
            None
        };
        let mut hidden = self.embeddings.forward(&ids)?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, additive.as_ref())?;
        }
        let hidden = hidden.to_dtype(DType::F32)?;
        // Mean over real tokens.
        let keep = keep.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&keep)?.sum(1)?;
        let counts = keep.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mut pooled = summed.broadcast_div(&counts)?;
        if self.normalize {
            let norm = pooled
                .sqr()?
                .sum_keepdim(D::Minus1)?
                .sqrt()?
                .clamp(1e-12, f64::MAX)?;
            pooled = pooled.broadcast_div(&norm)?;
        }
        pooled.to_device(&Device::Cpu)?.to_vec2::<f32>()
    }
}
