"""Recognise which data format a path holds, so ``varsec`` commands can take any of them.

Formats: ``varsec`` (a directory saved by :class:`~varsec.data.catalog.Dataset` /
:class:`~varsec.data.catalog.ItemCatalog`, with manifest.json), ``folder`` (a directory with
items.csv, :mod:`varsec.data.folder`), ``vbpr`` (a ``.b`` features file, :mod:`varsec.data.vbpr`),
``tradesy`` (``.json`` / ``.json.gz`` with ``uid`` records, :mod:`varsec.data.tradesy`) and
``dvbpr`` (a pickled ``.npy``, :mod:`varsec.data.dvbpr`). Detection reads at most a few KiB and
never unpickles anything.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path

from varsec.errors import DataError
from varsec.io import not_a_file_message

FORMATS = ("varsec", "folder", "vbpr", "tradesy", "dvbpr")
ACCEPTED = (
    "a varsec directory with manifest.json, a folder with items.csv, a VBPR .b features file, "
    "a Tradesy .json/.json.gz file or a DVBPR .npy file"
)
_HEAD_BYTES = 64 * 1024
_UID_KEY = re.compile(rb"""["']uid["']\s*:""")
_REVIEW_KEY = re.compile(rb"""["']reviewerID["']\s*:""")


def _head(path: Path) -> bytes:
    """The first bytes of a file, decompressed when it is gzipped (a truncated tail is fine)."""
    with open(path, "rb") as handle:
        raw = handle.read(_HEAD_BYTES)
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, _HEAD_BYTES)
    except zlib.error as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc}).") from exc


def _detect_json(path: Path) -> str:
    head = _head(path)
    if _UID_KEY.search(head):
        return "tradesy"
    if _REVIEW_KEY.search(head):
        raise DataError(
            f"{path}: looks like Amazon reviews, which load with their VBPR .b features file "
            "(load_vbpr(features, reviews)), not on their own."
        )
    raise DataError(f"{path}: a JSON file without 'uid' records (expected {ACCEPTED}).")


def _is_json_name(name: str) -> bool:
    return name.endswith((".json", ".json.gz", ".jsonl", ".jsonl.gz"))


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return the format of ``path``: one of varsec, folder, vbpr, tradesy, dvbpr.

    Raises DataError naming the path and the accepted formats when it is none of them.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return "varsec"
        if (path / "items.csv").is_file():
            return "folder"
        raise DataError(
            f"{path}: a directory without manifest.json or items.csv (expected {ACCEPTED})."
        )
    if not path.is_file():
        raise DataError(not_a_file_message(path, "no such file or directory"))
    name = path.name.lower()
    if name.endswith(".b"):
        return "vbpr"
    if name.endswith(".npy"):
        return "dvbpr"
    if _is_json_name(name):
        return _detect_json(path)
    raise DataError(f"{path}: unrecognised data format (expected {ACCEPTED}).")


__all__ = ["ACCEPTED", "FORMATS", "detect_format"]
