"""Feature extraction: batching, no-grad, the on-disk cache, corruption detection."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from varsec.errors import ConfigError, DataError
from varsec.vision import compute_features, create_backbone, extract_features, feature_cache_key


@pytest.fixture(scope="module")
def small_catalog(fmnist_small):
    return fmnist_small.subset(np.arange(300))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_backbone("fmnist-cnn").eval()


def test_features_are_float32_n_by_d_and_independent_of_batch_size(model, small_catalog):
    a = compute_features(model, small_catalog, batch_size=64)
    b = compute_features(model, small_catalog, batch_size=300)
    assert a.shape == (300, 64) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    x = torch.from_numpy(small_catalog.images[:5]).float() / 255
    with torch.no_grad():
        np.testing.assert_allclose(a[:5], model.features(x).numpy(), rtol=1e-4, atol=1e-5)
    logits = compute_features(model, small_catalog, layer="logits", batch_size=128)
    assert logits.shape == (300, 10)


def test_cache_hit_is_reported_and_keyed_by_backbone_layer_and_catalog(model, small_catalog,
                                                                      tmp_path, caplog):
    first = extract_features(model, small_catalog, cache_dir=tmp_path)
    assert not first.cache_hit and first.path.exists()
    with caplog.at_level(logging.INFO, logger="varsec.vision.features"):
        second = extract_features(model, small_catalog, cache_dir=tmp_path)
    assert second.cache_hit and "feature cache hit" in caplog.text
    np.testing.assert_array_equal(first.features, second.features)
    assert first.key == feature_cache_key(model.weights_hash(), "pool",
                                          small_catalog.content_hash())
    other_layer = extract_features(model, small_catalog, layer="logits", cache_dir=tmp_path)
    other_catalog = extract_features(model, small_catalog.subset(np.arange(10)),
                                     cache_dir=tmp_path)
    assert not other_layer.cache_hit and not other_catalog.cache_hit
    assert len({first.key, other_layer.key, other_catalog.key}) == 3
    sidecar = json.loads(first.path.with_suffix(".json").read_text())
    assert sidecar["shape"] == [300, 64] and sidecar["layer"] == "pool"
    assert sidecar["catalog_hash"] == small_catalog.content_hash()


def test_corrupted_cache_file_is_detected_and_rebuilt(model, small_catalog, tmp_path, caplog):
    first = extract_features(model, small_catalog, cache_dir=tmp_path)
    poisoned = first.features.copy()
    poisoned[0, 0] = 1e6  # same shape and dtype: only the hash can tell
    np.save(first.path, poisoned)
    with caplog.at_level(logging.WARNING, logger="varsec.vision.features"):
        again = extract_features(model, small_catalog, cache_dir=tmp_path)
    assert not again.cache_hit and again.rebuilt and "corrupted" in caplog.text
    np.testing.assert_array_equal(again.features, first.features)
    assert extract_features(model, small_catalog, cache_dir=tmp_path).cache_hit


def test_truncated_cache_file_and_missing_sidecar_are_rebuilt(model, small_catalog, tmp_path):
    first = extract_features(model, small_catalog, cache_dir=tmp_path)
    first.path.write_bytes(first.path.read_bytes()[:100])
    assert extract_features(model, small_catalog, cache_dir=tmp_path).rebuilt
    first.path.with_suffix(".json").unlink()
    assert extract_features(model, small_catalog, cache_dir=tmp_path).rebuilt


def test_no_cache_reads_and_writes_nothing(model, small_catalog, tmp_path):
    result = extract_features(model, small_catalog, cache_dir=tmp_path, use_cache=False)
    assert not result.cache_hit and result.path is None and list(tmp_path.iterdir()) == []


def test_feature_extraction_bad_input(model, small_catalog):
    features_only = type(small_catalog)(item_ids=small_catalog.item_ids,
                                        features=np.zeros((300, 3), np.float32))
    with pytest.raises(DataError, match="features only; there are no images"):
        compute_features(model, features_only)
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        compute_features(model, small_catalog, batch_size=0)
    with pytest.raises(ConfigError, match="no layer 'fc6'"):
        extract_features(model, small_catalog, layer="fc6", use_cache=False)


def test_efficientnet_features_of_grey_items(small_catalog):
    model = create_backbone("efficientnet-lite0")
    feats = compute_features(model, small_catalog.subset(np.arange(4)), batch_size=2)
    assert feats.shape == (4, 1280) and np.isfinite(feats).all()
