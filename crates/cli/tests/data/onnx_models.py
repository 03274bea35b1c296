"""Test models for `joulebench run --workload onnx`, their inputs, and what
ONNX Runtime's own Python API answers on them: the peer's numbers that the
Rust test compares joulebench's logged outputs with.

    python onnx_models.py OUT_DIR [TOKENIZER_JSON]

writes, for each model NAME: OUT_DIR/NAME.onnx, OUT_DIR/NAME/<input>.npy
(all samples, first dimension = sample; the same in OUT_DIR/NAME.npz, and
compressed in OUT_DIR/NAME.compressed.npz) and OUT_DIR/NAME.expected/<output>.npy
(ONNX Runtime's outputs, one sample at a time), and OUT_DIR/models.json
(the names, inputs and outputs). With TOKENIZER_JSON, also
OUT_DIR/texts.jsonl and OUT_DIR/embed.text_expected/<output>.npy: the embed
model's answers on those texts as Hugging Face's tokenizers library encodes
them (cut and padded to 7 tokens).
"""
import json
import os
import struct
import sys
import zlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SAMPLES = 12


def save(model, out, name):
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out, f"{name}.onnx"))


def mlp(out, rng):
    """float32 [batch, 16] -> MatMul, Add, Relu -> [batch, 8]."""
    w = rng.standard_normal((16, 8)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), out, "mlp")
    return {"x": rng.standard_normal((SAMPLES, 16)).astype(np.float32)}


def embed(out, rng):
    """int64 input_ids and attention_mask [batch, sequence] -> an embedding
    table, masked mean over the sequence -> float32 [batch, 4]; and the
    number of tokens, int64 [batch, 1]: two outputs of two types."""
    table = rng.standard_normal((50, 4)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["e"]),
            helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["m", "axis2"], ["m3"]),
            helper.make_node("Mul", ["e", "m3"], ["em"]),
            helper.make_node("ReduceSum", ["em", "axis1"], ["s"], keepdims=0),
            helper.make_node("ReduceSum", ["m", "axis1"], ["n"], keepdims=1),
            helper.make_node("Div", ["s", "n"], ["pooled"]),
            helper.make_node("Cast", ["n"], ["tokens"], to=TensorProto.INT64),
        ],
        "embed",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", 1]),
        ],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        ],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), out, "embed")
    ids = rng.integers(0, 50, (SAMPLES, 7)).astype(np.int64)
    mask = np.ones((SAMPLES, 7), dtype=np.int64)
    for i in range(SAMPLES):
        mask[i, 1 + i % 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def fixed(out, rng):
    """A fixed batch of 4: float32 [4, 3] -> Sigmoid -> [4, 3]."""
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), out, "fixed")
    return {"x": rng.standard_normal((SAMPLES, 3)).astype(np.float32)}


