"""Atomic writes: nothing half-written under the final name, no temporary entry left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from varsec.io import atomic_dir, atomic_path


def _siblings(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_atomic_path_replaces_the_target_only_on_success(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".a.txt.") and tmp.exists()
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert _siblings(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_path_leaves_the_target_and_no_temporary_file_on_failure(tmp_path, error):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(error), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise error
    assert target.read_text() == "old"
    assert _siblings(tmp_path) == ["a.txt"]


def test_atomic_dir_swaps_a_whole_directory(tmp_path):
    target = tmp_path / "stage"
    target.mkdir()
    (target / "stale.txt").write_text("x")
    with atomic_dir(target) as tmp:
        (tmp / "DONE").write_text("")
    assert _siblings(target) == ["DONE"]
    assert _siblings(tmp_path) == ["stage"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_dir_leaves_nothing_on_failure(tmp_path, error):
    with pytest.raises(error), atomic_dir(tmp_path / "stage") as tmp:
        (tmp / "part").write_text("half")
        raise error
    assert _siblings(tmp_path) == []


def test_an_interrupt_right_after_the_temporary_directory_exists_leaves_nothing(tmp_path,
                                                                                monkeypatch):
    # The signal arriving just after the directory is created (the window a SIGINT hit in CI).
    real_mkdir = Path.mkdir

    def mkdir_then_interrupt(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        if self.name.endswith(".tmp"):
            raise KeyboardInterrupt

    monkeypatch.setattr(Path, "mkdir", mkdir_then_interrupt)
    with pytest.raises(KeyboardInterrupt), atomic_dir(tmp_path / "stage"):
        pass
    assert _siblings(tmp_path) == []
