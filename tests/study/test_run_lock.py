"""The run lock of an output directory: atomic, pid + start time, stale locks taken over, and
every failure to take it a one-line ConfigError."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess

import pytest
from study_standins import FAKE_STUDY, fake_stages

from varsec.errors import ConfigError
from varsec.study import cache as cache_module
from varsec.study.cache import LOCK, RunLock
from varsec.study.runner import run_study
from varsec.study.schema import load_study_text


def _lock(out, pid, start, host=None) -> None:
    host = socket.gethostname() if host is None else host
    (out / LOCK).write_text(json.dumps({"pid": pid, "host": host, "start": start}))


def _leftovers(out) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(LOCK))


def test_the_lock_names_pid_host_and_start_time_and_is_removed_on_exit(tmp_path):
    with RunLock(tmp_path):
        owner = json.loads((tmp_path / LOCK).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert owner["start"] == cache_module._start_token(os.getpid())
        assert _leftovers(tmp_path) == [LOCK]  # no temporary file beside it
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("pid", ["own", "parent"])
def test_a_reused_pid_with_another_start_time_is_a_stale_lock(tmp_path, pid):
    # The pid is alive (our own, or our parent's) but the lock was taken by a process that
    # started at another time: a reused pid.
    _lock(tmp_path, os.getpid() if pid == "own" else os.getppid(), "other-boot:12345")
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("content", ["", "garbage", "999999999", '{"pid": 999999999}',
                                     str(os.getpid())])
def test_empty_unreadable_and_dead_owner_locks_are_taken_over(tmp_path, content):
    (tmp_path / LOCK).write_text(content)
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()


def test_a_live_run_holds_the_lock_and_the_message_says_how_to_proceed(tmp_path):
    process = subprocess.Popen(["sleep", "30"])
    try:
        _lock(tmp_path, process.pid, cache_module._start_token(process.pid))
        with pytest.raises(ConfigError) as info, RunLock(tmp_path):
            pass
    finally:
        process.kill()
        process.wait()
    message = str(info.value)
    assert f"another varsec run (pid {process.pid})" in message
    assert f"delete {tmp_path / LOCK} and run again" in message and "\n" not in message
    assert (tmp_path / LOCK).is_file()  # a live run's lock is left alone


def test_an_older_bare_pid_lock_of_a_live_process_is_respected(tmp_path):
    (tmp_path / LOCK).write_text(str(os.getppid()))
    with pytest.raises(ConfigError, match=f"pid {os.getppid()}"), RunLock(tmp_path):
        pass


def test_a_lock_from_another_host_is_respected(tmp_path):
    _lock(tmp_path, 1, "boot:1", host="elsewhere.example")
    with pytest.raises(ConfigError, match="pid 1 on host elsewhere.example"), RunLock(tmp_path):
        pass


def test_the_same_directory_cannot_be_locked_twice(tmp_path):
    with RunLock(tmp_path), pytest.raises(ConfigError, match="another varsec run"), \
            RunLock(tmp_path):
        pass
    assert _leftovers(tmp_path) == []


def test_a_full_disk_leaves_no_lock_and_is_one_line(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module.os, "fsync", full)
    with pytest.raises(ConfigError) as info, RunLock(tmp_path):
        pass
    assert str(tmp_path / LOCK) in str(info.value) and "No space left" in str(info.value)
    assert _leftovers(tmp_path) == []


def test_an_output_path_that_is_a_file_is_one_config_error(tmp_path):
    out = tmp_path / "results.txt"
    out.write_text("mine")
    with fake_stages(), pytest.raises(ConfigError, match="results.txt") as info:
        run_study(load_study_text(FAKE_STUDY), out, log=None, report=False)
    assert "\n" not in str(info.value)
    assert out.read_text() == "mine"


def test_an_unwritable_directory_is_one_config_error(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(cache_module, "open", denied, raising=False)
    with pytest.raises(ConfigError, match="Permission denied.*writable directory"), \
            RunLock(tmp_path):
        pass
    assert _leftovers(tmp_path) == []
