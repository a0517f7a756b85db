"""Atomic writes: nothing half-written under the final name, no temporary entry left behind."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from varsec.errors import ConfigError, VarsecError
from varsec.io import (
    WriteError,
    atomic_dir,
    atomic_path,
    check_writable,
    output_kind,
    save_npy_atomic,
    write_json_atomic,
    write_output_manifest,
)


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


# -- output directories: never replace what varsec did not write --------------------------------


def _manifest(directory: Path, kind: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(json.dumps({"format": "varsec", "kind": kind}))


def test_atomic_dir_refuses_a_non_empty_directory_that_varsec_did_not_write(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match=r"out is a non-empty directory \(not a varsec "
                       r"dataset output\).*--force"), atomic_dir(target, kind="dataset"):
        raise AssertionError("the block must not run")
    assert (target / "thesis.tex").read_text() == "years of work"
    assert _siblings(tmp_path) == ["out"]


def test_atomic_dir_replaces_its_own_kind_of_output(tmp_path):
    target = tmp_path / "out"
    _manifest(target, "dataset")
    (target / "old.npy").write_text("old")
    with atomic_dir(target, kind="dataset") as tmp:
        _manifest(tmp, "dataset")
    assert _siblings(target) == ["manifest.json"]
    assert _siblings(tmp_path) == ["out"]


def test_atomic_dir_refuses_a_varsec_output_of_another_kind(tmp_path):
    target = tmp_path / "out"
    _manifest(target, "catalog")
    with pytest.raises(ConfigError, match=r"\(a varsec catalog output\)"), atomic_dir(
            target, kind="dataset"):
        raise AssertionError("the block must not run")
    assert _siblings(target) == ["manifest.json"]


def test_atomic_dir_overwrite_replaces_any_directory(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("x")
    with atomic_dir(target, kind="dataset", overwrite=True) as tmp:
        (tmp / "new").write_text("")
    assert _siblings(target) == ["new"]
    assert _siblings(tmp_path) == ["out"]


def test_atomic_dir_accepts_an_empty_directory(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    with atomic_dir(target, kind="dataset") as tmp:
        (tmp / "new").write_text("")
    assert _siblings(target) == ["new"]


@pytest.mark.parametrize("kind", [None, "dataset"])
def test_atomic_dir_refuses_an_existing_file_and_never_moves_it(tmp_path, kind):
    target = tmp_path / "out"
    target.write_bytes(b"\x00user data\xff")
    with pytest.raises(ConfigError, match="out is a file, not a directory"), atomic_dir(
            target, kind=kind):
        raise AssertionError("the block must not run")
    assert target.read_bytes() == b"\x00user data\xff"
    assert _siblings(tmp_path) == ["out"]


def test_a_users_dot_old_entry_survives_the_swap(tmp_path):
    target = tmp_path / "out"
    _manifest(target, "dataset")
    user = tmp_path / ".out.old"
    user.mkdir()
    (user / "keep.txt").write_text("mine")
    with atomic_dir(target, kind="dataset") as tmp:
        _manifest(tmp, "dataset")
        (tmp / "new").write_text("")
    assert (user / "keep.txt").read_text() == "mine"
    assert _siblings(tmp_path) == [".out.old", "out"]
    assert _siblings(target) == ["manifest.json", "new"]


def test_a_failed_swap_puts_the_old_output_back(tmp_path, monkeypatch):
    target = tmp_path / "out"
    _manifest(target, "dataset")
    (target / "old.npy").write_text("old")
    real_replace = os.replace

    def replace(src, dst):
        if Path(src).name.endswith(".tmp"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="cross-device"), atomic_dir(target, kind="dataset") as tmp:
        (tmp / "new").write_text("")
    assert (target / "old.npy").read_text() == "old"
    assert _siblings(tmp_path) == ["out"]


def test_a_directory_that_appears_during_the_block_is_not_replaced(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(ConfigError, match="not a varsec dataset output"), atomic_dir(
            target, kind="dataset") as tmp:
        (tmp / "new").write_text("")
        target.mkdir()
        (target / "made-meanwhile.txt").write_text("user")
    assert (target / "made-meanwhile.txt").read_text() == "user"
    assert _siblings(tmp_path) == ["out"]


def test_atomic_path_refuses_a_directory_before_the_block(tmp_path):
    target = tmp_path / "model.pt"
    target.mkdir()
    (target / "inside").write_text("x")
    with pytest.raises(ConfigError, match="model.pt is a directory; expected a file path"), \
            atomic_path(target):
        raise AssertionError("the block must not run")
    assert _siblings(target) == ["inside"]


def test_output_kind_reads_both_manifest_styles(tmp_path):
    _manifest(tmp_path / "d", "dataset")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "manifest.json").write_text('{"format": "varsec-attack", "version": 2}')
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text("not json")
    assert output_kind(tmp_path / "d") == "dataset"
    assert output_kind(tmp_path / "a") == "attack"
    assert output_kind(tmp_path / "x") is None
    assert output_kind(tmp_path / "missing") is None


def test_write_output_manifest_records_every_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.bin").write_bytes(b"a")
    (tmp_path / "b.json").write_text("{}")
    write_output_manifest(tmp_path, "defense", {"n": 1})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["kind"] == "defense" and manifest["format"] == "varsec"
    assert sorted(manifest["files"]) == ["b.json", "sub/a.bin"]
    assert manifest["info"] == {"n": 1} and output_kind(tmp_path) == "defense"


def test_check_writable_consults_the_nearest_existing_ancestor(tmp_path, monkeypatch):
    real_access = os.access
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if Path(path) == locked else real_access(path, mode, **kw)))
    with pytest.raises(ConfigError, match=f"cannot write {locked}/a/b.npy: directory {locked} "
                       "is not writable"):
        check_writable(locked / "a" / "b.npy")
    check_writable(tmp_path / "free" / "b.npy")


def test_check_writable_refuses_a_file_on_the_way(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"cannot create .*f/sub/out: .*f is a file"):
        check_writable(tmp_path / "f" / "sub" / "out")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        write_json_atomic(tmp_path / "f" / "x.json", {})
    assert (tmp_path / "f").read_text() == "x"


# -- disk full, permission denied: one sentence naming the file, nothing left behind -----------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_in_save_npy_atomic_is_one_sentence_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "save", _enospc)
    target = tmp_path / "big.npy"
    with pytest.raises(WriteError) as caught:
        save_npy_atomic(target, np.zeros(3))
    assert str(caught.value) == f"cannot write {target}: no space left on device."
    assert isinstance(caught.value, VarsecError)
    assert _siblings(tmp_path) == []


def test_a_full_disk_inside_atomic_dir_names_the_final_file(tmp_path, monkeypatch):
    target = tmp_path / "out"

    def write_text(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(WriteError, match=f"^cannot write {target}/metrics.json: no space left "
                       "on device.$"), atomic_dir(target, kind="defense") as tmp:
        write_json_atomic(tmp / "metrics.json", {})
    assert _siblings(tmp_path) == []


@pytest.mark.parametrize("code, reason", [(errno.EACCES, "permission denied"),
                                          (errno.EROFS, "read-only file system"),
                                          (errno.EDQUOT, "disk quota exceeded")])
def test_other_write_failures_become_write_errors(tmp_path, monkeypatch, code, reason):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(json, "dumps", fail)
    with pytest.raises(WriteError, match=f"x.json: {reason}.$"):
        write_json_atomic(tmp_path / "x.json", {})
    assert _siblings(tmp_path) == []


def test_errors_of_the_callers_code_are_not_disguised(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "x") as tmp:
        tmp.write_text("")
        open(tmp_path / "missing-input")  # noqa: SIM115
    assert _siblings(tmp_path) == []


def test_a_really_full_disk_in_save_npy_atomic(small_disk):
    target = small_disk / "big.npy"
    with pytest.raises(WriteError, match=f"^cannot write {target}: no space left on device.$"):
        save_npy_atomic(target, np.zeros(100_000))
    assert _siblings(small_disk) == []


def test_atomic_dir_writes_through_a_symbolic_link(tmp_path):
    real = tmp_path / "disk" / "out"
    _manifest(real, "dataset")
    link = tmp_path / "out"
    link.symlink_to(real)
    with atomic_dir(link, kind="dataset") as tmp:
        _manifest(tmp, "dataset")
        (tmp / "new").write_text("")
    assert link.is_symlink() and _siblings(real) == ["manifest.json", "new"]
    assert _siblings(tmp_path / "disk") == ["out"]
