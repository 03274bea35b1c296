#!/usr/bin/env bash
# Scaling over a node's GPUs: the same Offline run on 1, 2, … N GPUs, one
# table: samples/s, node GPU W, samples/J, and efficiency relative to one GPU
# (samples/s per GPU over the one-GPU figure). Each row's energy is also
# cross-checked against every GPU's NVML energy counter read independently
# (through ctypes, not through joulebench) around the run.
#
#   bench/gpu_scaling.sh JOULEBENCH_BINARY OUTDIR [MODEL]
#
# MODEL: resnet50 (default). Environment: BATCH (256), WORKERS (2),
# SECONDS_PER_RUN (15), COUNTS (e.g. "1 2 4 8"; default 1..N).
set -euo pipefail
bin=$1
out=$2
model=${3:-resnet50}
batch=${BATCH:-256}
workers=${WORKERS:-2}
seconds=${SECONDS_PER_RUN:-15}
gpus=$(nvidia-smi -L | wc -l)
counts=${COUNTS:-$(seq 1 "$gpus")}
mkdir -p "$out"
nvidia-smi --query-gpu=index,name,driver_version,power.limit --format=csv,noheader | tee "$out/gpus.txt"

counters() { python3 "$(dirname "$0")/nvml_counters.py"; } # every GPU, mJ

for k in $counts; do
  devices=$(seq -s, 0 $((k - 1)))
  counters >"$out/counters-$k-before.txt"
  "$bin" run --workload "$model" --devices "$devices" --batch-size "$batch" --workers "$workers" \
    --scenario offline --duration "$seconds" --power nvml --quiet -o "$out/gpus-$k" \
    >"$out/gpus-$k.txt" 2>&1 || true
  counters >"$out/counters-$k-after.txt"
done

python3 - "$out" $counts <<'PY'
import json, sys
out, counts = sys.argv[1], [int(k) for k in sys.argv[2:]]
rows, base = [], None
for k in counts:
    r = json.load(open(f"{out}/gpus-{k}/result.json"))
    perf, power = r["performance"], r["power"]
    gpu = {m["meter_id"]: m for m in power["meters"] if m["meter_id"].startswith("nvml-gpu") and m["meter_id"][8:].isdigit()}
    used = [f"nvml-gpu{i}" for i in range(k)]
    joules = sum(gpu[m]["energy_j"] for m in used)
    watts = sum(gpu[m]["avg_w"] for m in used)
    before = [int(x) for x in open(f"{out}/counters-{k}-before.txt").read().split()]
    after = [int(x) for x in open(f"{out}/counters-{k}-after.txt").read().split()]
    # The independent reading spans the whole command (load, calibration,
    # run), so it must be at least the timed window's energy.
    outside_j = sum((a - b) / 1000 for a, b in zip(after[:k], before[:k]))
    sps = perf["throughput_samples_per_s"]
    base = base or sps
    work = r["workload"]["parameters"].get("device_work", [])
    rows.append((k, sps, watts, perf["samples_completed"] / joules, sps / k / base,
                 joules, outside_j, perf["valid"], [w["samples"] for w in work]))
print(f"{'GPUs':>4} {'samples/s':>10} {'GPU W':>8} {'samples/J':>10} {'eff. vs 1':>9} "
      f"{'window J':>10} {'counter J (whole cmd)':>22}  valid  samples per GPU")
for k, sps, w, spj, eff, j, oj, valid, per in rows:
    print(f"{k:>4} {sps:>10.1f} {w:>8.1f} {spj:>10.3f} {eff:>9.3f} {j:>10.1f} {oj:>22.1f}  {valid!s:<5}  {per}")
PY
