#!/usr/bin/env bash
# Rebuilds the committed PTX (epilogue, batch_norm, pool, adamw, attention) from the .cu files. Needs nvcc: on the dev machine,
#   eval "$(../shared/tools/cuda-build-env)"   (from the repository root)
# compute_80 (Ampere) is the oldest target with a bf16 conversion instruction;
# the driver compiles the PTX for the GPU it finds (Hopper included).
set -euo pipefail
cd "$(dirname "$0")"
for k in epilogue batch_norm pool adamw attention; do
  nvcc -ptx -O3 -arch=compute_80 "$k.cu" -o "$k.ptx"
  echo "wrote $(pwd)/$k.ptx"
done
