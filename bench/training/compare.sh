#!/usr/bin/env bash
# The CPU-node-vs-GPU-node, training-vs-inference table, measured on this
# machine in one go: for each back end (cpu, and cuda when a GPU and a
# CUDA-enabled joulebench are there), train then serve the same models and
# print one table:
#
#   digits     time and energy to train (to 97% held-out accuracy), then the
#              trained weights served Offline: samples/s, samples/J
#   resnet50   training throughput (synthetic ImageNet-shaped data): samples/s,
#              J/sample; then inference Offline (seeded weights): samples/s, samples/J,
#              on candle and on ONNX Runtime (CPU provider, or CUDA with
#              onnxruntime-gpu; each row names its engine, and the fastest engine
#              of each back end is named below the table)
#
# and, on the GPU, joulebench's ResNet-50 training throughput against
# PyTorch's (bench/training/torch_train.py: same model, batch, optimiser), as a
# ratio (the target is >= 1.0), when torch and torchvision are importable.
#
# Usage: bench/training/compare.sh [JOULEBENCH] [OUT_DIR]
#   JOULEBENCH  the binary (default target/release/joulebench; build it with
#               `cargo build --release -p cli --features cuda` on a GPU machine)
#   OUT_DIR     where every run's folder goes (default joulebench-results/training-compare)
# Environment: POWER_ARGS (default "--power auto": NVML, RAPL, hwmon; e.g.
#   "--power estimate --tdp 65" where there is no meter), RN50_BATCH (32),
#   RN50_STEPS (GPU 50, CPU 3), SERVE_S (Offline duration, 10), RUNS (digits runs, 1),
#   DTYPE (ResNet-50 training type on the GPU: f32 or bf16, default f32),
#   BACKENDS (e.g. "cuda": only these of the detected back ends).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
jb="${1:-target/release/joulebench}"
out="${2:-joulebench-results/training-compare}"
read -r -a power <<< "${POWER_ARGS:---power auto}"
rn50_batch="${RN50_BATCH:-32}"
serve_s="${SERVE_S:-10}"
runs="${RUNS:-1}"
dtype="${DTYPE:-f32}"
[ -x "$jb" ] || { echo "no joulebench binary at $jb (give its path as the first argument)" >&2; exit 2; }
mkdir -p "$out"

# The digits data set (scikit-learn's, from PyPI) into the cache.
bash "$here/../data/fetch_digits.sh" >&2

backends=(cpu)
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  probe="$out/.cuda-probe"
  if "$jb" train --quiet --device cuda --max-epochs 1 --target-accuracy 0.01 --power none -o "$probe" >/dev/null 2>"$out/.cuda-probe.err"; then
    backends+=(cuda)
  else
    echo "a GPU is here but this joulebench cannot use it (built without --features cuda?):" >&2
    sed 's/^/  /' "$out/.cuda-probe.err" >&2
    echo "CPU only." >&2
  fi
  rm -rf "$probe"
else
  echo "no NVIDIA GPU (nvidia-smi -L): CPU only." >&2
fi

# BACKENDS="cuda" (or "cpu") keeps only those of the detected back ends.
if [ -n "${BACKENDS:-}" ]; then
  keep=()
  for b in "${backends[@]}"; do [[ " $BACKENDS " == *" $b "* ]] && keep+=("$b"); done
  backends=("${keep[@]}")
fi

