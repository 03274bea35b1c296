"""joulebench's outputs on ONNX Runtime's CUDA provider against ONNX
Runtime's own Python API on the same inputs: runs `joulebench run --workload
onnx --device cuda:0 --mode accuracy --inputs inputs.npz`, decodes each
sample's logged bytes (its slice of every output, float32) and compares them
with the Python session's outputs.

  python onnx_gpu_check.py JOULEBENCH MODEL.onnx OUT_DIR [SAMPLES]
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

bin_, model, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
samples = int(sys.argv[4]) if len(sys.argv) > 4 else 32
out.mkdir(parents=True, exist_ok=True)
session = ort.InferenceSession(model, providers=["CUDAExecutionProvider"])
assert session.get_providers()[0] == "CUDAExecutionProvider", session.get_providers()
inp = session.get_inputs()[0]
x = np.random.default_rng(7).standard_normal((samples, 3, 224, 224), dtype=np.float32)
np.savez(out / "inputs.npz", **{inp.name: x})
expected = np.concatenate([session.run(None, {inp.name: x[i:i + 8]})[0] for i in range(0, samples, 8)])
run = subprocess.run(
    [bin_, "run", "--workload", "onnx", "--model-file", model, "--device", "cuda:0",
     "--inputs", str(out / "inputs.npz"), "--mode", "accuracy", "--batch-size", "8",
     "--power", "none", "--quiet", "-o", str(out / "joulebench")],
    capture_output=True, text=True)
if run.returncode != 0:
    sys.exit(f"joulebench failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
logged = json.loads((out / "joulebench" / "mlperf_log_accuracy.json").read_text())
got = np.zeros_like(expected)
for entry in logged:
    got[entry["qsl_idx"]] = np.frombuffer(bytes.fromhex(entry["data"]), dtype=np.float32)
result = json.loads((out / "joulebench" / "result.json").read_text())
params = result["workload"]["parameters"]
rel = np.abs(got - expected).max() / np.abs(expected).max()
same_top1 = float((got.argmax(1) == expected.argmax(1)).mean())
print(json.dumps({
    "samples_logged": len(logged), "max_relative_error": float(rel), "top1_agreement": same_top1,
    "provider": params.get("execution_provider"), "runtime": params.get("onnxruntime_version"),
    "python_runtime": ort.__version__,
}))
assert len(logged) == samples and rel < 1e-3 and same_top1 == 1.0
