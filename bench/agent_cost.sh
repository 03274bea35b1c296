#!/usr/bin/env bash
# What `joulebench agent` costs a node that runs it all the time, and what
# the Slurm hooks add to a job's start and end: CPU share of one core and
# resident memory of the agent at its default polling (10 s) over SECONDS,
# reading a powercap tree of two packages and two DRAM domains; the wall
# time of `joulebench slurm prolog` + `epilog`, HOOKS pairs. Prints the
# figures against the targets (CPU < 0.5% of a core, RSS < 30 MB, a hook
# < 100 ms).
#
#   bench/agent_cost.sh [JOULEBENCH]
#
# Environment: SECONDS_TO_WATCH (60), HOOKS (50), INTERVAL (10s); BMC=1 adds
# `--power ipmi` at the default --sample-interval (2 s), with an `ipmitool` on
# PATH that is a shell script printing a DCMI reading: a process start per
# sample, as with the real one (whose wait on the BMC costs no CPU). The
# agent's CPU counts its reaped children (ipmitool) too.
set -euo pipefail
bin=$(realpath "${1:-target/release/joulebench}")
watch=${SECONDS_TO_WATCH:-60}; hooks=${HOOKS:-50}; interval=${INTERVAL:-10s}
work=$(mktemp -d); trap 'kill $agent 2>/dev/null || true; rm -rf "$work"' EXIT
for z in 0 1; do
  d=$work/sys/class/powercap/intel-rapl:$z
  mkdir -p "$d/intel-rapl:$z:0"
  echo "package-$z" >"$d/name"; echo 262143328850 >"$d/max_energy_range_uj"; echo $((z * 1000 + 5)) >"$d/energy_uj"
  echo dram >"$d/intel-rapl:$z:0/name"; echo 65712999613 >"$d/intel-rapl:$z:0/max_energy_range_uj"
  echo 7 >"$d/intel-rapl:$z:0/energy_uj"
done
bmc=()
if [ "${BMC:-0}" = 1 ]; then
  mkdir -p "$work/bin"
  printf '#!/bin/sh\nprintf "    Instantaneous power reading:   412 Watts\\n    Power reading state is:   activated\\n"\n' >"$work/bin/ipmitool"
  chmod +x "$work/bin/ipmitool"
  export PATH="$work/bin:$PATH"
  bmc=(--power ipmi)
fi
"$bin" agent --node bench --interval "$interval" --state-dir "$work/state" --socket "$work/agent.sock" \
  --query-socket "$work/query.sock" --sysfs-root "$work/sys" --nvml-library /nonexistent/libnvidia-ml.so.1 \
  "${bmc[@]}" 2>"$work/agent.log" &
agent=$!
sleep 2
ticks=$(getconf CLK_TCK)
# utime + stime, and those of its reaped children (ipmitool).
cpu() { awk '{print $14 + $15 + $16 + $17}' "/proc/$agent/stat"; }
c0=$(cpu); t0=$(date +%s.%N)
sleep "$watch"
c1=$(cpu); t1=$(date +%s.%N)
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status")
lat=$work/latencies
for i in $(seq "$hooks"); do
  for hook in prolog epilog; do
    s=$(date +%s%N)
    SLURM_JOB_ID=$((1000 + i)) SLURM_JOB_UID=1000 SLURMD_NODENAME=bench \
      "$bin" slurm $hook --socket "$work/agent.sock" 2>>"$work/hooks.log"
    e=$(date +%s%N)
    echo $(( (e - s) / 1000 )) >>"$lat"
  done
done
recorded=$(ls "$work/state/jobs" | wc -l)
python3 - "$c0" "$c1" "$t0" "$t1" "$ticks" "$rss_kb" "$lat" "$recorded" "$hooks" "$interval" "${BMC:-0}" <<'PY'
import statistics, sys
c0, c1, t0, t1, ticks, rss, lat, recorded, hooks, interval, with_bmc = sys.argv[1:]
cpu = (float(c1) - float(c0)) / float(ticks) / (float(t1) - float(t0)) * 100
us = sorted(int(l) for l in open(lat))
med, worst = statistics.median(us) / 1e3, us[-1] / 1e3
rss_mb = int(rss) / 1024
bmc = " and sampling the BMC (ipmitool) every 2 s" if with_bmc == "1" else ""
print(f"joulebench agent, polling every {interval}{bmc}, {float(t1) - float(t0):.0f} s watched; {hooks} jobs started and ended")
print(f"{'measure':<40} {'value':>10} {'target':>10} {'value/target':>13}")
print(f"{'agent CPU, % of one core':<40} {cpu:>10.3f} {0.5:>10} {cpu / 0.5:>13.3f}")
print(f"{'agent resident memory, MB':<40} {rss_mb:>10.1f} {30:>10} {rss_mb / 30:>13.3f}")
print(f"{'hook wall time, median ms':<40} {med:>10.1f} {100:>10} {med / 100:>13.3f}")
print(f"{'hook wall time, worst ms':<40} {worst:>10.1f} {100:>10} {worst / 100:>13.3f}")
print(f"records written: {recorded} of {hooks}")
PY
