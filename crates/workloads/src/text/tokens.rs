//! Tokens: a Hugging Face `tokenizer.json` (WordPiece for BERT, byte-level
//! BPE for GPT-2), and a deterministic synthetic token stream for runs with
//! random weights and no tokenizer.

use super::TextError;
use crate::rng::Mt19937;
use std::path::{Path, PathBuf};
use tokenizers::{PostProcessor, TruncationDirection, TruncationParams, TruncationStrategy};

/// Which end of a too-long input is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Keep the beginning (an encoder's input: `[CLS]` and the first words).
    End,
    /// Keep the end (a prompt: the words next to what is generated).
    Start,
}

/// A tokenizer read from a `tokenizer.json` file.
///
/// The file is outside input: every call into the tokenizers library is
/// guarded ([`guarded`]), since some malformed files make the library panic
/// rather than return an error, and what it answers is checked against what
/// this type promises (ids below [`TextTokenizer::vocab_size`], no more
/// tokens than [`TextTokenizer::set_max_tokens`] allows).
pub struct TextTokenizer {
    path: PathBuf,
    inner: tokenizers::Tokenizer,
    /// One past the largest id of the vocabulary (added tokens included).
    vocab_size: usize,
    /// The limit set by [`TextTokenizer::set_max_tokens`].
    max_tokens: Option<usize>,
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
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
        TextTokenizer::parse(&bytes, path)
    }

    /// A tokenizer from the bytes of a `tokenizer.json` read from `path`
    /// (which only names it in errors), as [`TextTokenizer::from_file`]
    /// takes it.
    pub fn parse(json: &[u8], path: &Path) -> Result<TextTokenizer, TextError> {
        let err = |reason: String| TextError::Tokenizer {
            path: path.to_path_buf(),
            reason: format!("not a valid tokenizer.json: {reason}"),
        };
        check_charsmaps(json).map_err(err)?;
        let mut inner = guarded(|| tokenizers::Tokenizer::from_bytes(json)).map_err(err)?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| err(e.to_string()))?;
        let vocab_size = largest_id(&inner).map_or(0, |id| id as usize + 1);
        Ok(TextTokenizer {
            path: path.to_path_buf(),
            inner,
            vocab_size,
            max_tokens: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One past the largest id in the vocabulary, added tokens included:
    /// every id [`TextTokenizer::encode`] returns is below this. (For the
    /// usual file, whose ids run from 0 without gaps, the number of tokens.)
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a token (e.g. `<|endoftext|>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Cuts every encoding to at most `max_tokens` tokens (special tokens
    /// kept; of a pair, the longer part is cut first), dropping tokens at
    /// the `cut` end; `None`: no limit. A limit that leaves no room for text
    /// next to the special tokens a pair gets (BERT's `[CLS] a [SEP] b
    /// [SEP]`: 3) is refused.
    pub fn set_max_tokens(&mut self, max_tokens: Option<usize>, cut: Cut) -> Result<(), TextError> {
        let err = |reason: String| TextError::Tokenizer {
            path: self.path.clone(),
            reason,
        };
        let special = self.special_tokens_of_a_pair();
        if let Some(max) = max_tokens.filter(|&max| max <= special) {
            // The library would subtract the special tokens from the limit
            // and underflow: a panic in debug builds, no limit in release.
            return Err(err(format!(
                "a limit of {max} tokens leaves no room for text next to its {special} special tokens"
            )));
        }
        let params = max_tokens.map(|max_length| TruncationParams {
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: match cut {
                Cut::End => TruncationDirection::Right,
                Cut::Start => TruncationDirection::Left,
            },
        });
        guarded(|| self.inner.with_truncation(params).map(|_| ())).map_err(err)?;
        self.max_tokens = max_tokens;
        Ok(())
    }

    /// The special tokens the post-processor adds around a pair (at least
    /// as many as around one text).
    fn special_tokens_of_a_pair(&self) -> usize {
        self.inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true).max(p.added_tokens(false)))
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
        let err = |reason: String| TextError::Tokenizer {
            path: self.path.clone(),
            reason: format!("cannot encode: {reason}"),
        };
        let encoding = guarded(|| self.inner.encode(input, true)).map_err(err)?;
        let ids = encoding.get_ids();
        // A post-processor's special tokens carry ids of their own, which
        // the vocabulary need not have.
        if let Some(id) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(err(format!(
                "token id {id} is outside the vocabulary of {} ids",
                self.vocab_size
            )));
        }
        if let Some(max) = self.max_tokens.filter(|&max| ids.len() > max) {
            return Err(err(format!(
                "{} tokens, more than the limit of {max}",
                ids.len()
            )));
        }
        Ok(ids.to_vec())
    }

    /// Text of token ids, special tokens left out; ids the vocabulary does
    /// not have are left out too.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TextError> {
        guarded(|| self.inner.decode(ids, true)).map_err(|reason| TextError::Tokenizer {
            path: self.path.clone(),
            reason: format!("cannot decode: {reason}"),
        })
    }
}

