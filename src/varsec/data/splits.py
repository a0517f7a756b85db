"""Splits of an interaction log: k-core filtering and leave-one-out per user (DESIGN.md section 3).

Leave-one-out holds out, per user, one test interaction and (optionally) one validation
interaction, chosen at random (seeded) or as the user's latest by time, the protocol of the AIP
paper (000 sec 5.1.1: one test item per user). Everything is vectorised with numpy: no Python loop
runs per user or per interaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from varsec.data.catalog import SPLIT_CODES, Dataset, Interactions
from varsec.errors import ConfigError, DataError
from varsec.params import check_int

LEAVE_ONE_OUT_MODES = ("random", "latest")
K_CORE_SIDES = ("user", "item")


@dataclass(frozen=True)
class KCoreSummary:
    """What a k-core filter removed. ``kept_users`` maps new user indices to the old ones."""

    k: int
    on: tuple[str, ...]
    rounds: int
    users_before: int
    users_after: int
    items_before: int
    items_after: int
    interactions_before: int
    interactions_after: int
    kept_users: np.ndarray = field(repr=False, compare=False)

    @property
    def dropped_users(self) -> int:
        return self.users_before - self.users_after

    @property
    def dropped_items(self) -> int:
        return self.items_before - self.items_after

    @property
    def dropped_interactions(self) -> int:
        return self.interactions_before - self.interactions_after

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record (for ``Dataset.meta`` and reports)."""
        return {
            "k": self.k, "on": list(self.on), "rounds": self.rounds,
            "users_before": self.users_before, "users_after": self.users_after,
            "items_before": self.items_before, "items_after": self.items_after,
            "interactions_before": self.interactions_before,
            "interactions_after": self.interactions_after,
            "dropped_users": self.dropped_users, "dropped_items": self.dropped_items,
            "dropped_interactions": self.dropped_interactions,
        }

    def __str__(self) -> str:
        return (
            f"{self.k}-core on {'+'.join(self.on)}: dropped {self.dropped_users} users, "
            f"{self.dropped_items} items and {self.dropped_interactions} interactions "
            f"in {self.rounds} round(s)"
        )


def _check_k_core_args(k: Any, on: Sequence[str]) -> tuple[str, ...]:
    check_int(k, "k-core k", low=1)
    sides = (on,) if isinstance(on, str) else tuple(on)
    unknown = [side for side in sides if side not in K_CORE_SIDES]
    if not sides or unknown:
        raise ConfigError(
            f"k-core 'on' must name 'user' and/or 'item', got {list(sides)!r}."
        )
    return sides


def _k_core_mask(
    interactions: Interactions, k: int, sides: tuple[str, ...]
) -> tuple[np.ndarray, int]:
    """Rows kept by iterating the filter until stable, and how many passes removed rows."""
    keep = np.ones(len(interactions), dtype=bool)
    n_items = int(interactions.item.max()) + 1
    rounds = 0
    while True:
        new_keep = keep.copy()
        if "user" in sides:
            per_user = np.bincount(interactions.user[keep], minlength=interactions.n_users)
            new_keep &= per_user[interactions.user] >= k
        if "item" in sides:
            per_item = np.bincount(interactions.item[keep], minlength=n_items)
            new_keep &= per_item[interactions.item] >= k
        if np.array_equal(new_keep, keep):
            return keep, rounds
        keep = new_keep
        rounds += 1


def _reindex_users(interactions: Interactions, keep: np.ndarray) -> tuple[Interactions, np.ndarray]:
    """The kept rows with user indices renumbered over the users that still have interactions."""
    kept_users = np.unique(interactions.user[keep])
    new_index = np.full(interactions.n_users, -1, dtype=np.int64)
    new_index[kept_users] = np.arange(len(kept_users))
    filtered = Interactions(
        user=new_index[interactions.user[keep]],
        item=interactions.item[keep],
        timestamp=interactions.timestamp[keep],
        user_ids=interactions.user_ids[kept_users],
    )
    return filtered, kept_users


def _k_core_filter(
    interactions: Interactions, k: int, on: Sequence[str]
) -> tuple[Interactions, KCoreSummary]:
    sides = _check_k_core_args(k, on)
    keep, rounds = _k_core_mask(interactions, int(k), sides)
    if not keep.any():
        largest = int(np.bincount(interactions.user).max())
        raise DataError(
            f"a {k}-core on {'+'.join(sides)} removes every user (the most active user has "
            f"{largest} interactions)."
        )
    filtered, kept_users = _reindex_users(interactions, keep)
    summary = KCoreSummary(
        k=int(k), on=sides, rounds=rounds,
        users_before=int(np.unique(interactions.user).size), users_after=len(kept_users),
        items_before=int(np.unique(interactions.item).size),
        items_after=int(np.unique(filtered.item).size),
        interactions_before=len(interactions), interactions_after=len(filtered),
        kept_users=kept_users,
    )
    return filtered, summary


