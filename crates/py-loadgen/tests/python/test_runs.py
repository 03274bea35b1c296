"""Runs in this process with our module: every scenario and mode, several
tests per process, callbacks from other threads, and each bad input LoadGen
crashes or stays silent on."""
import array
import json
import os
import threading

import pytest

import mlperf_loadgen as lg
import mlperf_loadgen.joulebench as jb
from conftest import detail, run_script


@pytest.fixture(autouse=True)
def no_meter(monkeypatch):
    monkeypatch.setenv("JOULEBENCH_POWER", "none")


def settings(scenario, mode=lg.TestMode.PerformanceOnly):
    ts = lg.TestSettings()
    ts.scenario = scenario
    ts.mode = mode
    ts.min_duration_ms = 50
    ts.min_query_count = 20
    ts.offline_expected_qps = 1000
    ts.server_target_qps = 400
    ts.single_stream_expected_latency_ns = 100_000
    ts.multi_stream_expected_latency_ns = 400_000
    ts.multi_stream_samples_per_query = 2
    return ts


def logs_in(path):
    ls = lg.LogSettings()
    ls.log_output.outdir = str(path)
    ls.enable_trace = False
    return ls


class Echo:
    """A SUT answering each sample with its index, at once or from a thread."""

    def __init__(self, threaded=False):
        self.threaded = threaded
        self.keep = []
        self.sut = lg.ConstructSUT(self.issue, lambda: None)
        self.qsl = lg.ConstructQSL(32, 16, lambda s: None, lambda s: None)

    def respond(self, samples):
        out = []
        for s in samples:
            data = array.array("B", [s.index])
            self.keep.append(data)
            addr, n = data.buffer_info()
            out.append(lg.QuerySampleResponse(s.id, addr, n))
        lg.QuerySamplesComplete(out)

    def issue(self, samples):
        if self.threaded:
            threading.Thread(target=self.respond, args=(list(samples),)).start()
        else:
            self.respond(samples)

    def close(self):
        lg.DestroySUT(self.sut)
        lg.DestroyQSL(self.qsl)


@pytest.mark.parametrize("scenario", list(lg.TestScenario))
@pytest.mark.parametrize("mode", [lg.TestMode.PerformanceOnly, lg.TestMode.AccuracyOnly,
                                  lg.TestMode.SubmissionRun])
def test_every_scenario_and_mode(tmp_path, scenario, mode):
    echo = Echo(threaded=scenario in (lg.TestScenario.Server, lg.TestScenario.Offline))
    lg.StartTestWithLogSettings(echo.sut, echo.qsl, settings(scenario, mode), logs_in(tmp_path))
    echo.close()
    names = {p.name for p in tmp_path.iterdir()}
    assert {"mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json",
            "mlperf_log_trace.json", "result.json"} <= names
    result = jb.last_result()
    assert result["settings"]["scenario"] == scenario.name
    if mode != lg.TestMode.PerformanceOnly:
        logged = json.loads((tmp_path / "mlperf_log_accuracy.json").read_text())
        assert sorted(e["qsl_idx"] for e in logged) == list(range(32))
        assert all(e["data"] == f"{e['qsl_idx']:02X}" for e in logged)
    if mode != lg.TestMode.AccuracyOnly:
        assert result["performance"]["valid"] in (True, False)
        assert "Result is" in (tmp_path / "mlperf_log_summary.txt").read_text()


def test_start_test_uses_default_log_settings_in_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    echo = Echo()
    lg.StartTest(echo.sut, echo.qsl, settings(lg.TestScenario.Offline))
    echo.close()
    assert (tmp_path / "mlperf_log_summary.txt").is_file()
    assert (tmp_path / "mlperf_log_trace.json").stat().st_size > 0  # enable_trace defaults on


