"""Shared fixtures: our module is the one this interpreter imports;
MLCommons' (PyPI mlcommons-loadgen) lives in the interpreter REFERENCE_PYTHON
names, and comparisons run the same script under both."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SCRIPTS = HERE / "scripts"


def reference_python():
    ref = os.environ.get("REFERENCE_PYTHON")
    if not ref:
        pytest.skip(
            "SKIPPED LOUDLY: REFERENCE_PYTHON (a Python with PyPI's mlcommons-loadgen) is not set; "
            "`cargo test -p py-loadgen` sets it up"
        )
    return ref


def run_script(python, script, *args, env=None, check=True, cwd=None):
    """Runs scripts/<script> under `python`; returns the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.setdefault("JOULEBENCH_POWER", "none")
    full_env.update(env or {})
    proc = subprocess.run(
        [python, str(SCRIPTS / script), *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{python} {script} {' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def detail(path):
    """The :::MLLOG lines of a detail log, as (key, value, metadata) tuples."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line.startswith(":::MLLOG "):
            d = json.loads(line[len(":::MLLOG "):])
            out.append((d["key"], d["value"], d["metadata"]))
    return out


def detail_values(path):
    """Key -> last value logged under it."""
    return {k: v for k, v, _ in detail(path)}


@pytest.fixture
def ours():
    return sys.executable


@pytest.fixture
def reference():
    return reference_python()
