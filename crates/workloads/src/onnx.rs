//! Weights from an ONNX file: its graph's initializers, read with our own
//! protobuf message definitions (only the fields weights need), and for
//! ResNets the graph's structure mapped onto torchvision's parameter names.
//!
//! Exporters name weights in two ways. Some keep the framework's names
//! (`layer1.0.conv1.weight`, as PyTorch's newer exporter and our own
//! `bench/models/resnet_to_onnx.py` do): those are used as they are. Others
//! fold each batch norm into the convolution before it and name the results
//! after the node (`onnx::Conv_193`, as `torch.onnx.export`'s TorchScript
//! path does in eval mode): for those, the k-th `Conv` node of the graph (in
//! its order, which ONNX requires to be topological) is the k-th convolution
//! of torchvision's ResNet in execution order, and the final `Gemm` is `fc`.
//! Either way a name or shape that does not fit is an error naming the file.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use prost::Message;

use crate::WorkloadError;

/// The parts of `onnx.proto` (ONNX IR, field numbers as published) that hold
/// weights and the graph's order.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        #[prost(string, tag = "2")]
        pub producer_name: String,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, tag = "4")]
        pub op_type: String,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(float, tag = "2")]
        pub f: f32,
        #[prost(int64, tag = "3")]
        pub i: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(float, repeated, tag = "4")]
        pub float_data: Vec<f32>,
        /// f16 and bf16 values, one per int32, in the low 16 bits.
        #[prost(int32, repeated, tag = "5")]
        pub int32_data: Vec<i32>,
        #[prost(int64, repeated, tag = "7")]
        pub int64_data: Vec<i64>,
        #[prost(string, tag = "8")]
        pub name: String,
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
        #[prost(double, repeated, tag = "10")]
        pub double_data: Vec<f64>,
        /// 1 = EXTERNAL: the values are in another file.
        #[prost(int32, tag = "14")]
        pub data_location: i32,
    }
}

pub use proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

/// ONNX `TensorProto.DataType` codes we read.
const FLOAT: i32 = 1;
const INT64: i32 = 7;
const FLOAT16: i32 = 10;
const DOUBLE: i32 = 11;
const BFLOAT16: i32 = 16;

/// Why one initializer's values cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InitializerError {
    #[error(
        "its values are in an external file; save the model with the weights inside \
         (onnx.save(..., save_as_external_data=False))"
    )]
    External,
    #[error("negative dimension {dim}")]
    NegativeDimension { dim: i64 },
    #[error("{bytes} bytes of data for shape {dims:?} ({expected} expected)")]
    RawSize {
        bytes: usize,
        dims: Vec<usize>,
        expected: usize,
    },
    #[error("{values} values for shape {dims:?}")]
    ValueCount { values: usize, dims: Vec<usize> },
    #[error("shape {dims:?} has more elements than memory can address")]
    Overflow { dims: Vec<usize> },
    #[error("data type {data_type} (float, float16, bfloat16, double and int64 are read)")]
    DataType { data_type: i32 },
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// Why an exported ResNet's weights cannot be given torchvision's names.
#[derive(Debug, thiserror::Error)]
pub enum NamingError {
    #[error("a {op} node without input {input}")]
    MissingInput { op: String, input: usize },
    #[error("{op} input `{name}` is not an initializer (computed weights are not supported)")]
    NotAnInitializer { op: String, name: String },
    #[error(
        "the initializers have no torchvision names and the graph has {convs} Conv nodes: \
         joulebench maps ONNX graphs by structure for ResNet-18 (20) and ResNet-50 (53) only"
    )]
    ConvCount { convs: usize },
    #[error("batch norm `{norm}` has epsilon {epsilon}; torchvision's ResNet uses 1e-5")]
    Epsilon { norm: String, epsilon: f32 },
    #[error("Conv node {conv} has neither a bias nor a batch norm after it")]
    NoBiasOrNorm { conv: String },
    #[error("no Gemm node for the classifier (fc)")]
    NoGemm,
    #[error("Identity nodes form a loop through `{name}`")]
    AliasLoop { name: String },
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// Every initializer of the file at `path` as an f32 (or i64) tensor on the
/// CPU, keyed as the model should name it (see the module notes).
pub fn load(path: &Path) -> Result<HashMap<String, Tensor>, WorkloadError> {
    let err = |reason: String| WorkloadError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let model = ModelProto::decode(bytes.as_slice())
        .map_err(|e| err(format!("not an ONNX model (protobuf: {e})")))?;
    let graph = model
        .graph
        .ok_or_else(|| err("an ONNX model with no graph".into()))?;
    if graph.initializer.is_empty() {
        return Err(err(
            "the ONNX graph has no initializers: no weights to load".into(),
        ));
    }
    let mut named = HashMap::new();
    for t in &graph.initializer {
        named.insert(
            t.name.clone(),
            tensor(t).map_err(|e| err(format!("initializer `{}`: {e}", t.name)))?,
        );
    }
    let convs = graph.node.iter().filter(|n| n.op_type == "Conv").count();
    if convs == 0 || named.contains_key("conv1.weight") {
        // Named as the framework named them (or not a ResNet at all): the
        // model asks for its names and a missing one is reported then.
        return Ok(named);
    }
    torchvision_resnet_names(&graph, &named).map_err(|e| err(e.to_string()))
}

