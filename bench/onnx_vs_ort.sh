#!/usr/bin/env bash
# joulebench's ONNX Runtime back end (`run --workload onnx`) against ONNX
# Runtime's own Python API, Offline on the CPU: the same .onnx file, batch
# and intra-op threads, both on the same libonnxruntime (the Python's
# wheel, which joulebench finds through the python3 on PATH). Runs the two
# sides in turn REPEATS times and prints one table: medians and the ratio.
#
#   bench/onnx_vs_ort.sh [JOULEBENCH] [OUT_DIR]
#
# JOULEBENCH defaults to target/release/joulebench. Environment: PYTHON (one
# with onnxruntime, onnx, numpy and safetensors; default python3: its
# folder goes first on PATH), SECONDS_PER_RUN (15), BATCH (8), THREADS (0:
# ONNX Runtime's default on both sides), REPEATS (3). The model is
# ResNet-50 with joulebench's seeded weights (seed 1), built into ONNX by
# bench/models/resnet_to_onnx.py, dynamic batch; or MODEL=FILE.onnx with
# DIMS="NAME=N ..." for its other dynamic dimensions and INT_MAX for integer
# inputs (token ids), e.g. bench/models/minilm_to_onnx.py's MiniLM encoder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:-target/release/joulebench}")
out=${2:-joulebench-results/onnx-vs-ort}
py=${PYTHON:-python3}
seconds=${SECONDS_PER_RUN:-15}
batch=${BATCH:-8}
threads=${THREADS:-0}
repeats=${REPEATS:-3}
mkdir -p "$out"
export PATH="$(dirname "$(command -v "$py")"):$PATH"

model=${MODEL:-$out/resnet50.onnx}
int_max=${INT_MAX:-100}
read -r -a dims <<<"${DIMS:-}"
jb_dims=()
for d in "${dims[@]}"; do jb_dims+=(--dim "$d"); done
if [ ! -s "$model" ]; then
  cargo run -q --release -p workloads --example export_weights -- resnet50 1 "$out/resnet50.safetensors" >&2
  "$py" - "$here/models" "$out/resnet50.safetensors" "$model" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import onnx, resnet_to_onnx
from safetensors.numpy import load_file
onnx.save(resnet_to_onnx.build(load_file(sys.argv[2]), "resnet50"), sys.argv[3])
PY
fi

jb_threads=()
[ "$threads" -gt 0 ] && jb_threads=(--ort-threads "$threads")
for i in $(seq 1 "$repeats"); do
  "$bin" run --workload onnx --model-file "$model" --batch-size "$batch" --duration "$seconds" \
    --int-max "$int_max" "${jb_dims[@]}" "${jb_threads[@]}" --power "${POWER:-auto}" --quiet \
    -o "$out/joulebench-$i" >"$out/joulebench-$i.txt" 2>&1 || true
  "$py" "$here/models/ort_file_offline.py" "$model" "$batch" "$seconds" "$threads" "$int_max" \
    "${dims[@]}" >"$out/ort-$i.json"
done

"$py" - "$out" "$repeats" "$batch" "$(basename "$model")" <<'PY'
import json, statistics, sys
out, repeats, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ours, theirs, valid = [], [], []
for i in range(1, repeats + 1):
    r = json.load(open(f"{out}/joulebench-{i}/result.json"))
    ours.append(r["performance"]["throughput_samples_per_s"])
    valid.append(r["performance"]["valid"])
    o = json.load(open(f"{out}/ort-{i}.json"))
    theirs.append(o["samples_per_s"])
    runtime = o["runtime"]
print(f"{sys.argv[4]}, Offline, CPU, batch {batch}, {repeats} runs each (samples/s)")
print(f"{'system':<38} {'median':>9}  runs")
print(f"{'joulebench --workload onnx':<38} {statistics.median(ours):>9.2f}  "
      + " ".join(f"{x:.2f}" for x in ours) + f"  valid={all(valid)}")
print(f"{runtime:<38} {statistics.median(theirs):>9.2f}  " + " ".join(f"{x:.2f}" for x in theirs))
print(f"{'ratio joulebench/onnxruntime':<38} {statistics.median(ours) / statistics.median(theirs):>8.3f}x")
PY