def png(path, rgb, size=40):
    """A solid-colour RGB PNG, written with zlib alone."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    row = b"\x00" + bytes(rgb) * size
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(row * size)))
        f.write(chunk(b"IEND", b""))


def colours(out):
    """An ImageNet-layout folder of solid red, green and blue images (labels
    0, 1, 2), and two classifiers whose class scores are the mean of each
    colour channel after preprocessing: NCHW and NHWC."""
    folder = os.path.join(out, "colours")
    os.makedirs(folder, exist_ok=True)
    lines = []
    for i, (rgb, label) in enumerate([((250, 10, 10), 0), ((10, 250, 10), 1), ((10, 10, 250), 2),
                                      ((10, 240, 20), 1), ((230, 20, 20), 0), ((20, 20, 230), 2)]):
        name = f"img{i}.png"
        png(os.path.join(folder, name), rgb)
        lines.append(f"{name} {label}")
    with open(os.path.join(folder, "val_map.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for name, shape, axes in [("classify_nchw", ["batch", 3, 224, 224], [2, 3]),
                              ("classify_nhwc", ["batch", 224, 224, 3], [1, 2])]:
        graph = helper.make_graph(
            [helper.make_node("ReduceMean", ["image", "axes"], ["scores"], keepdims=0)],
            name,
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])],
            [numpy_helper.from_array(np.array(axes, dtype=np.int64), "axes")],
        )
        save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), out, name)


def texts(out, tokenizer_json):
    from tokenizers import Tokenizer

    lines = ["The quick brown fox.", "jumps over the lazy dog", "who?", "a b 1",
             "The lazy dog jumped over the quick brown fox, who jumps.", "dog"]
    with open(os.path.join(out, "texts.jsonl"), "w") as f:
        for t in lines:
            f.write(json.dumps({"text": t}) + "\n")
    tok = Tokenizer.from_file(tokenizer_json)
    tok.enable_truncation(max_length=7)
    tok.enable_padding(length=7, pad_id=0)
    session = ort.InferenceSession(os.path.join(out, "embed.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    answers = {n: [] for n in names}
    for t in lines:
        e = tok.encode(t)
        feeds = {"input_ids": np.array([e.ids], dtype=np.int64),
                 "attention_mask": np.array([e.attention_mask], dtype=np.int64)}
        for n, g in zip(names, session.run(None, feeds)):
            answers[n].append(g[0])
    os.makedirs(os.path.join(out, "embed.text_expected"), exist_ok=True)
    for n in names:
        np.save(os.path.join(out, "embed.text_expected", f"{n}.npy"), np.stack(answers[n]))


def qa(out, tokenizer_json, sequence=32):
    """Extractive question answering: start and end logits per token that
    single out "lazy" and "dog" in the context (token type 1) only, so each
    question's best span is known; with the span ONNX Runtime's Python API
    gives on the Hugging Face tokenizer's own pair encoding (qa.expected.json)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    vocab = tok.get_vocab()
    ids, types, mask = "input_ids", "token_type_ids", "attention_mask"

    def logits(word, name):
        hit = helper.make_node("Equal", [ids, f"{word}_id"], [f"{word}_hit"])
        as_float = [helper.make_node("Cast", [x], [f"{name}_{x}_f"], to=TensorProto.FLOAT)
                    for x in (f"{word}_hit", types, mask)]
        gated = helper.make_node("Mul", [f"{name}_{word}_hit_f", f"{name}_{types}_f"], [f"{name}_g"])
        masked = helper.make_node("Mul", [f"{name}_g", f"{name}_{mask}_f"], [f"{name}_m"])
        scaled = helper.make_node("Mul", [f"{name}_m", "ten"], [name])
        return [hit, *as_float, gated, masked, scaled]

    graph = helper.make_graph(
        logits("lazy", "start_logits") + logits("dog", "end_logits"),
        "qa",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in (ids, mask, types)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "sequence"])
         for n in ("start_logits", "end_logits")],
        [numpy_helper.from_array(np.array(vocab["lazy"], dtype=np.int64), "lazy_id"),
         numpy_helper.from_array(np.array(vocab["dog"], dtype=np.int64), "dog_id"),
         numpy_helper.from_array(np.array(10.0, dtype=np.float32), "ten")],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), out, "qa")
    questions = [
        ("the quick brown fox jumps over the lazy dog.", "who jumps over the lazy dog?", "lazy dog"),
        ("the lazy brown dog, a b 1.", "who?", "lazy brown dog"),
        ("a quick fox.", "the lazy dog?", "quick fox"),
    ]
    squad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": c, "qas": [{"id": f"q{i}", "question": q,
                                "answers": [{"text": a, "answer_start": c.find(a)}]}]}
        for i, (c, q, a) in enumerate(questions)]}]}
    json.dump(squad, open(os.path.join(out, "squad.json"), "w"))
    session = ort.InferenceSession(os.path.join(out, "qa.onnx"), providers=["CPUExecutionProvider"])
    expected = []
    for c, q, _ in questions:
        e = tok.encode(q, c)
        pad = sequence - len(e.ids)
        feeds = {ids: np.array([e.ids + [0] * pad], np.int64),
                 mask: np.array([e.attention_mask + [0] * pad], np.int64),
                 types: np.array([e.type_ids + [0] * pad], np.int64)}
        start, end = (x[0] for x in session.run(None, feeds))
        context = [k for k, t in enumerate(e.type_ids) if t == 1][:-1]  # not the closing [SEP]
        best = max(((start[i] + end[j], i, j) for i in context for j in context if i <= j < i + 30),
                   key=lambda b: b[0], default=None)
        expected.append(e.ids[best[1]:best[2] + 1] if best else [])
    json.dump(expected, open(os.path.join(out, "qa.expected.json"), "w"))


def future_opset(out):
    """A model asking for an opset no ONNX Runtime has: refused at load."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "future",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 99)])
    model.ir_version = 8
    onnx.save(model, os.path.join(out, "future_opset.onnx"))


def strings(out, _rng):
    """A string input: joulebench cannot feed it, and says so."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["t"])],
        "strings",
        [helper.make_tensor_value_info("s", TensorProto.STRING, ["batch", 1])],
        [helper.make_tensor_value_info("t", TensorProto.STRING, ["batch", 1])],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), out, "strings")
    return None


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    described = {}
    for make in (mlp, embed, fixed, strings):
        name = make.__name__
        inputs = make(out, rng)
        described[name] = {}
        if inputs is None:
            continue
        os.makedirs(os.path.join(out, name), exist_ok=True)
        for k, v in inputs.items():
            np.save(os.path.join(out, name, f"{k}.npy"), v)
        np.savez(os.path.join(out, f"{name}.npz"), **inputs)
        np.savez_compressed(os.path.join(out, f"{name}.compressed.npz"), **inputs)
        if name == "fixed":
            continue  # its batch is fixed: the Rust test checks the refusal
        session = ort.InferenceSession(os.path.join(out, f"{name}.onnx"), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        answers = {n: [] for n in names}
        for i in range(SAMPLES):
            got = session.run(None, {k: v[i : i + 1] for k, v in inputs.items()})
            for n, g in zip(names, got):
                answers[n].append(g[0])
        os.makedirs(os.path.join(out, f"{name}.expected"), exist_ok=True)
        for n in names:
            np.save(os.path.join(out, f"{name}.expected", f"{n}.npy"), np.stack(answers[n]))
        described[name] = {"inputs": list(inputs), "outputs": names, "onnxruntime": ort.__version__}
    colours(out)
    future_opset(out)
    if len(sys.argv) > 2:
        texts(out, sys.argv[2])
        qa(out, sys.argv[2])
    json.dump(described, open(os.path.join(out, "models.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
