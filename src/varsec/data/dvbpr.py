"""The DVBPR partitioned ``.npy`` (Kang, Fang, Wang & McAuley, "Visually-Aware Fashion
Recommendation and Design with Generative Image Models", ICDM 2017), e.g.
``AmazonFashion6ImgPartitioned.npy`` and ``TradesyImgPartitioned.npy``.

The file is a *pickled* object array ``[user_train, user_validation, user_test, Item, usernum,
itemnum]``: each ``user_*`` maps a user to a list of interactions (dicts with ``b'productid'``, an
index into ``Item``, and sometimes a timestamp), and ``Item[i][b'imgs']`` holds the item's JPEG
bytes (``b'c'`` its category, ``b'asin'`` its id, when present). Unpickling can run arbitrary code,
so the loader refuses unless the caller says the file is trusted. The three parts become the
dataset's split (train 0, validation 1, test 2).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from varsec.data.catalog import SPLIT_CODES, Dataset, Interactions, ItemCatalog
from varsec.data.images import DEFAULT_MAX_PIXELS, load_image_stack
from varsec.data.timestamps import timestamp_value
from varsec.errors import DataError
from varsec.io import not_a_file_message

PARTS = ("train", "validation", "test")
_TIME_KEYS = ("timestamp", "unixReviewTime", "time")
_CATEGORY_KEYS = ("c", "category")


def _get(record: Any, name: str, default: Any = None) -> Any:
    """Look a key up as str or bytes (the file is loaded with encoding='bytes')."""
    if not isinstance(record, dict):
        return default
    if name in record:
        return record[name]
    return record.get(name.encode(), default)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def npy_header(path: Path) -> tuple[np.dtype | None, tuple[int, ...] | None]:
    """Read a .npy header without unpickling anything: (dtype, shape), or Nones for format 3.0."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as handle:
            version = fmt.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(handle)
            else:
                return None, None
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise DataError(f"{path}: not a NumPy .npy file ({exc}).") from exc
    return dtype, shape


def _unpickle(path: Path, trust_pickle: bool) -> list[Any]:
    if not path.is_file():
        raise DataError(not_a_file_message(path, "no such file"))
    dtype, shape = npy_header(path)
    if dtype is not None and not dtype.hasobject:
        raise DataError(
            f"{path}: holds a plain {dtype} array of shape {shape}, not the pickled DVBPR list "
            "[user_train, user_validation, user_test, Item, usernum, itemnum]."
        )
    if not trust_pickle:
        raise DataError(
            f"{path}: this DVBPR file is a Python pickle and loading it can run arbitrary code, "
            "so pass trust_pickle=True (CLI: --trust-pickle) only for a file from a trusted source."
        )
    try:
        data = np.load(path, allow_pickle=True, encoding="bytes")
    except Exception as exc:  # unpickling can fail in any way
        raise DataError(f"{path}: cannot be unpickled ({type(exc).__name__}: {exc}).") from exc
    if isinstance(data, np.ndarray) and data.ndim == 0:
        data = data.item()
    parts = list(data) if isinstance(data, np.ndarray | list | tuple) else None
    if parts is None or len(parts) < 4:
        raise DataError(
            f"{path}: expected [user_train, user_validation, user_test, Item, usernum, itemnum], "
            f"found {type(data).__name__}."
        )
    return parts


def _as_sequence(items: Any, path: Path) -> list[Any]:
    if isinstance(items, dict):
        try:
            return [items[i] for i in range(len(items))]
        except KeyError as exc:
            raise DataError(f"{path}: Item is a dict without key {exc.args[0]!r}.") from exc
    if isinstance(items, list | tuple | np.ndarray):
        return list(items)
    raise DataError(f"{path}: Item is a {type(items).__name__}, expected a list of item dicts.")


def _user_entries(part: Any, name: str, path: Path) -> Iterator[tuple[str, Any]]:
    if isinstance(part, dict):
        pairs = part.items()
    elif isinstance(part, list | tuple | np.ndarray):
        pairs = enumerate(part)
    else:
        raise DataError(f"{path}: user_{name} is a {type(part).__name__}, expected a dict.")
    for user, entries in pairs:
        if not isinstance(entries, list | tuple | np.ndarray):
            raise DataError(f"{path}: user_{name}[{user!r}] is not a list of interactions.")
        for entry in entries:
            yield _text(user), entry


def _item_index(entry: Any, n_items: int, where: str) -> int:
    value = entry if not isinstance(entry, dict) else _get(entry, "productid")
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DataError(f"{where}: interaction {entry!r} has no integer 'productid'.")
    if not 0 <= int(value) < n_items:
        raise DataError(f"{where}: productid {int(value)} is outside Item (0..{n_items - 1}).")
    return int(value)


