"""FromConfig: return codes and every resulting field equal MLCommons' on the
same files and calls, plus our warnings for what LoadGen skips silently."""
import json
import warnings

import pytest

import mlperf_loadgen as lg
from conftest import run_script

USER_CONF = """\
# a user.conf
resnet50.Offline.target_qps = 1234.5
*.Server.target_qps = 77
*.Server.target_latency = 0.5
*.*.min_query_count = 0x20
*.*.max_query_count = 010
*.*.qsl_rng_seed = 99
*.SingleStream.target_latency = 0.25
wan-2.2-t2v-a14b.*.min_duration = 1234
resnet50.MultiStream.samples_per_query = 16
*.*.min_duraton = 5
*.*.mode=1
"""


def compare(ours, reference, tmp_path, *specs):
    args = [s.replace("{tmp}", str(tmp_path)) for s in specs]
    mine = json.loads(run_script(ours, "dump_settings.py", *args).stdout)
    theirs = json.loads(run_script(reference, "dump_settings.py", *args).stdout)
    assert mine == theirs
    return mine


def write(tmp_path, name, text):
    (tmp_path / name).write_text(text)


@pytest.mark.parametrize("model,scenario", [
    ("resnet50", "Offline"), ("resnet50", "Server"), ("llama2-70b", "Server"),
    ("llama3.1-8b", "Offline"), ("bert-99", "SingleStream"), ("dlrm-v2-99.9", "Offline"),
    ("not-a-model", "MultiStream"),
])
def test_embedded_mlperf_conf(ours, reference, tmp_path, model, scenario):
    got = compare(ours, reference, tmp_path, f"x:{model}:{scenario}:0")
    assert got["codes"] == [0]


def test_user_conf_precedence_units_and_quirks(ours, reference, tmp_path):
    write(tmp_path, "user.conf", USER_CONF)
    for model in ["resnet50", "wan-2.2-t2v-a14b"]:
        for scenario in ["Offline", "Server", "MultiStream"]:
            got = compare(ours, reference, tmp_path, f"{{tmp}}/user.conf:{model}:{scenario}:1")
            assert got["codes"] == [0]


def test_the_embedded_conf_is_applied_once_per_process(ours, reference, tmp_path):
    write(tmp_path, "user.conf", USER_CONF)
    got = compare(ours, reference, tmp_path,
                  "{tmp}/user.conf:resnet50:Offline:1", "fresh",
                  "{tmp}/user.conf:resnet50:Offline:1")
    assert got["settings"]["qsl_rng_seed"] == 0


def test_conf_type_2_reads_the_file_alone(ours, reference, tmp_path):
    write(tmp_path, "user.conf", USER_CONF)
    compare(ours, reference, tmp_path, "{tmp}/user.conf:resnet50:Offline:2")
    compare(ours, reference, tmp_path, "{tmp}/user.conf:resnet50:Offline:2",
            "{tmp}/user.conf:resnet50:Offline:1")


@pytest.mark.parametrize("text", [
    "*.*.min_duration = fast\n",
    "*.*.min_query_count = 3 # three\n",
    "*.Offline.target_qps 5\n",
    "*.*.min_query_count = 5\n*.*.max_query_count = 1,5\n",
])
def test_a_bad_file_is_refused_whole(ours, reference, tmp_path, text):
    write(tmp_path, "bad.conf", text)
    got = compare(ours, reference, tmp_path, "{tmp}/bad.conf:m:Offline:2")
    assert got["codes"] == [-22]
    got = compare(ours, reference, tmp_path, "{tmp}/bad.conf:resnet50:Offline:1")
    assert got["codes"] == [-22]


def test_a_missing_file(ours, reference, tmp_path):
    got = compare(ours, reference, tmp_path, "{tmp}/none.conf:resnet50:Offline:1")
    assert got["codes"] == [-2]
    assert got["settings"]["min_query_count"] == 24576  # the embedded conf came first


def test_each_skipped_line_is_a_warning_naming_file_line_and_key(tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text(USER_CONF)
    ts = lg.TestSettings()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ts.FromConfig(str(conf), "resnet50", "Offline", 2) == 0
    messages = [str(w.message) for w in caught]
    assert any(f"{conf}:7: key '*.*.qsl_rng_seed'" in m and "embedded" in m for m in messages), messages
    assert any(f"{conf}:11: key '*.*.min_duraton'" in m for m in messages), messages
    assert any(f"{conf}:12: key '*.*.mode=1'" in m and "spaces" in m for m in messages), messages
    assert all(w.filename == __file__ for w in caught), "the warning points at the caller"
    bad = tmp_path / "bad.conf"
    bad.write_text("*.*.min_duration = fast\n")
    with pytest.warns(UserWarning, match=r"bad.conf:1: key '\*\.\*\.min_duration'"):
        assert ts.FromConfig(str(bad), "m", "Offline", 2) == -22
