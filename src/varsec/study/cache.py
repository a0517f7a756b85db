"""The stage cache: ``OUT/cache/<kind>/<key>/``, written atomically, finished by a DONE marker.

A stage directory holds what the stage wrote (relative paths only), ``rows.parquet`` (its rows of
the results table), ``info.json`` (what it wants its consumers and the report to know),
``stage.json`` (kind, key, config, inputs, labels, version, timing) and ``DONE``. The directory
is built under a temporary name and renamed into place only when complete, so a run killed at
any moment leaves either a finished stage or nothing (stale temporary directories are removed
by the next run).

``DONE`` is a JSON record of every file the stage wrote (relative path, size, mtime_ns, sha256).
A cached stage is reused only when :meth:`StageCache.verify` finds exactly those files: by
default a file whose size and mtime are unchanged is trusted and any other is hashed; a full
check hashes every file. A stage whose directory holds a file its ``DONE`` does not list fails
the check and is recomputed; since varsec did not write that file, the old directory is moved to
``OUT/kept/`` (with a warning naming it) instead of being replaced.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from varsec.errors import ConfigError, DataError, VarsecWarning
from varsec.io import atomic_dir, sha256_file
from varsec.study.stages import Stage, StageOutput

DONE = "DONE"
ROWS = "rows.parquet"
INFO = "info.json"
META = "stage.json"
UNITS = "units.npz"
LOCK = ".varsec-run.lock"
DONE_FORMAT = "varsec-stage"
DONE_VERSION = 1


def _stage_files(directory: Path) -> list[str]:
    """Every file under a stage directory except its DONE (sorted relative POSIX paths)."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in files:
            relative = (Path(root) / name).relative_to(directory).as_posix()
            if relative != DONE:
                found.append(relative)
    return sorted(found)


def done_record(directory: str | Path) -> dict[str, Any]:
    """The content of a stage's DONE: size, mtime_ns and sha256 of every file it wrote."""
    directory = Path(directory)
    files = {}
    for relative in _stage_files(directory):
        path = directory / relative
        stat = path.stat()
        files[relative] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                           "sha256": sha256_file(path)}
    return {"format": DONE_FORMAT, "version": DONE_VERSION, "files": files}


