"""The module's surface: every name MLCommons' 6.0.17 has, the same
defaults, argument kinds and type errors."""
import copy
import inspect
import json
import pickle
import subprocess

import pytest

import mlperf_loadgen as lg
from conftest import run_script

NAMES = [
    "ConstructFastSUT", "ConstructQDL", "ConstructQSL", "ConstructSUT", "DestroyFastSUT",
    "DestroyQDL", "DestroyQSL", "DestroySUT", "FirstTokenComplete", "LogOutputSettings",
    "LogSettings", "LoggingMode", "QuerySample", "QuerySampleResponse", "QuerySamplesComplete",
    "StartTest", "StartTestWithLogSettings", "TestMode", "TestScenario", "TestSettings",
]


def test_every_name_of_mlcommons_module_is_here():
    missing = [n for n in NAMES if not hasattr(lg, n)]
    assert not missing


def test_defaults_equal_mlcommons(ours, reference):
    mine = json.loads(run_script(ours, "dump_settings.py").stdout)
    theirs = json.loads(run_script(reference, "dump_settings.py").stdout)
    assert mine == theirs


def test_settings_refuse_what_pybind11_refuses():
    ts = lg.TestSettings()
    with pytest.raises(TypeError):
        ts.scenario = 3
    with pytest.raises(TypeError):
        ts.mode = "PerformanceOnly"
    with pytest.raises(TypeError):
        ts.min_query_count = 1.5
    with pytest.raises(TypeError):
        ts.min_query_count = -1
    with pytest.raises(TypeError):
        ts.min_query_count = 2**64
    with pytest.raises(TypeError):
        ts.use_token_latencies = "yes"
    with pytest.raises(AttributeError):
        ts.not_a_field = 1
    with pytest.raises(TypeError):
        copy.deepcopy(ts)
    ts.server_target_qps = 5  # an int is a fine double
    assert ts.server_target_qps == 5.0 and isinstance(ts.server_target_qps, float)
    ts.use_token_latencies = 1
    assert ts.use_token_latencies is True
    ts.min_query_count = True
    assert ts.min_query_count == 1
    ts.ttft_latency = 7
    assert ts.ttft_latency == 7


def test_enums_behave_like_pybind11s():
    o = lg.TestScenario.Offline
    assert o.name == "Offline" and o.value == 3 and int(o) == 3
    assert str(o) == "TestScenario.Offline"
    assert o != 3
    assert lg.TestScenario(3) is o
    assert {o: 1}[lg.TestScenario.Offline] == 1
    assert list(lg.TestMode.__members__) == [
        "SubmissionRun", "AccuracyOnly", "PerformanceOnly", "FindPeakPerformance"]
    assert lg.LoggingMode.AsyncPoll.value == 0
    assert pickle.loads(pickle.dumps(lg.TestMode.AccuracyOnly)) is lg.TestMode.AccuracyOnly


def test_log_output_has_both_access_patterns():
    ls = lg.LogSettings()
    assert ls.enable_trace is True
    assert ls.log_mode == lg.LoggingMode.AsyncPoll
    assert ls.log_mode_async_poll_interval_ms == 1000
    ls.log_output.outdir = "/tmp/x"  # the getter hands out the held object
    assert ls.log_output.outdir == "/tmp/x"
    los = lg.LogOutputSettings()
    assert (los.outdir, los.prefix, los.suffix) == (".", "mlperf_log_", "")
    los.outdir = "/tmp/y"
    ls.log_output = los  # assignment copies
    los.outdir = "/tmp/z"
    assert ls.log_output.outdir == "/tmp/y"


def test_samples_and_responses():
    q = lg.QuerySample(5, 6)
    assert (q.id, q.index) == (5, 6)
    assert (lg.QuerySample().id, lg.QuerySample().index) == (0, 0)
    assert pickle.loads(pickle.dumps(q)).index == 6
    with pytest.raises(TypeError):
        lg.QuerySample(id=5, index=6)
    r = lg.QuerySampleResponse(1, 2, 3)
    assert (r.id, r.data, r.size, r.n_tokens) == (1, 2, 3, 0)
    r = lg.QuerySampleResponse(1, 2, 3, 40)
    assert r.n_tokens == 40
    assert pickle.loads(pickle.dumps(r)).n_tokens == 40  # MLCommons' raises here
    for bad in [(1,), (1, 2), (1, 2, 3, 4, 5)]:
        with pytest.raises(TypeError):
            lg.QuerySampleResponse(*bad)
    with pytest.raises(TypeError):
        lg.QuerySampleResponse(id=1, data=2, size=3)


def test_positional_only_where_mlcommons_is():
    with pytest.raises(TypeError):
        lg.ConstructSUT(arg0=lambda s: None, arg1=lambda: None)
    sig = inspect.signature(lg.QuerySamplesComplete)
    assert list(sig.parameters) == ["responses", "response_cb"]
    assert sig.parameters["response_cb"].default is None
    sig = inspect.signature(lg.StartTestWithLogSettings)
    assert list(sig.parameters) == [
        "sut", "qsl", "test_settings", "log_settings", "audit_config_filename"]
    assert sig.parameters["audit_config_filename"].default == "audit.config"
    sig = inspect.signature(lg.TestSettings.FromConfig)
    assert sig.parameters["conf_type"].default == 1


def test_handles_are_checked():
    sut = lg.ConstructSUT(lambda s: None, lambda: None)
    qsl = lg.ConstructQSL(10, 10, lambda s: None, lambda s: None)
    with pytest.raises(TypeError, match="ConstructQSL"):
        lg.DestroySUT(qsl)
    lg.DestroySUT(sut)
    with pytest.raises(ValueError, match="destroyed"):
        lg.DestroySUT(sut)  # LoadGen: a double free
    with pytest.raises(ValueError):
        lg.StartTest(sut, qsl, lg.TestSettings())
    with pytest.raises(TypeError):
        lg.StartTest(qsl, qsl, lg.TestSettings())
    lg.DestroyQSL(qsl)


def test_joulebench_submodule_is_outside_loadgens_names(reference):
    import mlperf_loadgen.joulebench as jb
    theirs = subprocess.run(
        [reference, "-c", "import mlperf_loadgen as lg; print(' '.join(dir(lg)))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert "joulebench" not in theirs, "our addition would shadow a name of LoadGen's"
    assert set(NAMES) <= set(theirs), "NAMES lists MLCommons' own names"
    assert callable(jb.last_result) and callable(jb.last_outdir)