/// The largest id of `tokenizer`'s vocabulary, added tokens included.
fn largest_id(tokenizer: &tokenizers::Tokenizer) -> Option<u32> {
    tokenizer.get_vocab(true).into_values().max()
}

/// Checks every `precompiled_charsmap` in a tokenizer.json (SentencePiece's
/// normalization table, base64) before the tokenizers library reads it: the
/// library reserves memory for the trie size the blob declares before it
/// reads the trie, so 16 bytes declaring 4 GiB make it ask for 8 GiB, and
/// a failed allocation aborts the process (no panic to catch). A declared
/// size must fit in the blob.
fn check_charsmaps(bytes: &[u8]) -> Result<(), String> {
    // The JSON as a whole: a key spelled with escapes is found too.
    let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut pending = vec![&json];
    while let Some(value) = pending.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(charsmap) = map.get("precompiled_charsmap") {
                    check_charsmap(charsmap)?;
                }
                pending.extend(map.values());
            }
            serde_json::Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    Ok(())
}

/// A `precompiled_charsmap`: base64 of a little-endian u32 trie size in
/// bytes, the trie, then the normalized strings.
fn check_charsmap(charsmap: &serde_json::Value) -> Result<(), String> {
    let Some(text) = charsmap.as_str() else {
        // Not a string: the library refuses it without reading it.
        return Ok(());
    };
    let blob = decode_base64(text).ok_or("precompiled_charsmap is not base64")?;
    let Some((size, rest)) = blob.split_first_chunk::<4>() else {
        return Err(format!(
            "precompiled_charsmap of {} bytes has no trie size",
            blob.len()
        ));
    };
    let trie_bytes = u32::from_le_bytes(*size) as usize;
    if trie_bytes > rest.len() {
        return Err(format!(
            "precompiled_charsmap declares a trie of {trie_bytes} bytes but holds {}",
            rest.len()
        ));
    }
    Ok(())
}

/// Standard base64 (padding optional), or `None` for any other character.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut bits, mut bit_count) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        bits = (bits << 6) | digit(c)?;
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            out.push((bits >> bit_count) as u8);
            bits &= (1 << bit_count) - 1;
        }
    }
    Some(out)
}

/// Runs `call`, a call into the tokenizers library, with its error or its
/// panic as a message. Some malformed tokenizer.json files make the library
/// panic instead of returning an error (a decoder that is not JSON, a
/// precompiled charsmap that does not parse, a `Strip` decoder that cuts
/// past a token, a `FixedLength` pre-tokenizer of length 0): a hostile file
/// must end in an error that names it, not a crash. (The panic message
/// still goes to stderr through the panic hook, which is process-wide.)
fn guarded<T>(call: impl FnOnce() -> tokenizers::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(panic) => Err(format!(
            "the tokenizers library failed on it ({})",
            panic_message(panic.as_ref())
        )),
    }
}

/// What a panic said, if it said it as text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("TWFu").unwrap(), b"Man");
        assert_eq!(decode_base64("TWE=").unwrap(), b"Ma");
        assert_eq!(decode_base64("TQ").unwrap(), b"M");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("/+8=").unwrap(), [0xff, 0xef]);
        assert!(decode_base64("TW u").is_none());
        assert!(
            decode_base64("TW-_").is_none(),
            "URL-safe is not the standard alphabet"
        );
    }

    #[test]
    fn a_charsmap_must_hold_the_trie_it_declares() {
        let charsmap = |base64: &str| check_charsmap(&serde_json::Value::from(base64));
        // Trie of 4 bytes, 4 bytes: [4, 0, 0, 0, 1, 2, 3, 4].
        assert!(charsmap("BAAAAAECAwQ=").is_ok());
        // Trie of 5 bytes, 4 bytes: [5, 0, 0, 0, 1, 2, 3, 4].
        assert!(charsmap("BQAAAAECAwQ=").is_err());
        // No room for the size: [1, 2].
        assert!(charsmap("AQI=").is_err());
        assert!(charsmap("not base64!").is_err());
        assert!(
            check_charsmap(&serde_json::Value::from(7)).is_ok(),
            "not a string: the library refuses it"
        );
    }
}
