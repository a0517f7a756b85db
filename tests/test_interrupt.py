"""An interrupted command (Ctrl-C / SIGINT, SIGTERM) ends with one final `error:` line, exit 130.

Typer turns a KeyboardInterrupt inside a command into a silent exit status 130, and SIGTERM
used to end any command but ``run`` without a word; both now end with a final line, and
``varsec run`` says where its finished stages are and how to resume.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from varsec.cli import main

STUDY_TESTS = Path(__file__).resolve().parent / "study"
# A shell's background job inherits SIGINT ignored (and Python keeps it so): restore the usual
# handler so that SIGINT reaches the command when the suite itself runs in the background.
RUN_SCRIPT = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {here!r})
from study_standins import FAKE_STUDY, fake_stages
from varsec.cli import main

with open(sys.argv[1], "w") as handle:
    handle.write(FAKE_STUDY)
with fake_stages():
    sys.exit(main(["run", sys.argv[1], "--out", sys.argv[2]]))
"""
# `varsec data info` whose loading blocks until a signal arrives (a stand-in for a slow source).
INFO_SCRIPT = """
import signal
import sys
import time
signal.signal(signal.SIGINT, signal.default_int_handler)
import varsec.data.sources
from varsec.cli import main

def slow_source(*args, **kwargs):
    open(sys.argv[1], "w").close()
    time.sleep(60)

varsec.data.sources.open_source = slow_source
sys.exit(main(["data", "info", "anything"]))
"""


def _wait_for(process: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline, f"{what} did not get going"
        time.sleep(0.02)


def _stop(process: subprocess.Popen, sig: signal.Signals) -> tuple[int, list[str]]:
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    return process.returncode, err.decode().splitlines()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_ends_with_one_line_that_says_how_to_resume(sig, tmp_path):
    script, study, out = tmp_path / "run.py", tmp_path / "fake.yaml", tmp_path / "out"
    script.write_text(RUN_SCRIPT.format(here=str(STUDY_TESTS)))
    env = {**os.environ, "VARSEC_FAKE_DELAY": "0.3"}
    process = subprocess.Popen([sys.executable, str(script), str(study), str(out)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(process, lambda: any((out / "cache").glob("*/*/DONE")), "the run")
    status, lines = _stop(process, sig)
    assert status == 130
    assert lines[-1] == (f"error: interrupted; finished stages are kept in {out}, run the same "
                         "command again to resume.")
    assert "Traceback" not in "\n".join(lines)
    assert not (out / "results.csv").exists()
    assert not list((out / "cache").glob("*/.*")), "a temporary stage directory was left"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_any_interrupted_command_ends_with_one_line(sig, tmp_path):
    script, ready = tmp_path / "info.py", tmp_path / "ready"
    script.write_text(INFO_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), str(ready)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(process, ready.exists, "data info")
    status, lines = _stop(process, sig)
    assert (status, lines) == (130, ["error: interrupted."])


def test_a_keyboard_interrupt_inside_a_command_is_reported(monkeypatch, capsys):
    import varsec.data.sources

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(varsec.data.sources, "open_source", interrupted)
    assert main(["data", "info", "anything"]) == 130
    assert capsys.readouterr().err.splitlines() == ["error: interrupted."]


def test_the_run_hint_uses_the_default_output_directory(tmp_path, monkeypatch):
    from varsec.cli import _interrupt_line

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("study: named\n")
    assert _interrupt_line(["run", "s.yaml"]) == (
        f"error: interrupted; finished stages are kept in {Path('runs') / 'named'}, run the "
        "same command again to resume.")
    assert _interrupt_line(["run", "missing.yaml"]) == "error: interrupted."
    assert _interrupt_line(["attack", "--out", "a"]) == (
        "error: interrupted; finished chunks are kept in a, run the same command with --resume "
        "to continue.")
