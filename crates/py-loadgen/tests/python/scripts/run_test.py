"""One LoadGen test with a synthetic SUT, written only against MLCommons'
Python API, so the same script runs under MLCommons' mlperf_loadgen and
ours and their files can be compared.

Each response's bytes depend only on the sample index, so accuracy logs of
the two implementations must be identical byte for byte.
"""
import argparse
import array
import os
import queue
import threading

import mlperf_loadgen as lg

p = argparse.ArgumentParser()
p.add_argument("--outdir", required=True)
p.add_argument("--scenario", default="Offline")
p.add_argument("--mode", default="PerformanceOnly")
p.add_argument("--total", type=int, default=64)
p.add_argument("--perf", type=int, default=32)
p.add_argument("--min-duration-ms", type=int, default=100)
p.add_argument("--min-query-count", type=int, default=40)
p.add_argument("--max-query-count", type=int, default=0)
p.add_argument("--qps", type=float, default=2000.0)
p.add_argument("--latency-ns", type=int, default=10_000_000)
p.add_argument("--samples-per-query", type=int, default=4)
p.add_argument("--tokens", type=int, default=0, help="n_tokens per response; >0 turns token latencies on")
p.add_argument("--threads", type=int, default=0, help="complete from this many worker threads")
p.add_argument("--fast", action="store_true", help="ConstructFastSUT")
p.add_argument("--conf", action="append", default=[], help="PATH:MODEL:CONF_TYPE for FromConfig")
p.add_argument("--trace", action="store_true")
p.add_argument("--repeat", type=int, default=1, help="StartTest this many times (outdir/run<i>)")
a = p.parse_args()

ts = lg.TestSettings()
for spec in a.conf:
    path, model, conf_type = spec.rsplit(":", 2)
    print("FromConfig", path, ts.FromConfig(path, model, a.scenario, int(conf_type)))
ts.scenario = getattr(lg.TestScenario, a.scenario)
ts.mode = getattr(lg.TestMode, a.mode)
if not a.conf:
    ts.min_duration_ms = a.min_duration_ms
    ts.min_query_count = a.min_query_count
    ts.max_query_count = a.max_query_count
    ts.offline_expected_qps = a.qps
    ts.server_target_qps = a.qps
    ts.server_target_latency_ns = a.latency_ns
    ts.single_stream_expected_latency_ns = 100_000
    ts.multi_stream_expected_latency_ns = 400_000
    ts.multi_stream_samples_per_query = a.samples_per_query
    ts.qsl_rng_seed = 3
    ts.sample_index_rng_seed = 5
    ts.schedule_rng_seed = 7
if a.tokens:
    ts.use_token_latencies = True
    ts.ttft_latency = 50_000_000
    ts.tpot_latency = 50_000_000

keep = []


def response_bytes(index):
    return array.array("B", [index % 256, (index >> 8) % 256, 0xAB])


def respond(sample_id, index):
    data = response_bytes(index)
    keep.append(data)
    addr, n = data.buffer_info()
    if a.tokens:
        first = array.array("B", [index % 256])
        keep.append(first)
        faddr, fn = first.buffer_info()
        lg.FirstTokenComplete([lg.QuerySampleResponse(sample_id, faddr, fn)])
        return lg.QuerySampleResponse(sample_id, addr, n, a.tokens)
    return lg.QuerySampleResponse(sample_id, addr, n)


work = queue.Queue()


def worker():
    while True:
        item = work.get()
        if item is None:
            return
        lg.QuerySamplesComplete([respond(i, x) for i, x in item])


workers = [threading.Thread(target=worker) for _ in range(a.threads)]
for w in workers:
    w.start()


def issue(samples):
    pairs = [(s.id, s.index) for s in samples]
    if workers:
        work.put(pairs)
    else:
        lg.QuerySamplesComplete([respond(i, x) for i, x in pairs])


def issue_fast(ids, indices):
    pairs = list(zip(ids, indices))
    if workers:
        work.put(pairs)
    else:
        lg.QuerySamplesComplete([respond(i, x) for i, x in pairs])


loaded = []
sut = lg.ConstructFastSUT(issue_fast, lambda: None) if a.fast else lg.ConstructSUT(issue, lambda: None)
qsl = lg.ConstructQSL(a.total, a.perf, lambda s: loaded.append(list(s)), lambda s: None)
for run in range(a.repeat):
    outdir = a.outdir if a.repeat == 1 else os.path.join(a.outdir, f"run{run}")
    os.makedirs(outdir, exist_ok=True)
    ls = lg.LogSettings()
    ls.log_output.outdir = outdir
    ls.enable_trace = a.trace
    lg.StartTestWithLogSettings(sut, qsl, ts, ls)
for w in workers:
    work.put(None)
for w in workers:
    w.join()
lg.DestroyQSL(qsl)
(lg.DestroyFastSUT if a.fast else lg.DestroySUT)(sut)
print("loaded", [len(s) for s in loaded])
