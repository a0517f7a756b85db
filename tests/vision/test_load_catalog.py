"""The vision commands open their --dataset through the one data resolver
(varsec.data.sources.open_source): a catalog, a dataset (its catalog) or a named source."""

from __future__ import annotations

import numpy as np
import pytest

from varsec.errors import ConfigError, DataError
from varsec.vision.commands import load_catalog


def test_a_dataset_directory_gives_its_catalog(tmp_path, fmnist_small):
    from varsec.data import simulate_and_split

    dataset = simulate_and_split(fmnist_small, "quick", seed=0)
    dataset.save(tmp_path / "data")
    fmnist_small.subset(np.arange(40)).save(tmp_path / "catalog")
    from_dataset = load_catalog(str(tmp_path / "data"), limit=7)
    assert len(from_dataset) == 7
    assert list(from_dataset.item_ids) == list(dataset.catalog.item_ids[:7])
    assert len(load_catalog(str(tmp_path / "catalog"))) == 40


def test_bad_sources_and_limits_are_one_sentence(tmp_path):
    with pytest.raises(DataError, match="nowhere: no such file or directory"):
        load_catalog(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="--limit must be at least 1, got 0"):
        load_catalog("fashion-mnist", limit=0)
