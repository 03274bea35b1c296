"""A language-model SUT under LoadGen, in the style of MLPerf's LLM
references (language/llama2-70b SUT_API.py, llama3.1-8b): worker threads
"generate" tokens, report the first one with FirstTokenComplete and the
whole answer with QuerySamplesComplete and n_tokens, under
use_token_latencies. Written only against MLCommons' mlperf_loadgen API, so
it runs unchanged on theirs and on joulebench's. Generation is simulated
(a fixed time per token) so the script needs no model.

  python llm_tokens.py --outdir OUT [--scenario Server|Offline] [--mode ...]
"""
import argparse
import array
import os
import queue
import threading
import time

import mlperf_loadgen as lg

TOKEN_S = 0.0002


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--outdir", required=True)
    p.add_argument("--scenario", default="Server")
    p.add_argument("--mode", default="PerformanceOnly")
    p.add_argument("--qps", type=float, default=600)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--min-duration-ms", type=int, default=1000)
    a = p.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    work = queue.Queue()

    def generate(sample):
        n_tokens = 8 + sample.index % 8
        tokens = array.array("i", [(sample.index * 31 + k) % 32000 for k in range(n_tokens)])
        time.sleep(TOKEN_S)
        first = array.array("i", tokens[:1])
        addr, _ = first.buffer_info()
        lg.FirstTokenComplete([lg.QuerySampleResponse(sample.id, addr, first.itemsize)])
        time.sleep(TOKEN_S * (n_tokens - 1))
        addr, _ = tokens.buffer_info()
        lg.QuerySamplesComplete(
            [lg.QuerySampleResponse(sample.id, addr, len(tokens) * tokens.itemsize, n_tokens)])

    def worker():
        while True:
            sample = work.get()
            if sample is None:
                return
            generate(sample)

    threads = [threading.Thread(target=worker) for _ in range(a.workers)]
    for t in threads:
        t.start()

    def issue(samples):
        for s in samples:
            work.put(s)

    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, a.scenario)
    settings.mode = getattr(lg.TestMode, a.mode)
    settings.use_token_latencies = True
    settings.ttft_latency = 50_000_000
    settings.tpot_latency = 20_000_000
    settings.server_target_qps = a.qps
    # Above what the workers do, so Offline never runs short of samples.
    settings.offline_expected_qps = 2500
    settings.min_duration_ms = a.min_duration_ms
    settings.min_query_count = 100
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = a.outdir
    log_settings.log_output.copy_summary_to_stdout = True
    log_settings.enable_trace = False
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(1000, 1000, lambda s: None, lambda s: None)
    lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)


if __name__ == "__main__":
    main()
