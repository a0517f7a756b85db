"""The VBPR release format (He & McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit
Feedback", AAAI 2016): ``image_features_<category>.b`` plus Amazon reviews.

The features file is a run of records, each a 10-byte space-padded ASCII item id (the ASIN)
followed by 4096 little-endian float32 (the fc7 layer of a Caffe reference network): 16,394 bytes a
record. It is read through ``np.memmap`` with a structured dtype, never record by record. The
reviews are JSON lines (optionally gzipped) with ``reviewerID``, ``asin`` and ``unixReviewTime``;
McAuley's older dumps hold Python-literal dicts per line, which are accepted too. The resulting
catalog is features-only (no pixels): feature-level attacks work on it, pixel attacks do not.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from varsec.data.catalog import Dataset, Interactions, ItemCatalog
from varsec.data.timestamps import timestamp_value
from varsec.errors import ConfigError, DataError, VarsecWarning
from varsec.io import not_a_file_message

ID_BYTES = 10
DEFAULT_DIM = 4096
_CHUNK_ROWS = 2048
_LITERAL_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError)


# -- the .b features file -------------------------------------------------------------------------
def record_dtype(dim: int = DEFAULT_DIM) -> np.dtype:
    """The structured dtype of one record: a 10-byte id and ``dim`` little-endian float32."""
    if not isinstance(dim, int | np.integer) or dim <= 0:
        raise ConfigError(f"feature dimension {dim!r} must be a positive integer.")
    return np.dtype([("id", f"S{ID_BYTES}"), ("features", "<f4", (int(dim),))])


def open_vbpr_features(path: str | os.PathLike[str], *, dim: int = DEFAULT_DIM) -> np.ndarray:
    """Memory-map a VBPR ``.b`` file as a structured array of records (nothing is read yet)."""
    path = Path(path)
    dtype = record_dtype(dim)
    if not path.is_file():
        raise DataError(not_a_file_message(path, "no such features file"))
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: the features file is empty.")
    if size % dtype.itemsize:
        raise DataError(
            f"{path}: size {size} bytes is not a multiple of the {dtype.itemsize}-byte record "
            f"({ID_BYTES}-byte id + {dim} float32), so the file is truncated or dim is wrong."
        )
    return np.memmap(path, dtype=dtype, mode="r")


def decode_ids(raw: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """Decode the 10-byte space-padded ASCII ids (vectorised) and check they are non-empty and
    unique; returns an object array of str."""
    try:
        ids = np.char.strip(np.asarray(raw).astype(f"U{ID_BYTES}"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: item ids must be ASCII ({exc.reason}).") from exc
    empty = np.flatnonzero(ids == "")
    if len(empty):
        raise DataError(f"{path}: record {int(empty[0])} has a blank item id.")
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path}: item id {str(values[counts > 1][0])!r} appears more than once.")
    return ids.astype(object)


def copy_features(
    records: np.ndarray, rows: np.ndarray, ids: np.ndarray, path: str | os.PathLike[str]
) -> np.ndarray:
    """Copy the features of ``rows`` into a float32 array in chunks, rejecting NaN / inf with the
    first bad item id."""
    rows = np.asarray(rows, dtype=np.int64)
    dim = records.dtype["features"].shape[0]
    out = np.empty((len(rows), dim), dtype=np.float32)
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk = records[rows[start : start + _CHUNK_ROWS]]["features"]
        finite = np.isfinite(chunk).all(axis=1)
        if not finite.all():
            bad = rows[start + int(np.argmin(finite))]
            raise DataError(f"{path}: the features of item {ids[bad]!r} hold NaN or inf.")
        out[start : start + len(chunk)] = chunk
    return out


def read_vbpr_features(
    path: str | os.PathLike[str], *, dim: int = DEFAULT_DIM
) -> tuple[np.ndarray, np.ndarray]:
    """Read a whole VBPR ``image_features_*.b`` file: (ids as str, float32 N x dim features)."""
    records = open_vbpr_features(path, dim=dim)
    ids = decode_ids(records["id"], path)
    return ids, copy_features(records, np.arange(len(records)), ids, path)


# -- JSON records (shared with the Tradesy loader) ------------------------------------------------
def _open_text(path: Path) -> IO[str]:
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def parse_record(text: str, path: str | os.PathLike[str], where: str) -> Any:
    """Parse one JSON value, falling back to a Python literal (McAuley's old dumps) only if JSON
    fails; never evaluates code."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except _LITERAL_ERRORS as exc:
        raise DataError(
            f"{path}: {where} is neither JSON nor a Python literal ({type(exc).__name__})."
        ) from exc


def _iter_lines(handle: IO[str], path: Path) -> Iterator[tuple[str, Any]]:
    first = True
    for number, line in enumerate(handle, start=1):
        text = line.strip()
        if not text:
            continue
        if first and text.startswith("["):  # one array of records, not one record a line
            rest = text + handle.read()
            values = parse_record(rest, path, "the top-level array")
            if not isinstance(values, list):
                raise DataError(f"{path}: the top-level value is not an array of records.")
            yield from ((f"record {k + 1}", value) for k, value in enumerate(values))
            return
        first = False
        yield f"line {number}", parse_record(text, path, f"line {number}")


def iter_json_records(path: str | os.PathLike[str]) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, record)`` from a JSON array, JSON lines or Python-literal lines, plain or
    gzipped; ``where`` ("line 3", "record 3") is for error messages."""
    path = Path(path)
    if not path.is_file():
        raise DataError(not_a_file_message(path, "no such file"))
    try:
        with _open_text(path) as handle:
            yield from _iter_lines(handle, path)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable UTF-8 text or gzip file ({exc}).") from exc


def _field(record: Any, key: str, path: Path, where: str) -> Any:
    if not isinstance(record, dict):
        raise DataError(f"{path}: {where} is a {type(record).__name__}, expected an object.")
    if key not in record:
        raise DataError(f"{path}: {where} has no {key!r} field.")
    return record[key]


def read_reviews(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read Amazon reviews (reviewerID, asin, unixReviewTime) into a frame with columns
    user_id, item_id, timestamp."""
    path = Path(path)
    users: list[str] = []
    items: list[str] = []
    stamps: list[int] = []
    for where, record in iter_json_records(path):
        users.append(str(_field(record, "reviewerID", path, where)))
        items.append(str(_field(record, "asin", path, where)))
        stamp = _field(record, "unixReviewTime", path, where)
        try:
            stamps.append(timestamp_value(stamp, f"{path}: {where} 'unixReviewTime'"))
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"{path}: {where} has a non-integer 'unixReviewTime' ({stamp!r})."
            ) from exc
    if not users:
        raise DataError(f"{path}: the reviews file holds no interactions.")
    return pd.DataFrame({"user_id": users, "item_id": items, "timestamp": stamps})


