"""One measurement point of bench/python_loadgen.sh, written only against
MLCommons' API so it runs unchanged under both modules. Prints one JSON line.

  point.py offline N {inline|fast}      Offline, one query of N samples
  point.py server QPS {inline|thread}   Server at QPS for $BENCH_SECONDS

BENCH_KEEP=1 keeps the run's log folder and prints its path on stderr.
"""
import json
import os
import queue
import sys
import tempfile
import threading
import time

import mlperf_loadgen as lg

kind, level, how = sys.argv[1], float(sys.argv[2]), sys.argv[3]
seconds = float(os.environ.get("BENCH_SECONDS", "3"))
outdir = tempfile.mkdtemp(prefix="bench-loadgen-")

ts = lg.TestSettings()
ls = lg.LogSettings()
ls.log_output.outdir = outdir
ls.enable_trace = False
if kind == "offline":
    ts.scenario = lg.TestScenario.Offline
    ts.min_duration_ms = 0
    ts.min_query_count = int(level)
    ts.offline_expected_qps = 1
else:
    ts.scenario = lg.TestScenario.Server
    ts.server_target_qps = level
    ts.min_duration_ms = int(seconds * 1000)
    ts.min_query_count = 1
    ts.server_target_latency_ns = 100_000_000
ts.mode = lg.TestMode.PerformanceOnly

work = queue.SimpleQueue()


def worker():
    while True:
        ids = work.get()
        if ids is None:
            return
        lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])


def issue(samples):
    if how == "thread":
        work.put([s.id for s in samples])
    else:
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])


def issue_fast(ids, indices):
    lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])


threads = [threading.Thread(target=worker)] if how == "thread" else []
for t in threads:
    t.start()
sut = lg.ConstructFastSUT(issue_fast, lambda: None) if how == "fast" else lg.ConstructSUT(issue, lambda: None)
qsl = lg.ConstructQSL(1024, 1024, lambda s: None, lambda s: None)
started = time.perf_counter()
lg.StartTestWithLogSettings(sut, qsl, ts, ls)
elapsed = time.perf_counter() - started
for t in threads:
    work.put(None)
    t.join()

values = {}
with open(os.path.join(outdir, "mlperf_log_detail.txt")) as f:
    for line in f:
        if line.startswith(":::MLLOG"):
            d = json.loads(line[9:])
            values[d["key"]] = d["value"]
if os.environ.get("BENCH_KEEP"): print(outdir, file=sys.stderr)
print(json.dumps({
    "kind": kind, "level": level, "how": how, "seconds": elapsed,
    "valid": values.get("result_validity") == "VALID",
    "p99_ns": values.get("result_99.00_percentile_latency_ns"),
    "completed_qps": values.get("result_completed_samples_per_sec"),
    "samples_per_second": values.get("result_samples_per_second"),
}))
