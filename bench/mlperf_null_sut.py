#!/usr/bin/env python3
"""MLCommons LoadGen (PyPI mlcommons-loadgen) driving a null SUT: the peer
joulebench's load generator is measured against in loadgen_overhead.sh.

The SUT completes each query at once, in batches of 1024 samples (the same
shape as joulebench's null SUT), with no response data.

usage: mlperf_null_sut.py SCENARIO TARGET MIN_DURATION_MS OUTDIR
  TARGET: Offline expected QPS, Server target QPS, or SingleStream expected
  latency in ns.
"""
import os
import sys

import mlperf_loadgen as lg

BATCH = 1024


def main():
    scenario, target, duration_ms, outdir = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    os.makedirs(outdir, exist_ok=True)

    def issue(samples):
        for i in range(0, len(samples), BATCH):
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples[i:i + BATCH]])

    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = duration_ms
    settings.min_query_count = 1
    if scenario == "Offline":
        settings.offline_expected_qps = target
    elif scenario == "Server":
        settings.server_target_qps = target
        settings.server_target_latency_ns = 100_000_000
    elif scenario == "SingleStream":
        settings.single_stream_expected_latency_ns = int(target)
    log = lg.LogSettings()
    log.log_output.outdir = outdir
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda idx: None, lambda idx: None)
    lg.StartTestWithLogSettings(sut, qsl, settings, log)
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)


if __name__ == "__main__":
    main()
