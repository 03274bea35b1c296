#!/usr/bin/env bash
# Rebuilds epilogue.ptx from epilogue.cu. Needs nvcc: on the dev machine,
#   eval "$(../shared/tools/cuda-build-env)"   (from the repository root)
# compute_80 (Ampere) is the oldest target with a bf16 conversion instruction;
# the driver compiles the PTX for the GPU it finds (Hopper included).
set -euo pipefail
cd "$(dirname "$0")"
nvcc -ptx -O3 -arch=compute_80 epilogue.cu -o epilogue.ptx
echo "wrote $(pwd)/epilogue.ptx"
