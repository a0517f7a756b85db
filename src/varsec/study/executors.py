"""Executors: where the stages of a plan run.

* :class:`LocalExecutor` (default): one process, stages in plan order.
* :class:`RayExecutor`: every stage a Ray task with its ``num_cpus`` / ``num_gpus``; a stage is
  submitted as soon as all its inputs are finished, so independent stages run in parallel. Tasks
  write into the same cache directory (on a cluster it must be a shared file system) and the
  driver assembles the same results table a local run gives.

Every stage runs on the study's ``threads`` (torch and BLAS) in either executor, so both give
byte-identical numbers on any core count. A Ray task reserves ``threads`` CPUs (at most the
cluster's) unless ``executor.resources`` sets the kind's ``num_cpus``.

Both skip stages whose inputs did not run (a layer not available yet) and stop at the first
stage that fails.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from varsec.errors import ConfigError, VarsecError
from varsec.study.execute import StageStatus, execute_stage, stage_threads
from varsec.study.plan import Plan
from varsec.study.stages import Stage, StageImpl, stage_impl


@dataclass
class Job:
    """Everything an executor needs besides the plan."""

    out: Path
    study: Any
    todo: set[str]
    device: str = "cpu"
    on_status: Callable[[Stage, StageStatus], None] = field(default=lambda s, t: None)
    log: Callable[[str], None] = field(default=lambda message: None)


def _blocked(stage: Stage, plan: Plan, statuses: dict[str, StageStatus]) -> str | None:
    for key in stage.inputs.values():
        status = statuses.get(key)
        if status is None or not status.ok:
            return f"its input '{plan.by_key[key].name}' did not run"
    return None


class LocalExecutor:
    """Run the stages one after another in this process."""

    name = "local"

    def run(self, plan: Plan, job: Job) -> dict[str, StageStatus]:
        """Run every stage of ``job.todo`` (the others are cached); returns each stage's status."""
        statuses: dict[str, StageStatus] = {}
        stages = plan.by_key
        for stage in plan:
            if stage.key not in job.todo:
                status = StageStatus("cached")
            else:
                reason = _blocked(stage, plan, statuses)
                if reason:
                    status = StageStatus("not-run", reason)
                else:
                    job.log(f"running {stage.name}")
                    status = execute_stage(stage, job.out, job.study, stages, job.device,
                                           job.log)
            statuses[stage.key] = status
            job.on_status(stage, status)
        return statuses


def _ray_task(stage: Stage, out: str, study: Any, stages: dict[str, Stage], device: str,
              impl: StageImpl | None) -> StageStatus:
    # execute_stage sets the study's thread count, as it does in the local executor.
    return execute_stage(stage, out, study, stages, device, None, impl)


