"""The stage cache: ``OUT/cache/<kind>/<key>/``, written atomically, finished by a DONE marker.

A stage directory holds what the stage wrote (relative paths only), ``rows.parquet`` (its rows of
the results table), ``info.json`` (what it wants its consumers and the report to know),
``stage.json`` (kind, key, config, inputs, labels, version, timing) and ``DONE``. The directory
is built under a temporary name and renamed into place only when complete, so a run killed at
any moment leaves either a finished stage or nothing (stale temporary directories are removed
by the next run).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from varsec.errors import ConfigError
from varsec.io import atomic_dir
from varsec.study.stages import Stage, StageOutput

DONE = "DONE"
ROWS = "rows.parquet"
INFO = "info.json"
META = "stage.json"
UNITS = "units.npz"
LOCK = ".varsec-run.lock"


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
        """True when the stage's output is complete."""
        return (self.path(stage) / DONE).is_file()

    @contextlib.contextmanager
    def writing(self, stage: Stage) -> Iterator[Path]:
        """A temporary directory that becomes the stage's directory when the block succeeds.

        The caller writes everything, ``DONE`` last; an exception or a kill leaves nothing.
        """
        with atomic_dir(self.path(stage)) as tmp:
            yield tmp

    def rows(self, stage: Stage) -> pd.DataFrame:
        """The rows a finished stage contributed to the results table."""
        path = self.path(stage) / ROWS
        return pd.read_parquet(path) if path.is_file() else pd.DataFrame()

    def info(self, stage: Stage | str, kind: str | None = None) -> dict[str, Any]:
        """The ``info.json`` of a finished stage ({} when absent)."""
        path = self.path(stage, kind) / INFO
        return json.loads(path.read_text()) if path.is_file() else {}

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


class RunLock:
    """An exclusive lock on an output directory (a pid file; a dead owner's lock is taken over)."""

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / LOCK

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and _alive(owner):
                    raise ConfigError(
                        f"{self.path.parent}: another varsec run (pid {owner}) is using this "
                        "output directory."
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or "0") or None
        except (OSError, ValueError):
            return None


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


__all__ = ["DONE", "INFO", "META", "ROWS", "UNITS", "RunLock", "StageCache"]
