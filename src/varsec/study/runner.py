"""The study runner: plan, compute what is missing, assemble the results table, write the report.

``run_study("studies/demo.yaml", out="runs/demo")`` expands the study into stages
(:mod:`varsec.study.plan`), skips every stage whose output is already in ``OUT/cache`` and
passes :meth:`StageCache.verify`, runs the rest on the chosen executor, and writes
``results.csv`` / ``results.parquet``, ``config.resolved.yaml``, ``status.json`` and the report.
Killed at any moment and run again, it computes only the missing stages and writes exactly the
rows an uninterrupted run writes (rows come from the cache, in plan order).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from varsec.errors import ConfigError, VarsecWarning
from varsec.io import atomic_path, write_json_atomic
from varsec.study.cache import RunLock, StageCache
from varsec.study.execute import StageStatus
from varsec.study.executors import Job, make_executor
from varsec.study.plan import Plan, plan_study
from varsec.study.results import empty_table, normalise, write_results
from varsec.study.schema import STAGE_KINDS, StudyConfig, load_study, resolved_yaml
from varsec.study.stages import Stage, stage_impl

Log = Callable[[str], None]


@dataclass
class RunResult:
    """What a run produced."""

    out: Path
    config: StudyConfig
    plan: Plan
    statuses: dict[str, StageStatus]
    table: pd.DataFrame
    report: Path | None = None
    seconds: float = 0.0

    def count(self, state: str) -> int:
        """How many stages ended in ``state`` (done, cached, not-run)."""
        return sum(1 for s in self.statuses.values() if s.state == state)


@dataclass
class DryRunEntry:
    """One line of ``--dry-run``."""

    stage: Stage
    status: str  # cached | to do | not available
    estimate: float
    reason: str = ""


@dataclass
class DryRun:
    """The listing ``varsec run --dry-run`` prints."""

    config: StudyConfig
    out: Path
    entries: list[DryRunEntry] = field(default_factory=list)

    def render(self) -> str:
        """A table of stages plus a one-line summary."""
        lines = [f"study {self.config.study}: {len(self.entries)} stages, output {self.out}",
                 f"{'status':<14}{'kind':<12}{'key':<14}{'estimate':>9}  stage"]
        for e in self.entries:
            est = "-" if e.status == "cached" else _duration(e.estimate)
            lines.append(f"{e.status:<14}{e.stage.kind:<12}{e.stage.short_key:<14}{est:>9}  "
                         f"{e.stage.name}" + (f"  [{e.reason}]" if e.reason else ""))
        todo = [e for e in self.entries if e.status == "to do"]
        cached = sum(1 for e in self.entries if e.status == "cached")
        blocked = len(self.entries) - len(todo) - cached
        total = sum(e.estimate for e in todo)
        lines.append(f"{cached} cached, {len(todo)} to do (about {_duration(total)} of work on "
                     f"{self.config.device}, a rough estimate), {blocked} not available yet.")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"


def resolve_config(study: str | Path | StudyConfig, profile: str | None = None) -> StudyConfig:
    """A validated config from a path or an existing :class:`StudyConfig`."""
    if isinstance(study, StudyConfig):
        if profile is None:
            return study
        data = study.model_dump(mode="json")
        from varsec.study.schema import study_from_data

        return study_from_data(data, profile=profile)
    return load_study(study, profile=profile)


def forced_keys(plan: Plan, force: Iterable[str]) -> set[str]:
    """The stages ``--force`` recomputes: the named kinds and everything downstream."""
    kinds = set(force)
    unknown = kinds - set(STAGE_KINDS) - {"all"}
    if unknown:
        raise ConfigError(f"--force takes a stage kind ({', '.join(STAGE_KINDS)} or all), got "
                          f"{', '.join(sorted(unknown))}.")
    if "all" in kinds:
        return {s.key for s in plan}
    return plan.downstream(s.key for s in plan if s.kind in kinds)


def cache_check(plan: Plan, cache: StageCache, forced: set[str], *,
                full: bool = False) -> tuple[set[str], dict[str, str]]:
    """(the stages to compute, {key: problem} of the finished stages that fail verification).

    A stage is computed when it is forced, not finished, or fails :meth:`StageCache.verify`;
    the stages downstream of a forced or failed one are computed too (they may have used what
    is now replaced). ``full`` hashes every cached file instead of trusting unchanged stats.
    """
    replaced: set[str] = set()
    missing: set[str] = set()
    broken: dict[str, str] = {}
    for stage in plan:  # plan order is topological: inputs come first
        if stage.key in forced or any(k in replaced for k in stage.inputs.values()):
            replaced.add(stage.key)
        elif not cache.is_done(stage):
            missing.add(stage.key)
        elif problem := cache.verify(stage, full=full):
            broken[stage.key] = problem
            replaced.add(stage.key)
    return replaced | missing, broken


def _warn_broken(plan: Plan, broken: dict[str, str]) -> None:
    """One warning line per cached stage that failed verification."""
    for key, problem in broken.items():
        users = len(plan.downstream([key])) - 1
        also = f" and the {users} stage{'s' if users > 1 else ''} downstream of it" if users else ""
        warnings.warn(VarsecWarning(f"{problem}; recomputing '{plan.by_key[key].name}'{also}."),
                      stacklevel=3)


def dry_run(study: str | Path | StudyConfig, out: str | Path | None = None, *,
            force: Iterable[str] = (), profile: str | None = None,
            verify: bool = False) -> DryRun:
    """List the stages with cached / to do / not available status and a work estimate.

    A cached stage whose files fail verification (``verify``: hash them all) is "to do", with
    the problem as its reason."""
    config = resolve_config(study, profile)
    out = Path(out) if out is not None else default_out(config)
    plan = plan_study(config)
    cache = StageCache(out)
    forced = forced_keys(plan, force)
    todo, broken = cache_check(plan, cache, forced, full=verify)
    result = DryRun(config, out)
    unavailable: dict[str, str] = {}
    for stage in plan:
        if stage.key not in todo:
            result.entries.append(DryRunEntry(stage, "cached", 0.0))
            continue
        reason = _unavailable(stage, unavailable)
        if reason:
            unavailable[stage.key] = reason
            result.entries.append(DryRunEntry(stage, "not available", 0.0, reason))
        else:
            result.entries.append(DryRunEntry(stage, "to do", estimate(stage, config),
                                              broken.get(stage.key, "")))
    return result


def _unavailable(stage: Stage, unavailable: dict[str, str]) -> str | None:
    for key in stage.inputs.values():
        if key in unavailable:
            return "needs a stage that is not available yet"
    impl = stage_impl(stage.kind)
    if impl is None:
        return f"no {stage.kind} implementation"
    return impl.unavailable_reason(stage.config)


# Rough CPU seconds per stage kind and profile (used when an implementation has no estimate).
_COST = {
    "data": {"quick": 5, "default": 15, "paper": 120},
    "extractor": {"quick": 30, "default": 120, "paper": 1800},
    "recommender": {"quick": 10, "default": 60, "paper": 1200},
    "attack": {"quick": 20, "default": 120, "paper": 3600},
    "defense": {"quick": 5, "default": 30, "paper": 600},
    "evaluation": {"quick": 3, "default": 15, "paper": 300},
}


def estimate(stage: Stage, config: StudyConfig) -> float:
    """Rough seconds a stage takes (its implementation's estimate, else a per-kind figure)."""
    impl = stage_impl(stage.kind)
    if impl is not None and impl.estimate is not None:
        return float(impl.estimate(stage.config, config))
    return float(_COST[stage.kind][config.dataset.profile])


def default_out(config: StudyConfig) -> Path:
    """``runs/<study name>``; a name that is not a plain name (a config built without
    :func:`~varsec.study.schema.check_references`) could point anywhere, so it is refused."""
    from varsec.study.schema import NAME_RE, NAME_RULE

    if not NAME_RE.match(config.study):
        raise ConfigError(f"study name {config.study!r} cannot name an output directory under "
                          f"runs/: it must {NAME_RULE} (or give --out).")
    return Path("runs") / config.study


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so temporary directories are cleaned up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_study(
    study: str | Path | StudyConfig,
    out: str | Path | None = None,
    *,
    force: Iterable[str] = (),
    executor: str | None = None,
    address: str | None = None,
    profile: str | None = None,
    report: bool | None = None,
    log: Log | None = _stderr,
    verify: bool = False,
    kinds: Iterable[str] | None = None,
    on_stage: Callable[[Stage, StageStatus], None] | None = None,
) -> RunResult:
    """Run a study (see the module docstring); returns the statuses, the table and the report.

    Every cached stage is verified before reuse (files whose size or mtime changed are hashed;
    ``verify`` hashes them all); one that fails is recomputed, with everything downstream of
    it, after one warning naming the file. ``kinds`` runs only the stages of those kinds and
    the stages they read (``varsec attack`` runs ``("attack",)``); ``on_stage(stage, status)``
    is called as each stage ends (computed or found in the cache), in plan order.
    """
    started = time.perf_counter()
    config = resolve_config(study, profile)
    out = Path(out) if out is not None else default_out(config)
    plan = plan_study(config)
    if kinds is not None:
        plan = plan.only(kinds)
    forced = forced_keys(plan, force)
    kind = executor or config.executor.kind
    runner = make_executor(kind, address or (config.executor.address if kind == "ray" else None),
                           config.executor.num_cpus)
    say = log or (lambda message: None)
    with _sigterm_as_interrupt(), RunLock(out):
        cache = StageCache(out)
        cache.clean_stale()
        with atomic_path(out / "config.resolved.yaml") as tmp:
            tmp.write_text(resolved_yaml(config), encoding="utf-8")
        todo, broken = cache_check(plan, cache, forced, full=verify)
        _warn_broken(plan, broken)
        say(f"study {config.study}: {len(plan)} stages, {len(plan) - len(todo)} cached, "
            f"{len(todo)} to run ({runner.name} executor); output {out}")
        job = Job(out=out, study=config, todo=todo, device=config.device,
                  on_status=_progress(plan, say, on_stage))
        try:
            statuses = runner.run(plan, job)
        except KeyboardInterrupt:
            # An interrupt can land between a stage's temporary directory being created and
            # its cleanup being armed; the lock is still ours, so sweep before leaving.
            cache.clean_stale()
            raise
        table = collect_results(plan, cache, statuses)
        write_results(out, table)
        _write_status(out, plan, statuses)
        result = RunResult(out, config, plan, statuses, table,
                           seconds=time.perf_counter() - started)
        if config.report.enabled if report is None else report:
            from varsec.study.report import write_report

            result.report = write_report(result)
    return result


def _progress(plan: Plan, say: Log, then: Callable[[Stage, StageStatus], None] | None = None
              ) -> Callable[[Stage, StageStatus], None]:
    done = [0]

    def on_status(stage: Stage, status: StageStatus) -> None:
        done[0] += 1
        if status.state != "cached":
            detail = f" in {status.seconds:.1f}s" if status.state == "done" else \
                f": {status.reason}" if status.reason else ""
            say(f"[{done[0]}/{len(plan)}] {stage.name}: {status.state}{detail}")
        if then is not None:
            then(stage, status)

    return on_status


def collect_results(plan: Plan, cache: StageCache,
                    statuses: dict[str, StageStatus]) -> pd.DataFrame:
    """The rows of every finished stage, in plan order (identical for resumed runs). Rows
    cached before a label existed (``crafted_on``) take the stage's own."""
    frames = [_labelled(cache.rows(s), s) for s in plan
              if statuses.get(s.key, StageStatus("")).ok]
    frames = [normalise(f) for f in frames if len(f)]
    if not frames:
        return empty_table()
    return normalise(pd.concat(frames, ignore_index=True))


def _labelled(frame: pd.DataFrame, stage: Stage) -> pd.DataFrame:
    if len(frame) and "crafted_on" not in frame.columns:
        frame = frame.assign(crafted_on=stage.labels.get("crafted_on"))
    return frame


def _write_status(out: Path, plan: Plan, statuses: dict[str, StageStatus]) -> None:
    records = [{"key": s.key, "kind": s.kind, "name": s.name, "labels": s.labels,
                **statuses[s.key].as_dict()} for s in plan]
    write_json_atomic(out / "status.json", {"stages": records})


def read_status(out: str | Path) -> list[dict[str, Any]]:
    """The per-stage statuses of the last run in ``out``."""
    path = Path(out) / "status.json"
    return json.loads(path.read_text())["stages"] if path.is_file() else []


__all__ = [
    "DryRun",
    "RunResult",
    "cache_check",
    "collect_results",
    "default_out",
    "dry_run",
    "estimate",
    "forced_keys",
    "read_status",
    "resolve_config",
    "run_study",
]