# -- building a dataset (shared with the Tradesy loader) ------------------------------------------
def drop_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep each (user, item) pair once, at its earliest timestamp, in the original order."""
    earliest = frame.sort_values("timestamp", kind="stable")
    kept = earliest.drop_duplicates(["user_id", "item_id"], keep="first").sort_index()
    return kept.reset_index(drop=True), len(frame) - len(kept)


def features_dataset(
    frame: pd.DataFrame,
    features_path: Path,
    source_path: Path,
    *,
    dim: int,
    only_interacted: bool,
    meta: dict[str, Any],
) -> Dataset:
    """Join an interaction frame (user_id, item_id, timestamp) with a ``.b`` features file.

    Interactions whose item has no features are dropped and counted in a warning; the catalog is
    features-only.
    """
    records = open_vbpr_features(features_path, dim=dim)
    ids = decode_ids(records["id"], features_path)
    rows = pd.Index(ids).get_indexer(frame["item_id"].to_numpy())
    known = rows >= 0
    if not known.any():
        raise DataError(
            f"{source_path}: none of its {len(frame)} interactions names an item of "
            f"{features_path} (wrong features file?)."
        )
    dropped = int((~known).sum())
    if dropped:
        warnings.warn(VarsecWarning(
            f"{source_path}: {dropped} of {len(frame)} interactions name items without features "
            f"in {features_path} and were dropped."), stacklevel=3)
    frame, duplicates = drop_duplicates(frame[known].reset_index(drop=True))
    select = np.unique(rows[known]) if only_interacted else np.arange(len(ids))
    catalog = ItemCatalog(item_ids=ids[select],
                          features=copy_features(records, select, ids, features_path),
                          name=features_path.name.split(".")[0])
    log = Interactions.from_ids(frame["user_id"].to_numpy(), frame["item_id"].to_numpy(),
                                catalog, frame["timestamp"].to_numpy(), source=str(source_path))
    info = {"dropped_interactions": dropped, "duplicates_dropped": int(duplicates)}
    return Dataset(catalog=catalog, interactions=log, meta={**meta, **info})


def load_vbpr(
    features_path: str | os.PathLike[str],
    reviews_path: str | os.PathLike[str],
    *,
    dim: int = DEFAULT_DIM,
    only_reviewed: bool = False,
) -> Dataset:
    """Load the VBPR release (He & McAuley 2016): a features-only catalog and review interactions.

    The catalog holds every item of the features file (only those with a review when
    ``only_reviewed``, which also saves memory on the large files). Reviews of items without
    features are dropped with a warning; a repeated (user, item) pair is kept once, at its
    earliest review. No split, no cold items.
    """
    features_path, reviews_path = Path(features_path), Path(reviews_path)
    frame = read_reviews(reviews_path)
    meta = {"source": "vbpr", "path": str(features_path), "reviews": str(reviews_path)}
    return features_dataset(frame, features_path, reviews_path, dim=dim,
                            only_interacted=only_reviewed, meta=meta)
