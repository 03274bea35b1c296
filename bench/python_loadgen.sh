#!/usr/bin/env bash
# MLCommons' mlperf_loadgen (PyPI mlcommons-loadgen 6.0.17) against ours
# (crates/py-loadgen), the same Python SUT code (python_loadgen/point.py)
# under both, in one run: Offline with 1 M samples, Server p99 at 50 k QPS,
# the highest VALID Server QPS, SUTs completing inline and from a thread.
# Prints one table with the ratios.
#
#   bash bench/python_loadgen.sh            # makes two virtualenvs (PyPI)
#   OURS_PYTHON=... THEIRS_PYTHON=... bash bench/python_loadgen.sh
#   REPEATS=3 SECONDS_PER_POINT=3 LADDER="50000 100000 ..." to change the plan
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-target/bench-python-loadgen}
REPEATS=${REPEATS:-3}
export BENCH_SECONDS=${SECONDS_PER_POINT:-3}
LADDER=${LADDER:-"50000 100000 150000 200000 250000 300000 400000 500000 600000 800000 1000000 1200000 1600000"}
export JOULEBENCH_POWER=none   # the harness alone; energy is not what is compared

venv() { # name packages...
  local dir="$WORK/$1"; shift
  if [ ! -f "$dir/ready" ]; then
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
    touch "$dir/ready"
  fi
  echo "$dir/bin/python"
}
OURS=${OURS_PYTHON:-$(venv ours "maturin>=1.7,<2")}
THEIRS=${THEIRS_PYTHON:-$(venv theirs "mlcommons-loadgen==6.0.17")}
if [ -z "${OURS_PYTHON:-}" ]; then
  "$OURS" -m pip install --quiet --no-cache-dir --force-reinstall --no-deps crates/py-loadgen
fi

mkdir -p "$WORK"
out="$WORK/points.jsonl"; : > "$out"
point() { # who python args...
  local who=$1 py=$2; shift 2
  "$py" bench/python_loadgen/point.py "$@" | sed "s/^{/{\"who\": \"$who\", /" >> "$out"
}
for i in $(seq "$REPEATS"); do
  for how in inline fast; do
    point ours "$OURS" offline 1000000 $how; point theirs "$THEIRS" offline 1000000 $how
  done
  for how in inline thread; do
    point ours "$OURS" server 50000 $how; point theirs "$THEIRS" server 50000 $how
  done
done
for how in inline thread; do
  for who in ours theirs; do
    py=$OURS; [ $who = theirs ] && py=$THEIRS
    failures=0
    for qps in $LADDER; do
      point $who "$py" server "$qps" $how
      if tail -1 "$out" | grep -q '"valid": true'; then failures=0; else failures=$((failures+1)); fi
      [ $failures -ge 2 ] && break
    done
  done
done
python3 bench/python_loadgen/table.py "$out"
