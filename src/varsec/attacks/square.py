"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020), L-inf: a query-only
random search.

The merchant who cannot see the model's gradients but can score an upload: every step proposes
one change and keeps it only when the score improves. The start is a random image of vertical
stripes of +-eps (Alg. 1, its L-inf initialisation); each step redraws one square window of side
``s`` of every image with a +-eps value per channel around the clean image (sec 3.1), where
``s = round(sqrt(p * h * w))`` and ``p`` follows the paper's schedule from ``p_init`` (halved at
10, 50, 200, 500, 1,000, 2,000, 4,000, 6,000 and 8,000 of 10,000 iterations, rescaled to the
budget). The window is drawn per image, as in the authors' code. The search runs in 8-bit levels
(``floor(eps)`` of them around the clean image), so every candidate is an honest uint8 image
before it is scored, and an image stops at its first success.

The score is the objective's C&W form negated (:meth:`~varsec.attacks.objectives.Objective.
cw_loss`): for a classifier the margin of the true class (untargeted) or to the target class,
as torchattacks' ``loss="margin"``; for any other objective (INSA, a feature target) its value.
No gradient is taken. **Queries are counted per image**: the initial image is one query, every
proposal one more (``AttackResult.steps`` holds each image's count, the history its best score
after each query), so a study reports what the attack cost in queries.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from varsec.attacks.engine import BatchResult, Problem, StepRule
from varsec.attacks.quantize import LEVELS, check_eps, check_steps
from varsec.attacks.registry import AttackMethod, register_attack, rule_default
from varsec.params import Param, check_number
from varsec.vision.perturbation import uint8_to_float

# The paper's schedule of p over 10,000 iterations: after each of these, p halves again.
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def window_share(p_init: float, step: int, steps: int) -> float:
    """The share ``p`` of the image a window covers at ``step`` (0-based) of ``steps``: the
    paper's schedule rescaled from 10,000 iterations to ``steps``."""
    at = int(step / steps * 10000)
    halvings = sum(at > mark for mark in _HALVINGS)
    return p_init / 2 ** halvings


class SquareStep(StepRule):
    """Square Attack's L-inf random search within ``eps`` (8-bit levels), ``steps`` queries."""

    name = "square"

    def __init__(self, eps: float = 8, steps: int = 5000, p_init: float = 0.8) -> None:
        self.eps = check_eps(eps)
        self.norm = "linf"
        self.steps = check_steps(steps)
        self.p_init = check_number(p_init, "p_init", low=0, low_open=True, high=1)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "p_init": self.p_init, "queries": self.steps}

    def _judge(self, problem: Problem, x: Tensor, rows: Tensor | None
               ) -> tuple[Tensor, Tensor | None]:
        """(score to maximise, success or None) of images on the grid: one model pass."""
        cw, success = problem.cw_and_success(x, rows)
        return -cw, success

    def _proposal(self, clean: Tensor, best: Tensor, p: float, budget: int) -> Tensor:
        """One random +-budget square per image (its own window and signs) on top of ``best``
        (all in 8-bit levels, int16)."""
        k, c, h, w = best.shape
        side = min(max(round(math.sqrt(p * h * w)), 1), min(h, w))
        device = best.device
        top = torch.randint(0, h - side + 1, (k, 1, 1, 1), device=device)
        left = torch.randint(0, w - side + 1, (k, 1, 1, 1), device=device)
        ys = torch.arange(h, device=device).view(1, 1, h, 1)
        xs = torch.arange(w, device=device).view(1, 1, 1, w)
        window = (ys >= top) & (ys < top + side) & (xs >= left) & (xs < left + side)
        signs = torch.randint(0, 2, (k, c, 1, 1), device=device, dtype=torch.int16) * 2 - 1
        return torch.where(window, clean + budget * signs, best).clamp_(0, 255)

    def run(self, problem: Problem) -> BatchResult:
        clean = torch.round(problem.clean * LEVELS).to(torch.int16)  # on the 8-bit grid
        n = problem.size
        budget = math.floor(self.eps + 1e-9)  # what the 8-bit grid allows within eps
        with torch.no_grad():
            stripes = torch.randint(0, 2, (n, clean.shape[1], 1, clean.shape[3]),
                                    device=clean.device, dtype=torch.int16) * 2 - 1
            best = (clean + budget * stripes).clamp_(0, 255)
            score, success = self._judge(problem, _float(best), None)
            queries = torch.ones(n, dtype=torch.long)
            history = torch.zeros((self.steps + 1, n))
            history[0] = score.cpu()
            done = torch.zeros(n, dtype=torch.bool) if success is None else success.clone()
            for step in range(self.steps):
                history[step + 1] = history[step]
                active = torch.nonzero(~done).flatten()
                if len(active) == 0:
                    history[step + 1:] = history[step]  # every image succeeded
                    break
                rows = active.to(clean.device)
                candidate = self._proposal(clean[rows], best[rows],
                                           window_share(self.p_init, step, self.steps), budget)
                new, won = self._judge(problem, _float(candidate), rows)
                keep = (new > score[rows]).cpu()
                if won is not None:
                    keep |= won
                    done[active[won]] = True
                kept = keep.to(clean.device)
                best[rows[kept]] = candidate[kept]
                score[rows[kept]] = new[kept]
                queries[active] += 1
                history[step + 1, active] = score[rows].cpu()
        images = best.to(torch.uint8).cpu()
        return BatchResult(images, None if success is None else done, queries, history)


def _float(levels: Tensor) -> Tensor:
    """int16 8-bit levels -> float32 in [0, 1], the engine's images."""
    return uint8_to_float(levels.to(torch.uint8))


@register_attack("square")
class SquareAttack(AttackMethod):
    """Square Attack (Andriushchenko et al., ECCV 2020), L-inf: query-only random search; its
    steps are queries per image."""

    steps = rule_default(SquareStep, "steps")
    step_unit = "queries"
    needs_gradients = False  # it only scores uploads: it audits a query-only model too
    paper = "Andriushchenko et al. 2020"
    params: ClassVar[dict[str, Param]] = {
        "p_init": Param(rule_default(SquareStep, "p_init"), float, low=0, low_open=True,
                        high=1, doc="share of the image the first windows cover (halved on "
                        "the paper's schedule)"),
    }

    @classmethod
    def rule(cls, eps: float, steps: int, alpha: float | None, params: Any) -> Any:
        return SquareStep(eps=eps, steps=steps, p_init=params["p_init"])


__all__ = ["SquareAttack", "SquareStep", "window_share"]