def k_core(
    interactions: Interactions, k: int, *, on: Sequence[str] = ("user",)
) -> tuple[Interactions, KCoreSummary]:
    """Drop users (and, with ``"item"`` in ``on``, items) with fewer than ``k`` interactions,
    repeatedly, until every remaining one has at least ``k``.

    Users below ``k`` are not an error: they are filtered and counted in the summary. The
    returned log numbers users 0..n-1 over the kept users (``summary.kept_users[new] = old``);
    item indices are unchanged (they point into the catalog). ``k < 1`` raises ConfigError; a
    filter that removes every user raises DataError.
    """
    return _k_core_filter(interactions, k, on)


def _latest_order(interactions: Interactions, rng: np.random.Generator) -> np.ndarray:
    """Row order grouping users, each user's rows by time (ties by position), oldest first."""
    positions = np.arange(len(interactions))
    return np.lexsort((positions, interactions.timestamp, interactions.user))


def _random_order(interactions: Interactions, rng: np.random.Generator) -> np.ndarray:
    """Row order grouping users, each user's rows in a seeded random order."""
    return np.lexsort((rng.permutation(len(interactions)), interactions.user))


_ORDERS = {"latest": _latest_order, "random": _random_order}


def _split_codes(
    interactions: Interactions, order: np.ndarray, validation: bool
) -> np.ndarray:
    """Per row: test for each user's last row in ``order``, validation for the one before."""
    users_sorted = interactions.user[order]
    counts = np.bincount(interactions.user, minlength=interactions.n_users)
    group_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(order)) - group_start[users_sorted]
    from_end = counts[users_sorted] - 1 - position
    eligible = counts[users_sorted] >= (3 if validation else 2)
    sorted_codes = np.full(len(order), SPLIT_CODES["train"], dtype=np.int8)
    sorted_codes[eligible & (from_end == 0)] = SPLIT_CODES["test"]
    if validation:
        sorted_codes[eligible & (from_end == 1)] = SPLIT_CODES["validation"]
    codes = np.empty_like(sorted_codes)
    codes[order] = sorted_codes
    return codes


def leave_one_out(
    dataset: Dataset,
    *,
    mode: str = "random",
    seed: int = 0,
    validation: bool = True,
    k_core: int | None = None,
    k_core_on: Sequence[str] = ("user",),
) -> Dataset:
    """Hold out one test (and one validation) interaction per user.

    ``mode="latest"`` takes each user's last interaction by timestamp (ties: the later row) for
    test and the one before for validation; ``mode="random"`` picks them at random from ``seed``.
    Users with fewer than 3 interactions (2 without validation) keep everything in train. With
    ``k_core``, the log is first k-core filtered on ``k_core_on``; users are renumbered over the
    kept ones and the oracle's rows follow. Returns a new Dataset; ``meta["split"]`` records the
    settings and the k-core summary.
    """
    if mode not in _ORDERS:
        raise ConfigError(
            f"unknown leave-one-out mode {mode!r} "
            f"(expected one of: {', '.join(LEAVE_ONE_OUT_MODES)})."
        )
    interactions, oracle, summary = dataset.interactions, dataset.oracle, None
    if k_core is not None:
        interactions, summary = _k_core_filter(interactions, k_core, k_core_on)
        oracle = None if oracle is None else oracle[summary.kept_users]
    if len(dataset.cold_items) and np.isin(interactions.item, dataset.cold_items).any():
        raise DataError("cold items appear in the interactions; they must never be split.")
    order = _ORDERS[mode](interactions, np.random.default_rng(seed))
    codes = _split_codes(interactions, order, validation)
    counts = {name: int(np.count_nonzero(codes == code)) for name, code in SPLIT_CODES.items()}
    split_meta = {
        "method": "leave_one_out", "mode": mode, "seed": seed if mode == "random" else None,
        "validation": validation,
        "k_core": None if summary is None else summary.as_dict(),
        "counts": counts,
    }
    return Dataset(
        catalog=dataset.catalog, interactions=interactions, split=codes,
        cold_items=dataset.cold_items, oracle=oracle, meta={**dataset.meta, "split": split_meta},
    )


__all__ = ["KCoreSummary", "k_core", "leave_one_out"]
