"""Stages: the units of work a study is expanded into, and the registry of their implementations.

A :class:`Stage` has a ``kind`` (data, extractor, recommender, attack, defense, evaluation), a
canonical config slice, named inputs (other stages) and labels for the results table. Its cache
key is the sha256 of (kind, canonical config JSON, input keys, implementation version), so a
stage is recomputed exactly when something it depends on changed.

Implementations are registered per kind::

    @register_stage("evaluation", version="2")
    def evaluate(ctx: StageContext, config: dict, inputs: dict[str, StageOutput]):
        ...  # write files into ctx.workdir, return rows for the results table

A stage whose layer is not available yet raises :class:`StageUnavailableError`: the runner then
marks it and everything downstream "not run", with the reason, and the report says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import varsec
from varsec.errors import ConfigError, VarsecError
from varsec.study.schema import STAGE_KINDS

StageFn = Callable[["StageContext", dict[str, Any], dict[str, "StageOutput"]], Any]


class StageUnavailableError(VarsecError):
    """A stage's implementation (or the layer it needs) does not exist yet: nothing was computed."""


@dataclass(frozen=True)
class Stage:
    """One unit of work: kind, config slice, inputs (role -> stage key), labels, cache key."""

    kind: str
    name: str
    config: dict[str, Any]
    inputs: dict[str, str]
    labels: dict[str, Any]
    key: str
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def short_key(self) -> str:
        """The first 12 hex digits of the key (what listings print)."""
        return self.key[:12]


@dataclass
class StageOutput:
    """A finished stage as seen by the stages that consume it."""

    kind: str
    key: str
    path: Path
    config: dict[str, Any]
    info: dict[str, Any]
    inputs: dict[str, StageOutput]

    def file(self, name: str) -> Path:
        """A file of the stage's output directory."""
        return self.path / name

    def upstream(self, *roles: str) -> StageOutput:
        """Follow input roles, e.g. ``out.upstream("model", "extractor")``."""
        current = self
        for role in roles:
            if role not in current.inputs:
                raise KeyError(f"stage {current.kind} {current.key[:12]} has no input {role!r}")
            current = current.inputs[role]
        return current

    def find(self, kind: str) -> StageOutput | None:
        """The nearest upstream stage of ``kind`` (breadth first), or None."""
        queue = [self]
        while queue:
            node = queue.pop(0)
            if node.kind == kind and node is not self:
                return node
            queue.extend(node.inputs.values())
        return None


@dataclass
class StageContext:
    """What a stage implementation gets besides its config and inputs."""

    stage: Stage
    workdir: Path
    study: Any  # the StudyConfig (typed loosely to keep this module import-light)
    device: str
    info: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print

    @property
    def seed(self) -> int:
        """The stage's seed (0 when the stage has none)."""
        return int(self.stage.config.get("seed", 0))


@dataclass(frozen=True)
class StageImpl:
    """A registered implementation: the function, its version and a cost estimate."""

    fn: StageFn
    version: str
    estimate: Callable[[dict[str, Any], Any], float] | None = None
    available: Callable[[dict[str, Any]], str | None] | None = None

    def unavailable_reason(self, config: dict[str, Any]) -> str | None:
        """Why this stage cannot run today (None when it can)."""
        return None if self.available is None else self.available(config)


_REGISTRY: dict[str, StageImpl] = {}
_BUILTINS_LOADED = [False]


def register_stage(
    kind: str,
    *,
    version: str = "1",
    estimate: Callable[[dict[str, Any], Any], float] | None = None,
    available: Callable[[dict[str, Any]], str | None] | None = None,
) -> Callable[[StageFn], StageFn]:
    """Decorator: register ``fn(ctx, config, inputs) -> rows`` as the implementation of ``kind``.

    ``version`` enters every cache key of the kind: bump it when the output changes.
    ``estimate(config, study) -> seconds`` feeds ``--dry-run``; ``available(config)`` returns
    why a stage cannot run today (a layer not there yet), or None.
    """
    if kind not in STAGE_KINDS:
        raise ConfigError(f"unknown stage kind {kind!r} (known: {', '.join(STAGE_KINDS)}).")

    def decorate(fn: StageFn) -> StageFn:
        _REGISTRY[kind] = StageImpl(fn, str(version), estimate, available)
        return fn

    return decorate


def load_builtin_stages() -> None:
    """Import the built-in implementations (once)."""
    if not _BUILTINS_LOADED[0]:
        _BUILTINS_LOADED[0] = True
        import varsec.study.builtin  # noqa: F401  (registers the stages)


def stage_impl(kind: str) -> StageImpl | None:
    """The implementation registered for ``kind`` (built-ins loaded on first use)."""
    load_builtin_stages()
    return _REGISTRY.get(kind)


@contextlib.contextmanager
def override_stage(
    kind: str, fn: StageFn, *, version: str = "test",
    available: Callable[[dict[str, Any]], str | None] | None = None,
) -> Iterator[None]:
    """Temporarily replace the implementation of ``kind`` (tests, stand-ins)."""
    load_builtin_stages()
    previous = _REGISTRY.get(kind)
    _REGISTRY[kind] = StageImpl(fn, version, None, available)
    try:
        yield
    finally:
        if previous is None:
            _REGISTRY.pop(kind, None)
        else:
            _REGISTRY[kind] = previous


def implementation_version(kind: str) -> str:
    """``<varsec version>+<stage version>`` (``unavailable`` when nothing is registered)."""
    impl = stage_impl(kind)
    return f"{varsec.__version__}+{impl.version if impl else 'unavailable'}"


def canonical_json(value: Any) -> str:
    """Sorted-key, compact JSON with floats normalised (8 == 8.0): the hashed form of a config."""
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"))


def _normalise(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        number = float(value)
        if math.isfinite(number) and number.is_integer():
            return int(number)
        return number
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    raise ConfigError(f"stage configs hold plain JSON values, got {type(value).__name__}.")


def stage_key(kind: str, config: dict[str, Any], inputs: dict[str, str]) -> str:
    """sha256 of (kind, canonical config, input keys, implementation version)."""
    payload = {"kind": kind, "config": config, "inputs": inputs,
               "version": implementation_version(kind)}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


__all__ = [
    "Stage",
    "StageContext",
    "StageFn",
    "StageImpl",
    "StageOutput",
    "StageUnavailableError",
    "canonical_json",
    "implementation_version",
    "load_builtin_stages",
    "override_stage",
    "register_stage",
    "stage_impl",
    "stage_key",
]
