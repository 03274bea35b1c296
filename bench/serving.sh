#!/usr/bin/env bash
# joulebench's serving client (`joulebench run --workload openai`) against
# NVIDIA AIPerf, measured in the same run on this machine:
#   1. a real llama.cpp server (Gemma-3-270M Q4_K_M, tools/llama-server/build.sh):
#      one stream at a time and two, 64 tokens (ignore_eos, temperature 0):
#      TTFT and TPOT against each other and against the server's own timings;
#   2. a scripted streaming server (bench/serving/fast_server.rs, std-only Rust
#      built with rustc -O): the highest sustained Poisson request rate, TTFT
#      added at a fixed rate, and 1,000 concurrent streams (added TTFT, client
#      peak RSS and CPU).
# Prints a markdown table (metric | joulebench | AIPerf | ratio), medians over
# repetitions. Never fails on timing.
#
# Usage: bench/serving.sh              full run (~13–16 min)
#        QUICK=1 bench/serving.sh      one repetition, shorter runs (~3 min)
# Environment:
#   OUT=/tmp/serving-bench   raw outputs (every run's command, logs, result.json /
#                            profile_export_aiperf.json, records.jsonl, table.md)
#   BENCH_TMP=/tmp           where AIPerf's virtualenv goes ($BENCH_TMP/aiperf-venv)
#   JOULEBENCH=target/release/joulebench   (built once: cargo build --release -p cli)
#   AIPERF_VERSION=          pin a version (default: the newest pip finds)
#   SECTIONS=llama,rate,ttft,streams
#   LLAMA_THREADS=1          llama-server -t: 1 leaves a core to the client. With -t 2
#                            on 2 cores llama.cpp collapses (measured 2 s/token instead
#                            of 9 ms) as soon as another process holds a core, and
#                            AIPerf keeps one busy for its whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/serving-bench}
BENCH_TMP=${BENCH_TMP:-/tmp}
JOULEBENCH=${JOULEBENCH:-$ROOT/target/release/joulebench}
LLAMA_SERVER=${LLAMA_SERVER:-$ROOT/target/llama-server/bin/llama-server}
LLAMA_MODEL=${LLAMA_MODEL:-$ROOT/target/llama-server/models/gemma-3-270m-q4_k_m.gguf}
SECTIONS=${SECTIONS:-llama,rate,ttft,streams}
VENV=$BENCH_TMP/aiperf-venv
mkdir -p "$OUT"

if ! "$JOULEBENCH" run --help 2>/dev/null | grep -q -- '--endpoint'; then
    echo "$JOULEBENCH has no --workload openai; build it: cargo build --release -p cli" >&2
    exit 2
fi
if [[ $SECTIONS == *llama* && ! -x $LLAMA_SERVER ]]; then
    echo "no $LLAMA_SERVER (tools/llama-server/build.sh); skipping the llama section" >&2
    SECTIONS=$(echo "$SECTIONS" | sed 's/llama,\?//')
fi

# The scripted server: one std-only Rust file (no crate to add).
rustc -O --edition 2021 bench/serving/fast_server.rs -o "$OUT/fast_server"

# AIPerf in its own virtualenv (pure-Python dependencies).
if [[ ! -x $VENV/bin/aiperf ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --no-cache-dir -q "aiperf${AIPERF_VERSION:+==$AIPERF_VERSION}" >"$OUT/aiperf-install.log" 2>&1 || {
        echo "AIPerf could not be installed (see $OUT/aiperf-install.log):" >&2
        tail -5 "$OUT/aiperf-install.log" >&2
        exit 2
    }
fi
AIPERF_VER=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("aiperf"))')
# AIPerf needs a Hugging Face tokenizer even when token counts come from the
# server (its `builtin` one downloads tiktoken data: no network here).
"$VENV/bin/python" bench/serving/make_tokenizer.py bench/serving/prompts.jsonl "$OUT/tokenizer" >/dev/null

{
    echo "date: $(date -u +%FT%TZ)"
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB"
    echo "joulebench: $JOULEBENCH ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "AIPerf: $AIPERF_VER ($VENV), Python $("$VENV/bin/python" -V 2>&1 | cut -d' ' -f2)"
    echo "rustc: $(rustc --version)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/environment.txt"

python3 bench/serving/bench.py \
    --jb "$JOULEBENCH" --aiperf "$VENV/bin/aiperf" --tokenizer "$OUT/tokenizer" \
    --fast-server "$OUT/fast_server" --llama-server "$LLAMA_SERVER" --llama-model "$LLAMA_MODEL" \
    --llama-threads "${LLAMA_THREADS:-1}" \
    --prompts "$ROOT/bench/serving/prompts.jsonl" --out "$OUT" --sections "$SECTIONS" \
    $([[ ${QUICK:-0} != 0 ]] && echo --quick)
echo
echo "AIPerf $AIPERF_VER; raw outputs in $OUT (table.md, records.jsonl, one folder per run)"
