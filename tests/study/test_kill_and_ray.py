"""Kill-safety (SIGKILL / SIGINT mid-grid, then rerun: the same rows) and the Ray executor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from study_standins import FAKE_STUDY, fake_stages

from varsec.study.runner import run_study
from varsec.study.schema import load_study_text

HERE = Path(__file__).resolve().parent
# A shell's background job inherits SIGINT ignored, and Python then keeps it ignored: restore
# the interpreter's usual handler so the SIGINT case also holds when the suite runs in one.
SCRIPT = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {here!r})
from study_standins import FAKE_STUDY, fake_stages
from varsec.study.runner import run_study
from varsec.study.schema import load_study_text

with fake_stages():
    run_study(load_study_text(FAKE_STUDY), sys.argv[1], log=None, report=False)
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """results.csv of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    with fake_stages():
        run_study(load_study_text(FAKE_STUDY), out, log=None, report=False)
    return (out / "results.csv").read_bytes()


def _start(out: Path, delay: float) -> subprocess.Popen:
    script = out.parent / f"{out.name}-run.py"
    script.write_text(SCRIPT.format(here=str(HERE)))
    env = {**os.environ, "VARSEC_FAKE_DELAY": str(delay)}
    return subprocess.Popen([sys.executable, str(script), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _done(out: Path) -> int:
    # Only finished stage directories: a temporary one (hidden name) may hold DONE a moment
    # before it is renamed into place.
    return sum(1 for p in (out / "cache").glob("*/*/DONE") if not p.parent.name.startswith("."))


def _wait_for_done(process: subprocess.Popen, out: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while _done(out) < count:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_rows(sig, tmp_path, reference):
    out = tmp_path / "run"
    process = _start(out, delay=0.3)
    _wait_for_done(process, out, 2)
    process.send_signal(sig)
    process.wait(timeout=60)
    finished = _done(out)
    total = len(run_study.__globals__["plan_study"](load_study_text(FAKE_STUDY)))
    assert 2 <= finished < total, "the kill must land mid-grid"
    assert not (out / "results.csv").exists()
    if sig == signal.SIGINT:  # interrupted cleanly: no temporary directory is left behind
        assert not list((out / "cache").glob("*/.*"))
    rerun = _start(out, delay=0.0)
    assert rerun.wait(timeout=120) == 0, rerun.stderr.read().decode()
    assert (out / "results.csv").read_bytes() == reference
    assert _done(out) == total
    assert not list((out / "cache").glob("*/.*"))


# Stand-in stages (orchestration only); test_ray_real.py compares real stages' numbers.
def test_the_ray_executor_gives_the_local_rows(tmp_path, reference):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'varsec[ray]')")
    config = load_study_text(FAKE_STUDY + "executor: {kind: ray, num_cpus: 2}\n")
    with fake_stages():
        result = run_study(config, tmp_path, log=None, report=False)
    assert result.count("done") == len(result.plan)
    assert (tmp_path / "results.csv").read_bytes() == reference
