"""all-MiniLM-L6-v2's BERT encoder as an ONNX graph, written node by node
with the `onnx` package from the real weights (bench/models/fetch_minilm.sh's
model.safetensors): no PyTorch needed. Inputs input_ids and attention_mask
(int64, [batch "b", sequence "s"]), output last_hidden_state [b, s, 384].

  python minilm_to_onnx.py MODEL_DIR OUT.onnx [--check REFERENCE.json]

--check runs the graph on ONNX Runtime over the reference sentences' token
ids (crates/workloads/tests/data/minilm_reference.json, made with PyTorch
and transformers), pools as sentence-transformers does (mean over the mask,
L2-normalised) and fails unless every embedding is within the reference's
own tolerance.
"""
import argparse
import json
import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

HEADS, HIDDEN, EPS = 12, 384, 1e-12


def build(w):
    nodes, inits = [], []
    counter = [0]

    def const(value, name=None):
        counter[0] += 1
        name = name or f"c{counter[0]}"
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op, inputs, **attrs):
        counter[0] += 1
        out = f"t{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def linear(x, prefix):
        weight = const(w[f"{prefix}.weight"].T.copy(), f"{prefix}.weight_t")
        return node("Add", [node("MatMul", [x, weight]), const(w[f"{prefix}.bias"], f"{prefix}.bias")])

    def layer_norm(x, prefix):
        return node("LayerNormalization",
                    [x, const(w[f"{prefix}.weight"], f"{prefix}.weight"), const(w[f"{prefix}.bias"], f"{prefix}.bias")],
                    axis=-1, epsilon=EPS)

    ids, mask = "input_ids", "attention_mask"
    words = node("Gather", [const(w["embeddings.word_embeddings.weight"], "word_embeddings"), ids])
    length = node("Gather", [node("Shape", [ids]), const(np.array(1, np.int64))])
    positions = node("Range", [const(np.array(0, np.int64)), length, const(np.array(1, np.int64))])
    pos = node("Gather", [const(w["embeddings.position_embeddings.weight"], "position_embeddings"), positions])
    token_type = const(w["embeddings.token_type_embeddings.weight"][0], "token_type_0")
    x = layer_norm(node("Add", [node("Add", [words, pos]), token_type]), "embeddings.LayerNorm")
    # Padding: -10000 added to the scores of masked keys, [b, 1, 1, s].
    keep = node("Cast", [mask], to=TensorProto.FLOAT)
    bias = node("Mul", [node("Sub", [const(np.float32(1.0)), keep]), const(np.float32(-10000.0))])
    bias = node("Unsqueeze", [bias, const(np.array([1, 2], np.int64))])
    head_shape = const(np.array([0, 0, HEADS, HIDDEN // HEADS], np.int64), "head_shape")
    merged_shape = const(np.array([0, 0, HIDDEN], np.int64), "merged_shape")
    scale = const(np.float32(1.0 / math.sqrt(HIDDEN // HEADS)), "scale")
    for i in range(6):
        p = f"encoder.layer.{i}"
        heads = lambda t: node("Reshape", [t, head_shape])
        q = node("Transpose", [heads(linear(x, f"{p}.attention.self.query"))], perm=[0, 2, 1, 3])
        k = node("Transpose", [heads(linear(x, f"{p}.attention.self.key"))], perm=[0, 2, 3, 1])
        v = node("Transpose", [heads(linear(x, f"{p}.attention.self.value"))], perm=[0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), bias])
        context = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        context = node("Reshape", [node("Transpose", [context], perm=[0, 2, 1, 3]), merged_shape])
        attended = layer_norm(node("Add", [linear(context, f"{p}.attention.output.dense"), x]),
                              f"{p}.attention.output.LayerNorm")
        hidden = linear(attended, f"{p}.intermediate.dense")
        # GELU, exact: x/2 (1 + erf(x/sqrt 2)).
        erf = node("Erf", [node("Div", [hidden, const(np.float32(math.sqrt(2.0)))])])
        gelu = node("Mul", [node("Mul", [hidden, node("Add", [erf, const(np.float32(1.0))])]),
                            const(np.float32(0.5))])
        x = layer_norm(node("Add", [linear(gelu, f"{p}.output.dense"), attended]), f"{p}.output.LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(ids, TensorProto.INT64, ["b", "s"]),
         helper.make_tensor_value_info(mask, TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["b", "s", HIDDEN])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def check(path, reference):
    import onnxruntime as ort

    ref = json.load(open(reference))
    ids_list = ref["token_ids"]
    length = max(len(t) for t in ids_list)
    ids = np.zeros((len(ids_list), length), np.int64)
    mask = np.zeros_like(ids)
    for i, t in enumerate(ids_list):
        ids[i, :len(t)] = t
        mask[i, :len(t)] = 1
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    hidden = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    expected = np.array(ref["embeddings"], np.float32)
    diff = float(np.abs(pooled - expected).max())
    cosine = float((pooled * expected).sum(1).min())
    print(json.dumps({"max_abs_diff": diff, "min_cosine": cosine,
                      "tolerance": [ref["max_abs_diff"], ref["min_cosine"]]}))
    assert diff <= ref["max_abs_diff"] and cosine >= ref["min_cosine"], "embeddings disagree"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("out")
    p.add_argument("--check")
    a = p.parse_args()
    onnx.save(build(load_file(os.path.join(a.model_dir, "model.safetensors"))), a.out)
    if a.check:
        check(a.out, a.check)


if __name__ == "__main__":
    main()
