"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016), in L-inf, bounded by eps.

DeepFool linearises the decision boundary at the current image and steps onto it: for a binary
classifier ``f`` (the image is misclassified when ``f(x) <= 0``) one step is
``r = -(|f(x)| / ||∇f(x)||_q) · sign(∇f(x)) |∇f(x)|^(q-1)`` (sec 3.3, eq 7-8); in L-inf the dual
norm is ``q = 1`` and the step is ``r = -(|f(x)| + ξ) / ||∇f(x)||_1 · sign(∇f(x))``, taken
``1 + overshoot`` times (Alg. 2, overshoot 0.02); the loop stops per image at the first
quantised success. Pixels that already sit on the eps-ball or on [0, 1] in the step's direction
cannot move, so the dual norm is taken over the others (the step the linearised boundary asks
of the pixels that can follow it; with no pixel on a bound this is the original step), and at
least one 8-bit level (a smaller step rounds away on the 8-bit grid). Here ``f`` is the
objective's C&W margin
(:meth:`~varsec.attacks.objectives.Objective.cw_loss`): for a classifier, the logit of the true
class minus the best other one (untargeted), or the best other minus the target's (targeted) -
the boundary to the nearest competing class at the current image, which is the class the
multi-class DeepFool (Alg. 2) picks when the logit gradients have equal norms. Unlike the
original, the perturbation is projected onto the eps-ball and [0, 1] and quantised to 8 bits
like every varsec attack, so ``eps`` caps what the minimal perturbation may use; each step is
linearised at the quantised image, the one whose success is checked.

It needs an objective with a decision boundary (``has_success``: the classifier objectives,
item-to-item rank targets); an objective without one is refused before any step.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from varsec.attacks.engine import Problem, Rows, _Iterative, _per_image_view
from varsec.attacks.quantize import LEVELS, check_eps, check_steps
from varsec.attacks.registry import AttackMethod, register_attack, rule_default
from varsec.errors import ConfigError
from varsec.params import Param
from varsec.vision.perturbation import project_linf_, uint8_to_float

_TINY = 1e-4  # ξ: a margin that puts the linearised step just past the boundary


class DeepFoolStep(_Iterative):
    """DeepFool's L-inf iteration on the objective's margin, within ``eps`` (8-bit levels)."""

    name = "deepfool"

    def __init__(self, eps: float = 8, steps: int = 50, overshoot: float = 0.02) -> None:
        self.eps = check_eps(eps)
        self.norm = "linf"
        self.steps = check_steps(steps)
        if not isinstance(overshoot, int | float) or isinstance(overshoot, bool) or \
                not 0 <= overshoot < 1:
            raise ConfigError(f"overshoot must be a number in [0, 1), got {overshoot!r}.")
        self.overshoot = float(overshoot)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "overshoot": self.overshoot}

    def init(self, problem: Problem) -> dict[str, Tensor]:
        if not problem.objective.has_success:
            raise ConfigError(f"DeepFool needs an objective with a decision boundary (a "
                              f"classifier objective); {type(problem.objective).__name__} "
                              "has none.")
        return {"total": torch.zeros_like(problem.clean)}

    def images(self, problem: Problem, state: dict[str, Tensor], rows: Rows) -> Tensor:
        clean = problem.rows_of(problem.clean, rows)
        moved = clean + (1 + self.overshoot) * problem.rows_of(state["total"], rows)
        return project_linf_(moved, clean, self.eps)

    def update(self, problem: Problem, state: dict[str, Tensor], rows: Rows, x: Tensor,
               grad: Tensor) -> None:
        # linearise at the 8-bit image the success check sees: a float image just past the
        # boundary may round back before it, where the clamped margin has no slope left
        x = uint8_to_float(problem.quantize(x.detach(), rows), x.device)
        x.requires_grad_(True)
        margin = problem.value(x, rows, "cw")
        (slope,) = torch.autograd.grad(margin.sum(), x)
        clean = problem.rows_of(problem.clean, rows)
        direction = -slope.sign()
        # the dual norm over the pixels that can still move that way (the others sit on the
        # eps-ball or on [0, 1]): the step that the linearised boundary asks of them
        radius = self.eps / LEVELS
        low, high = (clean - radius).clamp(min=0.0), (clean + radius).clamp(max=1.0)
        free = ((direction > 0) & (x < high)) | ((direction < 0) & (x > low))
        reach = (slope.abs() * free).flatten(1).sum(1).clamp_min(1e-12)
        scale = ((margin.detach().abs() + _TINY) / reach).clamp_(min=1.0 / LEVELS)
        step = _per_image_view(scale, slope) * direction * free
        moved = x.detach() + (1 + self.overshoot) * step
        select = slice(None) if rows is None else rows
        state["total"][select] = (project_linf_(moved, clean, self.eps) - clean) / \
            (1 + self.overshoot)


@register_attack("deepfool")
class DeepFoolAttack(AttackMethod):
    """DeepFool (Moosavi-Dezfooli et al., CVPR 2016), L-inf, bounded by eps; on classifier
    objectives (a category attack on an extractor, ``varsec attack --objective classifier``)."""

    steps = rule_default(DeepFoolStep, "steps")
    paper = "Moosavi-Dezfooli et al. 2016"
    params: ClassVar[dict[str, Param]] = {
        "overshoot": Param(rule_default(DeepFoolStep, "overshoot"), float, low=0, high=1,
                           high_open=True, doc="how far past the linearised boundary the "
                           "perturbation goes (Alg. 2: 0.02)"),
    }

    @classmethod
    def rule(cls, eps: float, steps: int, alpha: float | None, params: Any) -> Any:
        return DeepFoolStep(eps=eps, steps=steps, overshoot=params["overshoot"])


__all__ = ["DeepFoolAttack", "DeepFoolStep"]
