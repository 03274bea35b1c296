#!/usr/bin/env bash
# joulebench against PyTorch eager, Offline, on one NVIDIA GPU: samples/s and
# samples/J (the GPU's NVML energy counter over each one's timed window).
#
#   bench/gpu_offline.sh JOULEBENCH_BINARY OUTDIR [MODEL...]
#
# MODEL is resnet50 (default) and/or minilm. Both sides run the same
# architecture with random weights, bf16, the same batch size, inputs held
# preprocessed in host memory and copied to the GPU per batch. Environment:
# BATCH (64), SECONDS_PER_RUN (20), SEQ_LEN (128, minilm), GPU (0), JB_ARGS
# (more joulebench run flags, e.g. "--workers 2").
set -euo pipefail
bin=$1
out=$2
shift 2
models=("${@:-resnet50}")
batch=${BATCH:-64}
seconds=${SECONDS_PER_RUN:-20}
seq_len=${SEQ_LEN:-128}
gpu=${GPU:-0}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader | tee "$out/gpu.txt"

for model in "${models[@]}"; do
  extra=()
  [ "$model" = minilm ] && extra=(--seq-len "$seq_len")
  "$bin" run --workload "$model" --device "cuda:$gpu" --scenario offline \
    --batch-size "$batch" --duration "$seconds" --power nvml \
    "${extra[@]}" ${JB_ARGS:-} -o "$out/joulebench-$model" --quiet >"$out/joulebench-$model.txt" 2>&1 || true
  python3 "$here/models/torch_offline.py" --model "$model" --batch "$batch" \
    --seconds "$seconds" --seq-len "$seq_len" --gpu "$gpu" --dtype bf16 >"$out/torch-$model.json"
done

python3 - "$out" "$gpu" "${models[@]}" <<'PY'
import json, sys
out, gpu, models = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = []
for m in models:
    r = json.load(open(f"{out}/joulebench-{m}/result.json"))
    perf = r["performance"]
    meter = next(x for x in r["power"]["meters"] if x["meter_id"] == f"nvml-gpu{gpu}")
    ours_sps = perf["throughput_samples_per_s"]
    ours_spj = perf["samples_completed"] / meter["energy_j"]
    t = json.load(open(f"{out}/torch-{m}.json"))
    rows.append((m, "joulebench", ours_sps, meter["avg_w"], ours_spj, perf["valid"]))
    rows.append((m, f"pytorch {t['torch']} eager", t["samples_per_s"], t["avg_w"], t["samples_per_j"], ""))
    rows.append((m, "ratio joulebench/pytorch", ours_sps / t["samples_per_s"],
                 meter["avg_w"] / t["avg_w"], ours_spj / t["samples_per_j"], ""))
print(f"{'model':<10} {'system':<28} {'samples/s':>11} {'GPU W':>8} {'samples/J':>10}  valid")
for m, who, sps, w, spj, valid in rows:
    if who.startswith("ratio"):
        print(f"{m:<10} {who:<28} {sps:>10.3f}x {w:>7.3f}x {spj:>9.3f}x")
    else:
        print(f"{m:<10} {who:<28} {sps:>11.1f} {w:>8.1f} {spj:>10.3f}  {valid}")
PY
