"""Tradesy (He & McAuley's VBPR release, AAAI 2016; also used by Kang et al.'s DVBPR, ICDM 2017):
``tradesy.json(.gz)`` plus ``image_features_tradesy.b``.

The JSON holds one record per user, ``{"uid": ..., "lists": {"bought": [...], "want": [...],
"selling": [...], "sold": [...]}}``, either as one JSON array or one record per line (JSON or, as
in the original dump, Python-literal dicts); plain or gzipped. The features file is the VBPR
``.b`` format (:mod:`varsec.data.vbpr`).

Tradesy has no timestamps: the timestamp of an interaction is its position in the file (record
order, then the order of ``lists``, then the order inside each list), so "latest" splits take the
last items listed for a user.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from varsec.data.catalog import Dataset
from varsec.data.vbpr import DEFAULT_DIM, features_dataset, iter_json_records
from varsec.errors import ConfigError, DataError

KNOWN_LISTS = ("bought", "want", "selling", "sold")


def _check_lists(lists: Sequence[str] | str) -> tuple[str, ...]:
    names = (lists,) if isinstance(lists, str) else tuple(lists)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(
            f"lists {lists!r} must name at least one Tradesy list (e.g. bought, want)."
        )
    return names


def _user_lists(record: object, path: Path, where: str) -> tuple[str, dict]:
    if not isinstance(record, dict):
        raise DataError(f"{path}: {where} is a {type(record).__name__}, expected an object.")
    if "uid" not in record:
        raise DataError(f"{path}: {where} has no 'uid' field.")
    lists = record.get("lists")
    if not isinstance(lists, dict):
        raise DataError(f"{path}: {where} has no 'lists' object.")
    return str(record["uid"]), lists


def _entries(lists: dict, names: Iterable[str], path: Path, where: str) -> Iterable[str]:
    for name in names:
        values = lists.get(name) or []
        if not isinstance(values, list | tuple):
            raise DataError(f"{path}: {where} has a {name!r} value that is not a list.")
        yield from (str(v) for v in values)


def read_tradesy(
    path: str | os.PathLike[str], *, lists: Sequence[str] | str = ("bought", "want")
) -> pd.DataFrame:
    """Read Tradesy user records into a frame (user_id, item_id, timestamp = file position)."""
    path = Path(path)
    names = _check_lists(lists)
    users: list[str] = []
    items: list[str] = []
    seen: set[str] = set()
    for where, record in iter_json_records(path):
        uid, user_lists = _user_lists(record, path, where)
        seen.update(user_lists)
        entries = list(_entries(user_lists, names, path, where))
        users.extend([uid] * len(entries))
        items.extend(entries)
    missing = [n for n in names if n not in seen]
    if missing:
        raise DataError(
            f"{path}: no record has a list named {missing[0]!r} "
            f"(found: {', '.join(sorted(seen)) or 'none'})."
        )
    if not users:
        raise DataError(f"{path}: the lists {', '.join(names)} hold no interactions.")
    return pd.DataFrame({"user_id": users, "item_id": items, "timestamp": range(len(users))})


def load_tradesy(
    json_path: str | os.PathLike[str],
    features_path: str | os.PathLike[str],
    *,
    lists: Sequence[str] | str = ("bought", "want"),
    dim: int = DEFAULT_DIM,
    only_interacted: bool = False,
) -> Dataset:
    """Load Tradesy (He & McAuley 2016) as a features-only Dataset.

    ``lists`` picks the feedback lists that count as positive (VBPR uses bought + want).
    Timestamps are file positions (see the module docstring). Items without features are dropped
    with a warning; an item in two lists of a user is kept once. No split, no cold items.
    """
    json_path, features_path = Path(json_path), Path(features_path)
    frame = read_tradesy(json_path, lists=lists)
    meta = {"source": "tradesy", "path": str(json_path), "features": str(features_path),
            "lists": list(_check_lists(lists)), "timestamps": "file order"}
    return features_dataset(frame, features_path, json_path, dim=dim,
                            only_interacted=only_interacted, meta=meta)