# ResNet-50 as an ONNX file at $1 (made once), or false where it cannot be made.
ort_model() {
  [ -s "$1" ] && return 0
  if command -v cargo >/dev/null && python3 -c "import onnx, safetensors" 2>/dev/null; then
    cargo run -q --release -p workloads --example export_weights -- resnet50 1 "$1.safetensors" >&2
    python3 - "$here/../models" "$1.safetensors" "$1" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import onnx, resnet_to_onnx
from safetensors.numpy import load_file
onnx.save(resnet_to_onnx.build(load_file(sys.argv[2]), "resnet50"), sys.argv[3])
PY
  elif python3 -c "import torch, torchvision, onnx" 2>/dev/null; then
    python3 - "$1" <<'PY'
import sys, torch, torchvision
net = torchvision.models.resnet50().eval()
torch.onnx.export(net, torch.randn(1, 3, 224, 224), sys.argv[1], input_names=["input"],
                  output_names=["logits"], opset_version=17, dynamo=False,
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
PY
  else
    echo "no ResNet-50 ONNX file: needs cargo with onnx + safetensors, or torch + torchvision + onnx" >&2
    return 1
  fi
}

for dev in "${backends[@]}"; do
  d="$out/$dev"
  steps="${RN50_STEPS:-$([ "$dev" = cuda ] && echo 50 || echo 3)}"
  train_dtype=f32; [ "$dev" = cuda ] && train_dtype="$dtype"
  echo "== $dev: digits, train to 97% ==" >&2
  "$jb" train --task digits --device "$dev" --runs "$runs" "${power[@]}" -o "$d/digits-train" >&2 || true
  echo "== $dev: digits, serve the trained weights (Offline, ${serve_s} s) ==" >&2
  "$jb" run --workload digits --weights "$d/digits-train/model.safetensors" --device "$dev" \
    --scenario Offline --duration "$serve_s" --batch-size 256 --quiet "${power[@]}" -o "$d/digits-serve" >&2 || true
  echo "== $dev: ResNet-50 training throughput ($steps steps, batch $rn50_batch, $train_dtype) ==" >&2
  "$jb" train --task resnet50-synthetic --device "$dev" --batch-size "$rn50_batch" --steps "$steps" \
    --dtype "$train_dtype" "${power[@]}" -o "$d/rn50-train" >&2 || true
  echo "== $dev: ResNet-50 inference (Offline, ${serve_s} s) ==" >&2
  "$jb" run --workload resnet50 --device "$dev" --scenario Offline --duration "$serve_s" \
    --batch-size "$rn50_batch" --quiet "${power[@]}" -o "$d/rn50-serve" >&2 || true
  # ONNX Runtime, the other engine (`--workload onnx`; the faster one on the
  # CPU), where the python3 on PATH has onnxruntime (onnxruntime-gpu for the
  # CUDA provider). The model file: joulebench's seeded ResNet-50 where cargo
  # and onnx + safetensors are here, else torchvision's (random weights, the
  # same network: throughput does not depend on the weights).
  ort_device=cpu; [ "$dev" = cuda ] && ort_device=cuda:0
  if python3 -c "import onnxruntime" 2>/dev/null && ort_model "$out/resnet50.onnx"; then
    echo "== $dev: ResNet-50 inference through ONNX Runtime (Offline, ${serve_s} s) ==" >&2
    "$jb" run --workload onnx --model-file "$out/resnet50.onnx" --device "$ort_device" --scenario Offline \
      --duration "$serve_s" --batch-size "$rn50_batch" --quiet "${power[@]}" -o "$d/rn50-serve-ort" >&2 || true
  fi
  if [ "$dev" = cuda ] && python3 -c "import torch, torchvision" 2>/dev/null; then
    echo "== cuda: PyTorch ResNet-50 training throughput (same model and batch) ==" >&2
    python3 "$here/torch_train.py" --device cuda --batch-size "$rn50_batch" --steps "$steps" \
      --dtype "$train_dtype" > "$d/torch-train.json" || rm -f "$d/torch-train.json"
  fi
done

python3 - "$out" "${backends[@]}" <<'PY'
import json, os, sys
out, backends = sys.argv[1], sys.argv[2:]

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def total(r):
    p = (r or {}).get("power") or {}
    t = p.get("total") or {}
    part = t.get("measured") or t.get("estimated")
    if not part:
        return None, ""
    return part["energy_j"], "" if t.get("measured") else " (est.)"

def samples_per_j(r):
    e = ((r or {}).get("power") or {}).get("efficiency") or {}
    if e.get("name") != "samples_per_joule":
        return None, ""
    return e["value"], " (est.)" if e.get("provenance") == "estimated" else ""

def f(v, fmt="{:.3g}"):
    return "-" if v is None else fmt.format(v)

rows = []
fastest = {}
for dev in backends:
    d = os.path.join(out, dev)
    tr = load(os.path.join(d, "digits-train", "result.json"))
    sv = load(os.path.join(d, "digits-serve", "result.json"))
    t = (tr or {}).get("training") or {}
    ttt = (t.get("time_to_train_s") or {}).get("value")
    ett = (t.get("energy_to_train_j") or {}).get("value")
    est = " (est.)" if (t.get("energy_to_train_j") or {}).get("provenance") == "estimated" else ""
    sps = ((sv or {}).get("performance") or {}).get("throughput_samples_per_s")
    spj, sest = samples_per_j(sv)
    rows.append((dev, "digits-cnn", f"time {f(ttt)} s, energy {f(ett)} J{est}"
                 + ("" if t.get("converged", False) else " (NOT converged)"),
                 f"{f(sps)} samples/s, {f(spj)} samples/J{sest}"))
    rt = load(os.path.join(d, "rn50-train", "result.json"))
    rs = load(os.path.join(d, "rn50-serve", "result.json"))
    run = (((rt or {}).get("training") or {}).get("runs") or [{}])[0]
    _, test = total(rt)
    sps = ((rs or {}).get("performance") or {}).get("throughput_samples_per_s")
    spj, sest = samples_per_j(rs)
    jps = run.get("j_per_sample")
    rows.append((dev, "resnet50 (candle)", f"{f(run.get('samples_per_s'))} samples/s, {f(jps)} J/sample{test}",
                 f"{f(sps)} samples/s, {f(spj)} samples/J{sest}"))
    ort = load(os.path.join(d, "rn50-serve-ort", "result.json"))
    if ort:
        sps = (ort.get("performance") or {}).get("throughput_samples_per_s")
        spj, sest = samples_per_j(ort)
        params = (ort.get("workload") or {}).get("parameters") or {}
        version = params.get("onnxruntime_version", "?")
        provider = params.get("execution_provider", "?")
        rows.append((dev, f"resnet50 (ONNX Runtime {version}, {provider})", "-",
                     f"{f(sps)} samples/s, {f(spj)} samples/J{sest}"))
        engines = [("candle", ((rs or {}).get("performance") or {}).get("throughput_samples_per_s")),
                   (f"ONNX Runtime {provider}", sps)]
        engines = [(n, v) for n, v in engines if v]
        if engines:
            name, best = max(engines, key=lambda e: e[1])
            fastest[dev] = f"{name} ({best:,.0f} samples/s)"
    torch = load(os.path.join(d, "torch-train.json"))
    if torch and run.get("samples_per_s"):
        rows.append((dev, "resnet50 vs PyTorch",
                     f"joulebench/torch = {run['samples_per_s'] / torch['samples_per_s']:.2f}x "
                     f"({run['samples_per_s']:.1f} vs {torch['samples_per_s']:.1f} samples/s, {torch['framework']})", ""))

w = [max(len(r[i]) for r in rows + [("back end", "model", "training", "inference (Offline)")]) for i in range(4)]
head = ("back end", "model", "training", "inference (Offline)")
print(" | ".join(h.ljust(w[i]) for i, h in enumerate(head)))
print("-|-".join("-" * w[i] for i in range(4)))
for r in rows:
    print(" | ".join(c.ljust(w[i]) for i, c in enumerate(r)))
for dev, engine in fastest.items():
    print(f"fastest ResNet-50 inference engine on {dev}: {engine}")
print(f"\nrun folders: {out}/<back end>/  (joulebench compare {out}/*/* for ratios)")
PY