/// One initializer's values.
fn tensor(t: &TensorProto) -> Result<Tensor, InitializerError> {
    if t.data_location == 1 {
        return Err(InitializerError::External);
    }
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&dim| usize::try_from(dim).map_err(|_| InitializerError::NegativeDimension { dim }))
        .collect::<Result<_, _>>()?;
    // Checked: a hostile file's dimensions must not overflow (a panic in a
    // debug build, a wrong count otherwise).
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| InitializerError::Overflow { dims: dims.clone() })?;
    let raw = &t.raw_data;
    let from_raw = |width: usize| -> Result<(), InitializerError> {
        let expected = count
            .checked_mul(width)
            .ok_or_else(|| InitializerError::Overflow { dims: dims.clone() })?;
        if raw.len() != expected {
            return Err(InitializerError::RawSize {
                bytes: raw.len(),
                dims: dims.clone(),
                expected,
            });
        }
        Ok(())
    };
    let values = |values: usize| -> Result<(), InitializerError> {
        if values != count {
            return Err(InitializerError::ValueCount {
                values,
                dims: dims.clone(),
            });
        }
        Ok(())
    };
    let cpu = &Device::Cpu;
    let made = match t.data_type {
        FLOAT if !raw.is_empty() => {
            from_raw(4)?;
            let v: Vec<f32> = raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Tensor::from_vec(v, dims, cpu)
        }
        FLOAT => {
            values(t.float_data.len())?;
            Tensor::from_vec(t.float_data.clone(), dims, cpu)
        }
        FLOAT16 | BFLOAT16 => {
            let bits: Vec<u16> = if raw.is_empty() {
                t.int32_data.iter().map(|&v| v as u16).collect()
            } else {
                from_raw(2)?;
                raw.chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect()
            };
            values(bits.len())?;
            let v: Vec<f32> = if t.data_type == FLOAT16 {
                bits.iter().map(|&b| f16_to_f32(b)).collect()
            } else {
                bits.iter()
                    .map(|&b| f32::from_bits(u32::from(b) << 16))
                    .collect()
            };
            Tensor::from_vec(v, dims, cpu)
        }
        DOUBLE => {
            let v: Vec<f32> = if raw.is_empty() {
                values(t.double_data.len())?;
                t.double_data.iter().map(|&v| v as f32).collect()
            } else {
                from_raw(8)?;
                raw.chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                    .collect()
            };
            Tensor::from_vec(v, dims, cpu)
        }
        INT64 => {
            let v: Vec<i64> = if raw.is_empty() {
                values(t.int64_data.len())?;
                t.int64_data.clone()
            } else {
                from_raw(8)?;
                raw.chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect()
            };
            Tensor::from_vec(v, dims, cpu)
        }
        data_type => return Err(InitializerError::DataType { data_type }),
    };
    Ok(made?)
}

/// IEEE half to f32 (subnormals included).
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f32::from(h & 0x3ff);
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 if frac == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

