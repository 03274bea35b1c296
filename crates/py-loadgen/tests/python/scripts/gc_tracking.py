"""Prints, as JSON, whether the cycle collector tracks the samples LoadGen
issues and the responses a SUT builds. Neither holds a Python reference, so
neither can be in a cycle; tracked, a million of them make the collector's
full passes walk them again and again (see `untracked` in src/samples.rs)."""
import gc
import json
import sys
import tempfile

import mlperf_loadgen as lg

seen = {}


def issue(samples):
    seen["sample"] = gc.is_tracked(samples[0])
    responses = [lg.QuerySampleResponse(s.id, 0, 0) for s in samples]
    seen["response"] = gc.is_tracked(responses[0])
    lg.QuerySamplesComplete(responses)


settings = lg.TestSettings()
settings.scenario = lg.TestScenario.Offline
settings.mode = lg.TestMode.PerformanceOnly
settings.min_duration_ms = 0
settings.min_query_count = 100
settings.offline_expected_qps = 1
log = lg.LogSettings()
log.log_output.outdir = tempfile.mkdtemp()
sut = lg.ConstructSUT(issue, lambda: None)
qsl = lg.ConstructQSL(16, 16, lambda s: None, lambda s: None)
lg.StartTestWithLogSettings(sut, qsl, settings, log)
lg.DestroyQSL(qsl)
lg.DestroySUT(sut)
seen["made_by_hand"] = [gc.is_tracked(lg.QuerySample()), gc.is_tracked(lg.QuerySample(1, 2)),
                        gc.is_tracked(lg.QuerySampleResponse()),
                        gc.is_tracked(lg.QuerySampleResponse(1, 0, 0, 3))]
json.dump(seen, sys.stdout)
