#!/usr/bin/env bash
# joulebench's load generator against MLCommons LoadGen, both driving a null
# SUT with the same settings, measured in one run on this machine.
#
#   bench/loadgen_overhead.sh [MIN_DURATION_MS]
#
# Installs mlcommons-loadgen into a temporary virtualenv, builds joulebench
# (release), runs Offline, Server at increasing target QPS and SingleStream on
# both, and prints one table with the ratio ours/theirs. Both tools write
# mlperf_log_detail.txt with LoadGen's keys, so one parser reads both.
# This is a benchmark, not a test: it never fails on timing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
duration_ms=${1:-1000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== installing mlcommons-loadgen into $work/venv" >&2
python3 -m venv "$work/venv"
if ! "$work/venv/bin/pip" install -q mlcommons-loadgen >&2; then
  echo "cannot install mlcommons-loadgen from PyPI: no peer to compare with" >&2
  exit 1
fi
peer_version=$("$work/venv/bin/pip" show mlcommons-loadgen | awk '/^Version/{print $2}')
echo "== building joulebench (release)" >&2
(cd "$root" && cargo build --release -q -p cli)
ours="$root/target/release/joulebench"

# run_case NAME SCENARIO TARGET
run_case() {
  local name=$1 scenario=$2 target=$3
  local theirs_dir="$work/theirs-$name" ours_dir="$work/ours-$name" set
  "$work/venv/bin/python" "$here/mlperf_null_sut.py" "$scenario" "$target" "$duration_ms" "$theirs_dir" >/dev/null
  case $scenario in
    Offline) set="offline_expected_qps=$target" ;;
    Server) set="server_target_qps=$target" ;;
    SingleStream) set="single_stream_expected_latency_ns=$target" ;;
  esac
  "$ours" run --workload null --scenario "$scenario" --set "$set" --set "min_duration_ms=$duration_ms" \
    --set min_query_count=1 --quiet -o "$ours_dir" >/dev/null || true
  echo "$name $scenario $target $theirs_dir $ours_dir"
}

{
  run_case offline Offline 2000000
  for qps in 20000 50000 100000 200000 500000 1000000 2000000 5000000; do
    run_case "server-$qps" Server "$qps"
  done
  run_case single-stream SingleStream 1000
} >"$work/cases"

python3 - "$work/cases" "$peer_version" "$(nproc)" <<'PY'
import json, sys

def detail(path):
    values = {}
    for line in open(f"{path}/mlperf_log_detail.txt"):
        if line.startswith(":::MLLOG "):
            entry = json.loads(line[len(":::MLLOG "):])
            values[entry["key"]] = entry["value"]
    return values

def us(ns):
    return f"{ns / 1000:.1f} µs" if ns < 1e6 else f"{ns / 1e6:.2f} ms"

rows = []
for line in open(sys.argv[1]):
    name, scenario, target, theirs_dir, ours_dir = line.split()
    t, o = detail(theirs_dir), detail(ours_dir)
    if scenario == "Offline":
        rows.append((f"Offline samples/s (expected {float(target):.0f})", t["result_samples_per_second"], o["result_samples_per_second"], "", ""))
    elif scenario == "Server":
        tp, op = t["result_99.00_percentile_latency_ns"], o["result_99.00_percentile_latency_ns"]
        rows.append((f"Server completed QPS @ {float(target):.0f}", t["result_completed_samples_per_sec"], o["result_completed_samples_per_sec"],
                     f"{us(tp)} {t['result_validity']}", f"{us(op)} {o['result_validity']}"))
    else:
        rows.append(("SingleStream queries/s", t["result_qps_with_loadgen_overhead"], o["result_qps_with_loadgen_overhead"], "", ""))

print(f"joulebench vs mlcommons-loadgen {sys.argv[2]} (Python null SUT), null SUTs, {sys.argv[3]} CPUs")
print(f"| {'case':<38} | {'mlcommons-loadgen':>17} | {'joulebench':>13} | {'ratio':>7} | {'p99 theirs':>18} | {'p99 ours':>18} |")
print(f"|{'-'*40}|{'-'*19}|{'-'*15}|{'-'*9}|{'-'*20}|{'-'*20}|")
for case, theirs, ours, tp, op in rows:
    print(f"| {case:<38} | {theirs:>17,.0f} | {ours:>13,.0f} | {ours / theirs:>6.1f}× | {tp:>18} | {op:>18} |")
server = [(r[1], r[2], r[3], r[4]) for r in rows if r[0].startswith("Server")]
best_t = max((t for t, _, tp, _ in server if tp.endswith("VALID") and not tp.endswith("INVALID")), default=0)
best_o = max((o for _, o, _, op in server if op.endswith("VALID") and not op.endswith("INVALID")), default=0)
if best_t:
    print(f"\nhighest VALID Server completed QPS: mlcommons-loadgen {best_t:,.0f}, joulebench {best_o:,.0f} ({best_o / best_t:.1f}×)")
PY
