#!/usr/bin/env python3
"""ONNX Runtime's Python API as the Offline peer of `joulebench run
--workload onnx`: the same .onnx file, batch and intra-op threads, inputs
made from the model's own metadata (floats uniform in [-1, 1), integers in
[0, INT_MAX), masks 1, named dynamic dimensions from NAME=N arguments), one
batch run again and again for SECONDS. Prints one JSON line:
{"runtime", "model", "batch", "threads", "samples_per_s"}.

  ort_file_offline.py MODEL.onnx BATCH SECONDS THREADS [INT_MAX] [NAME=N ...]

THREADS 0 leaves ONNX Runtime's default (one per physical core).
ORT_PROVIDER=cuda in the environment runs on the CUDA execution provider
(onnxruntime-gpu), device 0.
"""
import os
import json
import sys
import time

import numpy as np
import onnxruntime as ort

TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def main():
    path, batch, seconds, threads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    int_max = int(sys.argv[5]) if len(sys.argv) > 5 else 100
    dims = dict(a.split("=") for a in sys.argv[6:])
    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
    provider = "CUDAExecutionProvider" if os.environ.get("ORT_PROVIDER") == "cuda" else "CPUExecutionProvider"
    session = ort.InferenceSession(path, options, providers=[provider])
    rng = np.random.default_rng(1)
    feeds = {}
    for i in session.get_inputs():
        shape = [batch] + [d if isinstance(d, int) else int(dims[d]) for d in i.shape[1:]]
        t = TYPES[i.type]
        if "mask" in i.name.lower():
            feeds[i.name] = np.ones(shape, dtype=t)
        elif np.issubdtype(t, np.floating):
            feeds[i.name] = rng.uniform(-1, 1, shape).astype(t)
        else:
            feeds[i.name] = rng.integers(0, int_max, shape).astype(t)
    session.run(None, feeds)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, feeds)
        done += batch
    rate = done / (time.perf_counter() - start)
    print(json.dumps({"runtime": f"onnxruntime {ort.__version__} (Python)", "model": path, "batch": batch,
                      "threads": threads, "provider": session.get_providers()[0], "samples_per_s": rate}))


if __name__ == "__main__":
    main()
