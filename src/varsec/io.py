"""Small I/O helpers shared by every layer: atomic writes, content hashes, quiet progress bars."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from varsec.errors import ConfigError, VarsecError

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


MANIFEST = "manifest.json"
# Errors of the file system, not of the caller's code: these become one-line WriteErrors.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                           errno.EFBIG, errno.EIO})


class WriteError(VarsecError):
    """An output could not be written: disk full, permission denied, read-only file system."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason}.")
        self.path = path
        self.reason = reason


def _write_error(target: Path, exc: OSError, tmp: Path | None = None) -> WriteError:
    """A WriteError naming ``target`` (or the file under it that failed) and the reason."""
    if isinstance(exc, WriteError):
        failed, reason = exc.path, exc.reason
    else:
        failed = Path(exc.filename) if exc.filename else target
        code = exc.errno or errno.ENOSPC  # errno-less: _is_write_error found the disk full
        reason = os.strerror(code).lower()
    if tmp is not None:
        failed = _under_target(failed, tmp, target)
    elif failed != target and failed.parent == target.parent and failed.name.endswith(".tmp"):
        failed = target  # the temporary name means nothing to the user
    return WriteError(failed, reason)


def _under_target(path: Path, tmp: Path, target: Path) -> Path:
    """``path`` inside the temporary directory ``tmp`` shown under its final name ``target``;
    a temporary file's name is shown as the name it was being written for."""
    try:
        relative = path.relative_to(tmp)
    except ValueError:
        return target
    parts = [_final_name(part) for part in relative.parts]
    return target.joinpath(*parts)


def _final_name(name: str) -> str:
    # ".NAME.<12 hex>.tmp" -> "NAME" (see _temporary_name).
    if name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3:
        return name[1:].rsplit(".", 2)[0]
    return name


def _is_write_error(exc: BaseException, target: Path) -> bool:
    if isinstance(exc, WriteError):
        return True
    if not isinstance(exc, OSError):
        return False
    if exc.errno is None:
        # numpy's tofile reports a short write as "N requested and M written", without errno.
        return _disk_full(target)
    return exc.errno in _WRITE_ERRNOS


def _disk_full(target: Path) -> bool:
    try:
        stats = os.statvfs(_nearest_existing(target.parent))
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        return False
    return stats.f_bavail == 0


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path: str | os.PathLike[str], *, in_place: bool = False) -> None:
    """ConfigError unless ``path`` can be created: its nearest existing ancestor must be a
    writable directory (``in_place``: ``path`` itself when it exists, for outputs written
    inside an existing directory; otherwise its parent, where temporary names are made)."""
    path = Path(path)
    start = path if in_place and path.is_dir() else path.parent
    ancestor = _nearest_existing(start)
    if not ancestor.is_dir():
        raise ConfigError(f"cannot create {path}: {ancestor} is a file, not a directory.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: directory {ancestor} is not writable.")


