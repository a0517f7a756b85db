"""Carlini & Wagner attacks (Carlini & Wagner, 2017, "Towards evaluating the robustness of neural
networks", sec V-VI), as step rules of the engine (:mod:`varsec.attacks.engine`).

* :class:`CWL2Step`: minimise ``||x' - x||_2^2 + c * f(x')`` over ``w`` with
  ``x' = (tanh(w) + 1) / 2`` (the box constraint by change of variables), with Adam, and a
  binary search on ``c`` per image: after a round, ``c`` moves half-way down towards the last
  failure when the image succeeded, else up (x10 until a success brackets it). The result is
  the successful *quantised* image with the smallest L2 distance over all rounds. ``eps``
  (optional) caps the result in L-inf.
* :class:`CWLinfStep`: the penalty form of C&W's L-inf attack used in Normann's thesis (004,
  "Carlini & Wagner Method", CW-1000 with an ε bound): minimise
  ``c * f(x + δ) + Σ_i max(|δ_i| - τ, 0)`` with Adam on δ, δ clipped to the eps-ball and
  ``x + δ`` to [0, 1]; τ starts at eps and shrinks by ``tau_decay`` whenever an image succeeds
  with every ``|δ_i| <= τ``, so the attack looks for the smallest L-inf perturbation inside eps.

``f`` is the objective's :meth:`~varsec.attacks.objectives.Objective.cw_loss` (C&W's margin for
classifiers, the feature distance for feature targets). Objectives without a notion of success
run one round with the given ``c``. Success is always judged on quantised images.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from varsec.attacks.engine import BatchResult, Problem, StepRule, _per_image_view, _record
from varsec.attacks.quantize import (
    LEVELS,
    check_alpha,
    check_eps,
    check_positive,
    check_steps,
)
from varsec.attacks.registry import AttackMethod, register_attack, rule_default
from varsec.errors import ConfigError
from varsec.params import Param

_BETAS = (0.9, 0.999)


def _adam_descent(var: Tensor, grad: Tensor, state: dict[str, Tensor], t: int, lr: float) -> Tensor:
    """One Adam step that lowers the loss (vectorised over the batch)."""
    b1, b2 = _BETAS
    state["m"].mul_(b1).add_(grad, alpha=1 - b1)
    state["v"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
    m_hat = state["m"] / (1 - b1**t)
    v_hat = state["v"] / (1 - b2**t)
    return var - lr * m_hat / (v_hat.sqrt() + 1e-8)


class _PenaltySearch(StepRule):
    """Adam on a penalised objective with a per-image binary search on the constant c."""

    c: float
    lr: float
    binary_search_steps: int
    check_every: int

    def _check_common(self, c: Any, steps: Any, lr: Any, binary_search_steps: Any,
                      check_every: Any) -> None:
        self.c = check_positive(c, "c")
        self.steps = check_steps(steps)
        self.lr = check_positive(lr, "lr")
        self.binary_search_steps = check_steps(binary_search_steps, "binary_search_steps")
        self.check_every = check_steps(check_every, "check_every")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "c": self.c, "lr": self.lr,
                "binary_search_steps": self.binary_search_steps}

    # -- what the two forms define --------------------------------------------------------
    @abstractmethod
    def start(self, clean: Tensor) -> Tensor:
        """The optimisation variable at the start of a round."""

    @abstractmethod
    def images(self, var: Tensor, clean: Tensor) -> Tensor:
        """Adversarial images of the variable (differentiable)."""

    @abstractmethod
    def penalty(self, x: Tensor, var: Tensor, clean: Tensor) -> Tensor:
        """The distance term per image."""

    def after_step(self, var: Tensor, clean: Tensor) -> Tensor:
        """Constrain the variable after an Adam step (default: nothing)."""
        return var

    def step_size(self) -> float:
        """Adam's learning rate in the units of the variable."""
        return self.lr

    @abstractmethod
    def size(self, quantised: Tensor, clean: Tensor) -> Tensor:
        """The perturbation size that ranks successful images (smaller is better)."""

    def on_check(self, var: Tensor, clean: Tensor, ok: Tensor) -> None:
        """Hook after each success check (the L-inf form shrinks τ)."""

    def new_round(self, problem: Problem) -> None:
        """Hook at the start of each binary-search round."""

    # -- the loop -------------------------------------------------------------------------
    def run(self, problem: Problem) -> BatchResult:
        clean, n = problem.clean, problem.size
        searching = problem.objective.has_success
        rounds = self.binary_search_steps if searching else 1
        const = torch.full((n,), self.c, device=clean.device)
        lower = torch.zeros(n, device=clean.device)
        upper = torch.full((n,), math.inf, device=clean.device)
        best = torch.zeros(clean.shape, dtype=torch.uint8)
        best_size = torch.full((n,), math.inf)
        last = best
        history = torch.zeros((rounds * self.steps, n), device=clean.device)
        for round_ in range(rounds):
            self.new_round(problem)
            last, found = self._round(problem, const, best, best_size,
                                      history[round_ * self.steps:(round_ + 1) * self.steps])
            if searching:
                upper = torch.where(found, torch.minimum(upper, const), upper)
                lower = torch.where(found, lower, torch.maximum(lower, const))
                const = torch.where(torch.isinf(upper), const * 10, (lower + upper) / 2)
        succeeded = torch.isfinite(best_size)
        images = torch.where(_per_image_view(succeeded, best), best, last)
        steps = torch.full((n,), rounds * self.steps, dtype=torch.long)
        return BatchResult(images, succeeded if searching else None, steps, history.cpu())

    def _round(self, problem: Problem, const: Tensor, best: Tensor, best_size: Tensor,
               history: Tensor) -> tuple[Tensor, Tensor]:
        """One binary-search round; ``history`` (steps x images) gets minus the penalised
        loss at every step."""
        clean = problem.clean
        var = self.start(clean)
        state = {"m": torch.zeros_like(var), "v": torch.zeros_like(var)}
        found = torch.zeros(problem.size, dtype=torch.bool, device=clean.device)
        for t in range(1, self.steps + 1):
            var = var.detach().requires_grad_(True)
            x = self.images(var, clean)
            total = self.penalty(x, var, clean) + const * problem.value(x, None, "cw")
            (grad,) = torch.autograd.grad(total.sum(), var)
            _record(history, t - 1, None, -total.detach())
            var = _adam_descent(var.detach(), grad, state, t, self.step_size())
            var = self.after_step(var, clean)
            if problem.objective.has_success and (t % self.check_every == 0 or t == self.steps):
                found |= self._check(problem, var, best, best_size).to(found.device)
        return problem.quantize(self.images(var, clean).detach(), None), found.cpu()

    def _check(self, problem: Problem, var: Tensor, best: Tensor, best_size: Tensor) -> Tensor:
        quantised = problem.quantize(self.images(var, problem.clean).detach(), None)
        ok = problem.succeeded(quantised, None)
        assert ok is not None
        size = self.size(quantised, problem.clean)
        better = ok & (size < best_size)
        best[better], best_size[better] = quantised[better], size[better]
        self.on_check(var, problem.clean, ok.to(var.device))
        return ok


