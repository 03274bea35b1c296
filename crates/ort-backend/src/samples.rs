//! Seeded synthetic samples of the shapes and element types a model takes:
//! the same seed gives the same bytes, so runs and peers can be compared on
//! the same inputs. Floats are uniform in [-1, 1); integers in [0, int_max)
//! (token ids, class ids; masks are 1); booleans true.

use crate::model_io::ModelIo;
use loadgen::qsl::QslError;
use loadgen::{QuerySampleIndex, QuerySampleLibrary};
use ort::value::TensorElementType;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// One sample: the bytes of each input, in the model's input order.
type Sample = Arc<Vec<Vec<u8>>>;

/// Where a batch's input bytes come from: the samples loaded by the load
/// generator, written straight into the input tensors.
pub trait SampleSource: QuerySampleLibrary {
    /// Writes input `input` of each sample of `indices`, one after another,
    /// into `dst` (exactly their bytes); the first sample that is not
    /// loaded is the error.
    fn write_input(
        &self,
        indices: &[QuerySampleIndex],
        input: usize,
        dst: &mut [u8],
    ) -> Result<(), QuerySampleIndex>;
    /// Where the samples come from, for the result.
    fn describe(&self) -> String;
    /// A question-answering sample's tokens and where its context lies in
    /// them (what an answer span may cover); `None` for other sources.
    fn answer_tokens(&self, _index: QuerySampleIndex) -> Option<AnswerTokens> {
        None
    }
}

/// A tokenized `(question, context)` pair: the ids, and the context's range.
pub struct AnswerTokens {
    pub ids: std::sync::Arc<[u32]>,
    pub context: std::ops::Range<usize>,
}

/// [`SampleSource::write_input`] for sources that hold each sample's bytes:
/// `bytes_of` gives one sample's, copied into its slot when the size fits.
pub fn write_each<'a>(
    indices: &[QuerySampleIndex],
    dst: &mut [u8],
    mut bytes_of: impl FnMut(QuerySampleIndex) -> Option<&'a [u8]>,
) -> Result<(), QuerySampleIndex> {
    if indices.is_empty() {
        return Ok(());
    }
    let per_sample = dst.len() / indices.len();
    for (slot, &index) in dst.chunks_exact_mut(per_sample.max(1)).zip(indices) {
        match bytes_of(index) {
            Some(src) if src.len() == slot.len() => slot.copy_from_slice(src),
            _ => return Err(index),
        }
    }
    Ok(())
}

pub struct SyntheticSamples {
    io: ModelIo,
    total: usize,
    performance: usize,
    seed: u64,
    int_max: i64,
    loaded: RwLock<HashMap<QuerySampleIndex, Sample>>,
}

impl SyntheticSamples {
    pub fn new(io: ModelIo, total: usize, performance: usize, seed: u64, int_max: i64) -> Self {
        SyntheticSamples {
            io,
            total,
            performance: performance.min(total),
            seed,
            int_max: int_max.max(1),
            loaded: RwLock::new(HashMap::new()),
        }
    }

    /// Sample `index`'s bytes, made from the seed.
    pub fn make(&self, index: QuerySampleIndex) -> Vec<Vec<u8>> {
        (0..self.io.inputs.len())
            .map(|i| self.make_input(index, i))
            .collect()
    }

    fn make_input(&self, index: QuerySampleIndex, input: usize) -> Vec<u8> {
        let spec = &self.io.inputs[input];
        let elements: usize = self.io.sample_shapes[input].iter().product();
        // One stream per (seed, sample, input): independent of load order.
        let stream = self
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add((index as u64) << 8)
            .wrapping_add(input as u64);
        let mut rng = rand_mt::Mt64::new(stream);
        let is_mask = spec.name.to_ascii_lowercase().contains("mask");
        let mut out = Vec::with_capacity(elements * spec.element_bytes().unwrap_or(0));
        for _ in 0..elements {
            let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let float = 2.0 * unit - 1.0;
            let int = if is_mask {
                1
            } else {
                (rng.next_u64() % self.int_max as u64) as i64
            };
            push_element(&mut out, spec.element, float, int);
        }
        out
    }
}

/// Appends one element of type `t`, little-endian, from a float (for float
/// types) or an integer (for integer types).
fn push_element(out: &mut Vec<u8>, t: TensorElementType, float: f64, int: i64) {
    match t {
        TensorElementType::Float32 => out.extend((float as f32).to_le_bytes()),
        TensorElementType::Float64 => out.extend(float.to_le_bytes()),
        TensorElementType::Float16 => out.extend(f16_bits(float as f32).to_le_bytes()),
        TensorElementType::Bfloat16 => {
            out.extend((((float as f32).to_bits() >> 16) as u16).to_le_bytes())
        }
        TensorElementType::Int8 => out.push(int as i8 as u8),
        TensorElementType::Uint8 => out.push(int as u8),
        TensorElementType::Int16 => out.extend((int as i16).to_le_bytes()),
        TensorElementType::Uint16 => out.extend((int as u16).to_le_bytes()),
        TensorElementType::Int32 => out.extend((int as i32).to_le_bytes()),
        TensorElementType::Uint32 => out.extend((int as u32).to_le_bytes()),
        TensorElementType::Int64 => out.extend(int.to_le_bytes()),
        TensorElementType::Uint64 => out.extend((int as u64).to_le_bytes()),
        TensorElementType::Bool => out.push(1),
        // ModelIo refuses every other type before samples are made.
        _ => {}
    }
}

/// IEEE half from a float in [-1, 1) (no overflow, subnormals flushed).
fn f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    if exp <= 0 {
        return sign;
    }
    sign | ((exp as u16) << 10) | ((bits >> 13) & 0x3ff) as u16
}

impl SampleSource for SyntheticSamples {
    fn write_input(
        &self,
        indices: &[QuerySampleIndex],
        input: usize,
        dst: &mut [u8],
    ) -> Result<(), QuerySampleIndex> {
        let loaded = self.loaded.read().map_err(|_| indices[0])?;
        write_each(indices, dst, |index| {
            loaded
                .get(&index)
                .and_then(|s| s.get(input))
                .map(Vec::as_slice)
        })
    }

    fn describe(&self) -> String {
        format!("synthetic (seed {})", self.seed)
    }
}

impl QuerySampleLibrary for SyntheticSamples {
    fn name(&self) -> &str {
        "synthetic-onnx-inputs"
    }
    fn total_sample_count(&self) -> usize {
        self.total
    }
    fn performance_sample_count(&self) -> usize {
        self.performance
    }
    fn load_samples_to_ram(&self, samples: &[QuerySampleIndex]) -> Result<(), QslError> {
        let made: Vec<(QuerySampleIndex, Sample)> = samples
            .iter()
            .map(|&i| (i, Arc::new(self.make(i))))
            .collect();
        if let Ok(mut loaded) = self.loaded.write() {
            loaded.extend(made);
        }
        Ok(())
    }
    fn unload_samples_from_ram(&self, samples: &[QuerySampleIndex]) {
        if let Ok(mut loaded) = self.loaded.write() {
            for i in samples {
                loaded.remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_of_simple_values_are_exact() {
        assert_eq!(f16_bits(0.5), 0x3800);
        assert_eq!(f16_bits(-0.75), 0xBA00);
        assert_eq!(f16_bits(0.0), 0);
    }
}
