"""ItemCatalog, Interactions and Dataset: validation, persistence, hashing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from varsec.data.catalog import Dataset, Interactions, ItemCatalog
from varsec.errors import ChecksumError, DataError


def _catalog(n=6, name="tiny"):
    rng = np.random.default_rng(1)
    return ItemCatalog(
        item_ids=[f"i{k}" for k in range(n)],
        images=rng.integers(0, 256, (n, 1, 4, 4), dtype=np.uint8),
        categories=np.arange(n) % 2,
        category_names=["shoe", "bag"],
        extra=pd.DataFrame({"source_split": ["train"] * (n - 1) + ["test"]}),
        name=name,
    )


def _dataset():
    catalog = _catalog()
    log = Interactions.from_ids(
        ["u1", "u1", "u1", "u2", "u2", "u2"], ["i0", "i1", "i2", "i1", "i2", "i3"], catalog,
        timestamps=[1, 2, 3, 1, 2, 3],
    )
    return Dataset(
        catalog, log, split=np.array([0, 1, 2, 0, 1, 2]), cold_items=np.array([4, 5]),
        oracle=np.array([[0.5, -1.0], [2.0, 0.25]]), meta={"simulated": True, "seed": 3},
    )


def test_dataset_round_trips_bit_for_bit(tmp_path):
    dataset = _dataset()
    dataset.save(tmp_path / "d")
    loaded = Dataset.load(tmp_path / "d")
    assert np.array_equal(loaded.catalog.images, dataset.catalog.images)
    assert loaded.catalog.item_ids.tolist() == dataset.catalog.item_ids.tolist()
    assert np.array_equal(loaded.catalog.categories, dataset.catalog.categories)
    assert loaded.catalog.extra["source_split"].tolist() == ["train"] * 5 + ["test"]
    for field in ("user", "item", "timestamp"):
        assert np.array_equal(getattr(loaded.interactions, field),
                              getattr(dataset.interactions, field))
    assert loaded.interactions.user_ids.tolist() == ["u1", "u2"]
    assert np.array_equal(loaded.split, dataset.split)
    assert np.array_equal(loaded.cold_items, dataset.cold_items)
    assert np.array_equal(loaded.oracle, dataset.oracle)
    assert loaded.meta == {"simulated": True, "seed": 3}
    assert loaded.content_hash() == dataset.content_hash()
    # Saving the loaded copy again yields byte-identical files.
    loaded.save(tmp_path / "e")
    for name in ("images.npy", "cold_items.npy", "oracle.npy", "interactions.parquet"):
        assert (tmp_path / "d" / name).read_bytes() == (tmp_path / "e" / name).read_bytes()


def test_catalog_round_trip_and_features_only(tmp_path):
    catalog = ItemCatalog(item_ids=["a", "b"], features=np.eye(2, 3, dtype=np.float32))
    catalog.save(tmp_path / "c")
    loaded = ItemCatalog.load(tmp_path / "c")
    assert not loaded.has_pixels and loaded.image_shape is None
    assert np.array_equal(loaded.features, catalog.features)


def test_interactions_round_trip(tmp_path):
    log = _dataset().interactions
    log.save(tmp_path / "log")
    loaded = Interactions.load(tmp_path / "log")
    assert loaded.frame().equals(log.frame())
    assert loaded.user_ids.tolist() == log.user_ids.tolist()
    _dataset().save(tmp_path / "d")
    assert Interactions.load(tmp_path / "d").frame().equals(log.frame())


def test_corrupted_file_is_detected_on_load(tmp_path):
    _dataset().save(tmp_path / "d")
    raw = bytearray((tmp_path / "d" / "images.npy").read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "d" / "images.npy").write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match=r"images.npy: sha256 does not match"):
        Dataset.load(tmp_path / "d")


def test_missing_directory_and_manifest(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        Dataset.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no manifest.json"):
        Dataset.load(tmp_path / "empty")


def test_failed_save_leaves_nothing_half_written(tmp_path, monkeypatch):
    dataset = _dataset()
    import varsec.data.catalog as module

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(module, "_write_manifest", explode)
    with pytest.raises(RuntimeError):
        dataset.save(tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_duplicate_item_ids_are_rejected():
    with pytest.raises(DataError, match="item ids must be unique.*'x'"):
        ItemCatalog(item_ids=["x", "y", "x"], features=np.zeros((3, 2), np.float32))


def test_features_with_nan_name_the_item():
    features = np.zeros((3, 2), np.float32)
    features[1, 0] = np.inf
    with pytest.raises(DataError, match="NaN or inf.*'b'"):
        ItemCatalog(item_ids=["a", "b", "c"], features=features)


def test_images_must_be_uint8_nchw():
    with pytest.raises(DataError, match="uint8 N x C x H x W"):
        ItemCatalog(item_ids=["a"], images=np.zeros((1, 1, 2, 2), np.float32))


def test_interactions_naming_unknown_items():
    with pytest.raises(DataError, match="1 item id.*not in the catalog.*'zz'"):
        Interactions.from_ids(["u"], ["zz"], _catalog())


def test_empty_interactions():
    with pytest.raises(DataError, match="empty"):
        Interactions.from_ids([], [], _catalog())


def test_cold_items_may_not_appear_in_interactions():
    dataset = _dataset()
    with pytest.raises(DataError, match="cold items must not appear"):
        Dataset(dataset.catalog, dataset.interactions, cold_items=np.array([1]))


def test_index_of_and_category_lookup():
    catalog = _catalog()
    assert catalog.index_of(["i3", "i0"]).tolist() == [3, 0]
    assert catalog.category_code("BAG") == 1
    with pytest.raises(DataError, match="category 'hat' is not in catalog 'tiny'"):
        catalog.category_code("hat")
    with pytest.raises(DataError, match="not in catalog 'tiny'.*'nope'"):
        catalog.index_of(["nope"])


def test_content_hash_changes_with_one_pixel():
    first = _catalog()
    second = _catalog()
    second.images[0, 0, 0, 0] ^= 1
    assert first.content_hash() != second.content_hash()
    assert first.content_hash() == _catalog().content_hash()


def test_split_parts():
    dataset = _dataset()
    assert dataset.part("test").item.tolist() == [2, 3]
    with pytest.raises(DataError, match="unknown split part 'dev'"):
        dataset.part("dev")
