"""The validated configuration of classifier training (all four modes share one dataclass)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from varsec.errors import ConfigError
from varsec.vision.adversarial import check_eps
from varsec.vision.base import check_device

MODES = ("standard", "pgd-at", "free-at", "curriculum-at")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")
SELECTIONS = ("auto", "clean", "robust")


def _positive_int(name: str, value: Any, minimum: int = 1, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}{hint}, got {value!r}.")


def _fraction(name: str, value: Any, *, closed: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    upper_ok = ok and (value <= 1 if closed else value < 1)
    if not (ok and value > 0 and upper_ok):
        bound = "(0, 1]" if closed else "(0, 1)"
        raise ConfigError(f"{name} must lie in {bound}, got {value!r}.")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")


@dataclass(frozen=True)
class TrainConfig:
    """How to train a classifier backbone on catalog categories.

    Modes (DESIGN.md section 4): ``standard``; ``pgd-at`` (Madry et al. 2018: train on PGD
    examples with ``eps``, ``alpha``, ``steps``); ``free-at`` (Shafahi et al. 2019: each
    minibatch replayed ``replays`` times with a persistent perturbation, ``epochs`` divided by
    ``replays``); ``curriculum-at`` (thesis 004, Cai et al. 2018: PGD steps k grow from 0 to
    ``steps``, raised after ``patience`` epochs without a validation gain of at least
    ``min_gain`` (accuracy, 0.01 = one point); each batch mixes
    clean and adversarial examples, ``adv_fraction`` of them adversarial).

    ``eps`` and ``alpha`` are in 8-bit levels; ``alpha=None`` means 2.5 * eps / steps.
    The validation part (``val_fraction`` of the training part, or the catalog's own
    ``validation`` rows) selects the best epoch: on clean accuracy for ``standard``, on PGD
    accuracy (``val_steps`` steps, first ``val_limit`` items) otherwise (``select_on``).
    ``max_train`` caps the training items (tests, quick runs).
    """

    mode: str = "standard"
    backbone: str = "fmnist-cnn"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    eps: float = 8.0
    alpha: float | None = None
    steps: int = 7
    replays: int = 4
    patience: int = 1
    min_gain: float = 0.01
    adv_fraction: float = 0.5
    val_fraction: float = 0.1
    val_limit: int | None = 1000
    val_steps: int = 10
    select_on: str = "auto"
    max_train: int | None = None
    max_batches: int | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        _choice("mode", self.mode, MODES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("select_on", self.select_on, SELECTIONS)
        self._check_counts()
        self._check_rates()
        check_eps(self.eps, "eps")
        if self.alpha is not None:
            check_eps(self.alpha, "alpha", step=True)
        _fraction("adv_fraction", self.adv_fraction, closed=True)
        if not (isinstance(self.min_gain, int | float) and 0 <= self.min_gain < 1):
            raise ConfigError(f"min_gain must lie in [0, 1), got {self.min_gain!r}.")
        _fraction("val_fraction", self.val_fraction)
        check_device(self.device)
        if not isinstance(self.backbone_kwargs, dict):
            raise ConfigError(f"backbone_kwargs must be a mapping, got {self.backbone_kwargs!r}.")

    def _check_counts(self) -> None:
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _positive_int("steps", self.steps, hint=" (the PGD steps; curriculum-at's top K)")
        _positive_int("replays", self.replays, hint=" (free-at's replays m of each minibatch)")
        _positive_int("patience", self.patience)
        _positive_int("val_steps", self.val_steps)
        _positive_int("seed", self.seed, minimum=0)
        for name in ("val_limit", "max_train", "max_batches"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))

    def _check_rates(self) -> None:
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and value >= 0
            ):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}.")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}.")

    @property
    def attack_alpha(self) -> float:
        """The PGD step size in 8-bit levels (default 2.5 * eps / steps)."""
        return self.alpha if self.alpha is not None else 2.5 * self.eps / self.steps

    @property
    def selection(self) -> str:
        """What the best epoch is chosen on: ``clean`` or ``robust`` validation accuracy."""
        if self.select_on != "auto":
            return self.select_on
        return "clean" if self.mode == "standard" else "robust"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys are a ConfigError naming the first one."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown training config field {unknown[0]!r} (known: {', '.join(sorted(known))})."
            )
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)
