#!/usr/bin/env bash
# What sampling meters costs a CPU-bound run: `run --workload onnx` Offline on
# the same model with `--power none` and with `--power METER`, alternately,
# REPEATS times each; prints the median samples/s of each and the ratio.
#
#   bench/onnx_sampler_overhead.sh JOULEBENCH MODEL.onnx OUT_DIR
#
# Environment: METER (auto), BATCH (8), SECONDS_PER_RUN (10), REPEATS (3).
set -euo pipefail
bin=$(realpath "$1"); model=$2; out=$3
meter=${METER:-auto}; batch=${BATCH:-8}; seconds=${SECONDS_PER_RUN:-10}; repeats=${REPEATS:-3}
mkdir -p "$out"
for i in $(seq "$repeats"); do
  for power in none "$meter"; do
    "$bin" run --workload onnx --model-file "$model" --batch-size "$batch" --duration "$seconds" \
      --power "$power" --quiet -o "$out/$power-$i" >"$out/$power-$i.txt" 2>&1 || true
  done
done
python3 - "$out" "$meter" "$repeats" <<'PY'
import json, statistics, sys
out, meter, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
def rate(power):
    values = []
    for i in range(1, repeats + 1):
        try:
            r = json.load(open(f"{out}/{power}-{i}/result.json"))
            values.append(r["performance"]["throughput_samples_per_s"])
        except FileNotFoundError:
            print(open(f"{out}/{power}-{i}.txt").read()[-2000:])
    return values
none, metered = rate("none"), rate(meter)
print(f"--power none   samples/s: {[round(v, 1) for v in none]} median {statistics.median(none):.1f}")
print(f"--power {meter:<6} samples/s: {[round(v, 1) for v in metered]} median {statistics.median(metered):.1f}")
print(f"ratio (metered / none): {statistics.median(metered) / statistics.median(none):.3f}")
r = json.load(open(f"{out}/{meter}-1/result.json"))
print("meters:", [m["meter_id"] for m in (r.get("power") or {}).get("meters", [])])
PY
