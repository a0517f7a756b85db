"""The validated configuration of classifier training (all four modes share one dataclass)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from varsec.devices import check_device
from varsec.errors import ConfigError
from varsec.params import check_choice, check_int, check_number, plain_fields
from varsec.vision.adversarial import check_eps
from varsec.vision.perturbation import default_alpha

MODES = ("standard", "pgd-at", "free-at", "curriculum-at")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")
SELECTIONS = ("auto", "clean", "robust")


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
        check_choice(self.mode, "mode", MODES)
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_choice(self.schedule, "schedule", SCHEDULES)
        check_choice(self.select_on, "select_on", SELECTIONS)
        self._check_counts()
        self._check_rates()
        check_eps(self.eps, "eps")
        if self.alpha is not None:
            check_eps(self.alpha, "alpha", step=True)
        check_number(self.adv_fraction, "adv_fraction", low=0, high=1, low_open=True)
        check_number(self.min_gain, "min_gain", low=0, high=1, high_open=True)
        check_number(self.val_fraction, "val_fraction", low=0, high=1, low_open=True,
                     high_open=True)
        check_device(self.device)
        if not isinstance(self.backbone_kwargs, dict):
            raise ConfigError(f"backbone_kwargs must be a mapping, got {self.backbone_kwargs!r}.")
        plain_fields(self)

    def _check_counts(self) -> None:
        check_int(self.epochs, "epochs", low=1)
        check_int(self.batch_size, "batch_size", low=1)
        check_int(self.steps, "steps", low=1, hint=" (the PGD steps; curriculum-at's top K)")
        check_int(self.replays, "replays", low=1,
                  hint=" (free-at's replays m of each minibatch)")
        check_int(self.patience, "patience", low=1)
        check_int(self.val_steps, "val_steps", low=1)
        check_int(self.seed, "seed", low=0)
        for name in ("val_limit", "max_train", "max_batches"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, low=1)

    def _check_rates(self) -> None:
        check_number(self.lr, "lr", low=0, low_open=True)
        for name in ("momentum", "weight_decay"):
            check_number(getattr(self, name), name, low=0)

    @property
    def attack_alpha(self) -> float:
        """The PGD step size in 8-bit levels (default 2.5 * eps / steps)."""
        return self.alpha if self.alpha is not None else default_alpha(self.eps, self.steps)

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
