//! Hostile input to every data-set reader: ImageNet's `val_map.txt`,
//! LoadGen's `mlperf_log_accuracy.json`, text data sets (JSONL, a JSON list,
//! SQuAD JSON), SQuAD/ROUGE reference files and ONNX weights. Arbitrary bytes
//! and structured mutations of valid files (truncated, duplicated,
//! reordered lines; huge numbers, NaN, negative counts, non-UTF-8, CRLF,
//! very long lines) must never panic, must finish quickly without huge
//! allocations, and errors must name the file and, for line formats, the
//! line.

use hostile_input::strategies::{config, mutate, mutations, nasty_value, timed};
use proptest::prelude::*;
use prost::Message;
use std::path::{Path, PathBuf};
use workloads::datasets::accuracy_log::read_accuracy_log;
use workloads::datasets::labels::read_val_map;
use workloads::datasets::references::read_references;
use workloads::datasets::squad::{f1_score, normalize_answer};
use workloads::datasets::DatasetError;
use workloads::onnx::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use workloads::text::dataset::read_text_dataset;
use workloads::text::TextError;
use workloads::WorkloadError;

/// Writes `bytes` as `name` in a fresh folder.
fn file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn line_count(bytes: &[u8]) -> usize {
    String::from_utf8_lossy(bytes).lines().count()
}

/// A data-set error names `path`, and a line error a line of the file.
fn check_dataset_error(e: &DatasetError, path: &Path, bytes: &[u8]) {
    assert!(
        e.to_string().starts_with(&*path.to_string_lossy()),
        "{e} does not name {}",
        path.display()
    );
    match e {
        DatasetError::Line { path: p, line, .. } => {
            assert_eq!(p, path);
            assert!(*line >= 1 && *line <= line_count(bytes), "{e}");
        }
        DatasetError::File { path: p, .. } => assert_eq!(p, path),
        e => panic!("unexpected error {e}"),
    }
}

// ------------------------------------------------------------- val_map.txt

const VAL_MAP: &str = "ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 970\n\
    ILSVRC2012_val_00000003.JPEG\t230\n\nILSVRC2012_val_00000004.JPEG 809\n";

fn check_val_map(bytes: &[u8]) {
    let (_dir, path) = file("val_map.txt", bytes);
    match timed("read_val_map", || read_val_map(&path)) {
        Ok(entries) => {
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for e in entries {
                // Each entry points at the line it came from.
                assert!(lines[e.line - 1].contains(&e.file));
            }
        }
        Err(e) => check_dataset_error(&e, &path, bytes),
    }
}

#[test]
fn valid_val_map_reads() {
    let (_dir, path) = file("val_map.txt", VAL_MAP.replace('\n', "\r\n").as_bytes());
    let entries = read_val_map(&path).unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!((entries[3].label, entries[3].line), (809, 5));
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn val_map_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        check_val_map(&bytes);
    }

    #[test]
    fn val_map_survives_mutations(muts in mutations(0..6)) {
        check_val_map(&mutate(VAL_MAP, &muts));
    }
}

// ------------------------------------------------- mlperf_log_accuracy.json

const ACCURACY_LOG: &str = "[\n{\"seq_id\": 0, \"qsl_idx\": 1, \"data\": \"0A0B0C0D\"},\n\
    {\"seq_id\": 1, \"qsl_idx\": 0, \"data\": \"ff00\", \"token_count\": 3},\n\
    {\"seq_id\": 2, \"qsl_idx\": 1, \"data\": \"\"}\n]\n";

fn check_accuracy_log(bytes: &[u8]) {
    let (_dir, path) = file("mlperf_log_accuracy.json", bytes);
    match timed("read_accuracy_log", || read_accuracy_log(&path)) {
        Ok(entries) => assert!(entries.len() <= bytes.len()),
        Err(e) => {
            check_dataset_error(&e, &path, bytes);
            // A JSON error says where; a bad entry says which.
            let m = e.to_string();
            assert!(
                m.contains(" line ") || m.contains("entry ") || m.contains("UTF-8"),
                "{m}"
            );
        }
    }
}

#[test]
fn valid_accuracy_log_reads() {
    let (_dir, path) = file("mlperf_log_accuracy.json", ACCURACY_LOG.as_bytes());
    let entries = read_accuracy_log(&path).unwrap();
    assert_eq!(entries[0].data, [10, 11, 12, 13]);
    assert_eq!(entries[1].token_count, Some(3));
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn accuracy_log_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        check_accuracy_log(&bytes);
    }

    #[test]
    fn accuracy_log_survives_mutations(muts in mutations(0..6)) {
        check_accuracy_log(&mutate(ACCURACY_LOG, &muts));
    }

    #[test]
    fn accuracy_log_survives_hostile_fields(
        seq in nasty_value(), idx in nasty_value(), data in "\\PC{0,20}|[0-9a-fA-F]{0,21}",
    ) {
        let text = format!("[{{\"seq_id\": {seq}, \"qsl_idx\": {idx}, \"data\": {data:?}}}]");
        check_accuracy_log(text.as_bytes());
    }
}

