#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ (the parsers of outside input) for
# SECONDS each and prints executions and findings per target.
#
#   bench/fuzz.sh [SECONDS [TARGET...]]   # default 60 s, every target
#
# Installs cargo-fuzz from crates.io if missing. cargo fuzz passes nightly-only
# flags (the address sanitizer); this machine has one stable toolchain, so the
# flags are allowed with RUSTC_BOOTSTRAP=1. Each target starts from a corpus
# seeded with fuzz/seeds/<target>/ and real files of the repository (our power
# logs and result.json fixtures, the tests' tokenizer.json). A crash is kept in
# fuzz/artifacts/<target>/ and makes the script exit 1: turn it into a
# regression test, then fix it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
seconds=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install -q cargo-fuzz --locked
cd "$root/fuzz"
echo "== building the fuzz targets" >&2
cargo fuzz build >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

seed() { # TARGET FILES...: copy the target's seeds and FILES into its corpus
  local target=$1 corpus="$work/corpus-$1"
  shift
  mkdir -p "$corpus"
  [ -d "seeds/$target" ] && cp seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  local f
  for f in "$@"; do
    if [ -f "$f" ]; then cp "$f" "$corpus/$(echo "$f" | tr / _)"; fi
  done
  echo "$corpus"
}

crashes_of() { # TARGET: how many crash files cargo fuzz has kept for it
  if [ -d "artifacts/$1" ]; then find "artifacts/$1" -type f | wc -l; else echo 0; fi
}

fixtures="$root/crates/report/tests/fixtures"
found=0
printf '| %-12s | %12s | %10s | %8s |\n' target executions "exec/s" crashes
printf '|%s|%s|%s|%s|\n' -------------- -------------- ------------ ----------
targets=("$@")
[ ${#targets[@]} -gt 0 ] || read -r -a targets <<<"$(cargo fuzz list | tr '\n' ' ')"
for target in "${targets[@]}"; do
  case $target in
    power_log | replay) corpus=$(seed "$target" "$fixtures"/*/power/*.csv) ;;
    result_json) corpus=$(seed "$target" "$fixtures"/*/result.json) ;;
    tokenizer) corpus=$(seed "$target" "$root"/crates/workloads/tests/data/*tokenizer*.json) ;;
    *) corpus=$(seed "$target") ;;
  esac
  before=$(crashes_of "$target")
  cargo fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -print_final_stats=1 \
    >"$work/$target.log" 2>&1 || true
  after=$(crashes_of "$target")
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$work/$target.log" | tail -1)
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$work/$target.log" | tail -1)
  crashes=$((after - before))
  printf '| %-12s | %12s | %10s | %8s |\n' "$target" "${runs:-?}" "${rate:-?}" "$crashes"
  if [ "$crashes" -gt 0 ]; then
    found=1
    grep -m3 -E "ERROR|panicked|SUMMARY" "$work/$target.log" | sed 's/^/    /'
  fi
done
if [ "$found" = 1 ]; then
  echo "crashes kept in fuzz/artifacts/: make each a regression test, then fix it" >&2
  exit 1
fi