/// torchvision's ResNet names in execution order, for `Conv` node k:
/// the convolution and its batch norm.
pub fn resnet_layer_names(convs: usize) -> Option<Vec<(String, String)>> {
    let (blocks, per_block): ([usize; 4], usize) = match convs {
        20 => ([2, 2, 2, 2], 2),
        53 => ([3, 4, 6, 3], 3),
        _ => return None,
    };
    let mut names = vec![("conv1".to_string(), "bn1".to_string())];
    for (stage, &count) in blocks.iter().enumerate() {
        for i in 0..count {
            let p = format!("layer{}.{i}", stage + 1);
            for c in 1..=per_block {
                names.push((format!("{p}.conv{c}"), format!("{p}.bn{c}")));
            }
            // The first block of every stage but ResNet-18's first has a
            // projection shortcut, run after the block's convolutions.
            if i == 0 && (stage > 0 || per_block == 3) {
                names.push((format!("{p}.downsample.0"), format!("{p}.downsample.1")));
            }
        }
    }
    Some(names)
}

/// Maps an exported ResNet's `Conv`, `BatchNormalization` and final `Gemm`
/// nodes onto torchvision's names. A convolution exported with its batch
/// norm folded in gets `NAME.bias` and no batch norm tensors.
fn torchvision_resnet_names(
    graph: &GraphProto,
    init: &HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>, NamingError> {
    // The exporter shares equal initializers (all-zero biases, say) and
    // hands them out through Identity nodes.
    let alias: HashMap<&str, &str> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Identity" && n.input.len() == 1 && n.output.len() == 1)
        .map(|n| (n.output[0].as_str(), n.input[0].as_str()))
        .collect();
    let weight = |node: &NodeProto, i: usize| -> Result<Tensor, NamingError> {
        let mut name = node
            .input
            .get(i)
            .ok_or_else(|| NamingError::MissingInput {
                op: node.op_type.clone(),
                input: i,
            })?
            .as_str();
        // At most one step per Identity node: a hostile file's Identity
        // nodes may form a loop.
        let mut steps = 0;
        while let Some(source) = alias.get(name) {
            if steps == alias.len() {
                return Err(NamingError::AliasLoop { name: name.into() });
            }
            name = source;
            steps += 1;
        }
        init.get(name)
            .cloned()
            .ok_or_else(|| NamingError::NotAnInitializer {
                op: node.op_type.clone(),
                name: name.into(),
            })
    };
    let convs: Vec<&NodeProto> = graph.node.iter().filter(|n| n.op_type == "Conv").collect();
    let Some(names) = resnet_layer_names(convs.len()) else {
        return Err(NamingError::ConvCount { convs: convs.len() });
    };
    let mut out = HashMap::new();
    for (node, (conv, bn)) in convs.iter().zip(&names) {
        out.insert(format!("{conv}.weight"), weight(node, 1)?);
        let output = node.output.first().cloned().unwrap_or_default();
        let norm = graph
            .node
            .iter()
            .find(|n| n.op_type == "BatchNormalization" && n.input.first() == Some(&output));
        match norm {
            Some(n) => {
                for (i, field) in ["weight", "bias", "running_mean", "running_var"]
                    .iter()
                    .enumerate()
                {
                    out.insert(format!("{bn}.{field}"), weight(n, i + 1)?);
                }
                let eps = n
                    .attribute
                    .iter()
                    .find(|a| a.name == "epsilon")
                    .map(|a| a.f);
                if let Some(eps) = eps.filter(|&e| (e - 1e-5).abs() > 1e-9) {
                    return Err(NamingError::Epsilon {
                        norm: bn.clone(),
                        epsilon: eps,
                    });
                }
            }
            None if node.input.len() > 2 => {
                out.insert(format!("{conv}.bias"), weight(node, 2)?);
            }
            None => return Err(NamingError::NoBiasOrNorm { conv: conv.clone() }),
        }
    }
    let fc = graph
        .node
        .iter()
        .rev()
        .find(|n| n.op_type == "Gemm")
        .ok_or(NamingError::NoGemm)?;
    let trans_b = fc.attribute.iter().any(|a| a.name == "transB" && a.i == 1);
    let w = weight(fc, 1)?;
    out.insert(
        "fc.weight".into(),
        if trans_b {
            w
        } else {
            w.t().and_then(|t| t.contiguous())?
        },
    );
    out.insert("fc.bias".into(), weight(fc, 2)?);
    Ok(out)
}
