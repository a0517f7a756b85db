"""A torchattacks-like front for classifier attacks, on varsec's engine.

    attack = PGD(model, eps=8, alpha=2, steps=10, random_start=True)   # 8-bit levels
    adv = attack(images, labels)                      # float on the 8-bit grid, in the eps-ball
    adv = PGD(model, eps=8).targeted(7)(images, labels)                # towards class 7

``model`` maps float NCHW images in [0, 1] to logits (a varsec backbone's ``logits`` is used when
it has one). Unlike torchattacks, budgets are 8-bit levels and outputs are quantised: ``adv`` is
``uint8 / 255`` and ``||adv - images||_inf <= floor(eps) / 255`` holds exactly. With the same
model, inputs and settings (no random start) FGSM and PGD agree with torchattacks' outputs to
within one 8-bit level. A setting left out takes the default the attack has in varsec's
registry (``attack_method("cw").steps`` and ``.params``, the one a study and ``varsec
attack`` use), not torchattacks' (its C&W, for one, has fewer steps and no search on c): to
compare with torchattacks, pass its settings on both sides. ``.run(images, labels)`` returns
the full :class:`~varsec.attacks.engine.AttackResult` (uint8 images, per-image success, steps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Self

import torch
from torch import Tensor

from varsec.attacks.engine import AttackResult, StepRule, run_attack
from varsec.attacks.objectives import ClassifierObjective
from varsec.attacks.registry import attack_method
from varsec.attacks.transforms import TransformHook
from varsec.devices import CPU
from varsec.errors import ConfigError
from varsec.params import check_params
from varsec.vision.perturbation import LEVELS


class Attack:
    """Base of the front's attacks: the model, the target mode and the engine's options.

    Each attack is a registered method (``method``, :mod:`varsec.attacks.registry`): a setting
    left out (None) takes that method's registered default, the one a study and ``varsec
    attack`` use, and a given one is checked against its declaration.

    Options: ``seed`` (random starts and transforms), ``batch_size``, ``early_stop`` (stop each
    image at its first quantised success; off by default, as in torchattacks), ``transform``,
    ``eot_samples`` and ``bpda`` (attack through a defense, see
    :mod:`varsec.attacks.transforms`), ``device``, ``fast_batch_norm`` (see
    :func:`~varsec.attacks.engine.run_attack`).
    """

    method: ClassVar[str] = ""

    def __init__(
        self,
        model: Any,
        *,
        kappa: float | None = None,
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
        # the classifier objectives' settings (kappa), their registered defaults when left out
        self._settings = {} if kappa is None else {"kappa": kappa}
        self._rule: StepRule | None = None

    def _build(self, eps: float, steps: int | None = None, alpha: float | None = None,
               **given: Any) -> None:
        """The step rule of :attr:`method` at ``eps``: ``steps``, ``alpha`` and the declared
        settings in ``given`` that are None take the method's registered defaults."""
        method = attack_method(self.method)
        settings = check_params(type(self).__name__, method.params,
                                {k: v for k, v in given.items() if v is not None})
        self._rule = method.build(eps, steps, alpha, settings)

    def rule(self) -> StepRule:
        """The engine step rule of this attack."""
        assert self._rule is not None, "a front attack builds its rule in __init__"
        return self._rule

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
            return ClassifierObjective(self.model, labels, **self._settings)
        if self._by_label:
            target = labels
        elif callable(self._target):
            target = self._target(images, labels)
        else:
            target = self._target
        return ClassifierObjective(self.model, labels, target=target, **self._settings)

    # -- calling ------------------------------------------------------------------------------
    def run(self, images: Any, labels: Any, *, report_success: bool = True) -> AttackResult:
        """Attack and return the :class:`~varsec.attacks.engine.AttackResult`."""
        objective = self.objective(images, labels)
        return run_attack(objective, images, self.rule(), **self.options,
                          report_success=report_success, desc=type(self).__name__)

    def __call__(self, images: Any, labels: Any) -> Tensor:
        """Adversarial images as float on the 8-bit grid, on the images' device."""
        result = self.run(images, labels, report_success=False)
        device = images.device if isinstance(images, Tensor) else CPU
        return result.float_images().to(device)

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.rule().describe().items()
                             if k != "attack")
        mode = "targeted" if self._targeted else "untargeted"
        return f"{type(self).__name__}({settings}, {mode})"


class FGSM(Attack):
    """FGSM (Goodfellow et al., 2015): ``x + eps * sign(∇ loss)``, eps in 8-bit levels."""

    method = "fgsm"

    def __init__(self, model: Any, eps: float = 8, **options: Any) -> None:
        super().__init__(model, **options)
        self._build(eps)


class PGD(Attack):
    """L-inf PGD (Madry et al., 2018): ``eps`` and ``alpha`` in 8-bit levels; ``alpha``,
    ``steps`` and ``random_start`` left out take the registered ``pgd``'s."""

    method = "pgd"

    def __init__(self, model: Any, eps: float = 8, alpha: float | None = None,
                 steps: int | None = None, random_start: bool | None = None,
                 **options: Any) -> None:
        super().__init__(model, **options)
        self._build(eps, steps, alpha, random_start=random_start)


class PGDL2(PGD):
    """L2 PGD: ``eps`` and ``alpha`` are L2 norms in 8-bit levels (255 = 1.0 on [0, 1]
    pixels); the rest as :class:`PGD`, from the registered ``pgd-l2``."""

    method = "pgd-l2"

    def __init__(self, model: Any, eps: float = 255, alpha: float | None = None,
                 steps: int | None = None, random_start: bool | None = None,
                 **options: Any) -> None:
        super().__init__(model, eps, alpha, steps, random_start, **options)


class CW(Attack):
    """C&W L2 (Carlini & Wagner, 2017): weight ``c``, confidence ``kappa``, Adam ``steps`` and
    ``lr`` on the tanh-space variable, ``binary_search_steps`` rounds of search on c; ``eps``
    (below 255) caps the result in L-inf. What is left out takes the registered ``cw``'s."""

    method = "cw"

    def __init__(self, model: Any, c: float | None = None, kappa: float | None = None,
                 steps: int | None = None, lr: float | None = None,
                 binary_search_steps: int | None = None, eps: float | None = None,
                 **options: Any) -> None:
        super().__init__(model, kappa=kappa, **options)
        self._build(LEVELS if eps is None else eps, steps, c=c, lr=lr,
                    binary_steps=binary_search_steps)


class CWLinf(Attack):
    """The thesis' C&W L-inf penalty form (004) within ``eps`` 8-bit levels; ``lr`` is Adam's
    step in 8-bit levels. What is left out takes the registered ``cw-linf``'s."""

    method = "cw-linf"

    def __init__(self, model: Any, eps: float = 8, c: float | None = None,
                 kappa: float | None = None, steps: int | None = None, lr: float | None = None,
                 binary_search_steps: int | None = None, **options: Any) -> None:
        super().__init__(model, kappa=kappa, **options)
        self._build(eps, steps, c=c, lr=lr, binary_steps=binary_search_steps)


__all__ = ["CW", "FGSM", "PGD", "PGDL2", "Attack", "CWLinf"]
