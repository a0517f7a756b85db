"""Batched, no-grad feature extraction with an on-disk cache (DESIGN.md section 4).

A cache entry is keyed by (backbone checkpoint hash, layer, catalog content hash) and holds a
float32 N x D ``.npy`` plus a JSON sidecar that records the sha256 of the array file. A hit is
reported (``FeatureResult.cache_hit`` and a log line); an entry whose file does not match its
recorded sha256 is never used: it is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from varsec.data.catalog import ItemCatalog
from varsec.errors import DataError
from varsec.io import progress, save_npy_atomic, sha256_bytes, sha256_file, write_json_atomic
from varsec.params import check_int
from varsec.vision.adversarial import eval_mode
from varsec.vision.base import Backbone
from varsec.vision.splits import image_batch

log = logging.getLogger(__name__)


@dataclass
class FeatureResult:
    """Features of a catalog (float32, one row per item, catalog order) and their provenance."""

    features: np.ndarray
    cache_hit: bool
    key: str
    layer: str
    path: Path | None = None
    rebuilt: bool = False


def default_cache_dir() -> Path:
    """``$VARSEC_CACHE/features``, else ``~/.cache/varsec/features``."""
    base = os.environ.get("VARSEC_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "varsec"
    return root / "features"


def feature_cache_key(backbone_hash: str, layer: str, catalog_hash: str) -> str:
    """The cache key of (backbone checkpoint hash, layer, catalog hash)."""
    return sha256_bytes(f"features|{backbone_hash}|{layer}|{catalog_hash}".encode())


def compute_features(
    backbone: Backbone,
    catalog: ItemCatalog,
    *,
    layer: str | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Features of every catalog image at ``layer``: float32 N x D, batched, without gradients."""
    if not catalog.has_pixels:
        raise DataError(f"catalog {catalog.name!r} holds features only; there are no images.")
    batch_size = check_int(batch_size, "batch_size", low=1)
    layer = backbone.check_layer(layer)
    n, device = len(catalog), backbone.device
    out = np.empty((n, backbone.feature_dims[layer]), dtype=np.float32)
    starts = range(0, n, batch_size)
    with eval_mode(backbone), torch.inference_mode():
        for start in progress(starts, total=len(starts), desc=f"{backbone.name} features"):
            rows = np.arange(start, min(n, start + batch_size))
            feats = backbone.features(image_batch(catalog, rows, str(device)), layer)
            out[rows] = feats.float().cpu().numpy()
    return out


class FeatureCache:
    """A folder of cached feature matrices, each ``<key>.npy`` + ``<key>.json``."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def paths(self, key: str) -> tuple[Path, Path]:
        """(array file, sidecar) of ``key``."""
        return self.directory / f"{key}.npy", self.directory / f"{key}.json"

    def load(self, key: str) -> tuple[np.ndarray | None, str | None]:
        """(features, None) on a valid hit; (None, reason) when absent or corrupted."""
        array_path, meta_path = self.paths(key)
        if not array_path.exists() and not meta_path.exists():
            return None, None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if sha256_file(array_path) != meta["sha256"]:
                return None, "sha256 of the array file does not match its sidecar"
            array = np.load(array_path, allow_pickle=False)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return None, f"unreadable ({type(exc).__name__}: {exc})"
        if list(array.shape) != meta.get("shape") or array.dtype != np.float32:
            return None, f"array of shape {array.shape} / {array.dtype} differs from its sidecar"
        return array, None

    def store(self, key: str, features: np.ndarray, info: dict[str, Any]) -> Path:
        """Write the array, then its sidecar (both atomically); returns the array path."""
        array_path, meta_path = self.paths(key)
        save_npy_atomic(array_path, np.ascontiguousarray(features, dtype=np.float32))
        meta = {**info, "key": key, "shape": list(features.shape), "dtype": "float32",
                "sha256": sha256_file(array_path)}
        write_json_atomic(meta_path, meta)
        return array_path


def extract_features(
    backbone: Backbone,
    catalog: ItemCatalog,
    *,
    layer: str | None = None,
    batch_size: int = 256,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    backbone_hash: str | None = None,
) -> FeatureResult:
    """Features of the catalog at ``layer``, from the cache when a valid entry exists.

    ``backbone_hash`` is the checkpoint hash when known (it is computed from the weights
    otherwise). With ``use_cache=False`` nothing is read or written.
    """
    layer = backbone.check_layer(layer)
    backbone_hash = backbone_hash or backbone.weights_hash()
    catalog_hash = catalog.content_hash()
    key = feature_cache_key(backbone_hash, layer, catalog_hash)
    if not use_cache:
        array = compute_features(backbone, catalog, layer=layer, batch_size=batch_size)
        return FeatureResult(array, cache_hit=False, key=key, layer=layer)
    cache = FeatureCache(cache_dir)
    cached, problem = cache.load(key)
    if cached is not None:
        log.info("feature cache hit: %s", cache.paths(key)[0])
        return FeatureResult(cached, cache_hit=True, key=key, layer=layer, path=cache.paths(key)[0])
    if problem:
        log.warning("feature cache entry %s is corrupted (%s); rebuilding it.",
                    cache.paths(key)[0], problem)
    array = compute_features(backbone, catalog, layer=layer, batch_size=batch_size)
    info = {"backbone": backbone.name, "backbone_hash": backbone_hash, "layer": layer,
            "catalog": catalog.name, "catalog_hash": catalog_hash, "items": len(catalog)}
    path = cache.store(key, array, info)
    log.info("feature cache miss: wrote %s", path)
    return FeatureResult(array, cache_hit=False, key=key, layer=layer, path=path,
                         rebuilt=problem is not None)
