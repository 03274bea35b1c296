#!/usr/bin/env bash
# Data-parallel ResNet-50 training over a node's GPUs, joulebench against
# PyTorch DDP, one table from one run: for 1, 2, … N GPUs, each side's
# samples/s, GPU W and samples/J over its timed steps, and its scaling
# efficiency (samples/s per GPU over its own one-GPU figure). The per-GPU
# batch is fixed (weak scaling): the global batch is PER_GPU_BATCH × GPUs.
#
# joulebench's energy is its nvml meter of each GPU used, over the timed
# window; it is cross-checked against every GPU's NVML counter read around
# the whole command (bench/nvml_counters.py), which must be at least as
# large. PyTorch's is the used GPUs' counters over its timed window
# (bench/training/torch_train.py under torchrun).
#
#   bench/training/scaling.sh JOULEBENCH OUTDIR
#
# JOULEBENCH must be built with `--features cudnn,nccl` for NCCL (without
# `nccl` gradients go through host memory, and the table says so).
# Environment: PER_GPU_BATCH (64), STEPS (20), WARMUP (3), DTYPE (bf16),
# COUNTS (e.g. "1 2 4 8"; default 1..N).
set -euo pipefail
bin=$1
out=$2
here="$(cd "$(dirname "$0")" && pwd)"
per=${PER_GPU_BATCH:-64}
steps=${STEPS:-20}
warmup=${WARMUP:-3}
dtype=${DTYPE:-bf16}
gpus=$(nvidia-smi -L | wc -l)
counts=${COUNTS:-$(seq 1 "$gpus")}
mkdir -p "$out"
nvidia-smi --query-gpu=index,name,driver_version,power.limit --format=csv,noheader | tee "$out/gpus.txt"

for k in $counts; do
  devices=$(seq -s, 0 $((k - 1)))
  python3 "$here/../nvml_counters.py" >"$out/counters-$k-before.txt"
  "$bin" train --task resnet50-synthetic --devices "$devices" --batch-size $((per * k)) \
    --dtype "$dtype" --steps "$steps" --warmup-steps "$warmup" --power nvml --quiet \
    -o "$out/joulebench-$k" >"$out/joulebench-$k.txt" 2>&1 || true
  python3 "$here/../nvml_counters.py" >"$out/counters-$k-after.txt"
  torchrun --standalone --nproc_per_node "$k" "$here/torch_train.py" --device cuda \
    --batch-size $((per * k)) --dtype "$dtype" --steps "$steps" --warmup-steps "$warmup" \
    >"$out/torch-$k.json" 2>"$out/torch-$k.err" || true
done

python3 - "$out" $counts <<'PY'
import json, sys
out, counts = sys.argv[1], [int(k) for k in sys.argv[2:]]

def joulebench(k):
    try:
        r = json.load(open(f"{out}/joulebench-{k}/result.json"))
    except (OSError, ValueError):
        return None
    t = r["training"]
    run = t["runs"][t["representative_run"]]
    gpu = {m["meter_id"]: m for m in r["power"]["meters"]}
    used = [gpu[f"nvml-gpu{i}"] for i in range(k)]
    joules = sum(m["energy_j"] for m in used)
    before = [int(x) for x in open(f"{out}/counters-{k}-before.txt").read().split()]
    after = [int(x) for x in open(f"{out}/counters-{k}-after.txt").read().split()]
    command_j = sum((a - b) / 1000 for a, b in zip(after[:k], before[:k]))
    return dict(sps=run["samples_per_s"], w=joules / run["time_to_train_s"],
                spj=run["samples_trained"] / joules, j=joules, command_j=command_j,
                sync=t["hyperparameters"].get("gradient_sync"))

def torch(k):
    try:
        r = json.loads(open(f"{out}/torch-{k}.json").read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None
    j = r.get("gpu_energy_j")
    return dict(sps=r["samples_per_s"], w=r.get("gpu_w"),
                spj=r["batch_size"] * r["steps"] / j if j else None)

def f(v, spec):
    return format(v, spec) if v is not None else "-"

rows = [(k, joulebench(k), torch(k)) for k in counts]
base_jb = next((jb["sps"] for _, jb, _ in rows if jb), None)
base_pt = next((pt["sps"] for _, _, pt in rows if pt), None)
print(f"{'GPUs':>4} | {'jb samples/s':>12} {'GPU W':>7} {'samples/J':>9} {'eff.':>5} "
      f"{'window J':>9} {'counter J':>10} | {'torch samples/s':>15} {'GPU W':>7} {'samples/J':>9} "
      f"{'eff.':>5} | {'ratio s/s':>9} {'ratio s/J':>9}")
for k, jb, pt in rows:
    jb = jb or {}
    pt = pt or {}
    eff_jb = jb["sps"] / k / base_jb if jb and base_jb else None
    eff_pt = pt["sps"] / k / base_pt if pt and base_pt else None
    r_s = jb["sps"] / pt["sps"] if jb and pt else None
    r_j = jb["spj"] / pt["spj"] if jb and pt and pt.get("spj") else None
    print(f"{k:>4} | {f(jb.get('sps'), '12.1f')} {f(jb.get('w'), '7.1f')} {f(jb.get('spj'), '9.3f')} "
          f"{f(eff_jb, '5.2f')} {f(jb.get('j'), '9.1f')} {f(jb.get('command_j'), '10.1f')} | "
          f"{f(pt.get('sps'), '15.1f')} {f(pt.get('w'), '7.1f')} {f(pt.get('spj'), '9.3f')} "
          f"{f(eff_pt, '5.2f')} | {f(r_s, '9.3f')} {f(r_j, '9.3f')}")
syncs = sorted({jb["sync"] for _, jb, _ in rows if jb and jb.get("sync")})
print("joulebench gradient exchange:", ", ".join(syncs) or "-")
PY
