"""varsec.checkpoints: the one reader of torch.save files. Every way a file can be unusable is
one ModelError sentence naming it; a file that pickles code is refused without running it."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from varsec.checkpoints import check_recorded_hash, cpu_state, read_checkpoint, write_checkpoint
from varsec.errors import ModelError

WHAT = "varsec test checkpoint"


def _read(path, **kwargs):
    return read_checkpoint(path, WHAT, **kwargs)


def _one_sentence(info: pytest.ExceptionInfo, path) -> str:
    message = str(info.value)
    assert message.startswith(f"{path}") and message.endswith(".") and "\n" not in message
    return message


class _Payload:
    """Pickles to a call that would create a marker file (code, not data)."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_round_trip_of_tensors_and_plain_values(tmp_path):
    module = torch.nn.Linear(3, 2)
    payload = {"format": "varsec-test", "version": 1, "state_dict": cpu_state(module),
               "config": {"widths": [1, 2], "name": "x", "rate": 0.5, "flag": None}}
    write_checkpoint(tmp_path / "a.pt", payload)
    read = _read(tmp_path / "a.pt", kind="varsec-test", version=1)
    assert read["config"] == payload["config"]
    assert torch.equal(read["state_dict"]["weight"], module.weight.detach())
    assert not read["state_dict"]["weight"].requires_grad


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        write_checkpoint(tmp_path / "a.pt", {"x": 1})
    assert list(tmp_path.iterdir()) == []


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelError, match=f"^{tmp_path}/none.pt: no such {WHAT}.$"):
        _read(tmp_path / "none.pt")
    with pytest.raises(ModelError, match=f"^{tmp_path} is a directory, not a regular file.$"):
        _read(tmp_path)


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty or truncated"),
    ("half", "truncated or damaged archive"),
    (b"\x00garbage" * 10, "not a file torch.save wrote, or a damaged one"),
    (b"plain text, not a checkpoint", "not a file torch.save wrote, or a damaged one"),
    (b"hello world", "not a file torch.save wrote, or a damaged one"),
])
def test_damaged_and_foreign_bytes(tmp_path, content, reason):
    path = tmp_path / "bad.pt"
    if content == "half":
        write_checkpoint(path, {"w": torch.ones(1000)})
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(ModelError) as info:
        _read(path)
    assert _one_sentence(info, path) == f"{path}: not a readable {WHAT} ({reason})."


def test_a_pickle_of_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    _Payload.marker = str(marker)
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Payload()}, path)
    with pytest.raises(ModelError) as info:
        _read(path)
    assert _one_sentence(info, path) == (
        f"{path}: not a {WHAT}: it pickles io.open, and varsec reads only tensors and plain "
        "values from a checkpoint, never code (torch.load weights_only).")
    assert not marker.exists()
    with open(path, "rb") as handle:  # the file did hold that call: unpickled, it runs
        assert not marker.exists()
        handle.seek(0)
        torch.load(handle, weights_only=False)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's, on the raw pickle
def test_objects_outside_the_weights_allowlist_are_foreign(tmp_path):
    import numpy as np

    path = tmp_path / "numpy.pt"
    torch.save({"w": np.ones(3)}, path)
    with pytest.raises(ModelError, match=r"it pickles numpy\.\S+, and varsec reads only"):
        _read(path)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"w": 1}))  # a plain pickle: not torch.save's format
    with pytest.raises(ModelError, match="not a readable"):
        _read(raw)


@pytest.mark.parametrize(("payload", "found"), [
    ({"state_dict": {}}, "it has no format field"),
    ({"format": "varsec-other", "version": 1}, "format 'varsec-other'"),
    ([torch.ones(1)], "it holds a list"),
])
def test_a_file_of_another_format(tmp_path, payload, found):
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    with pytest.raises(ModelError) as info:
        _read(path, kind="varsec-test", version=1, hint="; try the other loader")
    assert _one_sentence(info, path) == f"{path}: not a {WHAT} ({found}); try the other loader."
    assert type(_read(path)) is type(payload)  # without a kind, whatever the file holds


def test_a_newer_format_version_asks_for_an_upgrade(tmp_path):
    path = tmp_path / "new.pt"
    torch.save({"format": "varsec-test", "version": 3}, path)
    assert _read(path, kind="varsec-test", version=3)["version"] == 3
    with pytest.raises(ModelError, match=f"^{path}: {WHAT} format version 3 is newer than this "
                                         r"varsec reads \(2\); upgrade varsec.$"):
        _read(path, kind="varsec-test", version=2)


def test_a_symlink_to_a_device_is_named_as_such(tmp_path):
    link = tmp_path / "zero.pt"
    os.symlink("/dev/zero", link)
    with pytest.raises(ModelError, match="which is a character device, not a regular file"):
        _read(link)


def test_recorded_hash():
    check_recorded_hash("a.pt", "abc", "abc")
    with pytest.raises(ModelError, match=r"^a.pt: weights do not match the hash recorded in the "
                                         r"file \(damaged or edited\?\).$"):
        check_recorded_hash("a.pt", "abc", "abd")
    with pytest.raises(ModelError, match="do not match"):
        check_recorded_hash("a.pt", None, "abd")
