#!/usr/bin/env bash
# joulebench's ONNX Runtime back end on an NVIDIA GPU (the CUDA execution
# provider of onnxruntime-gpu) against ONNX Runtime's own Python API on the
# same file, batch and provider, Offline; GPU energy from NVML on
# joulebench's side. ResNet-50 with random weights, exported by
# torchvision + torch.onnx.export on the machine itself (dynamic batch).
#
#   bench/onnx_gpu.sh JOULEBENCH OUT_DIR
#
# Environment: PYTHON (one with onnxruntime-gpu, torch and torchvision;
# default python3), BATCH (64), SECONDS_PER_RUN (15).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "$1")
out=$2
py=${PYTHON:-python3}
batch=${BATCH:-64}
seconds=${SECONDS_PER_RUN:-15}
mkdir -p "$out"
export PATH="$(dirname "$(command -v "$py")"):$PATH"
"$py" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" | tee "$out/providers.txt"
model=$out/resnet50.onnx
"$py" - "$model" <<'PY'
import sys, torch, torchvision
net = torchvision.models.resnet50().eval()
x = torch.randn(1, 3, 224, 224)
torch.onnx.export(net, x, sys.argv[1], input_names=["input"], output_names=["logits"],
                  opset_version=17, dynamo=False, dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
PY
"$bin" run --workload onnx --model-file "$model" --device cuda:0 --batch-size "$batch" \
  --duration "$seconds" --power nvml --quiet -o "$out/joulebench" >"$out/joulebench.txt" 2>&1 || true
ORT_PROVIDER=cuda "$py" "$here/models/ort_file_offline.py" "$model" "$batch" "$seconds" 0 >"$out/ort.json"
"$py" - "$out" <<'PY'
import json, sys
out = sys.argv[1]
try:
    r = json.load(open(f"{out}/joulebench/result.json"))
except FileNotFoundError:
    print(open(f"{out}/joulebench.txt").read()[-3000:]); sys.exit(1)
o = json.load(open(f"{out}/ort.json"))
ours = r["performance"]["throughput_samples_per_s"]
print(f"{'system':<40} {'samples/s':>10}  provider")
print(f"{'joulebench --workload onnx':<40} {ours:>10.1f}  {r['workload']['parameters'].get('execution_provider')}  valid={r['performance']['valid']}")
print(f"{o['runtime']:<40} {o['samples_per_s']:>10.1f}  {o['provider']}")
print(f"{'ratio':<40} {ours / o['samples_per_s']:>9.3f}x")
e = r.get("energy") or {}
print("energy:", json.dumps(e)[:400])
PY
