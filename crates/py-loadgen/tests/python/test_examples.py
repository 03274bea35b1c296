"""Scripts of the kind MLPerf's references are (examples/), run unchanged on
MLCommons' module and on ours: VALID on both, and energy in ours."""
import json
from pathlib import Path

import pytest

from conftest import run_script

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(python, name, outdir, *args, env=None):
    # An absolute path: run_script's scripts/ folder does not apply.
    return run_script(python, EXAMPLES / name, "--outdir", outdir, *args, env=env)


def verdict(outdir):
    return next(l for l in (outdir / "mlperf_log_summary.txt").read_text().splitlines()
                if l.startswith("Result is"))


ENERGY = {"JOULEBENCH_POWER": "estimate", "JOULEBENCH_TDP": "65"}


@pytest.mark.parametrize("example,args", [
    ("vision_onnx.py", ["--scenario", "Offline"]),
    ("vision_onnx.py", ["--scenario", "SingleStream"]),
    ("llm_tokens.py", ["--scenario", "Server"]),
    ("llm_tokens.py", ["--scenario", "Offline"]),
])
def test_reference_style_scripts_run_unchanged_and_valid(ours, reference, tmp_path, example, args):
    assert (EXAMPLES / example).is_file()
    for name, python, env in [("theirs", reference, None), ("ours", ours, ENERGY)]:
        outdir = tmp_path / name
        proc = run_example(python, example, outdir, *args, env=env)
        assert verdict(outdir) == "Result is : VALID", (name, proc.stdout[-3000:])
    result = json.loads((tmp_path / "ours" / "result.json").read_text())
    assert result["power"]["meters"][0]["energy_j"] > 0
    assert "energy over the timed window" in proc.stdout  # copy_summary_to_stdout


def test_vision_accuracy_logs_are_identical(ours, reference, tmp_path):
    for name, python in [("theirs", reference), ("ours", ours)]:
        run_example(python, "vision_onnx.py", tmp_path / name, "--mode", "AccuracyOnly")
    key = lambda p: sorted(json.loads(p.read_text()), key=lambda e: e["qsl_idx"])
    assert key(tmp_path / "ours" / "mlperf_log_accuracy.json") == key(
        tmp_path / "theirs" / "mlperf_log_accuracy.json")