class RayExecutor:
    """Run every stage as a Ray task, in parallel where the DAG allows."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "the ray executor needs Ray: pip install 'varsec[ray]' (or pip install ray)."
            ) from None
        return ray

    def run(self, plan: Plan, job: Job) -> dict[str, StageStatus]:
        """As :meth:`LocalExecutor.run`, with the stages as Ray tasks."""
        ray = self._ray()
        started_here = not ray.is_initialized()
        if started_here:
            self._init(ray)
        try:
            return self._run(ray, plan, job)
        finally:
            if started_here:
                ray.shutdown()

    def _init(self, ray: Any) -> None:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
        if self.address:
            kwargs["address"] = self.address
        elif self.num_cpus:
            kwargs["num_cpus"] = self.num_cpus
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a local instance"
            raise ConfigError(f"cannot start or reach Ray at {where} ({exc}).") from None

    def _submit(self, ray: Any, task: Any, stage: Stage, plan: Plan, job: Job) -> Any:
        impl = stage_impl(stage.kind)
        if impl is not None:
            _pickle_by_value(ray, impl)
        resources = stage.resources or {"num_cpus": 1.0, "num_gpus": 0.0}
        ancestors = _ancestors(stage, plan)
        return task.options(
            num_cpus=_num_cpus(ray, stage, job.study), num_gpus=resources.get("num_gpus", 0.0),
            max_retries=0,
        ).remote(stage, str(job.out), job.study, ancestors, job.device, impl)

    def _run(self, ray: Any, plan: Plan, job: Job) -> dict[str, StageStatus]:
        task = ray.remote(_ray_task)
        statuses: dict[str, StageStatus] = {}
        waiting = [s for s in plan]
        pending: dict[Any, Stage] = {}
        try:
            while waiting or pending:
                waiting = self._schedule(ray, task, plan, job, waiting, pending, statuses)
                if not pending:
                    continue
                ready, _ = ray.wait(list(pending), num_returns=1)
                stage = pending.pop(ready[0])
                statuses[stage.key] = _result(ray, ready[0])
                job.on_status(stage, statuses[stage.key])
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return {s.key: statuses[s.key] for s in plan}

    def _schedule(self, ray: Any, task: Any, plan: Plan, job: Job, waiting: list[Stage],
                  pending: dict[Any, Stage], statuses: dict[str, StageStatus]) -> list[Stage]:
        """Settle or submit every waiting stage whose inputs are settled; return the rest."""
        still = []
        for stage in waiting:
            if any(key not in statuses for key in stage.inputs.values()):
                still.append(stage)
                continue
            if stage.key not in job.todo:
                statuses[stage.key] = StageStatus("cached")
            elif reason := _blocked(stage, plan, statuses):
                statuses[stage.key] = StageStatus("not-run", reason)
            else:
                job.log(f"submitting {stage.name}")
                pending[self._submit(ray, task, stage, plan, job)] = stage
                continue
            job.on_status(stage, statuses[stage.key])
        if len(still) < len(waiting):
            return self._schedule(ray, task, plan, job, still, pending, statuses)
        return still


def _num_cpus(ray: Any, stage: Stage, study: Any) -> float:
    """The CPUs a stage's task reserves: ``executor.resources.<kind>.num_cpus`` when the study
    sets it, else its thread count, capped at the cluster's CPUs so that it can be scheduled."""
    configured = getattr(getattr(study, "executor", None), "resources", {}) or {}
    if stage.kind in configured:
        return float(stage.resources.get("num_cpus", 1.0))
    threads = float(stage_threads(stage, study))
    return min(threads, float(ray.cluster_resources().get("CPU", threads)))


def _result(ray: Any, ref: Any) -> StageStatus:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, VarsecError):
            raise cause from None
        raise VarsecError(str(cause or exc).strip().splitlines()[-1]) from None


def _ancestors(stage: Stage, plan: Plan) -> dict[str, Stage]:
    """The stage and everything upstream of it (what a remote task needs to build its inputs)."""
    stages, found, queue = plan.by_key, {}, [stage.key]
    while queue:
        key = queue.pop()
        if key not in found:
            found[key] = stages[key]
            queue.extend(stages[key].inputs.values())
    return found


def _pickle_by_value(ray: Any, impl: StageImpl) -> None:
    """Ship implementations defined outside varsec (tests, user plugins) to the workers."""
    module_name = getattr(impl.fn, "__module__", "") or ""
    if module_name.startswith("varsec.") or module_name not in sys.modules:
        return
    with contextlib.suppress(ValueError, AttributeError):  # already registered
        ray.cloudpickle.register_pickle_by_value(sys.modules[module_name])


def make_executor(kind: str, address: str | None = None,
                  num_cpus: int | None = None) -> LocalExecutor | RayExecutor:
    """The executor named ``kind`` (``local`` or ``ray``)."""
    if kind == "local":
        if address:
            raise ConfigError("--address is for the ray executor (add --executor ray).")
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address, num_cpus)
    raise ConfigError(f"unknown executor {kind!r} (known: local, ray).")


__all__ = ["Job", "LocalExecutor", "RayExecutor", "make_executor"]
