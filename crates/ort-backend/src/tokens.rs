//! A text data set (`--dataset`, tokenized with `--tokenizer` before the
//! run) fed to an ONNX text model by input name, as Hugging Face's exports
//! name them: `input_ids` (the ids, padded with 0 to the model's sequence
//! length), `attention_mask` (1 over the tokens, 0 over the padding) and
//! `token_type_ids` (0 over the first segment, 1 over a second: a SQuAD
//! question's context, after the first `[SEP]`). Texts longer than the
//! sequence are cut at the end by the tokenizer, special tokens kept.

use crate::model_io::ModelIo;
use crate::samples::{AnswerTokens, SampleSource};
use crate::OrtError;
use loadgen::qsl::QslError;
use loadgen::{QuerySampleIndex, QuerySampleLibrary};
use ort::value::TensorElementType;
use std::path::Path;
use workloads::text::dataset::{read_text_dataset, Framing, TextQsl};
use workloads::text::tokens::{Cut, TextTokenizer};

/// What an input receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Ids,
    Mask,
    Types,
}

pub struct TokenInputs {
    qsl: TextQsl,
    /// Per model input: its role and whether it takes int64 (else int32).
    roles: Vec<(Role, bool)>,
    /// Tokens per sample (the model's sequence dimension).
    len: usize,
    /// The separator between a pair's segments (`[SEP]`), when the
    /// tokenizer has one.
    separator: Option<u32>,
}

impl TokenInputs {
    /// Where the second segment starts: after the first separator, when it
    /// is not the last token (a single text ends with its only `[SEP]`).
    fn second_segment(&self, ids: &[u32]) -> Option<usize> {
        let sep = self.separator?;
        let first = ids.iter().position(|&t| t == sep)?;
        (first + 1 < ids.len()).then_some(first + 1)
    }
}

impl TokenInputs {
    pub fn new(
        dataset: &Path,
        tokenizer: &Path,
        io: &ModelIo,
        performance: usize,
    ) -> Result<TokenInputs, OrtError> {
        let mut roles = Vec::new();
        let mut len = None;
        for (spec, shape) in io.inputs.iter().zip(&io.sample_shapes) {
            let role = match spec.name.as_str() {
                "input_ids" => Role::Ids,
                "attention_mask" => Role::Mask,
                "token_type_ids" => Role::Types,
                _ => {
                    return Err(OrtError::Unsupported {
                        name: spec.name.clone(),
                        reason: "--dataset feeds inputs named input_ids, attention_mask and \
                                 token_type_ids; give this model's samples with --inputs DIR"
                            .into(),
                    })
                }
            };
            let wide = match spec.element {
                TensorElementType::Int64 => true,
                TensorElementType::Int32 => false,
                other => {
                    return Err(OrtError::Unsupported {
                        name: spec.name.clone(),
                        reason: format!("token inputs are int64 or int32; this one is {other}"),
                    })
                }
            };
            let [n] = shape.as_slice() else {
                return Err(OrtError::Unsupported {
                    name: spec.name.clone(),
                    reason: format!(
                        "token inputs are [batch, sequence]; this one is {}",
                        spec.describe()
                    ),
                });
            };
            if len.is_some_and(|l| l != *n) {
                return Err(OrtError::Unsupported {
                    name: spec.name.clone(),
                    reason: "the token inputs differ in sequence length".into(),
                });
            }
            len = Some(*n);
            roles.push((role, wide));
        }
        let len = len.unwrap_or(0);
        if !roles.iter().any(|(r, _)| *r == Role::Ids) {
            return Err(OrtError::Unsupported {
                name: "(model)".into(),
                reason: "--dataset needs an input named input_ids".into(),
            });
        }
        let text_err = |e: workloads::text::TextError| OrtError::Build(e.to_string());
        let mut tok = TextTokenizer::from_file(tokenizer).map_err(text_err)?;
        let separator = tok.token_id("[SEP]");
        tok.set_max_tokens(Some(len), Cut::End).map_err(text_err)?;
        let records = read_text_dataset(dataset).map_err(text_err)?;
        let qsl = TextQsl::from_records(dataset, &records, &tok, Framing::Encoder, performance)
            .map_err(text_err)?;
        Ok(TokenInputs {
            qsl,
            roles,
            len,
            separator,
        })
    }
}

impl SampleSource for TokenInputs {
    fn write_input(
        &self,
        indices: &[QuerySampleIndex],
        input: usize,
        dst: &mut [u8],
    ) -> Result<(), QuerySampleIndex> {
        let samples = self.qsl.batch(indices).map_err(|_| indices[0])?;
        let (role, wide) = self.roles[input];
        let width = if wide { 8 } else { 4 };
        for (sample, out) in samples.iter().zip(dst.chunks_exact_mut(self.len * width)) {
            let second = self.second_segment(sample).unwrap_or(usize::MAX);
            for (k, slot) in out.chunks_exact_mut(width).enumerate() {
                let value = match role {
                    Role::Ids => sample.get(k).map_or(0, |&id| i64::from(id)),
                    Role::Mask => i64::from(k < sample.len()),
                    Role::Types => i64::from(k >= second && k < sample.len()),
                };
                if wide {
                    slot.copy_from_slice(&value.to_le_bytes());
                } else {
                    slot.copy_from_slice(&(value as i32).to_le_bytes());
                }
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("{}, padded to {} tokens", self.qsl.describe(), self.len)
    }

    fn answer_tokens(&self, index: QuerySampleIndex) -> Option<AnswerTokens> {
        let ids = self.qsl.batch(&[index]).ok()?.pop()?;
        let start = self.second_segment(&ids)?;
        // The context ends before the closing separator.
        let end = match ids.last() {
            Some(&t) if Some(t) == self.separator => ids.len() - 1,
            _ => ids.len(),
        };
        Some(AnswerTokens {
            ids,
            context: start..end.max(start),
        })
    }
}

impl QuerySampleLibrary for TokenInputs {
    fn name(&self) -> &str {
        self.qsl.name()
    }
    fn total_sample_count(&self) -> usize {
        self.qsl.total_sample_count()
    }
    fn performance_sample_count(&self) -> usize {
        self.qsl.performance_sample_count()
    }
    fn load_samples_to_ram(&self, samples: &[QuerySampleIndex]) -> Result<(), QslError> {
        self.qsl.load_samples_to_ram(samples)
    }
    fn unload_samples_from_ram(&self, samples: &[QuerySampleIndex]) {
        self.qsl.unload_samples_from_ram(samples)
    }
}
