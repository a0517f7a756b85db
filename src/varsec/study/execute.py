"""Running one stage: seed, call its implementation in a temporary directory, commit atomically.

:func:`execute_stage` is what every executor runs (in-process for ``local``, as a Ray task for
``ray``): it builds the stage's inputs from the cache, seeds every random generator from the
stage's seed, calls the registered implementation with a fresh work directory, writes the rows,
``info.json``, ``stage.json`` and finally ``DONE`` (the size, mtime and sha256 of every file
written), and renames the directory into the cache.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from varsec.errors import VarsecError
from varsec.study.cache import INFO, META, ROWS, StageCache, write_done
from varsec.study.results import rows_frame
from varsec.study.schema import StudyConfig
from varsec.study.stages import (
    Stage,
    StageContext,
    StageImpl,
    StageUnavailableError,
    implementation_version,
    stage_impl,
)

DONE_STATES = ("done", "cached")


@dataclass
class StageStatus:
    """What happened to a stage in this run."""

    state: str  # done | cached | not-run | failed
    reason: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the stage's output exists (computed now or before)."""
        return self.state in DONE_STATES

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class StageFailedError(VarsecError):
    """A stage raised an unexpected error; the message names the stage and the cause."""


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def stage_threads(stage: Stage, study: Any) -> int:
    """The CPU thread count a stage runs on: its config's (it keys the cache), else the study's."""
    threads = stage.config.get("threads", getattr(study, "threads", None))
    return int(threads) if threads else StudyConfig.model_fields["threads"].default


@contextlib.contextmanager
def thread_limits(threads: int) -> Iterator[None]:
    """Run torch's intra-op pool and the BLAS libraries (OpenBLAS behind numpy) on ``threads``
    threads, then restore the caller's settings.

    Reductions split their work by thread count, not by the cores that run the threads, so a
    fixed count gives the same numbers on one core and on many. Inter-op threads are left
    alone: eager CPU ops do not use them (and torch allows setting them only once).
    """
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(previous)


def _endpoint_usage() -> dict[str, int]:
    """Requests and uploads this process has sent to HTTP endpoints so far (none before the
    endpoint recommender's module is loaded)."""
    module = sys.modules.get("varsec.recsys.http_endpoint")
    return module.endpoint_usage() if module is not None else {}


def execute_stage(stage: Stage, out: str | Path, study: Any, stages: dict[str, Stage],
                  device: str = "cpu", log: Any = None,
                  impl: StageImpl | None = None) -> StageStatus:
    """Compute one stage into the cache (see the module docstring).

    :class:`StageUnavailableError` becomes a ``not-run`` status; a :class:`VarsecError` propagates
    unchanged; any other exception is wrapped in :class:`StageFailedError` naming the stage.
    ``impl`` overrides the registered implementation (executors pass it to remote workers).
    """
    cache = StageCache(out)
    impl = impl or stage_impl(stage.kind)
    if impl is None:
        return StageStatus("not-run", f"no implementation of {stage.kind} stages is registered")
    reason = impl.unavailable_reason(stage.config)
    if reason:
        return StageStatus("not-run", reason)
    started = time.perf_counter()
    inputs = {role: cache.output(stages[key], stages) for role, key in stage.inputs.items()}
    try:
        with thread_limits(stage_threads(stage, study)), cache.writing(stage) as workdir:
            ctx = StageContext(stage=stage, workdir=workdir, study=study, device=device,
                               log=log or (lambda message: None))
            seed_everything(int(stage.config.get("seed", 0)))
            before = _endpoint_usage()
            rows = impl.fn(ctx, stage.config, inputs)
            spent = {k: v - before.get(k, 0) for k, v in _endpoint_usage().items()
                     if v != before.get(k, 0)}
            if spent:  # what the stage asked of a model behind an endpoint (kind: http)
                ctx.info["endpoint"] = spent
            frame = rows_frame(rows, stage.labels, study.study)
            frame.to_parquet(workdir / ROWS, index=False)
            (workdir / INFO).write_text(json.dumps(ctx.info, indent=2, sort_keys=True,
                                                   default=str) + "\n")
            seconds = time.perf_counter() - started
            meta = {"kind": stage.kind, "key": stage.key, "name": stage.name,
                    "config": stage.config, "inputs": stage.inputs, "labels": stage.labels,
                    "version": implementation_version(stage.kind), "seconds": seconds,
                    "rows": len(frame)}
            (workdir / META).write_text(json.dumps(meta, indent=2, sort_keys=True,
                                                   default=str) + "\n")
            write_done(workdir)  # last: the sha256 of every file above
    except StageUnavailableError as exc:
        return StageStatus("not-run", str(exc))
    except VarsecError:
        raise
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        raise StageFailedError(f"stage '{stage.name}' failed: {detail}") from exc
    return StageStatus("done", seconds=time.perf_counter() - started)


__all__ = ["DONE_STATES", "StageFailedError", "StageStatus", "execute_stage", "seed_everything",
           "stage_threads", "thread_limits"]
