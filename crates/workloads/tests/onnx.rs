//! ONNX weight files, built here with the same protobuf messages the loader
//! reads, in the two layouts exporters write: torchvision's names kept, and
//! batch norms folded into nameless convolutions whose equal initializers
//! are shared through Identity nodes (what `torch.onnx.export` writes; the
//! real exporter's output is checked by bench/models/torch_resnet_onnx.py).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use prost::Message;
use workloads::onnx::{
    resnet_layer_names, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto,
};
use workloads::resnet::{Depth, ResNet};
use workloads::weights::WeightSource;

fn random_resnet18(dir: &Path) -> HashMap<String, Tensor> {
    let path = dir.join("r18.safetensors");
    workloads::weights::export_random(5, &path, |vb| {
        ResNet::load(Depth::R18, 1000, vb).map(|_| ())
    })
    .unwrap();
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap()
}

fn initializer(name: &str, t: &Tensor) -> TensorProto {
    let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    TensorProto {
        dims: t.dims().iter().map(|&d| d as i64).collect(),
        data_type: 1,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        name: name.into(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        op_type: op.into(),
        attribute: vec![],
    }
}

fn write(dir: &Path, name: &str, graph: GraphProto) -> std::path::PathBuf {
    let model = ModelProto {
        ir_version: 8,
        producer_name: "joulebench test".into(),
        graph: Some(graph),
    };
    let path = dir.join(name);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

fn logits(weights: &WeightSource, x: &Tensor) -> Tensor {
    let vb: VarBuilder = weights.var_builder(DType::F32, &Device::Cpu).unwrap();
    ResNet::load(Depth::R18, 1000, vb)
        .unwrap()
        .forward(x)
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn named_and_folded_onnx_files_give_the_safetensors_logits() {
    let dir = tempfile::tempdir().unwrap();
    let weights = random_resnet18(dir.path());
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    let want = logits(&WeightSource::File(dir.path().join("r18.safetensors")), &x);

    // Names kept: every tensor an initializer under its own name.
    let named = GraphProto {
        node: vec![node("Conv", &["input", "conv1.weight"], "c0")],
        initializer: weights.iter().map(|(k, v)| initializer(k, v)).collect(),
    };
    let path = write(dir.path(), "named.onnx", named);
    let got = logits(&WeightSource::from_arg(path.to_str().unwrap()).unwrap(), &x);
    assert_eq!(max_abs_diff(&got, &want), 0.0, "named ONNX weights differ");

    // Folded: Conv nodes with nameless weight and bias, biases shared through
    // Identity nodes, the classifier a Gemm with transB = 1.
    let mut graph = GraphProto::default();
    let mut previous = "input".to_string();
    for (k, (conv, bn)) in resnet_layer_names(20).unwrap().iter().enumerate() {
        let get = |n: String| weights[&n].clone();
        let scale = (get(format!("{bn}.weight"))
            / (get(format!("{bn}.running_var")) + 1e-5)
                .unwrap()
                .sqrt()
                .unwrap())
        .unwrap();
        let c_out = scale.dims1().unwrap();
        let w = get(format!("{conv}.weight"))
            .broadcast_mul(&scale.reshape((c_out, 1, 1, 1)).unwrap())
            .unwrap();
        let b = (get(format!("{bn}.bias")) - (get(format!("{bn}.running_mean")) * &scale).unwrap())
            .unwrap();
        let (w_name, b_name, alias) = (
            format!("onnx::Conv_{}", 2 * k),
            format!("onnx::Conv_{}", 2 * k + 1),
            format!("alias_{k}"),
        );
        graph.initializer.push(initializer(&w_name, &w));
        graph.initializer.push(initializer(&b_name, &b));
        graph.node.push(node("Identity", &[&b_name], &alias));
        let out = format!("conv_out_{k}");
        graph
            .node
            .push(node("Conv", &[&previous, &w_name, &alias], &out));
        previous = out;
    }
    graph
        .initializer
        .push(initializer("fc.weight", &weights["fc.weight"]));
    graph
        .initializer
        .push(initializer("fc.bias", &weights["fc.bias"]));
    let mut gemm = node("Gemm", &["pooled", "fc.weight", "fc.bias"], "logits");
    gemm.attribute.push(AttributeProto {
        name: "transB".into(),
        i: 1,
        ..Default::default()
    });
    graph.node.push(gemm);
    let path = write(dir.path(), "folded.onnx", graph);
    let got = logits(&WeightSource::from_arg(path.to_str().unwrap()).unwrap(), &x);
    let err = max_abs_diff(&got, &want);
    assert!(err < 1e-4, "folded ONNX weights: logits off by {err}");
}

fn load_error(dir: &Path, name: &str, bytes: Vec<u8>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    match WeightSource::File(path).var_builder(DType::F32, &Device::Cpu) {
        Ok(_) => panic!("{name} loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_onnx_files_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = load_error(
        dir.path(),
        "garbage.onnx",
        b"\xff\xff\xff not protobuf".to_vec(),
    );
    assert!(
        garbage.contains("garbage.onnx") && garbage.contains("not an ONNX model"),
        "{garbage}"
    );

    let t = Tensor::zeros((4, 3, 3, 3), DType::F32, &Device::Cpu).unwrap();
    let seven_convs = GraphProto {
        node: (0..7)
            .map(|k| node("Conv", &["x", "w", "b"], &format!("y{k}")))
            .collect(),
        initializer: vec![initializer("w", &t)],
    };
    let model = ModelProto {
        graph: Some(seven_convs),
        ..Default::default()
    };
    let msg = load_error(dir.path(), "seven.onnx", model.encode_to_vec());
    assert!(
        msg.contains("7 Conv nodes") && msg.contains("ResNet-18 (20)"),
        "{msg}"
    );

    let mut external = initializer("w", &t);
    external.raw_data.clear();
    external.data_location = 1;
    let model = ModelProto {
        graph: Some(GraphProto {
            node: vec![],
            initializer: vec![external],
        }),
        ..Default::default()
    };
    let msg = load_error(dir.path(), "external.onnx", model.encode_to_vec());
    assert!(
        msg.contains("initializer `w`") && msg.contains("external file"),
        "{msg}"
    );

    let mut short = initializer("w", &t);
    short.raw_data.truncate(10);
    let model = ModelProto {
        graph: Some(GraphProto {
            node: vec![],
            initializer: vec![short],
        }),
        ..Default::default()
    };
    let msg = load_error(dir.path(), "short.onnx", model.encode_to_vec());
    assert!(
        msg.contains("10 bytes of data for shape [4, 3, 3, 3]"),
        "{msg}"
    );
}