def write_done(directory: str | Path) -> None:
    """Write DONE, the last file of a stage directory (see :func:`done_record`)."""
    record = done_record(directory)
    (Path(directory) / DONE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def check_stage_dir(directory: str | Path, *, full: bool = False) -> str | None:
    """None when ``directory`` holds exactly the files its DONE lists, unchanged; else what is
    wrong, naming the file. ``full`` hashes every file instead of trusting unchanged stats."""
    directory = Path(directory)
    listed = _read_done(directory)
    if isinstance(listed, str):
        return listed
    for relative, expected in listed.items():
        problem = _check_file(directory / relative, expected, full)
        if problem:
            return problem
    for relative in _stage_files(directory):
        if relative not in listed:
            return f"{directory / relative} was not written by the stage (not in its DONE)"
    return None


def _read_done(directory: Path) -> dict[str, Any] | str:
    path = directory / DONE
    try:
        text = path.read_text()
    except OSError as exc:
        return f"{path} is unreadable ({exc.strerror or exc})"
    if not text.strip():
        return f"{path} lists no file hashes (written by an older varsec)"
    try:
        record = json.loads(text)
        files = record["files"]
        if record.get("format") != DONE_FORMAT or not isinstance(files, dict):
            raise ValueError
        for entry in files.values():
            int(entry["size"]), int(entry["mtime_ns"]), str(entry["sha256"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{path} is not a varsec stage record"
    return files


def _check_file(path: Path, expected: dict[str, Any], full: bool) -> str | None:
    try:
        stat = path.stat()
    except OSError:
        return f"{path} is missing"
    if not path.is_file():
        return f"{path} is not a file"
    if stat.st_size != int(expected["size"]):
        return f"{path} changed since it was written (size)"
    unchanged = stat.st_mtime_ns == int(expected["mtime_ns"])
    if (full or not unchanged) and sha256_file(path) != expected["sha256"]:
        return f"{path} changed since it was written"
    return None


class StageCache:
    """The cache directory of one study output directory."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.root = self.out / "cache"

    def path(self, stage: Stage | str, kind: str | None = None) -> Path:
        """The directory of a stage (by Stage, or by key and kind)."""
        if isinstance(stage, Stage):
            return self.root / stage.kind / stage.key
        assert kind is not None
        return self.root / kind / stage

    def is_done(self, stage: Stage) -> bool:
        """True when the stage finished (its DONE exists); :meth:`verify` says whether its
        files are still the ones it wrote."""
        return (self.path(stage) / DONE).is_file()

    def verify(self, stage: Stage, *, full: bool = False) -> str | None:
        """None when a finished stage's files are exactly what it wrote; else the problem,
        naming the file (see :func:`check_stage_dir`)."""
        return check_stage_dir(self.path(stage), full=full)

    @contextlib.contextmanager
    def writing(self, stage: Stage) -> Iterator[Path]:
        """A temporary directory that becomes the stage's directory when the block succeeds.

        The caller writes everything, ``DONE`` last; an exception or a kill leaves nothing.
        An old directory holding files the stage did not write is kept aside, not deleted.
        """
        self._keep_foreign_files(self.path(stage))
        with atomic_dir(self.path(stage)) as tmp:
            yield tmp

    def _keep_foreign_files(self, directory: Path) -> None:
        """Move ``directory`` to ``OUT/kept/`` when it holds a file its DONE does not list."""
        listed = _read_done(directory) if directory.is_dir() else {}
        known = listed if isinstance(listed, dict) else {}
        foreign = [name for name in _stage_files(directory) if name not in known] \
            if directory.is_dir() and isinstance(listed, dict) else []
        if not foreign:
            return
        kept = self.out / "kept" / f"{directory.parent.name}-{directory.name}"
        while kept.exists():
            kept = kept.with_name(f"{kept.name}-{secrets.token_hex(3)}")
        kept.parent.mkdir(parents=True, exist_ok=True)
        os.replace(directory, kept)
        warnings.warn(f"{directory} held {len(foreign)} file(s) varsec did not write "
                      f"({foreign[0]}{', ...' if len(foreign) > 1 else ''}); the old stage "
                      f"directory is kept as {kept}.", VarsecWarning, stacklevel=2)

    def rows(self, stage: Stage) -> pd.DataFrame:
        """The rows a finished stage contributed to the results table."""
        path = self.path(stage) / ROWS
        if not path.is_file():
            return pd.DataFrame()
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DataError(f"{path}: not a readable parquet file ({_first_line(exc)}); run "
                            f"again with --verify to recompute the stage.") from None

    def info(self, stage: Stage | str, kind: str | None = None) -> dict[str, Any]:
        """The ``info.json`` of a finished stage ({} when absent)."""
        path = self.path(stage, kind) / INFO
        if not path.is_file():
            return {}
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable JSON file ({_first_line(exc)}); run again "
                            f"with --verify to recompute the stage.") from None
        if not isinstance(info, dict):
            raise DataError(f"{path}: expected a JSON object; run again with --verify to "
                            f"recompute the stage.")
        return info

    def output(self, stage: Stage, stages: dict[str, Stage],
               memo: dict[str, StageOutput] | None = None) -> StageOutput:
        """The :class:`StageOutput` of a finished stage, with its inputs (recursively)."""
        memo = {} if memo is None else memo
        if stage.key in memo:
            return memo[stage.key]
        inputs = {role: self.output(stages[key], stages, memo)
                  for role, key in stage.inputs.items()}
        result = StageOutput(kind=stage.kind, key=stage.key, path=self.path(stage),
                             config=stage.config, info=self.info(stage), inputs=inputs)
        memo[stage.key] = result
        return result

    def clean_stale(self) -> int:
        """Remove temporary directories left by killed runs; returns how many."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for kind_dir in self.root.iterdir():
            if not kind_dir.is_dir():
                continue
            for entry in kind_dir.iterdir():
                if entry.name.startswith(".") and entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
        return removed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class RunLock:
    """An exclusive lock on an output directory.

    The lock file holds the owner's pid, host and process start token (boot id and start time
    from ``/proc``), written to a temporary file and hard-linked into place, so it is never
    seen empty or half-written. A lock whose owner is gone, or whose pid now belongs to a
    process started at another time (a reused pid), is stale and taken over.
    """

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / LOCK
        self._token = ""

    def __enter__(self) -> RunLock:
        try:
            self._take()
        except OSError as exc:
            out = self.path.parent
            if out.exists() and not out.is_dir():
                raise ConfigError(f"{out}: not a directory; --out must be a writable "
                                  "directory.") from None
            raise ConfigError(
                f"{self.path}: cannot create the run lock ({exc.strerror or exc}); --out must "
                "be a writable directory."
            ) from None
        return self

    def _take(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._token = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "start": _start_token(os.getpid())}, sort_keys=True)
        for _ in range(10):
            if self._create():
                return
            text = self._read()
            if text is None:
                continue  # released meanwhile
            owner = _parse_lock(text)
            if owner is not None and _holds(owner):
                raise ConfigError(self._busy(owner))
            self._take_over(text)
        raise ConfigError(f"{self.path}: the run lock keeps changing hands; another varsec run "
                          "is starting in this output directory.")

    def _create(self) -> bool:
        """Put our lock in place atomically; False when a lock file already exists."""
        tmp = self.path.with_name(f"{LOCK}.{secrets.token_hex(6)}.tmp")
        try:
            with open(tmp, "x", encoding="utf-8") as handle:
                handle.write(self._token + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                return self._create_without_links()
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _create_without_links(self) -> bool:
        """For file systems without hard links: exclusive create, removed again on failure."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self._token + "\n")
        except BaseException:
            with contextlib.suppress(OSError):
                self.path.unlink()
            raise
        return True

    def _take_over(self, stale: str) -> None:
        """Remove a stale lock, unless another run replaced it since we read it."""
        moved = self.path.with_name(f"{LOCK}.{secrets.token_hex(6)}.stale")
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return
        try:
            if moved.read_text(encoding="utf-8", errors="replace") != stale:
                with contextlib.suppress(FileExistsError):
                    os.link(moved, self.path)  # a live lock taken by mistake: put it back
        finally:
            moved.unlink()

    def _read(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None

    def _busy(self, owner: dict[str, Any]) -> str:
        where = f"pid {owner['pid']}"
        if owner.get("host") and owner["host"] != socket.gethostname():
            where += f" on host {owner['host']}"
        return (f"{self.path.parent}: another varsec run ({where}) is using this output "
                f"directory; wait for it to end, or if no such run is going on, delete "
                f"{self.path} and run again.")

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            if self.path.read_text(encoding="utf-8").strip() == self._token:
                self.path.unlink()


def _parse_lock(text: str) -> dict[str, Any] | None:
    """The owner a lock file names; None for an empty or unreadable (hence stale) lock."""
    text = text.strip()
    if text.isdigit():  # the bare pid an older varsec wrote
        return {"pid": int(text), "start": None, "host": None, "legacy": True}
    try:
        owner = json.loads(text)
        owner["pid"] = int(owner["pid"])
    except (ValueError, KeyError, TypeError):
        return None
    return owner if owner["pid"] > 0 else None


def _holds(owner: dict[str, Any]) -> bool:
    """True when the lock's owner may still be running."""
    if owner.get("host") and owner["host"] != socket.gethostname():
        return True  # cannot look at another machine's processes
    pid, recorded = int(owner["pid"]), owner.get("start")
    if pid == os.getpid():
        # Our own pid: held by this process only if written by it (same start token); a bare
        # pid comes from an older varsec, so from another process that had our pid.
        return not owner.get("legacy") and recorded == _start_token(pid)
    if not _alive(pid):
        return False
    current = _start_token(pid)
    return not (recorded and current and recorded != current)


def _start_token(pid: int) -> str | None:
    """``<boot id>:<start time in clock ticks>`` of a process (None where /proc is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["DONE", "INFO", "META", "ROWS", "UNITS", "RunLock", "StageCache", "check_stage_dir",
           "done_record", "write_done"]
