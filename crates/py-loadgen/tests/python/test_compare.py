"""The same script under MLCommons' module and ours: the files must agree
where LoadGen's behaviour is deterministic (settings, sample order with the
same seeds, counts, accuracy-log bytes, file names and formats)."""
import json
import re
from pathlib import Path

import pytest

from conftest import detail, run_script

# Keys whose values depend on the implementation, the machine or the clock.
VARYING = (
    "loadgen_", "logger_", "test_datetime", "get_sut_name_duration_ns", "power_begin",
    "power_end", "result_", "early_stopping_", "num_errors", "generated_query_duration",
)


def both(ours, reference, tmp_path, *args):
    out = {}
    for name, python in [("ours", ours), ("theirs", reference)]:
        outdir = tmp_path / name
        proc = run_script(python, "run_test.py", "--outdir", outdir, *args)
        out[name] = (outdir, proc)
    return out


def stable(path):
    """Key -> value of the lines both implementations must agree on. LoadGen's
    logger reports its own buffer growth ("Logging allocation detected"),
    which has no counterpart here."""
    return {
        k: v for k, v, _ in detail(path)
        if not k.startswith(VARYING) and not str(v).startswith("Logging allocation detected")
    }


def summary_labels(outdir):
    """The summary's lines with their values cut off (what precedes ':'),
    blank lines included: the layout both must share."""
    text = (outdir / "mlperf_log_summary.txt").read_text()
    labels = [line.split(":")[0].rstrip() for line in text.splitlines()]
    # LoadGen's logger warns about its own buffers ("Logging allocation
    # detected"), so the warning count differs: keep only that it is there.
    return [re.sub(r"^(No|\d+) warnings? encountered.*", "<warnings>", l) for l in labels]


SCENARIOS = [
    ("Offline", []),
    ("SingleStream", []),
    ("MultiStream", ["--samples-per-query", "4"]),
    ("Server", ["--qps", "500"]),
]


@pytest.mark.parametrize("scenario,extra", SCENARIOS)
@pytest.mark.parametrize("mode", ["PerformanceOnly", "AccuracyOnly", "SubmissionRun"])
def test_settings_counts_and_accuracy_bytes_match(ours, reference, tmp_path, scenario, extra, mode):
    runs = both(ours, reference, tmp_path, "--scenario", scenario, "--mode", mode, *extra)
    (mine, _), (theirs, _) = runs["ours"], runs["theirs"]
    names = sorted(p.name for p in theirs.iterdir())
    assert sorted(p.name for p in mine.iterdir() if p.name != "result.json") == names
    sm, st = stable(mine / "mlperf_log_detail.txt"), stable(theirs / "mlperf_log_detail.txt")
    assert set(st) <= set(sm), f"keys missing in ours: {sorted(set(st) - set(sm))}"
    for key in st:
        assert sm[key] == st[key], f"{key}: ours {sm[key]!r}, MLCommons {st[key]!r}"
    if mode != "PerformanceOnly" or scenario == "Offline":
        # Every sample answered at once: the accuracy logs are identical.
        assert (mine / "mlperf_log_accuracy.json").read_bytes() == (
            theirs / "mlperf_log_accuracy.json").read_bytes()
    assert summary_labels(mine) == summary_labels(theirs)


def test_token_metrics_match(ours, reference, tmp_path):
    runs = both(ours, reference, tmp_path, "--scenario", "Server", "--qps", "300", "--tokens", "5")
    (mine, _), (theirs, _) = runs["ours"], runs["theirs"]
    sm = stable(mine / "mlperf_log_detail.txt")
    st = stable(theirs / "mlperf_log_detail.txt")
    for key in ["requested_use_token_latencies", "requested_server_ttft_latency",
                "requested_server_tpot_latency", "generated_query_count"]:
        assert sm[key] == st[key], key
    token_keys = lambda p: {k for k, _, _ in detail(p) if "token" in k}
    assert token_keys(mine / "mlperf_log_detail.txt") >= token_keys(theirs / "mlperf_log_detail.txt")
    assert summary_labels(mine) == summary_labels(theirs)


