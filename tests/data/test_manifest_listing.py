"""A saved directory's manifest must list every file in it: an unlisted file (e.g. one whose
entry was deleted to switch its check off) fails loading and `varsec data validate`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from varsec.cli import main
from varsec.data.catalog import Dataset, Interactions, ItemCatalog
from varsec.errors import ChecksumError, DataError


def _dataset() -> Dataset:
    rng = np.random.default_rng(2)
    catalog = ItemCatalog(item_ids=[f"i{k}" for k in range(6)],
                          images=rng.integers(0, 256, (6, 1, 4, 4), dtype=np.uint8),
                          categories=np.arange(6) % 2, category_names=["shoe", "bag"])
    log = Interactions.from_ids(["u1", "u1", "u1", "u2", "u2", "u2"],
                                ["i0", "i1", "i2", "i1", "i2", "i3"], catalog,
                                timestamps=[1, 2, 3, 1, 2, 3])
    return Dataset(catalog, log, split=np.array([0, 1, 2, 0, 1, 2]), cold_items=np.array([4, 5]),
                   oracle=np.array([[0.5, -1.0], [2.0, 0.25]]))


def _drop_entry(directory, name) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["files"][name]
    path.write_text(json.dumps(manifest))


@pytest.fixture
def saved(tmp_path):
    return _dataset().save(tmp_path / "d")


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("verify", [True, False])
def test_a_file_whose_entry_was_deleted_fails_loading(saved, verify):
    np.save(saved / "oracle.npy", np.zeros((2, 2), dtype=np.float32))
    _drop_entry(saved, "oracle.npy")
    with pytest.raises(ChecksumError, match="oracle.npy: not listed in .*manifest.json"):
        Dataset.load(saved, verify=verify)


def test_validate_rejects_a_zeroed_file_without_an_entry(saved, capsys):
    np.save(saved / "oracle.npy", np.zeros((2, 2), dtype=np.float32))
    _drop_entry(saved, "oracle.npy")
    assert main(["data", "validate", str(saved)]) == 2
    line = _one_error_line(capsys)
    assert str(saved / "oracle.npy") in line and "not listed" in line
    assert "valid" not in capsys.readouterr().out


def test_any_unlisted_regular_file_fails_even_a_readme(saved, capsys):
    (saved / "README.txt").write_text("notes")
    with pytest.raises(ChecksumError, match="README.txt: not listed"):
        Dataset.load(saved)
    assert main(["data", "validate", str(saved)]) == 2
    assert "README.txt: not listed" in _one_error_line(capsys)
    assert (saved / "README.txt").read_text() == "notes"  # reported, never removed


def test_a_required_file_removed_with_its_entry_is_named(saved):
    (saved / "interactions.parquet").unlink()
    _drop_entry(saved, "interactions.parquet")
    with pytest.raises(ChecksumError, match="no entry for interactions.parquet"):
        Dataset.load(saved)


def test_an_optional_file_removed_with_its_entry_is_a_dataset_without_it(saved):
    (saved / "oracle.npy").unlink()
    _drop_entry(saved, "oracle.npy")
    assert Dataset.load(saved).oracle is None


def test_catalogs_are_checked_the_same_way(tmp_path):
    directory = _dataset().catalog.save(tmp_path / "c")
    _drop_entry(directory, "images.npy")
    with pytest.raises(ChecksumError, match="images.npy: not listed"):
        ItemCatalog.load(directory)


def test_a_manifest_without_a_files_table_is_a_data_error(saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["files"] = ["items.parquet"]
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="expected a 'files' table"):
        Dataset.load(saved)
