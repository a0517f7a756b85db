"""Which items an attack touches: hook-item choice (EXPA, c-SEMA), item selection, pixels.

AIP's hook item (Liu & Larson 000 sec 3.1, sec 5.2.2) is a popular item whose region of the
embedding space the adversarial item is pulled into; the paper takes the most commonly
interacted item of the training data, or any item the attacker knows sells well. Both are
offered here: :func:`resolve_hook` picks the most-interacted item by default, or takes a given id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from varsec.data.catalog import SPLIT_CODES, Dataset, ItemCatalog
from varsec.errors import ConfigError, DataError


def catalog_of(source: Dataset | ItemCatalog) -> ItemCatalog:
    """The catalog of a dataset, or the catalog itself."""
    if isinstance(source, Dataset):
        return source.catalog
    if isinstance(source, ItemCatalog):
        return source
    raise ConfigError(f"expected a varsec Dataset or ItemCatalog, got {type(source).__name__}.")


def most_interacted_item(dataset: Dataset, part: str = "train") -> int:
    """Catalog index of the item with the most interactions in ``part`` (lowest index on ties).

    Without a split, all interactions count.
    """
    if dataset.split is None:
        items = dataset.interactions.item
    else:
        items = dataset.interactions.item[dataset.split == SPLIT_CODES[part]]
    if len(items) == 0:
        raise DataError(f"the dataset has no {part} interactions to find the most popular item.")
    return int(np.argmax(np.bincount(items, minlength=dataset.n_items)))


def item_position(catalog: ItemCatalog, item_id: Any, what: str = "item") -> int:
    """Catalog index of one item id; a ConfigError naming the id when it is not there."""
    found = np.flatnonzero(catalog.item_ids.astype(str) == str(item_id))
    if len(found) == 0:
        raise ConfigError(f"{what} {str(item_id)!r} is not in catalog {catalog.name!r}.")
    return int(found[0])


def resolve_hook(source: Dataset | ItemCatalog, hook: Any = None) -> int:
    """Catalog index of the hook item: the given id, or the most-interacted training item."""
    catalog = catalog_of(source)
    if hook is not None:
        return item_position(catalog, hook, "hook item")
    if not isinstance(source, Dataset):
        raise ConfigError(
            "choosing the hook item by popularity needs interactions; give a hook item id."
        )
    return most_interacted_item(source)


def require_pixels(catalog: ItemCatalog, what: str) -> np.ndarray:
    """The catalog's uint8 images; a DataError when it is features-only."""
    if catalog.images is None:
        raise DataError(
            f"{what} perturbs pixels, but catalog {catalog.name!r} is features-only (it holds no "
            "images); use a feature-level attack or a catalog with images."
        )
    return catalog.images


def catalog_pixels(source: Dataset | ItemCatalog, items: Any, what: str = "this attack") -> Tensor:
    """uint8 images (N x C x H x W tensor) of catalog indices ``items``."""
    images = require_pixels(catalog_of(source), what)
    index = np.asarray(items, dtype=np.int64).reshape(-1)
    return torch.from_numpy(np.ascontiguousarray(images[index]))


def select_items(source: Dataset | ItemCatalog, spec: str | Sequence[Any]) -> np.ndarray:
    """Catalog indices of ``spec``: ``"all"``, ``"cold"`` (a dataset's cold items), a
    comma-separated string of item ids, or a sequence of ids."""
    catalog = catalog_of(source)
    if isinstance(spec, str) and spec == "all":
        return np.arange(len(catalog))
    if isinstance(spec, str) and spec == "cold":
        if not isinstance(source, Dataset) or len(source.cold_items) == 0:
            raise ConfigError("items 'cold' needs a dataset with cold items.")
        return np.asarray(source.cold_items, dtype=np.int64)
    ids = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else spec
    if len(ids) == 0:
        raise ConfigError("items must be 'all', 'cold' or a non-empty list of item ids.")
    return np.asarray([item_position(catalog, i) for i in ids], dtype=np.int64)


__all__ = [
    "catalog_of",
    "catalog_pixels",
    "item_position",
    "most_interacted_item",
    "require_pixels",
    "resolve_hook",
    "select_items",
]
