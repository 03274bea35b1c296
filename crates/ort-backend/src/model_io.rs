//! What a model takes and gives, from its own metadata: each input's and
//! output's name, element type and shape, with the batch dimension found
//! (a dynamic first dimension) and the other dynamic dimensions resolved
//! from the user's `--dim NAME=N`.

use crate::OrtError;
use ort::value::{Outlet, TensorElementType, ValueType};
use std::collections::BTreeMap;

/// The largest sample joulebench feeds (4 GiB): a larger one is a `--dim`
/// typo, and its byte count must not overflow.
const MAX_SAMPLE_BYTES: usize = 4 << 30;

/// One dimension of a tensor as the model declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    /// Dynamic, with the symbol the model gives it (`batch_size`,
    /// `sequence`), or `None` when it gives none.
    Dynamic(Option<String>),
}

/// An input or output tensor as declared.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub element: TensorElementType,
    pub dims: Vec<Dim>,
}

impl TensorSpec {
    fn from_outlet(outlet: &Outlet, role: &'static str) -> Result<TensorSpec, OrtError> {
        let ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } = outlet.dtype()
        else {
            return Err(OrtError::Unsupported {
                name: outlet.name().to_string(),
                reason: format!("the {role} is not a tensor ({})", outlet.dtype()),
            });
        };
        let dims = shape
            .iter()
            .enumerate()
            .map(|(i, &d)| match usize::try_from(d) {
                Ok(n) => Dim::Fixed(n),
                Err(_) => Dim::Dynamic(
                    dimension_symbols
                        .get(i)
                        .filter(|s| !s.is_empty())
                        .map(|s| s.to_string()),
                ),
            })
            .collect();
        Ok(TensorSpec {
            name: outlet.name().to_string(),
            element: *ty,
            dims,
        })
    }

    /// Bytes of one element; `None` for strings and sub-byte types, which
    /// joulebench cannot feed.
    pub fn element_bytes(&self) -> Option<usize> {
        match self.element {
            TensorElementType::String => None,
            t => t.byte_size(1).filter(|&b| t.byte_size(2) == Some(2 * b)),
        }
    }

    /// `name: float32[batch, 3, 224, 224]`, as the model declares it.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => n.to_string(),
                Dim::Dynamic(Some(s)) => s.clone(),
                Dim::Dynamic(None) => "?".into(),
            })
            .collect();
        format!("{}: {}[{}]", self.name, self.element, dims.join(", "))
    }
}

/// How the model takes a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// A dynamic first dimension on every input: any batch size.
    Dynamic,
    /// A fixed first dimension: batches of exactly this size.
    Fixed(usize),
}

/// A model's inputs and outputs, resolved for feeding.
#[derive(Debug, Clone)]
pub struct ModelIo {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub batching: Batching,
    /// Each input's shape for one sample (without the batch dimension),
    /// dynamic dimensions resolved.
    pub sample_shapes: Vec<Vec<usize>>,
}

impl ModelIo {
    /// Reads a session's declarations and resolves them with the user's
    /// `--dim` values (symbol → size).
    pub fn resolve(
        session: &ort::session::Session,
        dims: &BTreeMap<String, usize>,
    ) -> Result<ModelIo, OrtError> {
        let inputs = session
            .inputs()
            .iter()
            .map(|o| TensorSpec::from_outlet(o, "input"))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = session
            .outputs()
            .iter()
            .map(|o| TensorSpec::from_outlet(o, "output"))
            .collect::<Result<Vec<_>, _>>()?;
        if inputs.is_empty() {
            return Err(OrtError::Unsupported {
                name: "(model)".into(),
                reason: "the model has no inputs to feed".into(),
            });
        }
        let batching = batching(&inputs)?;
        let sample_shapes = inputs
            .iter()
            .map(|spec| sample_shape(spec, dims))
            .collect::<Result<Vec<_>, _>>()?;
        for (spec, shape) in inputs.iter().zip(&sample_shapes) {
            let bytes = shape
                .iter()
                .try_fold(spec.element_bytes().unwrap_or(1), |n, &d| n.checked_mul(d));
            if bytes.is_none_or(|b| b > MAX_SAMPLE_BYTES) {
                return Err(OrtError::Unsupported {
                    name: spec.name.clone(),
                    reason: format!(
                        "one sample of shape {shape:?} would be over {} GiB (check --dim)",
                        MAX_SAMPLE_BYTES >> 30
                    ),
                });
            }
        }
        for (spec, _) in inputs.iter().zip(&sample_shapes) {
            if spec.element_bytes().is_none() {
                return Err(OrtError::Unsupported {
                    name: spec.name.clone(),
                    reason: format!("joulebench cannot feed {} tensors", spec.element),
                });
            }
        }
        Ok(ModelIo {
            inputs,
            outputs,
            batching,
            sample_shapes,
        })
    }

    /// Bytes of one sample of input `i`.
    pub fn sample_bytes(&self, i: usize) -> usize {
        self.sample_shapes[i].iter().product::<usize>()
            * self.inputs[i].element_bytes().unwrap_or(0)
    }
}

/// Every input must agree on the first dimension: all dynamic (any batch)
/// or all the same fixed size.
fn batching(inputs: &[TensorSpec]) -> Result<Batching, OrtError> {
    let mut found: Option<Batching> = None;
    for spec in inputs {
        let this = match spec.dims.first() {
            None => {
                return Err(OrtError::Unsupported {
                    name: spec.name.clone(),
                    reason: "a scalar input has no batch dimension to put samples along".into(),
                })
            }
            Some(Dim::Dynamic(_)) => Batching::Dynamic,
            Some(Dim::Fixed(n)) => Batching::Fixed(*n),
        };
        match found {
            Some(f) if f != this => {
                return Err(OrtError::Unsupported {
                    name: spec.name.clone(),
                    reason: format!(
                        "its first dimension ({this:?}) differs from the other inputs' ({f:?}); \
                         joulebench batches samples along the first dimension"
                    ),
                })
            }
            _ => found = Some(this),
        }
    }
    Ok(found.unwrap_or(Batching::Dynamic))
}

fn sample_shape(spec: &TensorSpec, dims: &BTreeMap<String, usize>) -> Result<Vec<usize>, OrtError> {
    spec.dims
        .iter()
        .skip(1)
        .map(|d| match d {
            Dim::Fixed(n) => Ok(*n),
            Dim::Dynamic(Some(symbol)) => {
                dims.get(symbol)
                    .copied()
                    .ok_or_else(|| OrtError::Unsupported {
                        name: spec.name.clone(),
                        reason: format!(
                            "dimension `{symbol}` is dynamic: give its size with --dim {symbol}=N \
                         ({})",
                            spec.describe()
                        ),
                    })
            }
            Dim::Dynamic(None) => Err(OrtError::Unsupported {
                name: spec.name.clone(),
                reason: format!(
                    "a dynamic dimension without a name cannot be sized from the command line \
                     ({}); export the model with named or fixed dimensions",
                    spec.describe()
                ),
            }),
        })
        .collect()
}
