"""Consistency checks beyond what loading already enforces (`varsec data validate`).

Loading checks file hashes, unique ids, known item references, finite features and the cold
items' absence from interactions; this adds the checks that concern a split dataset as a whole.
"""

from __future__ import annotations

import numpy as np

from varsec.data.catalog import SPLIT_CODES, Dataset, ItemCatalog
from varsec.errors import DataError


def validate_data(data: ItemCatalog | Dataset) -> list[str]:
    """Raise DataError at the first inconsistency; return the list of checks that passed."""
    catalog = data.catalog if isinstance(data, Dataset) else data
    passed = [f"catalog: {len(catalog):,} unique items, images/features well-formed"]
    if catalog.images is not None and np.asarray(catalog.images[:1]).size == 0:
        raise DataError(f"catalog {catalog.name!r} has empty images.")
    if isinstance(data, Dataset):
        passed += _validate_dataset(data)
    return passed


def _validate_dataset(dataset: Dataset) -> list[str]:
    log = dataset.interactions
    passed = [f"interactions: {len(log):,} rows referencing known users and items"]
    users_seen = np.unique(log.user)
    if len(users_seen) != log.n_users:
        raise DataError(f"{log.n_users - len(users_seen)} user ids have no interactions.")
    if dataset.split is not None:
        passed.append(_validate_split(dataset))
    if len(dataset.cold_items):
        if dataset.cold_items.max() >= len(dataset.catalog):
            raise DataError("cold item indices point beyond the catalog.")
        passed.append(f"cold items: {len(dataset.cold_items):,}, none in any interaction")
    if dataset.oracle is not None and not np.isfinite(dataset.oracle).all():
        raise DataError("the oracle preferences hold NaN or inf.")
    return passed


def _validate_split(dataset: Dataset) -> str:
    split = dataset.split
    assert split is not None
    known = set(SPLIT_CODES.values())
    unknown = set(np.unique(split).tolist()) - known
    if unknown:
        raise DataError(f"split holds unknown codes {sorted(unknown)} (expected 0, 1, 2).")
    users = dataset.interactions.user
    for name in ("validation", "test"):
        per_user = np.bincount(users[split == SPLIT_CODES[name]], minlength=dataset.n_users)
        if per_user.max(initial=0) > 1:
            raise DataError(f"some users have more than one {name} interaction.")
    has_train = np.bincount(users[split == 0], minlength=dataset.n_users) > 0
    held_out = np.bincount(users[split > 0], minlength=dataset.n_users) > 0
    if (held_out & ~has_train).any():
        raise DataError("some users have held-out interactions but no training interaction.")
    counts = {name: int((split == code).sum()) for name, code in SPLIT_CODES.items()}
    return "split: " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
