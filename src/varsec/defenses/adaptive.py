"""An adaptive attack on reconstruction + detection (beyond Yin et al. 002, whose attacker does
not know the defense; DESIGN.md section 8: a defense is only called robust against the attacker
that knows it).

The attacker knows the reconstruction network T, the detector and its threshold τ, and the
optional random resize-pad layer R. It maximises the recommender objective of the images the
recommender really sees, ``R(T(x'))``, while keeping the detector score
``d(x') = ||z(x') - z(T(x'))||`` under the threshold, by gradient ascent (any engine step rule)
on the penalised objective

    J(x') = L_rec(R(T(x'))) - λ · max(0, d(x') - (τ - margin)),

with EOT over ``eot_samples`` draws of R when R is used (Athalye et al. 2018). ``L_rec`` is any
:class:`~varsec.attacks.objectives.Objective`; :func:`adaptive_bpr_attack` uses the untargeted
BPR objective of 002 eq 3-4. The result reports how many adversarial images evade the detector
(score at or under τ) - the figure a defense's detection claim has to survive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varsec.attacks.engine import AttackResult, StepRule, run_attack
from varsec.attacks.objectives import Objective
from varsec.attacks.transforms import TransformHook
from varsec.data.catalog import Dataset
from varsec.defenses.detector import ContrastiveDetector
from varsec.errors import ConfigError


class DetectorAwareObjective(Objective):
    """``J(x') = base(R(T(x'))) - λ max(0, d(x') - (τ - margin))`` (see the module docstring)."""

    def __init__(
        self,
        base: Objective,
        reconstruction: nn.Module,
        detector: ContrastiveDetector,
        *,
        penalty: float = 10.0,
        margin: float = 0.0,
        random_layer: Callable[[Tensor], Tensor] | None = None,
        threshold: float | None = None,
    ) -> None:
        if not isinstance(base, Objective):
            raise ConfigError(f"base must be a varsec Objective, got {type(base).__name__}.")
        for name, value in (("penalty", penalty), ("margin", margin)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"adaptive attack {name} must be a number >= 0, got {value!r}.")
        self.base, self.reconstruction, self.detector = base, reconstruction, detector
        self.threshold = detector.require_threshold() if threshold is None else float(threshold)
        self.penalty, self.margin = float(penalty), float(margin)
        self.random_layer = random_layer

    def modules(self) -> list[nn.Module]:
        """The recommender's networks, T, the detector (and R): frozen while attacking."""
        extra = [self.random_layer] if isinstance(self.random_layer, nn.Module) else []
        return [*self.base.modules(), self.reconstruction, self.detector, *extra]

    def check_size(self, n_images: int) -> None:
        """As the base objective."""
        self.base.check_size(n_images)

    def begin_step(self, step: int) -> None:
        """As the base objective (INSA's user minibatches follow the engine's steps)."""
        self.base.begin_step(step)

    def seen(self, reconstructed: Tensor) -> Tensor:
        """What the recommender sees: ``R(T(x'))`` (one draw of R) or ``T(x')``."""
        return reconstructed if self.random_layer is None else self.random_layer(reconstructed)

    def parts(self, x: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """(recommender objective, detector score) per image."""
        reconstructed = self.reconstruction(x)
        gain = self.base.loss(self.seen(reconstructed), index)
        return gain, self.detector.distance(x, reconstructed)

    def loss(self, x: Tensor, index: Tensor) -> Tensor:
        """``J(x')`` per image (the module docstring's penalised objective)."""
        gain, score = self.parts(x, index)
        return gain - self.penalty * F.relu(score - (self.threshold - self.margin))


@dataclass
class AdaptiveResult:
    """The adaptive images (uint8) and how they fare against the detector."""

    items: np.ndarray
    attack: AttackResult
    scores: np.ndarray
    threshold: float

    @property
    def images(self) -> Tensor:
        """The quantised adversarial images, one per item."""
        return self.attack.images

    @property
    def evasion_rate(self) -> float:
        """Share of adversarial images the detector lets through (score <= threshold)."""
        return float(np.mean(self.scores <= self.threshold)) if self.scores.size else float("nan")


def adaptive_bpr_attack(
    recommender: Any,
    dataset: Dataset,
    reconstruction: nn.Module,
    detector: ContrastiveDetector,
    rule: StepRule,
    items: Any = None,
    *,
    penalty: float = 10.0,
    margin: float = 0.0,
    random_layer: Callable[[Tensor], Tensor] | None = None,
    eot_samples: int = 1,
    negatives: int = 1,
    seed: int = 0,
    batch_size: int = 64,
) -> AdaptiveResult:
    """Attack ``items`` (default: all) with the untargeted BPR objective (002 eq 3-4) through
    the defense, evading the detector; EOT over ``eot_samples`` draws of ``random_layer``."""
    from varsec.attacks.bpr_untargeted import BPRUntargeted

    base = BPRUntargeted(recommender, dataset, items, negatives=negatives, seed=seed)
    objective = DetectorAwareObjective(base, reconstruction, detector, penalty=penalty,
                                       margin=margin, random_layer=random_layer)
    hook = None
    if random_layer is not None and eot_samples > 1:
        hook = TransformHook(nn.Identity(), eot_samples)  # each draw re-samples R in the loss
    result = run_attack(objective, base.images, rule, transform=hook, early_stop=False,
                        batch_size=batch_size, seed=seed, desc="adaptive")
    with torch.no_grad():
        scores = detector.scores(result.images, reconstruction)
    return AdaptiveResult(base.items, result, scores, objective.threshold)


__all__ = ["AdaptiveResult", "DetectorAwareObjective", "adaptive_bpr_attack"]
