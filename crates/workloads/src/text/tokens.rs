//! Tokens: a Hugging Face `tokenizer.json` (WordPiece for BERT, byte-level
//! BPE for GPT-2), and a deterministic synthetic token stream for runs with
//! random weights and no tokenizer.

use super::TextError;
use crate::rng::Mt19937;
use std::path::{Path, PathBuf};
use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};

/// Which end of a too-long input is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Keep the beginning (an encoder's input: `[CLS]` and the first words).
    End,
    /// Keep the end (a prompt: the words next to what is generated).
    Start,
}

/// A tokenizer read from a `tokenizer.json` file.
pub struct TextTokenizer {
    path: PathBuf,
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("path", &self.path)
            .finish()
    }
}

impl TextTokenizer {
    /// Reads `tokenizer.json`. Its own padding and truncation settings are
    /// dropped: batches are padded by the model, and inputs are cut to the
    /// run's sequence length with [`TextTokenizer::set_max_tokens`].
    pub fn from_file(path: &Path) -> Result<TextTokenizer, TextError> {
        let err = |reason: String| TextError::Tokenizer {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(err("no such file (give the model's tokenizer.json)".into()));
        }
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| err(format!("not a valid tokenizer.json: {e}")))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| err(e.to_string()))?;
        Ok(TextTokenizer {
            path: path.to_path_buf(),
            inner,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tokens in the vocabulary, added tokens included: every id the
    /// tokenizer produces is below this.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token (e.g. `<|endoftext|>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Cuts every encoding to at most `max_tokens` tokens (special tokens
    /// kept; of a pair, the longer part is cut first), dropping tokens at
    /// the `cut` end; `None`: no limit.
    pub fn set_max_tokens(&mut self, max_tokens: Option<usize>, cut: Cut) -> Result<(), TextError> {
        let params = max_tokens.map(|max_length| TruncationParams {
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: match cut {
                Cut::End => TruncationDirection::Right,
                Cut::Start => TruncationDirection::Left,
            },
        });
        self.inner
            .with_truncation(params)
            .map(|_| ())
            .map_err(|e| TextError::Tokenizer {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }

    /// Token ids of `text` with the model's special tokens (BERT's `[CLS]`
    /// … `[SEP]`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TextError> {
        self.encode_input(text.into())
    }

    /// Token ids of a text pair (a question and its context): `[CLS] a [SEP]
    /// b [SEP]` for BERT.
    pub fn encode_pair(&self, first: &str, second: &str) -> Result<Vec<u32>, TextError> {
        self.encode_input((first, second).into())
    }

    fn encode_input(&self, input: tokenizers::EncodeInput<'_>) -> Result<Vec<u32>, TextError> {
        let encoding = self
            .inner
            .encode(input, true)
            .map_err(|e| TextError::Tokenizer {
                path: self.path.clone(),
                reason: format!("cannot encode: {e}"),
            })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of token ids, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TextError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| TextError::Tokenizer {
                path: self.path.clone(),
                reason: format!("cannot decode: {e}"),
            })
    }
}

/// `len` token ids in `[0, vocab_size)`, the same for the same seed and
/// sample index on every machine (the loadgen's portable Mersenne Twister).
pub fn synthetic_tokens(seed: u64, index: usize, len: usize, vocab_size: usize) -> Vec<u32> {
    let mut rng = Mt19937::new(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let vocab = vocab_size.max(1) as f64;
    (0..len)
        .map(|_| ((rng.canonical() * vocab) as usize).min(vocab_size.saturating_sub(1)) as u32)
        .collect()
}