def test_names_prefix_suffix_and_datetime(tmp_path):
    echo = Echo()
    ls = logs_in(tmp_path)
    ls.log_output.prefix = "p_"
    ls.log_output.suffix = "_s"
    ls.log_output.prefix_with_datetime = True
    lg.StartTestWithLogSettings(echo.sut, echo.qsl, settings(lg.TestScenario.Offline), ls)
    echo.close()
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("p_"))
    assert len(names) == 4 and all(n.endswith(("_s.txt", "_s.json")) for n in names), names


def test_several_tests_in_one_process_and_last_result(tmp_path):
    echo = Echo()
    for i, mode in enumerate([lg.TestMode.AccuracyOnly, lg.TestMode.PerformanceOnly]):
        lg.StartTestWithLogSettings(echo.sut, echo.qsl, settings(lg.TestScenario.Offline, mode),
                                    logs_in(tmp_path / str(i)))
        assert jb.last_outdir() == str(tmp_path / str(i))
    echo.close()
    assert jb.last_result()["settings"]["mode"] == "PerformanceOnly"


def test_a_missing_outdir_is_created_with_a_warning(tmp_path):
    echo = Echo()
    target = tmp_path / "new" / "deeper"
    with pytest.warns(UserWarning, match="did not exist"):
        lg.StartTestWithLogSettings(echo.sut, echo.qsl, settings(lg.TestScenario.Offline),
                                    logs_in(target))
    echo.close()
    assert (target / "mlperf_log_detail.txt").is_file()


def test_an_exception_in_a_callback_ends_the_test_and_is_raised(tmp_path):
    calls = []

    def issue(samples):
        calls.append(len(samples))
        if len(calls) == 3:
            raise ZeroDivisionError("model failed")
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(8, 8, lambda s: None, lambda s: None)
    ts = settings(lg.TestScenario.SingleStream)
    ts.min_duration_ms = 60_000
    with pytest.raises(ZeroDivisionError, match="model failed"):
        lg.StartTestWithLogSettings(sut, qsl, ts, logs_in(tmp_path))
    lg.DestroySUT(sut)
    lg.DestroyQSL(qsl)
    assert len(calls) == 3, "the test stopped at the exception"
    errors = [v for k, v, m in detail(tmp_path / "mlperf_log_detail.txt") if m["is_error"]]
    assert any("ZeroDivisionError" in str(v) for v in errors), errors
    assert (tmp_path / "mlperf_log_summary.txt").is_file()


def test_a_qsl_exception_is_raised_too(tmp_path):
    def load(indices):
        raise MemoryError("no room")

    sut = lg.ConstructSUT(lambda s: None, lambda: None)
    qsl = lg.ConstructQSL(8, 8, load, lambda s: None)
    with pytest.raises(MemoryError, match="no room"):
        lg.StartTestWithLogSettings(sut, qsl, settings(lg.TestScenario.Offline), logs_in(tmp_path))
    lg.DestroySUT(sut)
    lg.DestroyQSL(qsl)


def test_unknown_and_stale_response_ids_raise_value_error(tmp_path):
    seen = []
    problems = []

    def issue(samples):
        seen.extend(s.id for s in samples)
        for bad in [12345, seen[0] + 10**6]:
            try:
                lg.QuerySamplesComplete([lg.QuerySampleResponse(bad, 0, 0)])
            except ValueError as e:
                problems.append(str(e))
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(8, 8, lambda s: None, lambda s: None)
    lg.StartTestWithLogSettings(sut, qsl, settings(lg.TestScenario.Offline), logs_in(tmp_path))
    assert len(problems) == 2 and all("was not issued" in p for p in problems), problems
    with pytest.raises(ValueError, match="no test is issuing"):
        lg.QuerySamplesComplete([lg.QuerySampleResponse(seen[0], 0, 0)])  # LoadGen: use after free
    lg.StartTestWithLogSettings(sut, qsl, settings(lg.TestScenario.Offline), logs_in(tmp_path / "2"))
    lg.DestroySUT(sut)
    lg.DestroyQSL(qsl)


