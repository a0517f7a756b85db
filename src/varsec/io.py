"""Small I/O helpers shared by every layer: atomic writes, content hashes, quiet progress bars."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Return the hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_array(array: np.ndarray) -> str:
    """Hash an array's dtype, shape and contents (C order), without copying when contiguous."""
    digest = hashlib.sha256()
    digest.update(str(array.dtype.str).encode())
    digest.update(repr(tuple(array.shape)).encode())
    contiguous = np.ascontiguousarray(array)
    view = memoryview(contiguous.reshape(-1).view(np.uint8)) if contiguous.size else b""
    for start in range(0, len(view), 64 * _CHUNK):
        digest.update(view[start : start + 64 * _CHUNK])
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    A crash or exception leaves ``target`` untouched and removes the temporary file, so nothing
    half-written is ever visible under the final name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(target)
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; move it onto ``target`` only on success.

    An existing ``target`` is replaced as a whole once the new content is complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(target)
    try:
        tmp.mkdir()
        yield tmp
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            if backup.exists():
                shutil.rmtree(backup)
            os.replace(target, backup)
            os.replace(tmp, target)
            shutil.rmtree(backup)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _temporary_name(target: Path) -> Path:
    # The name is chosen before anything is created, and the creation happens inside the caller's
    # try block: an interrupt between the two can then never leave an entry nobody removes.
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_npy_atomic(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Save an array as .npy (no pickle), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar on a terminal; plain iteration in CI or when piped."""
    quiet = not sys.stderr.isatty() or os.environ.get("CI") or os.environ.get("VARSEC_QUIET")
    if quiet:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)
