"""`validate_data`, `summarize` and memory-mapped loading."""

from __future__ import annotations

import numpy as np
import pytest

import varsec.data.catalog as catalog_module
from varsec.data.catalog import Dataset, Interactions, ItemCatalog
from varsec.data.summary import gini, summarize
from varsec.data.validate import validate_data
from varsec.errors import DataError


def _dataset(split):
    catalog = ItemCatalog(item_ids=list("abcd"), images=np.zeros((4, 1, 2, 2), np.uint8),
                          categories=[0, 0, 1, 1], category_names=["x", "y"])
    log = Interactions(user=[0, 0, 0, 1, 1], item=[0, 1, 2, 0, 1], timestamp=[1, 2, 3, 1, 2],
                       user_ids=["u", "v"])
    return Dataset(catalog, log, split=split, cold_items=[3], meta={"simulated": True})


def test_gini_hand_computed():
    assert gini(np.array([1, 1, 1, 1])) == pytest.approx(0.0)
    # One of four holds everything: G = (n - 1) / n = 0.75.
    assert gini(np.array([0, 0, 0, 8])) == pytest.approx(0.75)
    # [1, 3]: sum over pairs |xi - xj| = 4, over 2 * n^2 * mean = 16: G = 0.25.
    assert gini(np.array([1, 3])) == pytest.approx(0.25)


def test_summary_of_a_dataset():
    summary = summarize(_dataset(np.array([0, 1, 2, 0, 2])))
    assert (summary.users, summary.interactions, summary.cold_items) == (2, 5, 1)
    assert summary.density == pytest.approx(5 / (2 * 3))
    assert summary.split_counts == {"train": 2, "validation": 1, "test": 2}
    text = "\n".join(summary.lines())
    assert "SIMULATED" in text and "density: 0.833333" in text


def test_validate_accepts_a_consistent_dataset():
    lines = validate_data(_dataset(np.array([0, 1, 2, 0, 2])))
    assert any(line.startswith("split: train 2") for line in lines)


def test_validate_rejects_two_test_items_for_a_user():
    with pytest.raises(DataError, match="more than one test interaction"):
        validate_data(_dataset(np.array([0, 2, 2, 0, 1])))


def test_validate_rejects_held_out_without_training():
    with pytest.raises(DataError, match="no training interaction"):
        validate_data(_dataset(np.array([0, 1, 2, 1, 2])))


def test_validate_rejects_unknown_split_codes():
    with pytest.raises(DataError, match=r"unknown codes \[7\]"):
        validate_data(_dataset(np.array([0, 1, 7, 0, 2])))


def test_large_images_are_memory_mapped(tmp_path, monkeypatch):
    dataset = _dataset(None)
    dataset.save(tmp_path / "d")
    monkeypatch.setattr(catalog_module, "MMAP_THRESHOLD_BYTES", 0)
    loaded = Dataset.load(tmp_path / "d")
    assert isinstance(loaded.catalog.images, np.memmap)
    assert np.array_equal(loaded.catalog.images, dataset.catalog.images)
