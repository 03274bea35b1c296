"""Sends this process SIGINT while a long test runs: StartTest must end the
test with complete logs and then raise KeyboardInterrupt."""
import os
import signal
import sys
import threading
import time

import mlperf_loadgen as lg

outdir = sys.argv[1]


def issue(samples):
    time.sleep(0.001)
    lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])


ts = lg.TestSettings()
ts.scenario = lg.TestScenario.SingleStream
ts.min_duration_ms = 60_000
ls = lg.LogSettings()
ls.log_output.outdir = outdir
sut = lg.ConstructSUT(issue, lambda: None)
qsl = lg.ConstructQSL(16, 16, lambda s: None, lambda s: None)
threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
started = time.monotonic()
try:
    lg.StartTestWithLogSettings(sut, qsl, ts, ls)
    print("no KeyboardInterrupt")
except KeyboardInterrupt:
    print(f"KeyboardInterrupt after {time.monotonic() - started:.1f} s")