def test_completing_twice_is_logged_not_raised(tmp_path):
    def issue(samples):
        r = [lg.QuerySampleResponse(s.id, 0, 0) for s in samples]
        lg.QuerySamplesComplete(r)
        lg.QuerySamplesComplete(r[:1])

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(8, 8, lambda s: None, lambda s: None)
    lg.StartTestWithLogSettings(sut, qsl, settings(lg.TestScenario.Offline), logs_in(tmp_path))
    lg.DestroySUT(sut)
    lg.DestroyQSL(qsl)
    errors = [str(v) for k, v, m in detail(tmp_path / "mlperf_log_detail.txt") if m["is_error"]]
    assert any("more than once" in e for e in errors), errors


def test_response_cb_sees_logged_samples_only(tmp_path):
    seen = []

    def issue(samples):
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples],
                                response_cb=lambda r: seen.append(r.id))

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(8, 8, lambda s: None, lambda s: None)
    lg.StartTestWithLogSettings(sut, qsl, settings(lg.TestScenario.Offline), logs_in(tmp_path))
    assert seen == []  # a performance run logs nothing
    lg.StartTestWithLogSettings(sut, qsl, settings(lg.TestScenario.Offline, lg.TestMode.AccuracyOnly),
                                logs_in(tmp_path / "acc"))
    assert len(seen) == 8
    lg.DestroySUT(sut)
    lg.DestroyQSL(qsl)


def test_from_config_errors_reach_the_next_tests_detail_log(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("*.*.min_duration = fast\n")
    with pytest.warns(UserWarning):
        assert lg.TestSettings().FromConfig(str(bad), "m", "Offline", 2) == -22
    echo = Echo()
    lg.StartTestWithLogSettings(echo.sut, echo.qsl, settings(lg.TestScenario.Offline),
                                logs_in(tmp_path / "run"))
    echo.close()
    errors = [(k, v) for k, v, m in detail(tmp_path / "run" / "mlperf_log_detail.txt") if m["is_error"]]
    assert ("error_invalid_config", "value needs to be integer or double, line=1") in errors


def test_qdl_name_callback_names_the_sut(tmp_path):
    qdl = lg.ConstructQDL(
        lambda s: lg.QuerySamplesComplete([lg.QuerySampleResponse(x.id, 0, 0) for x in s]),
        lambda: None, lambda: "remote-sut")
    qsl = lg.ConstructQSL(8, 8, lambda s: None, lambda s: None)
    lg.StartTestWithLogSettings(qdl, qsl, settings(lg.TestScenario.Offline), logs_in(tmp_path))
    lg.DestroyQDL(qdl)
    lg.DestroyQSL(qsl)
    values = {k: v for k, v, _ in detail(tmp_path / "mlperf_log_detail.txt")}
    assert values["sut_name"] == "remote-sut"


def test_ctrl_c_leaves_complete_logs_then_raises_keyboard_interrupt(ours, tmp_path):
    proc = run_script(ours, "interrupt.py", tmp_path)
    assert "KeyboardInterrupt after" in proc.stdout, proc.stdout + proc.stderr
    seconds = float(proc.stdout.split("after")[1].split()[0])
    assert seconds < 10
    assert "Result is" in (tmp_path / "mlperf_log_summary.txt").read_text()
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "interrupted"


def test_energy_with_a_meter(tmp_path, monkeypatch):
    monkeypatch.setenv("JOULEBENCH_POWER", "estimate")
    monkeypatch.setenv("JOULEBENCH_TDP", "65")
    echo = Echo()
    ts = settings(lg.TestScenario.Offline)
    ts.min_duration_ms = 500
    ls = logs_in(tmp_path)
    ls.log_output.copy_summary_to_stdout = True
    lg.StartTestWithLogSettings(echo.sut, echo.qsl, ts, ls)
    echo.close()
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["power"]["meters"], result["power"]
    assert result["power"]["meters"][0]["energy_j"] > 0
    assert any(p.suffix == ".csv" for p in (tmp_path / "power").iterdir())
    assert jb.last_result()["power"] == result["power"]