def _timestamp(entry: Any, where: str) -> int | None:
    """The entry's timestamp; None when it has none (or a non-number: file order is used)."""
    for key in _TIME_KEYS:
        value = _get(entry, key)
        if value is not None:
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError):
                return None
            if math.isnan(number):
                return None
            return timestamp_value(value if isinstance(value, int) else number,
                                   f"{where} {key!r}")
    return None


def read_interactions(
    parts: Sequence[Any], n_items: int, path: Path
) -> tuple[pd.DataFrame, bool]:
    """Flatten the three partitions to (user_id, item, timestamp, split); the flag says whether
    the file held a timestamp for every interaction (else timestamps are file positions)."""
    rows: list[tuple[str, int, int | None, int]] = []
    for name, part in zip(PARTS, parts, strict=False):
        where = f"{path} user_{name}"
        for user, entry in _user_entries(part, name, path):
            stamp = _timestamp(entry, f"{where} (user {user!r})")
            rows.append((user, _item_index(entry, n_items, where), stamp,
                         SPLIT_CODES[name]))
    if not rows:
        raise DataError(f"{path}: the interactions table is empty.")
    frame = pd.DataFrame(rows, columns=["user_id", "item", "timestamp", "split"])
    timed = bool(frame["timestamp"].notna().all())
    if not timed:
        frame["timestamp"] = np.arange(len(frame))
    return frame, timed


def _item_ids(items: list[Any]) -> np.ndarray:
    asins = [_get(item, "asin") for item in items]
    if all(a is not None for a in asins):
        ids = [_text(a) for a in asins]
        if len(set(ids)) == len(ids):
            return np.array(ids, dtype=object)
    return np.array([str(i) for i in range(len(items))], dtype=object)


def _categories(items: list[Any]) -> tuple[np.ndarray | None, list[str] | None]:
    for key in _CATEGORY_KEYS:
        values = [_get(item, key) for item in items]
        if all(v is not None for v in values):
            break
    else:
        return None, None
    if all(isinstance(v, int | np.integer) for v in values):
        uniques = sorted({int(v) for v in values})
        names = [str(u) for u in uniques]
        keys = [str(int(v)) for v in values]
    else:
        keys = [_text(v) for v in values]
        names = sorted(set(keys))
    lookup = {name: code for code, name in enumerate(names)}
    return np.array([lookup[k] for k in keys], dtype=np.int64), names


def _images(items: list[Any], path: Path, **options: Any) -> np.ndarray:
    sources = []
    for index, item in enumerate(items):
        data = _get(item, "imgs")
        if not isinstance(data, bytes | bytearray) or not data:
            raise DataError(f"{path}: Item[{index}] has no JPEG bytes under 'imgs'.")
        sources.append(bytes(data))
    labels = [f"{path} Item[{index}]" for index in range(len(items))]
    return load_image_stack(sources, labels, origin=str(path), **options)


def _check_counts(parts: list[Any], n_items: int, path: Path) -> None:
    if len(parts) >= 6 and isinstance(parts[5], int | np.integer) and int(parts[5]) != n_items:
        raise DataError(f"{path}: itemnum is {int(parts[5])} but Item holds {n_items} items.")


def load_dvbpr(
    path: str | os.PathLike[str],
    *,
    trust_pickle: bool = False,
    mode: str | None = None,
    size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resample: str = "bicubic",
) -> Dataset:
    """Load a DVBPR partitioned .npy (Kang et al. 2017) as a Dataset whose split comes from the
    file (train 0, validation 1, test 2).

    The file is a pickle: it is only unpickled with ``trust_pickle=True``. The JPEG bytes are
    decoded like a folder's images (``mode``, ``size`` default to the majority; conversions are
    reported by a warning); pass ``size`` to bound memory on the full releases. Users keep the
    file's order; timestamps come from the file when every interaction has one, else they are
    file positions.
    """
    path = Path(path)
    parts = _unpickle(path, trust_pickle)
    items = _as_sequence(parts[3], path)
    if not items:
        raise DataError(f"{path}: Item holds no items.")
    _check_counts(parts, len(items), path)
    frame, timed = read_interactions(parts[:3], len(items), path)
    images = _images(items, path, mode=mode, size=size, max_pixels=max_pixels, resample=resample)
    codes, names = _categories(items)
    catalog = ItemCatalog(item_ids=_item_ids(items), images=images, categories=codes,
                          category_names=names, name=path.name.split(".")[0])
    users, user_ids = pd.factorize(frame["user_id"])
    log = Interactions(user=users, item=frame["item"].to_numpy(),
                       timestamp=frame["timestamp"].to_numpy(dtype=np.int64),
                       user_ids=np.asarray(user_ids, dtype=object))
    meta = {"source": "dvbpr", "path": str(path),
            "timestamps": "file" if timed else "file order"}
    return Dataset(catalog=catalog, interactions=log, split=frame["split"].to_numpy(), meta=meta)