@pytest.mark.parametrize("scenario", ["SingleStream", "Offline"])
def test_token_summaries_have_loadgens_lines(ours, reference, tmp_path, scenario):
    runs = both(ours, reference, tmp_path, "--scenario", scenario, "--tokens", "4")
    assert summary_labels(runs["ours"][0]) == summary_labels(runs["theirs"][0])


@pytest.mark.parametrize("scenario", ["Offline", "Server", "SingleStream"])
def test_accuracy_log_with_tokens_is_identical(ours, reference, tmp_path, scenario):
    # Offline adds token_count; the others also the first token's bytes.
    runs = both(ours, reference, tmp_path, "--scenario", scenario, "--mode", "AccuracyOnly",
                "--tokens", "3")
    (mine, _), (theirs, _) = runs["ours"], runs["theirs"]
    assert (mine / "mlperf_log_accuracy.json").read_bytes() == (
        theirs / "mlperf_log_accuracy.json").read_bytes()


def test_fast_sut_and_worker_threads_issue_the_same_samples(ours, reference, tmp_path):
    runs = both(ours, reference, tmp_path, "--scenario", "Offline", "--mode", "AccuracyOnly",
                "--fast", "--threads", "3")
    (mine, pm), (theirs, pt) = runs["ours"], runs["theirs"]
    key = lambda p: sorted(json.loads(p.read_text()), key=lambda e: e["qsl_idx"])
    assert key(mine / "mlperf_log_accuracy.json") == [
        dict(e, seq_id=e["seq_id"]) for e in key(theirs / "mlperf_log_accuracy.json")]
    assert pm.stdout.splitlines()[-1] == pt.stdout.splitlines()[-1]  # QSL load sets


def test_trace_file_has_loadgens_frame(ours, reference, tmp_path):
    runs = both(ours, reference, tmp_path, "--scenario", "Offline", "--trace")
    # MLCommons' trace is not always valid JSON (it writes args like
    # {"key":""loadgen_version""}), so both are read line by line: one event
    # per line between LoadGen's frame.
    for name in ["ours", "theirs"]:
        text = (runs[name][0] / "mlperf_log_trace.json").read_text()
        assert text.startswith('{"traceEvents":[\n')
        assert '{"name":"LastTrace"}\n],\n"displayTimeUnit":"ns",\n"otherData":{\n"ts":' in text
        assert text.endswith('"version":"MLPerf LoadGen v1.0"\n}\n}\n')
        begins = [json.loads(l.rstrip(",")) for l in text.splitlines()
                  if l.startswith('{"name":"Sample","cat":"default","ph":"b"')]
        assert begins and set(begins[0]["args"]) == {
            "sample_seq", "query_seq", "sample_idx", "issue_start_ns", "complete_ns"}
        ends = [l for l in text.splitlines() if l.startswith('{"name":"Sample","cat":"default","ph":"e", ')]
        assert len(ends) == len(begins)
    json.loads((runs["ours"][0] / "mlperf_log_trace.json").read_text())  # ours is valid JSON
    none = both(ours, reference, tmp_path / "no", "--scenario", "Offline")
    for name in ["ours", "theirs"]:
        assert (none[name][0] / "mlperf_log_trace.json").read_bytes() == b""


def test_user_conf_run_matches(ours, reference, tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("*.Offline.target_qps = 3000\n*.*.min_duration = 100\n"
                    "*.*.min_query_count = 50\nresnet50.*.performance_sample_count_override = 24\n")
    runs = both(ours, reference, tmp_path, "--scenario", "Offline", "--conf", f"{conf}:resnet50:1",
                "--total", "100", "--perf", "100")
    (mine, pm), (theirs, pt) = runs["ours"], runs["theirs"]
    sm = stable(mine / "mlperf_log_detail.txt")
    st = stable(theirs / "mlperf_log_detail.txt")
    for key in st:
        assert sm.get(key) == st[key], key
    assert pm.stdout.splitlines()[-1] == pt.stdout.splitlines()[-1] == "loaded [24]"


def test_samples_and_responses_stay_out_of_the_cycle_collector(ours, reference):
    runs = {name: json.loads(run_script(python, "gc_tracking.py").stdout)
            for name, python in [("ours", ours), ("theirs", reference)]}
    assert runs["ours"] == runs["theirs"] == {
        "sample": False, "response": False, "made_by_hand": [False] * 4}