def _levels(quantised: Tensor, clean: Tensor) -> Tensor:
    return quantised.float() - torch.round(clean.detach().cpu() * LEVELS)


class CWL2Step(_PenaltySearch):
    """C&W's L2 attack (tanh space, Adam, binary search on c); see the module docstring.

    ``lr`` is Adam's step on the tanh-space variable ``w`` (C&W use 0.01); ``eps``, when given,
    caps the final quantised image in L-inf (8-bit levels).
    """

    name = "cw-l2"

    def __init__(
        self,
        c: float = 1.0,
        steps: int = 100,
        lr: float = 0.01,
        binary_search_steps: int = 5,
        eps: float | None = None,
        check_every: int = 10,
    ) -> None:
        self._check_common(c, steps, lr, binary_search_steps, check_every)
        self.eps = None if eps is None else check_eps(eps)
        self.norm = "linf"

    def start(self, clean: Tensor) -> Tensor:
        return torch.atanh((2 * clean - 1) * (1 - 1e-6))

    def images(self, var: Tensor, clean: Tensor) -> Tensor:
        return (torch.tanh(var) + 1) / 2

    def penalty(self, x: Tensor, var: Tensor, clean: Tensor) -> Tensor:
        return (x - clean).pow(2).flatten(1).sum(1)

    def size(self, quantised: Tensor, clean: Tensor) -> Tensor:
        return _levels(quantised, clean).flatten(1).norm(dim=1)


