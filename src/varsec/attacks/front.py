"""A torchattacks-like front for classifier attacks, on varsec's engine.

    attack = PGD(model, eps=8, alpha=2, steps=10, random_start=True)   # 8-bit levels
    adv = attack(images, labels)                      # float on the 8-bit grid, in the eps-ball
    adv = PGD(model, eps=8).targeted(7)(images, labels)                # towards class 7

``model`` maps float NCHW images in [0, 1] to logits (a varsec backbone's ``logits`` is used when
it has one). Unlike torchattacks, budgets are 8-bit levels and outputs are quantised: ``adv`` is
``uint8 / 255`` and ``||adv - images||_inf <= floor(eps) / 255`` holds exactly. With the same
model, inputs and settings (no random start) FGSM and PGD agree with torchattacks' outputs to
within one 8-bit level. ``.run(images, labels)`` returns the full
:class:`~varsec.attacks.engine.AttackResult` (uint8 images, per-image success, steps).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Self

import torch
from torch import Tensor

from varsec.attacks import cw, engine
from varsec.attacks.engine import AttackResult, StepRule, run_attack
from varsec.attacks.objectives import ClassifierObjective
from varsec.attacks.transforms import TransformHook
from varsec.errors import ConfigError


class Attack(ABC):
    """Base of the front's attacks: the model, the target mode and the engine's options.

    Options: ``seed`` (random starts and transforms), ``batch_size``, ``early_stop`` (stop each
    image at its first quantised success; off by default, as in torchattacks), ``transform``,
    ``eot_samples`` and ``bpda`` (attack through a defense, see
    :mod:`varsec.attacks.transforms`), ``device``, ``fast_batch_norm`` (see
    :func:`~varsec.attacks.engine.run_attack`).
    """

    kappa: float = 0.0

    def __init__(
        self,
        model: Any,
        *,
        seed: int = 0,
        batch_size: int = 256,
        early_stop: bool = False,
        transform: Callable[[Tensor], Tensor] | None = None,
        eot_samples: int = 1,
        bpda: Any = False,
        device: str | torch.device | None = None,
        fast_batch_norm: bool = True,
    ) -> None:
        if not callable(model):
            raise ConfigError(
                f"model must be callable on image batches, got {type(model).__name__}."
            )
        self.model = model
        self.options = {"seed": seed, "batch_size": batch_size, "early_stop": early_stop,
                        "device": device, "fast_batch_norm": bool(fast_batch_norm),
                        "transform": TransformHook(transform, eot_samples, bpda)}
        self._targeted = False
        self._target: Any = None
        self._by_label = False

    @abstractmethod
    def rule(self) -> StepRule:
        """The engine step rule of this attack."""

    # -- modes --------------------------------------------------------------------------------
    def targeted(self, target: Any = None, *, by_label: bool = False) -> Self:
        """Attack towards ``target``: a class index, one per image, or a callable
        ``(images, labels) -> targets``; ``by_label=True`` reads the labels as the targets."""
        if target is None and not by_label:
            raise ConfigError(
                "a targeted attack needs a target class: .targeted(target) or "
                ".targeted(by_label=True)."
            )
        self._targeted, self._target, self._by_label = True, target, bool(by_label)
        return self

    def untargeted(self) -> Self:
        """Back to the default: move away from the true labels."""
        self._targeted, self._target, self._by_label = False, None, False
        return self

    def objective(self, images: Tensor, labels: Any) -> ClassifierObjective:
        """The classifier objective for one call."""
        if not self._targeted:
            return ClassifierObjective(self.model, labels, kappa=self.kappa)
        if self._by_label:
            target = labels
        elif callable(self._target):
            target = self._target(images, labels)
        else:
            target = self._target
        return ClassifierObjective(self.model, labels, target=target, kappa=self.kappa)

    # -- calling ------------------------------------------------------------------------------
    def run(self, images: Any, labels: Any, *, report_success: bool = True) -> AttackResult:
        """Attack and return the :class:`~varsec.attacks.engine.AttackResult`."""
        objective = self.objective(images, labels)
        return run_attack(objective, images, self.rule(), **self.options,
                          report_success=report_success, desc=type(self).__name__)

    def __call__(self, images: Any, labels: Any) -> Tensor:
        """Adversarial images as float on the 8-bit grid, on the images' device."""
        result = self.run(images, labels, report_success=False)
        device = images.device if isinstance(images, Tensor) else torch.device("cpu")
        return result.float_images().to(device)

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.rule().describe().items()
                             if k != "attack")
        mode = "targeted" if self._targeted else "untargeted"
        return f"{type(self).__name__}({settings}, {mode})"


class FGSM(Attack):
    """FGSM (Goodfellow et al., 2015): ``x + eps * sign(∇ loss)``, eps in 8-bit levels."""

    def __init__(self, model: Any, eps: float = 8, **options: Any) -> None:
        super().__init__(model, **options)
        self._rule = engine.FGSMStep(eps)

    def rule(self) -> StepRule:
        return self._rule


class PGD(Attack):
    """L-inf PGD (Madry et al., 2018): eps, alpha in 8-bit levels (torchattacks' defaults)."""

    def __init__(self, model: Any, eps: float = 8, alpha: float = 2, steps: int = 10,
                 random_start: bool = True, **options: Any) -> None:
        super().__init__(model, **options)
        self._rule = engine.PGDStep(eps, alpha, steps, random_start, norm="linf")

    def rule(self) -> StepRule:
        return self._rule


class PGDL2(Attack):
    """L2 PGD: ``eps`` and ``alpha`` are L2 norms in 8-bit levels (255 = 1.0 on [0, 1] pixels,
    torchattacks' default)."""

    def __init__(self, model: Any, eps: float = 255, alpha: float = 51, steps: int = 10,
                 random_start: bool = True, **options: Any) -> None:
        super().__init__(model, **options)
        self._rule = engine.PGDStep(eps, alpha, steps, random_start, norm="l2")

    def rule(self) -> StepRule:
        return self._rule


class CW(Attack):
    """C&W L2 (Carlini & Wagner, 2017): ``c``, confidence ``kappa``, Adam ``steps`` and ``lr``
    (torchattacks' defaults), with ``binary_search_steps`` rounds of search on c (1: fixed c)."""

    def __init__(self, model: Any, c: float = 1.0, kappa: float = 0.0, steps: int = 50,
                 lr: float = 0.01, binary_search_steps: int = 1, eps: float | None = None,
                 **options: Any) -> None:
        super().__init__(model, **options)
        self.kappa = kappa
        self._rule = cw.CWL2Step(c, steps, lr, binary_search_steps, eps)

    def rule(self) -> StepRule:
        return self._rule


class CWLinf(Attack):
    """The thesis' C&W L-inf penalty form (004) within ``eps`` 8-bit levels."""

    def __init__(self, model: Any, eps: float = 8, c: float = 1.0, kappa: float = 0.0,
                 steps: int = 100, lr: float = 1.0, binary_search_steps: int = 1,
                 **options: Any) -> None:
        super().__init__(model, **options)
        self.kappa = kappa
        self._rule = cw.CWLinfStep(eps, c, steps, lr, binary_search_steps)

    def rule(self) -> StepRule:
        return self._rule


__all__ = ["CW", "FGSM", "PGD", "PGDL2", "Attack", "CWLinf"]
