//! ONNX Runtime sessions answering batches: one session per worker thread
//! (ort runs a session through `&mut`: some of ONNX Runtime's allocators
//! are not thread-safe), inputs stacked along the batch dimension from the
//! samples' bytes, each sample's answer the bytes of its slice of every
//! output, in the model's output order.

use crate::model_io::ModelIo;
use crate::samples::{AnswerTokens, SampleSource};
use loadgen::QuerySampleIndex;
use ort::memory::Allocator;
use ort::session::Session;
use ort::value::DynTensor;
use std::sync::{Arc, Mutex};
use workloads::batcher::{BatchModel, ModelError};

/// Why a batch could not be run.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("sample {0} is not loaded")]
    NotLoaded(QuerySampleIndex),
    #[error("input `{name}`: {source}")]
    Input { name: String, source: ort::Error },
    #[error("running the model: {0}")]
    Run(ort::Error),
    #[error("output `{name}`: {reason}")]
    Output { name: String, reason: String },
}

/// What a sample's answer (its response data) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Its slice of every output, in the model's output order.
    Outputs,
    /// The index of its largest score in the one output, as a
    /// little-endian f32: what joulebench's built-in classifiers answer and
    /// `joulebench accuracy --kind top1` scores.
    Top1,
    /// Extractive question answering (SQuAD): the best span of the
    /// context by start + end logit (at most [`MAX_ANSWER_TOKENS`] long),
    /// as its token ids, u32 little-endian: `joulebench accuracy --kind
    /// squad --tokenizer` decodes and scores it. The fields are the indices
    /// of the start- and end-logit outputs.
    Span { start: usize, end: usize },
}

/// The longest answer span, in tokens (the `max_answer_length` of BERT's
/// SQuAD scripts and MLPerf's reference).
pub const MAX_ANSWER_TOKENS: usize = 30;

