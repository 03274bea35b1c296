#!/usr/bin/env bash
# joulebench against ONNX Runtime on this machine's CPU, Offline: ResNet-50
# and the MiniLM encoder, the same network, batch and threads (all cores),
# printed as one table with the ratio.
#
#   bench/cpu_vs_ort.sh [JOULEBENCH] [OUT_DIR]
#
# JOULEBENCH defaults to target/release/joulebench. Environment: PYTHON (one
# with onnxruntime, numpy, onnx, safetensors, torch and transformers; default
# python3), SECONDS_PER_RUN (15), RN50_BATCH (8), MINILM_BATCH (32), SEQ_LEN
# (128). The MiniLM weights come from bench/models/fetch_minilm.sh's cache;
# ResNet-50's are joulebench's seeded random ones, exported for ORT.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-target/release/joulebench}
out=${2:-joulebench-results/cpu-vs-ort}
py=${PYTHON:-python3}
seconds=${SECONDS_PER_RUN:-15}
rn50_batch=${RN50_BATCH:-8}
minilm_batch=${MINILM_BATCH:-32}
seq_len=${SEQ_LEN:-128}
minilm=${JOULEBENCH_CACHE:-$HOME/.cache/joulebench}/all-MiniLM-L6-v2
mkdir -p "$out"
[ -s "$minilm/model.safetensors" ] || bash "$here/models/fetch_minilm.sh" >&2

# The default run's weights (seed 1), for ORT.
cargo run -q --release -p workloads --example export_weights -- resnet50 1 "$out/resnet50.safetensors" >&2
"$bin" run --workload resnet50 --device cpu --batch-size "$rn50_batch" --duration "$seconds" \
  --quiet -o "$out/joulebench-resnet50" >&2 || true
"$py" "$here/models/ort_offline.py" resnet50 "$out/resnet50.safetensors" "$rn50_batch" "$seconds" >"$out/ort-resnet50.json"
"$bin" run --workload minilm --weights "$minilm" --device cpu --batch-size "$minilm_batch" \
  --seq-len "$seq_len" --duration "$seconds" --quiet -o "$out/joulebench-minilm" >&2 || true
"$py" "$here/models/ort_offline.py" minilm "$minilm" "$minilm_batch" "$seconds" "$seq_len" >"$out/ort-minilm.json"

"$py" - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print(f"{'model':<10} {'system':<22} {'batch':>5} {'samples/s':>10}  valid")
for m in ["resnet50", "minilm"]:
    r = json.load(open(f"{out}/joulebench-{m}/result.json"))
    o = json.load(open(f"{out}/ort-{m}.json"))
    ours = r["performance"]["throughput_samples_per_s"]
    print(f"{m:<10} {'joulebench':<22} {o['batch']:>5} {ours:>10.2f}  {r['performance']['valid']}")
    print(f"{m:<10} {o['runtime']:<22} {o['batch']:>5} {o['samples_per_s']:>10.2f}")
    print(f"{m:<10} {'ratio joulebench/ort':<22} {'':>5} {ours / o['samples_per_s']:>9.3f}x")
PY
