"""Descriptive statistics of a catalog or dataset: what `varsec data info` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from varsec.data.catalog import SPLIT_CODES, Dataset, ItemCatalog


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of a non-negative count vector (0 = equal, towards 1 = concentrated)."""
    values = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(values)
    if n == 0 or values.sum() == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * values).sum()) / (n * values.sum()) - (n + 1) / n)


@dataclass
class DataSummary:
    """Counts and shape statistics of a catalog, and of its interactions when there are any."""

    name: str
    items: int
    image_shape: tuple[int, ...] | None
    feature_dim: int | None
    categories: pd.DataFrame
    users: int | None = None
    interactions: int | None = None
    density: float | None = None
    popularity_gini: float | None = None
    cold_items: int | None = None
    split_counts: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Human-readable report lines."""
        shape = "x".join(map(str, self.image_shape)) if self.image_shape else "none (features only)"
        out = [f"dataset: {self.name}", f"items: {self.items:,}"]
        out.append(f"image size (C x H x W): {shape}")
        if self.feature_dim is not None:
            out.append(f"feature dimension: {self.feature_dim}")
        if self.interactions is not None:
            out += [
                f"users: {self.users:,}",
                f"interactions: {self.interactions:,}",
                f"density: {self.density:.6f}",
                f"popularity Gini (warm items): {self.popularity_gini:.3f}",
                f"cold items: {self.cold_items:,}",
            ]
            if self.split_counts:
                parts = ", ".join(f"{k} {v:,}" for k, v in self.split_counts.items())
                out.append(f"split: {parts}")
            out += self._k_core_lines()
        if self.meta.get("simulated"):
            out.append(
                f"interactions are SIMULATED (profile {self.meta.get('profile')}, "
                f"seed {self.meta.get('seed')})"
            )
        if len(self.categories):
            out.append("categories:")
            for row in self.categories.itertuples(index=False):
                out.append(f"  {row.code:>3}  {row.category:<14} {row.items:>8,}")
        return out

    def _k_core_lines(self) -> list[str]:
        k_core = (self.meta.get("split") or {}).get("k_core")
        if not k_core:
            return []
        return [
            f"{k_core['k']}-core filter: dropped {k_core['dropped_users']:,} users, "
            f"{k_core['dropped_interactions']:,} interactions"
        ]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (for `varsec data info --json`)."""
        payload = {k: v for k, v in self.__dict__.items() if k != "categories"}
        payload["categories"] = self.categories.to_dict(orient="records")
        return payload


def summarize(data: ItemCatalog | Dataset) -> DataSummary:
    """Summarise a catalog or a dataset (counts, density, category table, Gini, image size)."""
    catalog = data.catalog if isinstance(data, Dataset) else data
    summary = DataSummary(
        name=catalog.name,
        items=len(catalog),
        image_shape=catalog.image_shape,
        feature_dim=None if catalog.features is None else int(catalog.features.shape[1]),
        categories=catalog.category_table(),
    )
    if isinstance(data, Dataset):
        _add_interaction_stats(summary, data)
    return summary


def _add_interaction_stats(summary: DataSummary, dataset: Dataset) -> None:
    log = dataset.interactions
    warm = dataset.warm_items()
    counts = np.bincount(log.item, minlength=len(dataset.catalog))[warm]
    summary.users = log.n_users
    summary.interactions = len(log)
    summary.density = len(log) / max(1, log.n_users * len(warm))
    summary.popularity_gini = gini(counts)
    summary.cold_items = len(dataset.cold_items)
    summary.meta = dict(dataset.meta)
    if dataset.split is not None:
        summary.split_counts = {
            name: int((dataset.split == code).sum()) for name, code in SPLIT_CODES.items()
        }