impl Answer {
    /// Top-1, for a model whose one output is float32 scores per class.
    pub fn top1(io: &ModelIo) -> Result<Answer, crate::OrtError> {
        match io.outputs.as_slice() {
            [o] if o.element == ort::value::TensorElementType::Float32 && o.dims.len() == 2 => {
                Ok(Answer::Top1)
            }
            _ => Err(crate::OrtError::Unsupported {
                name: "(outputs)".into(),
                reason: format!(
                    "--image-folder answers each image with its top-1 class, which needs one \
                     float32 output of class scores [batch, classes]; this model gives {}",
                    io.outputs
                        .iter()
                        .map(|o| o.describe())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// A span answer, for a model whose outputs are two float32 logits per
    /// token, [batch, sequence], named with "start" and "end" (Hugging Face's
    /// `start_logits`/`end_logits`, MLPerf BERT's `output_start_logits`...).
    pub fn span(io: &ModelIo) -> Option<Answer> {
        let logits = |word: &str| {
            io.outputs.iter().position(|o| {
                o.name.to_lowercase().contains(word)
                    && o.element == ort::value::TensorElementType::Float32
                    && o.dims.len() == 2
            })
        };
        match (io.outputs.len(), logits("start"), logits("end")) {
            (2, Some(start), Some(end)) if start != end => Some(Answer::Span { start, end }),
            _ => None,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Answer::Outputs => "each output's slice for the sample, in output order",
            Answer::Top1 => "the top-1 class index as a little-endian float32",
            Answer::Span { .. } => {
                "the best answer span of the context (start + end logit, at most 30 tokens) as \
                 token ids, u32 little-endian"
            }
        }
    }
}

pub struct OrtModel {
    sessions: Vec<Mutex<Session>>,
    io: ModelIo,
    samples: Arc<dyn SampleSource>,
    answer: Answer,
}

impl OrtModel {
    pub fn new(
        sessions: Vec<Session>,
        io: ModelIo,
        samples: Arc<dyn SampleSource>,
        answer: Answer,
    ) -> Self {
        OrtModel {
            sessions: sessions.into_iter().map(Mutex::new).collect(),
            io,
            samples,
            answer,
        }
    }

    /// A free session (there is one per worker, so one is free unless a
    /// caller outside the workers, such as calibration, runs alongside).
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        loop {
            for s in &self.sessions {
                if let Ok(guard) = s.try_lock() {
                    return guard;
                }
            }
            // All busy: wait on the first.
            if let Ok(guard) = self.sessions[0].lock() {
                return guard;
            }
        }
    }

    /// Runs `indices` as one batch; each sample's answer in order.
    pub fn run(&self, indices: &[QuerySampleIndex]) -> Result<Vec<Vec<u8>>, InferError> {
        let batch = indices.len();
        let allocator = Allocator::default();
        let mut inputs = Vec::with_capacity(self.io.inputs.len());
        for (i, spec) in self.io.inputs.iter().enumerate() {
            let input_err = |source| InferError::Input {
                name: spec.name.clone(),
                source,
            };
            let mut shape = vec![batch as i64];
            shape.extend(self.io.sample_shapes[i].iter().map(|&d| d as i64));
            let mut tensor = DynTensor::new(&allocator, spec.element, shape).map_err(input_err)?;
            let per_sample = self.io.sample_bytes(i);
            let ptr = tensor.data_ptr_mut().cast::<u8>();
            // SAFETY: the tensor was allocated on the CPU for `batch` samples
            // of `per_sample` bytes each (its shape and element type above),
            // and nothing else refers to it yet.
            let all = unsafe { std::slice::from_raw_parts_mut(ptr, batch * per_sample) };
            self.samples
                .write_input(indices, i, all)
                .map_err(InferError::NotLoaded)?;
            inputs.push((spec.name.clone(), tensor));
        }
        let mut session = self.session();
        let outputs = session.run(inputs).map_err(InferError::Run)?;
        let mut answers = vec![Vec::new(); batch];
        // Bytes per sample of each output, to take a span answer apart.
        let mut output_bytes = Vec::with_capacity(self.io.outputs.len());
        for (spec, (_, value)) in self.io.outputs.iter().zip(outputs.iter()) {
            let output_err = |reason: String| InferError::Output {
                name: spec.name.clone(),
                reason,
            };
            let tensor = value
                .downcast::<ort::value::DynTensorValueType>()
                .map_err(|e| output_err(e.to_string()))?;
            let bytes = tensor
                .size()
                .ok_or_else(|| output_err("a string tensor: joulebench cannot log it".into()))?;
            let first = tensor.shape().first().copied().unwrap_or(0);
            if first != batch as i64 || bytes % batch != 0 {
                return Err(output_err(format!(
                    "shape {:?} has no batch dimension of {batch} first",
                    tensor.shape()
                )));
            }
            let per_sample = bytes / batch;
            output_bytes.push(per_sample);
            let data = tensor.data_ptr().cast::<u8>();
            for (k, answer) in answers.iter_mut().enumerate() {
                // SAFETY: ONNX Runtime holds `bytes` bytes of CPU memory
                // (the CPU provider's outputs) at `data` while `outputs`
                // lives; sample k's slice is inside it.
                let slice =
                    unsafe { std::slice::from_raw_parts(data.add(k * per_sample), per_sample) };
                answer.extend_from_slice(slice);
            }
        }
        match self.answer {
            Answer::Outputs => Ok(answers),
            Answer::Top1 => Ok(answers.iter().map(|scores| top1(scores)).collect()),
            Answer::Span { start, end } => Ok(answers
                .iter()
                .zip(indices)
                .map(|(all, &index)| {
                    let part = |which: usize| {
                        let from: usize = output_bytes[..which].iter().sum();
                        floats(&all[from..from + output_bytes[which]])
                    };
                    match self.samples.answer_tokens(index) {
                        Some(tokens) => span_answer(&part(start), &part(end), &tokens),
                        None => Vec::new(),
                    }
                })
                .collect()),
        }
    }
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The context span with the largest start + end logit (start ≤ end, at
/// most [`MAX_ANSWER_TOKENS`]), as its token ids, u32 little-endian; empty
/// when the sample has no context.
fn span_answer(start: &[f32], end: &[f32], tokens: &AnswerTokens) -> Vec<u8> {
    let context = tokens.context.start..tokens.context.end.min(start.len()).min(end.len());
    let mut best: Option<(f32, usize, usize)> = None;
    for i in context.clone() {
        let reach = i..context.end.min(i + MAX_ANSWER_TOKENS);
        for (j, end_logit) in end[reach.clone()]
            .iter()
            .enumerate()
            .map(|(k, e)| (i + k, e))
        {
            let score = start[i] + end_logit;
            if best.is_none_or(|(b, _, _)| score > b) {
                best = Some((score, i, j));
            }
        }
    }
    best.map(|(_, i, j)| {
        tokens.ids[i..=j]
            .iter()
            .flat_map(|id| id.to_le_bytes())
            .collect()
    })
    .unwrap_or_default()
}

/// The index of the largest of little-endian f32 scores, as f32 bytes.
fn top1(scores: &[u8]) -> Vec<u8> {
    let best = scores
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        });
    (best.0 as f32).to_le_bytes().to_vec()
}

impl BatchModel for OrtModel {
    fn infer(&self, samples: &[QuerySampleIndex]) -> Result<Vec<Vec<u8>>, ModelError> {
        self.run(samples).map_err(|e| Box::new(e) as ModelError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(answer: &[u8]) -> Vec<u32> {
        answer
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    #[test]
    fn the_span_stays_in_the_context_ordered_and_short() {
        let tokens = AnswerTokens {
            ids: (100..140).collect::<Vec<u32>>().into(),
            context: 5..39,
        };
        let mut start = vec![-100.0f32; 40];
        let mut end = vec![-100.0f32; 40];
        // The best logits lie outside the context: not taken.
        start[1] = 50.0;
        end[39] = 50.0;
        start[10] = 3.0;
        end[12] = 2.0;
        end[8] = 9.0; // before the start: no span ends there
        assert_eq!(
            ids(&span_answer(&start, &end, &tokens)),
            vec![110, 111, 112]
        );
        // A span of 31 tokens is out of reach, however high its end.
        let mut start = vec![-100.0f32; 40];
        let mut end = vec![-100.0f32; 40];
        start[5] = 3.0;
        end[6] = 1.0;
        end[36] = 20.0;
        assert_eq!(ids(&span_answer(&start, &end, &tokens)), vec![105, 106]);
        // No context, no answer.
        let empty = AnswerTokens {
            ids: tokens.ids.clone(),
            context: 7..7,
        };
        assert!(span_answer(&start, &end, &empty).is_empty());
    }
}