// ------------------------------------------------------- text data sets

const JSONL: &str = "{\"id\": \"a\", \"text\": \"The cat sat.\", \"reference\": \"A cat.\"}\n\
    {\"prompt\": \"Say hi\", \"references\": [\"hi\", \"hello\"]}\n\
    \n\
    {\"id\": 7, \"question\": \"Who sat?\", \"context\": \"The cat sat.\", \"answers\": [{\"text\": \"cat\"}]}\n";

const JSON_LIST: &str =
    "[\n{\"id\": \"a\", \"text\": \"The cat sat.\", \"reference\": \"A cat.\"},\n\
    {\"prompt\": \"Say hi\", \"answers\": \"hi\"},\n\
    {\"question\": \"Who sat?\", \"context\": \"The cat sat.\", \"answers\": [\"cat\"]}\n]\n";

const SQUAD: &str = "{\"version\": \"1.1\", \"data\": [\n{\"title\": \"Cats\", \"paragraphs\": [\n\
    {\"context\": \"The cat sat on the mat.\", \"qas\": [\n\
    {\"id\": \"q1\", \"question\": \"Who sat?\", \"answers\": [{\"text\": \"The cat\", \"answer_start\": 0}]},\n\
    {\"id\": \"q2\", \"question\": \"On what?\", \"answers\": [{\"text\": \"the mat\", \"answer_start\": 15}]}\n\
    ]}\n]}\n]}\n";