def output_kind(directory: str | os.PathLike[str]) -> str | None:
    """The kind of varsec output ``directory`` holds, from its ``manifest.json``, else None.

    Catalog-style manifests say ``{"format": "varsec", "kind": K}``; older per-layer ones say
    ``{"format": "varsec-K"}`` (the attack runs).
    """
    try:
        manifest = json.loads((Path(directory) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    form = manifest.get("format")
    if form == "varsec" and isinstance(manifest.get("kind"), str):
        return manifest["kind"]
    if isinstance(form, str) and form.startswith("varsec-"):
        return form.removeprefix("varsec-")
    return None


_REPLACE_HINT = "choose another output directory, or replace it with --force (overwrite=True)"


def check_output_dir(path: str | os.PathLike[str], kind: str | None, *,
                     overwrite: bool = False, in_place: bool = False,
                     remedy: str = _REPLACE_HINT) -> None:
    """Refuse, before any compute, an output directory whose content varsec must not replace.

    An existing file is always refused (it is never moved or deleted). An existing non-empty
    directory is accepted only when it holds a varsec output of the same ``kind`` (its
    ``manifest.json`` says so) or when ``overwrite`` is true; an empty one is fine. ``kind``
    None skips the content check: the caller owns the location (the study's stage cache).
    ``in_place``: the output is written inside the directory (see :func:`check_writable`);
    ``remedy`` ends the refusal's message.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} is a file, not a directory; choose another output "
                          "directory (the file is left untouched).")
    check_writable(path, in_place=in_place)
    if kind is None or overwrite or not path.is_dir() or not any(path.iterdir()):
        return
    found = output_kind(path)
    if found == kind:
        return
    what = f"a varsec {found} output" if found else f"not a varsec {kind} output"
    raise ConfigError(f"{path} is a non-empty directory ({what}); {remedy}.")


def check_output_file(path: str | os.PathLike[str], expected: str = "a file path") -> None:
    """Refuse, before any compute, a file output that is a directory or cannot be created."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; expected {expected} (the directory is left "
                          "untouched).")
    check_writable(path)


def write_output_manifest(directory: str | os.PathLike[str], kind: str,
                          info: dict[str, Any] | None = None) -> None:
    """Write ``manifest.json`` (format varsec, ``kind``, the sha256 of every other file) so a
    later run recognises the directory as its own output."""
    directory = Path(directory)
    files = {p.relative_to(directory).as_posix(): sha256_file(p)
             for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MANIFEST}
    write_json_atomic(directory / MANIFEST, {"format": "varsec", "version": 1, "kind": kind,
                                             "files": files, "info": info or {}})


def _make_parent(target: Path) -> None:
    ancestor = _nearest_existing(target.parent)
    if not ancestor.is_dir():
        raise ConfigError(f"cannot create {target}: {ancestor} is a file, not a directory.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if _is_write_error(exc, target):
            raise _write_error(target, exc) from exc
        raise


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    A crash or exception leaves ``target`` untouched and removes the temporary file, so nothing
    half-written is ever visible under the final name. A directory as ``target`` is a
    ConfigError; a full disk or a permission problem while writing is a :class:`WriteError`
    naming ``target``.
    """
    target = Path(target)
    if target.is_dir():
        raise ConfigError(f"{target} is a directory; expected a file path (the directory is "
                          "left untouched).")
    _make_parent(target)
    tmp = _temporary_name(target)
    try:
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            yield tmp
            os.replace(tmp, target)
        except (OSError, WriteError) as exc:
            if _is_write_error(exc, target):
                raise _write_error(target, exc) from exc
            raise
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], *, kind: str | None = None,
               overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; move it onto ``target`` only on success.

    ``target`` is checked with :func:`check_output_dir` before the block runs and again just
    before the swap: an existing file, or a non-empty directory that is not a varsec ``kind``
    output, is refused unless ``overwrite``. An accepted existing directory is moved aside
    under a fresh hidden name only until the new one is in place (it is put back when the swap
    fails). ``kind`` None: the caller owns the location and it is replaced as a whole. A
    symbolic link is followed: the directory it points to is the one written.
    """
    target = Path(target)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    check_output_dir(target, kind, overwrite=overwrite)
    _make_parent(target)
    tmp = _temporary_name(target)
    try:
        try:
            tmp.mkdir()
            yield tmp
            check_output_dir(target, kind, overwrite=overwrite)
            _swap_in(tmp, target)
        except (OSError, WriteError) as exc:
            if _is_write_error(exc, target):
                raise _write_error(target, exc, tmp) from exc
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` onto ``target``; an existing ``target`` is removed only once replaced."""
    if not target.exists():
        os.replace(tmp, target)
        return
    backup = _backup_name(target)
    os.replace(target, backup)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(backup, target)
        raise
    shutil.rmtree(backup)


def _backup_name(target: Path) -> Path:
    # Never an existing entry: a user's ".NAME.old" is left alone, not removed.
    backup = target.with_name(f".{target.name}.old")
    while backup.exists() or backup.is_symlink():
        backup = target.with_name(f".{target.name}.{secrets.token_hex(6)}.old")
    return backup


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


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"))


def describe_non_regular(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as a file, when something is there but not a regular file.

    Returns None for a regular file (or a symlink to one) and for a path where nothing exists
    (the caller's "no such file" message fits), else a phrase that follows the path in an error
    message: ``"is a character device, not a regular file"``, ``"is a symlink to /dev/zero,
    which is a character device, not a regular file"``, ``"is a broken symlink to x.pt"``.
    """
    path = Path(path)
    link = path.is_symlink()
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"is a broken symlink to {os.readlink(path)}" if link else None
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISREG(info.st_mode):
        return None
    kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
    what = kind if kind == "not a regular file" else f"{kind}, not a regular file"
    if link:
        return f"is a symlink to {os.path.realpath(path)}, which is {what}"
    return f"is {what}"


def not_a_file_message(path: str | os.PathLike[str], missing: str) -> str:
    """The one-sentence error for a ``path`` that is not a readable regular file.

    ``"<path>: <missing>."`` when nothing is there (``missing`` is the caller's phrase, e.g.
    ``"no such checkpoint file"``); otherwise what is there (:func:`describe_non_regular`), so
    a symlink to ``/dev/zero`` or a FIFO is never reported as missing.
    """
    problem = describe_non_regular(path)
    return f"{path} {problem}." if problem else f"{path}: {missing}."
