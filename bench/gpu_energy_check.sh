#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: does energy from NVML's power samples agree
# with NVML's total-energy counter, and is the idle → load → idle step visible?
#
#   bench/gpu_energy_check.sh JOULEBENCH_BINARY OUTDIR
#
# Samples every NVML meter at 100 Hz for 30 s while a PyTorch bf16 matrix
# product loop loads GPU 0 from t≈8 s to t≈20 s, then prints, per meter, the
# energy over the whole window and its ratio to the counter, and the mean
# power before, during and after the load. Needs PyTorch with CUDA.
set -euo pipefail
bin=$1
out=$2
mkdir -p "$out"
"$bin" power list | tee "$out/power-list.txt"
"$bin" power watch --power nvml --power-interval 10ms --duration 30 --refresh 5s -o "$out/watch" >"$out/watch.txt" 2>&1 &
watcher=$!
sleep 8
python3 - <<'PY' >"$out/load.txt" 2>&1
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
torch.cuda.synchronize()
start = time.time(); n = 0
while time.time() - start < 12:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize(); n += 20
elapsed = time.time() - start
print(f"matmuls {n} in {elapsed:.2f} s: {n * 2 * 8192**3 / elapsed / 1e12:.0f} TFLOP/s")
PY
wait "$watcher"
cat "$out/load.txt"
tail -12 "$out/watch.txt"
python3 - "$out/watch" <<'PY'
import csv, json, sys, os
d = sys.argv[1]
w = json.load(open(f"{d}/watch.json"))
meters = {m["meter_id"]: m for m in w["meters"]}
counter = meters.get("nvml-gpu0")
print(f"\n| meter | kind | energy J | avg W | vs counter |")
print("|---|---|---|---|---|")
for mid, m in meters.items():
    ratio = m["energy_j"] / counter["energy_j"] if counter and mid.startswith("nvml-gpu0") and "memory" not in mid else float("nan")
    print(f"| {mid} | {m['kind']} | {m['energy_j']:.1f} | {m['avg_w']:.1f} | {ratio:.4f} |")
# Mean power per phase from the sampled power log.
rows = list(csv.DictReader(open(f"{d}/power/nvml-gpu0-power.csv")))
def mean(a, b):
    v = [float(r["watts"]) for r in rows if a <= int(r["t_ns"]) / 1e9 < b]
    return sum(v) / len(v) if v else float("nan")
# The load's start depends on how fast PyTorch imports: find the busiest 5 s.
peak_start = max(range(0, 25), key=lambda s: mean(s, s + 5))
print(f"\nmean W  idle 1-6 s: {mean(1, 6):.1f}   load {peak_start}-{peak_start + 5} s: {mean(peak_start, peak_start + 5):.1f}   after 28-30 s: {mean(28, 30):.1f}")
total = w["total"]["measured"]
print(f"system total (measured): {total['energy_j']:.1f} J from {' + '.join(total['meter_ids'])}")
PY
