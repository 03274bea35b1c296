#!/usr/bin/env python3
"""Runs an ONNX model with ONNX Runtime (CPU) on the inputs in REF.safetensors
and compares with the logits joulebench wrote there; then times it on the same
batch. Prints the relative error ‖ours − ort‖ / ‖ort‖, top-1 agreement and
samples/s.

usage: check_onnx.py MODEL.onnx REF.safetensors [REPEATS] [THREADS]
"""
import sys
import time

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file

model, ref = sys.argv[1], load_file(sys.argv[2])
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
options = ort.SessionOptions()
if len(sys.argv) > 4:
    options.intra_op_num_threads = int(sys.argv[4])
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
x = ref["input"].astype(np.float32)
theirs = session.run(["logits"], {"input": x})[0]
ours = ref["logits"].astype(np.float32)
rel = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
top1 = float(np.mean(ours.argmax(1) == theirs.argmax(1)))
start = time.perf_counter()
for _ in range(repeats):
    session.run(["logits"], {"input": x})
rate = repeats * x.shape[0] / (time.perf_counter() - start)
print(f"onnxruntime {ort.__version__} batch {x.shape[0]}: {rate:.2f} samples/s; "
      f"relative error vs joulebench {rel:.2e}; top-1 agreement {top1:.3f}")
