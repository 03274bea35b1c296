//! The text models as systems under test.
//!
//! - [`EncoderModel`] plugs the sentence encoder into
//!   [`crate::batcher::BatchingSut`]; each sample's response is its
//!   embedding as little-endian f32 bytes.
//! - [`GenerationSut`] batches prompts the same way (a largest batch, a
//!   longest wait) and generates; it reports each sample's first token to
//!   LoadGen the moment it exists (time to first token), and completes the
//!   sample with all its generated token ids as little-endian u32 bytes and
//!   their count (time per output token, tokens/s).

use super::dataset::TextQsl;
use super::decoder::{GenerationEvent, Gpt2};
use super::encoder::SentenceEncoder;
use crate::batcher::{BatchModel, BatchPolicy, BatchQueue, ModelError};
use loadgen::{QuerySample, QuerySampleIndex, QuerySampleResponse, Responder, SystemUnderTest};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Little-endian bytes of f32 values (an embedding).
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian bytes of token ids.
pub fn token_bytes(tokens: &[u32]) -> Vec<u8> {
    tokens.iter().flat_map(|t| t.to_le_bytes()).collect()
}

/// Token ids back from [`token_bytes`] (a trailing partial id is dropped).
pub fn tokens_from_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The sentence encoder over a text library, for [`crate::batcher::BatchingSut`].
pub struct EncoderModel {
    pub encoder: SentenceEncoder,
    pub qsl: Arc<TextQsl>,
}

impl BatchModel for EncoderModel {
    fn infer(&self, samples: &[QuerySampleIndex]) -> Result<Vec<Vec<u8>>, ModelError> {
        let tokens = self.qsl.batch(samples)?;
        let inputs: Vec<&[u32]> = tokens.iter().map(|t| &t[..]).collect();
        let embeddings = self.encoder.embed(&inputs)?;
        Ok(embeddings.iter().map(|e| f32_bytes(e)).collect())
    }
}

/// How [`GenerationSut`] generates.
#[derive(Debug, Clone, Copy)]
pub struct GenerationPolicy {
    pub batching: BatchPolicy,
    pub max_new_tokens: usize,
    /// End-of-text token: a sample stops there.
    pub eos: Option<u32>,
}

/// GPT-2 as a system under test.
pub struct GenerationSut {
    name: String,
    queue: Arc<BatchQueue>,
    workers: Vec<JoinHandle<()>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl GenerationSut {
    pub fn new(
        name: String,
        model: Arc<Gpt2>,
        qsl: Arc<TextQsl>,
        policy: GenerationPolicy,
    ) -> GenerationSut {
        let queue = Arc::new(BatchQueue::default());
        let errors = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..policy.batching.workers.max(1))
            .map(|_| {
                let (queue, model, qsl, errors) = (
                    Arc::clone(&queue),
                    Arc::clone(&model),
                    Arc::clone(&qsl),
                    Arc::clone(&errors),
                );
                std::thread::spawn(move || work(&queue, &model, &qsl, policy, &errors))
            })
            .collect();
        GenerationSut {
            name,
            queue,
            workers,
            errors,
        }
    }

    /// Generation errors seen (each such sample is completed with no data).
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

fn work(
    queue: &BatchQueue,
    model: &Gpt2,
    qsl: &TextQsl,
    policy: GenerationPolicy,
    errors: &Mutex<Vec<String>>,
) {
    let record = |e: String| {
        if let Ok(mut errs) = errors.lock() {
            if errs.len() < 10 {
                errs.push(e);
            }
        }
    };
    while let Some(batch) = queue.take(&policy.batching, || false) {
        let indices: Vec<QuerySampleIndex> = batch.iter().map(|p| p.sample.index).collect();
        let tokens = match qsl.batch(&indices) {
            Ok(t) => t,
            Err(e) => {
                record(e.to_string());
                for p in &batch {
                    p.responder.complete_ids([p.sample.id]);
                }
                continue;
            }
        };
        let prompts: Vec<&[u32]> = tokens.iter().map(|t| &t[..]).collect();
        let mut done = vec![false; batch.len()];
        let outcome =
            model.generate(
                &prompts,
                policy.max_new_tokens,
                policy.eos,
                |event| match event {
                    GenerationEvent::FirstToken { row, token } => {
                        let p = &batch[row];
                        let data = token.to_le_bytes();
                        p.responder.first_token(&[QuerySampleResponse {
                            id: p.sample.id,
                            data: &data,
                            n_tokens: 1,
                        }]);
                    }
                    GenerationEvent::Done { row, tokens } => {
                        let p = &batch[row];
                        let data = token_bytes(tokens);
                        p.responder.complete(&[QuerySampleResponse {
                            id: p.sample.id,
                            data: &data,
                            n_tokens: tokens.len() as u64,
                        }]);
                        done[row] = true;
                    }
                },
            );
        if let Err(e) = outcome {
            record(e.to_string());
            // Every sample is completed exactly once, even after a failure.
            for (p, _) in batch.iter().zip(&done).filter(|(_, &d)| !d) {
                p.responder.complete_ids([p.sample.id]);
            }
        }
    }
}

impl SystemUnderTest for GenerationSut {
    fn name(&self) -> &str {
        &self.name
    }

    fn issue_query(&self, samples: &[QuerySample], responder: &Responder) {
        self.queue.push(samples, responder);
    }

    fn flush_queries(&self) {
        self.queue.flush();
    }
}

impl Drop for GenerationSut {
    fn drop(&mut self) {
        self.queue.stop();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