class CWLinfStep(_PenaltySearch):
    """The thesis' C&W L-inf penalty form (004; Carlini & Wagner 2017 sec VI); see the module
    docstring. ``lr`` is Adam's step on δ in 8-bit levels; the result stays within ``eps``.
    """

    name = "cw-linf"

    def __init__(
        self,
        eps: float = 8,
        c: float = 1.0,
        steps: int = 100,
        lr: float = 1.0,
        binary_search_steps: int = 1,
        tau_decay: float = 0.9,
        check_every: int = 10,
    ) -> None:
        self.eps = check_eps(eps)
        self.norm = "linf"
        self._check_common(c, steps, check_alpha(lr, self.eps, "lr"), binary_search_steps,
                           check_every)
        if not isinstance(tau_decay, int | float) or not 0 < tau_decay <= 1:
            raise ConfigError(f"tau_decay must lie in (0, 1], got {tau_decay!r}.")
        self.tau_decay = float(tau_decay)
        self._tau: Tensor | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tau_decay": self.tau_decay}

    def new_round(self, problem: Problem) -> None:
        self._tau = torch.full((problem.size,), self.eps / LEVELS, device=problem.clean.device)

    def start(self, clean: Tensor) -> Tensor:
        return torch.zeros_like(clean)

    def images(self, var: Tensor, clean: Tensor) -> Tensor:
        return (clean + var).clamp(0.0, 1.0)

    def penalty(self, x: Tensor, var: Tensor, clean: Tensor) -> Tensor:
        assert self._tau is not None
        excess = var.abs() - _per_image_view(self._tau, var)
        return excess.clamp(min=0).flatten(1).sum(1)

    def after_step(self, var: Tensor, clean: Tensor) -> Tensor:
        radius = self.eps / LEVELS
        return (clean + var.clamp(-radius, radius)).clamp(0.0, 1.0) - clean

    def step_size(self) -> float:
        return self.lr / LEVELS  # Adam works on δ in [0, 1] units

    def size(self, quantised: Tensor, clean: Tensor) -> Tensor:
        levels = _levels(quantised, clean).flatten(1)
        return levels.abs().amax(1) + levels.norm(dim=1) / 1e6  # L-inf, ties broken by L2

    def on_check(self, var: Tensor, clean: Tensor, ok: Tensor) -> None:
        assert self._tau is not None
        inside = var.detach().abs().flatten(1).amax(1) <= self._tau
        self._tau = torch.where(ok & inside, self._tau * self.tau_decay, self._tau)


def _cw_params(rule: type, lr_doc: str) -> dict[str, Param]:
    """The settings both C&W forms declare, with their own rule's defaults."""
    return {
        "c": Param(rule_default(rule, "c"), float, low=0, low_open=True,
                   doc="initial weight of the objective term"),
        "lr": Param(rule_default(rule, "lr"), float, low=0, low_open=True, doc=lr_doc),
        "binary_steps": Param(rule_default(rule, "binary_search_steps"), int, low=1,
                              doc="binary-search rounds on c"),
    }


@register_attack("cw", aliases=("cw-l2",))
class CWL2Attack(AttackMethod):
    """C&W's L2 attack (Carlini & Wagner 2017; thesis 004): tanh space, Adam, binary search on
    c; eps (below 255) caps the final image in L-inf."""

    step_unit = "tanh"
    steps = rule_default(CWL2Step, "steps")
    paper = "Carlini & Wagner 2017; 004"
    params: ClassVar[dict[str, Param]] = _cw_params(CWL2Step, "Adam's rate on the tanh-space "
                                                    "variable (not a pixel step)")

    @classmethod
    def rule(cls, eps: float, steps: int, alpha: float | None, params: Any) -> Any:
        return CWL2Step(c=params["c"], steps=steps, lr=params["lr"],
                        binary_search_steps=params["binary_steps"],
                        eps=None if eps >= 255 else eps)


@register_attack("cw-linf")
class CWLinfAttack(AttackMethod):
    """The thesis' C&W L-inf penalty form (004; Carlini & Wagner 2017 sec VI)."""

    steps = rule_default(CWLinfStep, "steps")
    paper = "004; Carlini & Wagner 2017 sec VI"
    params: ClassVar[dict[str, Param]] = _cw_params(CWLinfStep, "Adam's step on the "
                                                    "perturbation in 8-bit levels")

    @classmethod
    def rule(cls, eps: float, steps: int, alpha: float | None, params: Any) -> Any:
        return CWLinfStep(eps=eps, c=params["c"], steps=steps,
                          lr=params["lr"],
                          binary_search_steps=params["binary_steps"])


__all__ = ["CWL2Step", "CWLinfStep"]
