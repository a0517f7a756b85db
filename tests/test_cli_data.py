"""`varsec data ...` end to end: simulate/validate/info, and bad input as one `error:` line."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from varsec.cli import main


def _single_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_simulate_validate_info_round_trip(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["data", "simulate", "--profile", "quick", "--seed", "1", "--out", str(out)]) == 0
    assert "written to" in capsys.readouterr().out
    assert main(["data", "validate", str(out)]) == 0
    assert f"{out}: valid" in capsys.readouterr().out
    assert main(["data", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "users: 500" in text and "SIMULATED" in text and "5-core filter" in text


def test_unknown_profile_writes_nothing(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["data", "simulate", "--profile", "huge", "--out", str(out)]) == 2
    assert "huge" in _single_error_line(capsys)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_corrupted_dataset_fails_validation(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["data", "simulate", "--out", str(out)]) == 0
    capsys.readouterr()
    target = out / "interactions.parquet"
    target.write_bytes(target.read_bytes()[:-5] + b"xxxxx")
    assert main(["data", "validate", str(out)]) == 2
    assert "interactions.parquet: sha256 does not match" in _single_error_line(capsys)


def _bad_b_file(tmp_path):
    path = tmp_path / "image_features_x.b"
    path.write_bytes(b"A000000001" + struct.pack("<3f", 1, 2, 3))
    return path, "is not a multiple of the 16394-byte record"


def _pickled_npy(tmp_path):
    path = tmp_path / "dvbpr.npy"
    array = np.empty(6, dtype=object)
    array[:] = [{}, {}, {}, [], 0, 0]
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=True)
    return path, "--trust-pickle"


def _folder_missing_column(tmp_path):
    root = tmp_path / "shop"
    root.mkdir()
    (root / "items.csv").write_text("item_id,category\na,shoe\n")
    (root / "interactions.csv").write_text("user_id,item_id\nu,a\n")
    return root, "image"


def _not_an_image(tmp_path):
    root = tmp_path / "shop"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"this is text, not a picture")
    (root / "items.csv").write_text("item_id,image,category\na,images/a.png,shoe\n")
    (root / "interactions.csv").write_text("user_id,item_id\nu,a\n")
    return root, "a.png"


def _unknown_format(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    return path, "notes.txt"


@pytest.mark.parametrize(
    "make", [_bad_b_file, _pickled_npy, _folder_missing_column, _not_an_image, _unknown_format]
)
def test_bad_sources_give_one_error_line(tmp_path, capsys, make):
    path, needle = make(tmp_path)
    assert main(["data", "info", str(path)]) == 2
    assert needle in _single_error_line(capsys)


def test_trust_pickle_flag_reaches_the_loader(tmp_path, capsys):
    path, _ = _pickled_npy(tmp_path)
    assert main(["data", "info", "--trust-pickle", str(path)]) == 2
    # The file was unpickled this time: the error is about its (empty) content, not trust.
    assert "--trust-pickle" not in _single_error_line(capsys)


def test_fetch_finds_the_local_copy(capsys):
    assert main(["data", "fetch", "fashion-mnist"]) == 0
    assert "70,000 items verified" in capsys.readouterr().out
