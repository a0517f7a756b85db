"""Train / validation / test parts of a catalog for classifier training and evaluation.

The catalog's own ``extra['source_split']`` column is honoured when present (Fashion-MNIST's
official train/test split): ``test`` rows are the test part and never touch training or model
selection; the validation part is carved, seeded, from the ``train`` rows (or taken from the
catalog's ``validation`` rows when it has them). Without that column a seeded split carves
the test part first (always with the same seed), then the validation part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from varsec.data.catalog import ItemCatalog
from varsec.errors import DataError
from varsec.vision.perturbation import uint8_to_float

TEST_FRACTION = 1 / 7  # Fashion-MNIST's own 10,000 of 70,000
TEST_SEED = 0  # the test part does not move with the training seed: models stay comparable


@dataclass(frozen=True)
class CatalogParts:
    """Row indices of the three parts (labelled items only)."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        """Number of items per part."""
        return {"train": len(self.train), "validation": len(self.validation),
                "test": len(self.test)}


def check_labelled(catalog: ItemCatalog) -> None:
    """A DataError unless the catalog has pixels and category labels."""
    if not catalog.has_pixels:
        raise DataError(
            f"catalog {catalog.name!r} holds features only; a classifier needs its images."
        )
    if catalog.categories is None:
        raise DataError(f"catalog {catalog.name!r} has no category labels to train on.")


def num_classes(catalog: ItemCatalog) -> int:
    """Number of categories (named ones, or the largest code + 1)."""
    check_labelled(catalog)
    assert catalog.categories is not None
    named = len(catalog.category_names or [])
    return max(named, int(catalog.categories.max(initial=-1)) + 1)


def _carve(indices: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple:
    shuffled = rng.permutation(indices)
    n_out = max(1, round(len(indices) * fraction))
    if n_out >= len(indices):
        raise DataError(f"only {len(indices)} labelled items: too few to split off {fraction:.0%}.")
    return np.sort(shuffled[n_out:]), np.sort(shuffled[:n_out])


def catalog_parts(
    catalog: ItemCatalog, *, val_fraction: float = 0.1, seed: int = 0
) -> CatalogParts:
    """Split ``catalog`` into train / validation / test row indices (see the module docstring)."""
    check_labelled(catalog)
    assert catalog.categories is not None
    labelled = np.flatnonzero(catalog.categories >= 0)
    rng = np.random.default_rng(seed)
    extra = catalog.extra
    if extra is not None and "source_split" in extra.columns:
        source = extra["source_split"].astype(str).to_numpy()[labelled]
        train, test = labelled[source == "train"], labelled[source == "test"]
        validation = labelled[source == "validation"]
        if len(train) == 0:
            raise DataError(f"catalog {catalog.name!r} has no labelled 'train' rows.")
        if len(validation) == 0:
            train, validation = _carve(train, val_fraction, rng)
    else:
        rest, test = _carve(labelled, TEST_FRACTION, np.random.default_rng(TEST_SEED))
        train, validation = _carve(rest, val_fraction, rng)
    return CatalogParts(train=train, validation=validation, test=test)


def part_indices(catalog: ItemCatalog, part: str, *, val_fraction: float = 0.1,
                 seed: int = 0) -> np.ndarray:
    """The row indices of one part: ``train``, ``validation`` or ``test``."""
    parts = catalog_parts(catalog, val_fraction=val_fraction, seed=seed)
    if part not in ("train", "validation", "test"):
        raise DataError(f"unknown catalog part {part!r} (expected train, validation or test).")
    indices = getattr(parts, part)
    if len(indices) == 0:
        raise DataError(f"catalog {catalog.name!r} has no {part} items.")
    return indices


def image_batch(catalog: ItemCatalog, indices: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """Float32 [0, 1] images of the rows ``indices`` (N x C x H x W)."""
    assert catalog.images is not None
    pixels = np.asarray(catalog.images[np.asarray(indices)])
    return uint8_to_float(pixels, device)


def label_batch(catalog: ItemCatalog, indices: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """Int64 category labels of the rows ``indices``."""
    assert catalog.categories is not None
    return torch.from_numpy(np.asarray(catalog.categories[np.asarray(indices)])).to(device)