fn check_text_dataset(name: &str, bytes: &[u8]) {
    let (_dir, path) = file(name, bytes);
    match timed("read_text_dataset", || read_text_dataset(&path)) {
        Ok(records) => {
            assert!(!records.is_empty());
            for r in records {
                assert!(r.line <= line_count(bytes) + 1, "{r:?}");
            }
        }
        Err(TextError::Dataset {
            path: p,
            line,
            reason,
        }) => {
            assert_eq!(p, path, "{reason}");
            // 0: the file as a whole; else a line of it.
            assert!(line <= line_count(bytes) + 1, "line {line}: {reason}");
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn valid_text_datasets_read() {
    let (_d, p) = file("prompts.jsonl", JSONL.replace('\n', "\r\n").as_bytes());
    let r = read_text_dataset(&p).unwrap();
    assert_eq!((r.len(), r[2].line, r[2].id.as_str()), (3, 4, "7"));
    let (_d, p) = file("prompts.json", JSON_LIST.as_bytes());
    let r = read_text_dataset(&p).unwrap();
    assert_eq!(r.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 3, 4]);
    let (_d, p) = file("dev-v1.1.json", SQUAD.as_bytes());
    let r = read_text_dataset(&p).unwrap();
    assert_eq!(r.iter().map(|r| r.line).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(r[1].references, ["the mat"]);
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    for name in ["deep.json", "deep.jsonl"] {
        let (_d, p) = file(name, "[".repeat(200_000).as_bytes());
        let e = read_text_dataset(&p).unwrap_err();
        assert!(e.to_string().contains("deep.json"), "{e}");
        let e = read_references(&p).unwrap_err();
        assert!(e.to_string().contains("deep.json"), "{e}");
        let e = read_accuracy_log(&p).unwrap_err();
        assert!(e.to_string().contains("deep.json"), "{e}");
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn text_dataset_survives_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        jsonl in any::<bool>(),
    ) {
        check_text_dataset(if jsonl { "d.jsonl" } else { "d.json" }, &bytes);
    }

    #[test]
    fn jsonl_dataset_survives_mutations(muts in mutations(0..6)) {
        check_text_dataset("d.jsonl", &mutate(JSONL, &muts));
    }

    #[test]
    fn json_list_dataset_survives_mutations(muts in mutations(0..6)) {
        check_text_dataset("d.json", &mutate(JSON_LIST, &muts));
    }

    #[test]
    fn squad_dataset_survives_mutations(muts in mutations(0..6)) {
        check_text_dataset("dev-v1.1.json", &mutate(SQUAD, &muts));
    }
}

// ------------------------------------------------------- reference files

fn check_references(name: &str, bytes: &[u8]) {
    let (_dir, path) = file(name, bytes);
    match timed("read_references", || read_references(&path)) {
        Ok(refs) => assert!(!refs.is_empty()),
        Err(e) => check_dataset_error(&e, &path, bytes),
    }
}

#[test]
fn valid_reference_files_read() {
    for (name, text, first) in [
        ("r.jsonl", JSONL, vec!["A cat."]),
        ("r.json", JSON_LIST, vec!["A cat."]),
        ("squad.json", SQUAD, vec!["The cat"]),
    ] {
        let (_d, p) = file(name, text.as_bytes());
        let refs = read_references(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(refs[0], first, "{name}");
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn references_survive_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        check_references("refs.json", &bytes);
    }

    #[test]
    fn references_survive_mutations(muts in mutations(0..6), pick in 0..3usize) {
        let valid = [JSONL, JSON_LIST, SQUAD][pick];
        check_references("refs.json", &mutate(valid, &muts));
    }

    #[test]
    fn squad_scoring_survives_arbitrary_text(a in "\\PC{0,200}", b in "\\PC{0,200}") {
        let f1 = timed("f1_score", || f1_score(&a, &b));
        prop_assert!((0.0..=1.0).contains(&f1), "{f1}");
        let n = normalize_answer(&a);
        prop_assert_eq!(normalize_answer(&n), n);
    }
}

// ------------------------------------------------------------ ONNX weights

fn check_onnx(bytes: &[u8]) {
    let (_dir, path) = file("model.onnx", bytes);
    match timed("onnx::load", || workloads::onnx::load(&path)) {
        Ok(_) => {}
        Err(WorkloadError::Weights { path: p, reason }) => {
            assert_eq!(p, path, "{reason}");
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn model(initializer: Vec<TensorProto>) -> Vec<u8> {
    graph_model(Vec::new(), initializer)
}

fn graph_model(node: Vec<NodeProto>, initializer: Vec<TensorProto>) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        producer_name: "hostile".into(),
        graph: Some(GraphProto { node, initializer }),
    }
    .encode_to_vec()
}

fn node(op: &str, input: &[&str], output: &[&str]) -> NodeProto {
    NodeProto {
        input: input.iter().map(|s| s.to_string()).collect(),
        output: output.iter().map(|s| s.to_string()).collect(),
        op_type: op.into(),
        attribute: Vec::new(),
    }
}

/// A one-value float initializer.
fn scalar(name: &str) -> TensorProto {
    TensorProto {
        dims: vec![1],
        data_type: 1,
        float_data: vec![0.5],
        name: name.into(),
        ..Default::default()
    }
}

const NAMES: [&str; 6] = ["x", "a", "b", "w", "y", "bias"];

/// Graph nodes over a few shared names, so that they connect: ResNet-18's
/// 20 `Conv`s (to reach the mapping onto torchvision's names), then
/// anything, Identity loops included.
fn resnet_like_nodes() -> impl Strategy<Value = Vec<NodeProto>> {
    let name = proptest::sample::select(NAMES.to_vec()).prop_map(String::from);
    let op = proptest::sample::select(vec![
        "Identity",
        "Identity",
        "BatchNormalization",
        "Gemm",
        "Relu",
        "Conv",
    ]);
    let attribute = (
        proptest::sample::select(vec!["epsilon", "transB", "other"]),
        prop_oneof![Just(1e-5f32), any::<f32>()],
        0i64..3,
    )
        .prop_map(|(n, f, i)| AttributeProto {
            name: n.into(),
            f,
            i,
        });
    let any_node = (
        op,
        proptest::collection::vec(name.clone(), 0..6),
        proptest::collection::vec(name.clone(), 0..3),
        proptest::collection::vec(attribute, 0..3),
    )
        .prop_map(|(op, input, output, attribute)| NodeProto {
            input,
            output,
            op_type: op.into(),
            attribute,
        });
    let conv =
        (proptest::collection::vec(name.clone(), 0..4), name).prop_map(|(input, out)| NodeProto {
            input,
            output: vec![out],
            op_type: "Conv".into(),
            attribute: Vec::new(),
        });
    (
        proptest::collection::vec(conv, 20),
        proptest::collection::vec(any_node, 0..12),
    )
        .prop_map(|(mut convs, rest)| {
            convs.extend(rest);
            convs
        })
}

#[test]
fn onnx_identity_loops_are_errors_not_hangs() {
    // Found by `onnx_survives_hostile_graphs`: following Identity nodes to
    // an initializer looped for ever when they formed a cycle.
    for loops in [
        vec![node("Identity", &["a"], &["a"])],
        vec![
            node("Identity", &["a"], &["b"]),
            node("Identity", &["b"], &["a"]),
        ],
    ] {
        let mut nodes: Vec<NodeProto> =
            (0..20).map(|_| node("Conv", &["x", "a"], &["y"])).collect();
        nodes.extend(loops);
        let (_d, p) = file("loop.onnx", &graph_model(nodes, vec![scalar("w")]));
        let e = timed("onnx::load", || workloads::onnx::load(&p))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("loop.onnx") && e.contains("loop through `"),
            "{e}"
        );
    }
}

fn tensor() -> impl Strategy<Value = TensorProto> {
    let dim = prop_oneof![
        0i64..6,
        Just(-1i64),
        Just(i64::MAX),
        Just(1i64 << 32),
        any::<i64>()
    ];
    (
        proptest::collection::vec(dim, 0..4),
        prop_oneof![Just(1), Just(7), Just(10), Just(11), Just(16), any::<i32>()],
        proptest::collection::vec(any::<f32>(), 0..8),
        proptest::collection::vec(any::<i64>(), 0..8),
        proptest::collection::vec(any::<u8>(), 0..64),
        0..2i32,
    )
        .prop_map(
            |(dims, data_type, float_data, int64_data, raw_data, location)| TensorProto {
                dims,
                data_type,
                int32_data: int64_data.iter().map(|&v| v as i32).collect(),
                double_data: float_data.iter().map(|&v| f64::from(v)).collect(),
                float_data,
                int64_data,
                name: "w".into(),
                raw_data,
                data_location: location,
            },
        )
}

#[test]
fn onnx_shapes_that_overflow_are_errors() {
    // Found by `onnx_survives_hostile_initializers`: the element count of
    // dims [2^32, 2^32] overflowed (a panic in debug builds), and int64 and
    // double initializers without raw data were not counted at all.
    let big = TensorProto {
        dims: vec![1 << 32, 1 << 32],
        data_type: 1,
        name: "w".into(),
        ..Default::default()
    };
    // [i64::MAX, i64::MAX]: the case proptest had kept in a regressions file.
    for dims in [vec![1 << 32, 1 << 32], vec![i64::MAX, i64::MAX]] {
        let t = TensorProto {
            dims,
            ..big.clone()
        };
        let (_d, p) = file("big.onnx", &model(vec![t]));
        let e = workloads::onnx::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("big.onnx") && e.contains("initializer `w`"),
            "{e}"
        );
    }
    for data_type in [7, 11] {
        let t = TensorProto {
            dims: vec![i64::MAX, 3],
            data_type,
            int64_data: vec![1, 2],
            double_data: vec![1.0, 2.0],
            ..big.clone()
        };
        let (_d, p) = file("big.onnx", &model(vec![t]));
        let e = workloads::onnx::load(&p).unwrap_err().to_string();
        assert!(e.contains("initializer `w`"), "{e}");
    }
    let t = TensorProto {
        dims: vec![3],
        data_type: 7,
        int64_data: vec![1, 2],
        ..big
    };
    let (_d, p) = file("short.onnx", &model(vec![t]));
    let e = workloads::onnx::load(&p).unwrap_err().to_string();
    assert!(e.contains("2 values for shape [3]"), "{e}");
}

#[test]
fn a_valid_onnx_initializer_loads() {
    let t = TensorProto {
        dims: vec![2, 2],
        data_type: 1,
        float_data: vec![1.0, 2.0, 3.0, 4.0],
        name: "fc.weight".into(),
        ..Default::default()
    };
    let (_d, p) = file("m.onnx", &model(vec![t]));
    let w = workloads::onnx::load(&p).unwrap();
    assert_eq!(w["fc.weight"].dims(), [2, 2]);
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn onnx_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        check_onnx(&bytes);
    }

    #[test]
    fn onnx_survives_hostile_initializers(ts in proptest::collection::vec(tensor(), 1..4)) {
        check_onnx(&model(ts));
    }

    #[test]
    fn onnx_survives_hostile_graphs(
        nodes in resnet_like_nodes(),
        inits in proptest::collection::btree_set(proptest::sample::select(NAMES.to_vec()), 1..6),
    ) {
        let inits = inits.into_iter().map(scalar).collect();
        check_onnx(&graph_model(nodes, inits));
    }

    #[test]
    fn onnx_survives_corrupted_models(
        ts in proptest::collection::vec(tensor(), 1..3),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = model(ts);
        for (at, b) in flips {
            let n = bytes.len();
            bytes[at % n] = b;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        check_onnx(&bytes);
    }
}
