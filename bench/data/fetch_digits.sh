#!/usr/bin/env bash
# Fetch the real 8x8 handwritten-digits set (1797 images, UCI "optdigits" test
# part) that scikit-learn's wheel ships as sklearn/datasets/data/digits.csv.gz,
# into a cache OUTSIDE the repository:
#   ${JOULEBENCH_CACHE:-$HOME/.cache/joulebench}/digits/digits.csv
# Only PyPI is used (pip download, no install); the wheel is kept in the cache
# so a second run does nothing. Tests that need the file skip, saying so, when
# it is absent.
#
# Turn it into an image folder in ImageNet validation layout (PNG + val_map.txt):
#   cargo run -p workloads --example digits_to_folder -- \
#     "${JOULEBENCH_CACHE:-$HOME/.cache/joulebench}/digits/digits.csv" OUT_DIR
set -euo pipefail

cache="${JOULEBENCH_CACHE:-$HOME/.cache/joulebench}"
out="$cache/digits"
csv="$out/digits.csv"
# The wheel's file, not a re-export: pinned so the data never changes under a test.
version="${SKLEARN_VERSION:-1.5.2}"
# SHA-256 of the unpacked CSV (checked on 1.5.2; the training crate checks the same).
sha256="6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"

check() {
  echo "$sha256  $1" | sha256sum --check --status
}

if [ -s "$csv" ] && check "$csv"; then
  echo "digits: already in $csv"
  exit 0
fi
mkdir -p "$out/wheel"
python="$(command -v python3 || command -v python)"
# Any platform's wheel carries the same data file; take the one pip picks here.
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
  --dest "$out/wheel" "scikit-learn==$version"
wheel="$(ls "$out"/wheel/scikit_learn-"$version"-*.whl | head -n 1)"
tmp="$csv.tmp.$$"
# A wheel is a zip: read just the one member, then gunzip it.
"$python" - "$wheel" "$tmp" <<'PY'
import gzip, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    data = z.read("sklearn/datasets/data/digits.csv.gz")
with open(dest, "wb") as f:
    f.write(gzip.decompress(data))
PY
if ! check "$tmp"; then
  rm -f "$tmp"
  echo "digits: the CSV in $(basename "$wheel") does not have the expected SHA-256" >&2
  exit 1
fi
mv "$tmp" "$csv"
# The wheel (13 MB) is no longer needed once the CSV is checked.
rm -rf "$out/wheel"
rows="$(wc -l < "$csv")"
echo "digits: $rows rows in $csv (from $(basename "$wheel"))"
