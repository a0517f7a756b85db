"""The attack engine: one loop for every gradient attack, parameterised by an objective and a
step rule (DESIGN.md section 7).

Step rules. **Every budget and every pixel step size is in 8-bit levels** (DESIGN.md section
2): ``eps=8`` is 8/255, PGD ``alpha=2`` moves each pixel 2/255 per step, Adam's ``lr=1`` moves
δ by at most about 1/255 per step. A paper's rate in [0, 1] pixel units is multiplied by 255
(AIP's Adam lr 0.0001 is ``lr=0.0255``; EXPA's 0.01 is ``lr=2.55``). ``steps x step size`` is the
farthest a pixel can travel from its start, so it should reach ``eps``; a study that cannot is
warned about when it is loaded (:func:`varsec.study.schema.budget_warnings`). The exception is
:class:`~varsec.attacks.cw.CWL2Step`, which optimises in tanh space: its ``lr`` is Adam's step on
the tanh variable ``w``, not a pixel step (a pixel moves by at most ``lr / 2`` per step in [0, 1]
units, ``255 * lr / 2`` levels).

* :class:`FGSMStep` (Goodfellow, Shlens & Szegedy, 2015): one signed step of size eps (L-inf), or
  one normalised gradient step (L2, the "fast gradient method"); 002 eq 4.
* :class:`PGDStep` (Madry et al., 2018): optional random start in the eps-ball, ``steps`` steps of
  size ``alpha`` (signed for L-inf, normalised for L2), each followed by projection onto the
  eps-ball intersected with [0, 1]. The L-inf update is torchattacks' exactly.
* :class:`AdamStep` (Liu & Larson, AIP 000 Alg. 1): Adam on the perturbation δ, then
  ``δ <- clip(δ, -eps, eps)`` and ``x' = clip(x + δ, 0, 1)`` after every step.
* :class:`~varsec.attacks.cw.CWL2Step` and :class:`~varsec.attacks.cw.CWLinfStep` (Carlini & Wagner,
  2017; the thesis' penalty form) live in :mod:`varsec.attacks.cw`.

:func:`run_attack` attacks a batch of images: it puts the objective's networks in eval mode
(their batch norms evaluated as the affine maps they then are, :func:`affine_batch_norm`: the
same values up to float rounding, a much cheaper backward pass), seeds every random draw,
applies the EOT / BPDA transform hook (:mod:`varsec.attacks.transforms`) in front of the
objective, stops each image as soon as its *quantised* version succeeds (``early_stop``), and
returns uint8 images that honour the budget (:func:`varsec.attacks.quantize.quantize`). Nothing
float ever leaves the engine.

The L-inf pieces the engine shares with vision's PGD (random start, signed step, projection,
default step size, :func:`evaluating`, :func:`affine_batch_norm`) have their one implementation
in :mod:`varsec.vision.perturbation` (the attacks layer may import vision, not the reverse); the
two names are re-exported here.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from varsec.attacks.objectives import Objective
from varsec.attacks.quantize import (
    LEVELS,
    check_alpha,
    check_eps,
    check_norm,
    check_steps,
    quantize,
    to_float,
)
from varsec.attacks.registry import AttackMethod, register_attack, rule_default
from varsec.attacks.transforms import TransformHook
from varsec.devices import check_device, seeded
from varsec.errors import ConfigError
from varsec.io import progress
from varsec.params import Param, check_int
from varsec.vision.perturbation import (
    affine_batch_norm,
    default_alpha,
    evaluating,
    float_to_uint8,
    linf_step,
    project_linf_,
    random_start,
    uint8_to_float,
)

Rows = Tensor | None  # active rows of a batch (None: all of them)


# --------------------------------------------------------------------------------------------
# The problem a step rule solves: one batch, its objective and transform hook
# --------------------------------------------------------------------------------------------


@dataclass
class Problem:
    """One batch of clean images (float, on the 8-bit grid) and what to maximise on them."""

    objective: Objective
    hook: TransformHook
    clean: Tensor
    index: Tensor
    eps: float | None
    norm: str
    early_stop: bool
    report_success: bool = True
    #: per-image objective of the last :meth:`gradient` call (detached), for the history
    last_value: Tensor | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.clean)

    def rows_of(self, tensor: Tensor, rows: Rows) -> Tensor:
        """``tensor`` restricted to the active ``rows`` (the tensor itself when all are)."""
        return tensor if rows is None else tensor[rows]

    def _index(self, rows: Rows) -> Tensor:
        return self.index if rows is None else self.index[rows.cpu()]

    def value(self, x: Tensor, rows: Rows, kind: str = "loss") -> Tensor:
        """The objective (``loss`` to maximise or ``cw`` to minimise), averaged over EOT draws."""
        function = self.objective.loss if kind == "loss" else self.objective.cw_loss
        index = self._index(rows)
        total = function(self.hook(x), index)
        for _ in range(self.hook.draws - 1):
            total = total + function(self.hook(x), index)
        return total / self.hook.draws if self.hook.draws > 1 else total

    def gradient(self, x: Tensor, rows: Rows) -> Tensor:
        """Gradient of the objective's total ``loss`` with respect to the images ``x``."""
        x = x.detach().requires_grad_(True)
        values = self.value(x, rows)
        (grad,) = torch.autograd.grad(values.sum(), x)
        self.last_value = values.detach()
        return grad

    @torch.no_grad()
    def cw_and_success(self, x: Tensor, rows: Rows) -> tuple[Tensor, Tensor | None]:
        """The ``cw`` value of images on the 8-bit grid and their success (None without such a
        notion, a bool per image on the CPU); one pass through the model when the hook draws
        once, as :meth:`value` and :meth:`succeeded` would give them."""
        if self.hook.draws > 1:
            return self.value(x, rows, "cw"), self.succeeded(
                float_to_uint8(x), rows)
        cw, ok = self.objective.cw_and_success(self.hook(x), self._index(rows))
        if not self.objective.has_success:
            ok = None
        return cw, None if ok is None else ok.bool().cpu()

    @torch.no_grad()
    def succeeded(self, images_uint8: Tensor, rows: Rows) -> Tensor | None:
        """Success of quantised images (one transform draw), or None without such a notion."""
        if not self.objective.has_success:
            return None
        x = uint8_to_float(images_uint8, self.clean.device)
        result = self.objective.success(self.hook(x), self._index(rows))
        return None if result is None else result.bool().cpu()

    def quantize(self, adv: Tensor, rows: Rows) -> Tensor:
        """uint8 images within the budget around the clean images of ``rows``."""
        return quantize(adv, self.rows_of(self.clean, rows), self.eps, self.norm).cpu()


@dataclass
class BatchResult:
    """What a step rule returns for one batch (uint8 images on the CPU)."""

    images: Tensor
    success: Tensor | None
    steps: Tensor
    history: Tensor | None = None  # steps x images objective (CPU float32), see AttackResult


def _record(history: Tensor, step: int, rows: Rows, values: Tensor | None) -> None:
    """Row ``step`` of ``history``: the active ``rows``' objective ``values``; images that
    stopped early keep their last value."""
    if step > 0:
        history[step] = history[step - 1]
    if values is not None:
        history[step, slice(None) if rows is None else rows] = values.reshape(-1).to(
            history.dtype)


# --------------------------------------------------------------------------------------------
# Step rules
# --------------------------------------------------------------------------------------------


class StepRule(ABC):
    """How an attack moves: its budget (``eps`` in 8-bit levels, ``norm``) and its loop."""

    name: ClassVar[str] = ""
    eps: float | None = None
    norm: str = "linf"
    steps: int = 1

    @abstractmethod
    def run(self, problem: Problem) -> BatchResult:
        """Attack one batch."""

    def describe(self) -> dict[str, Any]:
        """The rule's settings (for manifests and results tables)."""
        return {"attack": self.name, "eps": self.eps, "norm": self.norm, "steps": self.steps}


class _Iterative(StepRule):
    """A gradient-ascent loop with per-image early stopping on quantised success."""

    random_start: bool = False

    @abstractmethod
    def init(self, problem: Problem) -> dict[str, Tensor]:
        """The per-image state at step 0."""

    @abstractmethod
    def images(self, problem: Problem, state: dict[str, Tensor], rows: Rows) -> Tensor:
        """The current adversarial images of ``rows``."""

    @abstractmethod
    def update(
        self, problem: Problem, state: dict[str, Tensor], rows: Rows, x: Tensor, grad: Tensor
    ) -> None:
        """One step of ``rows`` from images ``x`` along the ascent gradient ``grad``."""

    def run(self, problem: Problem) -> BatchResult:
        state = self.init(problem)
        out = torch.empty(problem.clean.shape, dtype=torch.uint8)
        success = torch.zeros(problem.size, dtype=torch.bool)
        steps = torch.full((problem.size,), self.steps, dtype=torch.long)
        rows: Rows = None
        check = problem.early_stop and problem.objective.has_success
        history = torch.zeros((self.steps, problem.size), device=problem.clean.device)
        for step in range(1, self.steps + 1):
            problem.objective.begin_step(step)
            x = self.images(problem, state, rows)
            grad = problem.gradient(x, rows)
            _record(history, step - 1, rows, problem.last_value)
            self.update(problem, state, rows, x, grad)
            if check and step < self.steps:
                rows = self._stop_successes(problem, state, rows, out, success, steps, step)
                if rows is not None and len(rows) == 0:
                    history[step:] = history[step - 1]
                    return BatchResult(out, success, steps, history.cpu())
        final = problem.quantize(self.images(problem, state, rows), rows)
        cpu_rows = slice(None) if rows is None else rows.cpu()
        out[cpu_rows] = final
        if not problem.report_success:
            return BatchResult(out, None, steps, history.cpu())
        done = problem.succeeded(final, rows)
        if done is not None:
            success[cpu_rows] = done
        return BatchResult(out, success if problem.objective.has_success else None, steps,
                           history.cpu())

    def _stop_successes(self, problem: Problem, state: dict[str, Tensor], rows: Rows,
                        out: Tensor, success: Tensor, steps: Tensor, step: int) -> Rows:
        active = torch.arange(problem.size, device=problem.clean.device) if rows is None else rows
        quantised = problem.quantize(self.images(problem, state, rows), rows)
        done = problem.succeeded(quantised, rows)
        if done is None or not bool(done.any()):
            return rows
        finished = active.cpu()[done]
        out[finished], success[finished], steps[finished] = quantised[done], True, step
        return active[~done.to(active.device)]

    def _start(self, problem: Problem) -> Tensor:
        """The starting images: clean, or a uniform random point of the eps-ball."""
        clean = problem.clean
        if not self.random_start:
            return clean.clone()
        if self.norm == "linf":
            return random_start(clean, self.eps)
        direction = torch.randn_like(clean)
        norms = direction.flatten(1).norm(dim=1).clamp_min(1e-12)
        scale = (self.eps / LEVELS) * torch.rand(len(clean), device=clean.device) / norms
        noise = direction * scale.view(-1, *([1] * (clean.ndim - 1)))
        return (clean + noise).clamp_(0.0, 1.0)


def _per_image_view(values: Tensor, like: Tensor) -> Tensor:
    return values.view(-1, *([1] * (like.ndim - 1)))


def project(adv: Tensor, clean: Tensor, eps: float, norm: str) -> Tensor:
    """Project ``adv`` onto the eps-ball (8-bit levels) around ``clean``, intersected with [0, 1].

    The L-inf form is torchattacks': ``clamp(clean + clamp(adv - clean, -r, r), 0, 1)``.
    ``adv`` is left unchanged (the step rules use an in-place twin on tensors they own).
    """
    return _project_(adv.clone(), clean, eps, norm)


def _project_(adv: Tensor, clean: Tensor, eps: float, norm: str) -> Tensor:
    """:func:`project` in place on ``adv`` (no new tensor; the same floating-point operations,
    so the same bits as torchattacks' L-inf projection, which is
    :func:`varsec.vision.perturbation.project_linf_`)."""
    if norm == "linf":
        return project_linf_(adv, clean, eps)
    delta = adv.sub_(clean)
    norms = delta.flatten(1).norm(dim=1)
    factor = ((eps / LEVELS) / norms.clamp_min(1e-12)).clamp_(max=1.0)
    delta.mul_(_per_image_view(factor, delta))
    return delta.add_(clean).clamp_(0.0, 1.0)


class PGDStep(_Iterative):
    """Projected gradient ascent (Madry et al., 2018) in L-inf or L2; 002 sec 3.1.

    ``alpha`` (8-bit levels) defaults to Madry's ``2.5 * eps / steps``; a step larger than eps
    is warned about. L-inf steps are ``alpha * sign(g)``, L2 steps ``alpha * g / ||g||_2``.
    """

    name = "pgd"

    def __init__(
        self,
        eps: float = 8,
        alpha: float | None = None,
        steps: int = 10,
        random_start: bool = True,
        norm: str = "linf",
    ) -> None:
        self.norm = check_norm(norm)
        self.eps = check_eps(eps, norm=self.norm)
        self.steps = check_steps(steps)
        self.alpha = (default_alpha(self.eps, self.steps) if alpha is None
                      else check_alpha(alpha, self.eps))
        self.random_start = bool(random_start)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "alpha": self.alpha, "random_start": self.random_start}

    def init(self, problem: Problem) -> dict[str, Tensor]:
        return {"adv": self._start(problem)}

    def images(self, problem: Problem, state: dict[str, Tensor], rows: Rows) -> Tensor:
        return problem.rows_of(state["adv"], rows)

    def update(
        self, problem: Problem, state: dict[str, Tensor], rows: Rows, x: Tensor, grad: Tensor
    ) -> None:
        clean = problem.rows_of(problem.clean, rows)
        if self.norm == "linf":  # x + step * sign(g), projected, as torchattacks (same rounding)
            new = linf_step(x, grad, self.alpha, clean, self.eps)
        else:
            norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
            moved = grad * _per_image_view((self.alpha / LEVELS) / norms, grad)
            new = _project_(moved.add_(x), clean, self.eps, self.norm)
        if rows is None:
            state["adv"] = new
        else:
            state["adv"][rows] = new


class FGSMStep(PGDStep):
    """The fast gradient sign method (Goodfellow et al., 2015; Yin et al. 002 eq 4).

    One step of size eps from the clean image: ``x + eps * sign(g)`` (L-inf), or
    ``x + eps * g / ||g||_2`` (L2), clipped to [0, 1]. No random start.
    """

    name = "fgsm"

    def __init__(self, eps: float = 8, norm: str = "linf") -> None:
        super().__init__(eps=eps, alpha=check_eps(eps, norm=norm), steps=1,
                         random_start=False, norm=norm)

    def describe(self) -> dict[str, Any]:
        return {"attack": self.name, "eps": self.eps, "norm": self.norm, "steps": 1}


class AdamStep(_Iterative):
    """Adam on the perturbation with clipping (Liu & Larson, AIP 000 Alg. 1; sec 5.2.2).

    δ starts at 0 (or a random point of the ball); each step Adam moves δ up the objective's
    gradient with learning rate ``lr`` in 8-bit levels (Adam's update is bounded by about ``lr``
    per pixel and step, so ``steps * lr`` should reach ``eps``; a paper's lr in [0, 1] units
    times 255: AIP's INSA 0.0001 -> 0.0255, EXPA 0.01 -> 2.55), then
    ``δ <- clip(δ, -eps, eps)`` and ``x' = clip(x + δ, 0, 1)`` (Alg. 1 lines 4-6; δ is kept equal
    to ``x' - x``). The last iterate is quantised (line 8).
    """

    name = "adam"

    def __init__(
        self,
        eps: float = 8,
        lr: float = 1.0,
        steps: int = 100,
        betas: tuple[float, float] = (0.9, 0.999),
        random_start: bool = False,
    ) -> None:
        self.eps = check_eps(eps)
        self.norm = "linf"
        self.steps = check_steps(steps)
        self.lr = check_alpha(lr, self.eps, "lr")
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {betas!r}.")
        self.betas = (float(betas[0]), float(betas[1]))
        self.random_start = bool(random_start)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "lr": self.lr}

    def init(self, problem: Problem) -> dict[str, Tensor]:
        delta = self._start(problem) - problem.clean
        zeros = torch.zeros_like(delta)
        return {"delta": delta, "m": zeros, "v": zeros.clone(),
                "t": torch.zeros(problem.size, device=delta.device)}

    def images(self, problem: Problem, state: dict[str, Tensor], rows: Rows) -> Tensor:
        return problem.rows_of(problem.clean, rows) + problem.rows_of(state["delta"], rows)

    def update(
        self, problem: Problem, state: dict[str, Tensor], rows: Rows, x: Tensor, grad: Tensor
    ) -> None:
        b1, b2 = self.betas
        select = slice(None) if rows is None else rows
        t = state["t"][select] + 1
        m = b1 * state["m"][select] + (1 - b1) * grad
        v = b2 * state["v"][select] + (1 - b2) * grad * grad
        m_hat = m / _per_image_view(1 - b1**t, m)
        v_hat = v / _per_image_view(1 - b2**t, v)
        radius = self.eps / LEVELS
        delta = state["delta"][select] + (self.lr / LEVELS) * m_hat / (v_hat.sqrt() + 1e-8)
        clean = problem.rows_of(problem.clean, rows)
        delta = (clean + delta.clamp_(-radius, radius)).clamp_(0.0, 1.0) - clean
        state["t"][select], state["m"][select], state["v"][select] = t, m, v
        state["delta"][select] = delta


# --------------------------------------------------------------------------------------------
# Running an attack
# --------------------------------------------------------------------------------------------


@dataclass
class AttackResult:
    """Quantised adversarial images (uint8, CPU) and per-image outcome of one attack run.

    ``success`` is None when the objective has no notion of success; ``steps`` counts the steps
    each image took (fewer than asked when it stopped early). ``history`` (float32, CPU, steps x
    images) is the objective the step rule ascended, per step and image: row ``t`` is the value
    at the iterate the step-``t`` gradient was taken at (after ``t`` steps; row 0 is the start;
    the final iterate is not evaluated again). An image that stopped early keeps its last value.
    C&W rules record minus their penalised loss, every binary-search round one after the other.
    None when a step rule does not record it. :mod:`varsec.metrics.convergence` judges it.
    """

    images: Tensor
    success: Tensor | None
    steps: Tensor
    seconds: float
    settings: dict[str, Any]
    history: Tensor | None = None

    def float_images(self) -> Tensor:
        """The adversarial images as float32 in [0, 1] (on the 8-bit grid)."""
        return uint8_to_float(self.images)

    @property
    def success_rate(self) -> float | None:
        """Share of images whose quantised version succeeded (None without success notion)."""
        return None if self.success is None else float(self.success.float().mean())


@contextlib.contextmanager
def frozen(modules: list[nn.Module]) -> Iterator[None]:
    """Eval mode and no parameter gradients for ``modules``; both restored afterwards.

    For code that trains something else around fixed networks (e.g. a defense trained against
    a fixed recommender); :func:`run_attack` itself only needs :func:`evaluating`.
    """
    modes = [(m, m.training) for m in modules]
    flags = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    try:
        for module in modules:
            module.eval()
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        for module, mode in modes:
            module.train(mode)


def _check_batch_size(batch_size: Any) -> int:
    return check_int(batch_size, "batch_size", low=1)


def run_attack(
    objective: Objective,
    images: Any,
    rule: StepRule,
    *,
    index: Any = None,
    early_stop: bool = True,
    transform: Any = None,
    eot_samples: int = 1,
    bpda: Any = False,
    batch_size: int = 128,
    seed: int = 0,
    device: str | torch.device | None = None,
    report_success: bool = True,
    fast_batch_norm: bool = True,
    desc: str = "attack",
) -> AttackResult:
    """Attack ``images`` (uint8, or float in [0, 1]) with ``rule`` on ``objective``.

    ``index`` gives each image's position in the objective's per-image data (default
    ``0..N-1``). ``transform``/``eot_samples``/``bpda`` put a (defense) transform in front of the
    objective (:class:`~varsec.attacks.transforms.TransformHook`). With ``early_stop`` an image
    stops at the first step whose *quantised* image succeeds. ``report_success=False`` skips
    the final success check (one forward pass) when only the images are wanted.
    ``fast_batch_norm`` evaluates eval-mode batch norms as affine maps
    (:func:`affine_batch_norm`); False keeps the native kernels, bit for bit the computation
    of a torchattacks run (on deep networks PGD's sign steps amplify float rounding, so the two
    settings may differ in a few pixels, as do torchattacks runs on 1 and 2 threads). The same
    ``seed`` gives the same images. Returns uint8 images within ``rule``'s budget.
    """
    if not isinstance(objective, Objective):
        raise ConfigError(f"objective must be a varsec Objective, got {type(objective).__name__}.")
    if not isinstance(rule, StepRule):
        raise ConfigError(f"rule must be a varsec StepRule, got {type(rule).__name__}.")
    hook = transform if isinstance(transform, TransformHook) else TransformHook(
        transform, eot_samples, bpda)
    clean = to_float(images)
    positions = torch.arange(len(clean)) if index is None else torch.as_tensor(index).long()
    if positions.shape != (len(clean),):
        raise ConfigError(f"index must hold one position per image ({len(clean)}).")
    objective.check_size(int(positions.max()) + 1 if len(positions) else 0)
    batch_size = _check_batch_size(batch_size)
    target = check_device(device) if device is not None else objective.device
    started = time.perf_counter()
    parts: list[BatchResult] = []
    starts = range(0, len(clean), batch_size)
    modules = objective.modules()
    affine = affine_batch_norm(modules) if fast_batch_norm else contextlib.nullcontext()
    with evaluating(modules), affine, seeded(seed, target):
        for start in progress(starts, total=len(starts), desc=desc):
            stop = start + batch_size
            problem = Problem(objective, hook, clean[start:stop].to(target),
                              positions[start:stop], rule.eps, rule.norm, early_stop,
                              report_success)
            parts.append(rule.run(problem))
    return _collect(parts, clean, time.perf_counter() - started, rule, hook, seed)


def _collect(parts: list[BatchResult], clean: Tensor, seconds: float, rule: StepRule,
             hook: TransformHook, seed: int) -> AttackResult:
    if not parts:
        empty = torch.zeros(clean.shape, dtype=torch.uint8)
        return AttackResult(empty, None, torch.zeros(0, dtype=torch.long), seconds, {})
    reported = [p.success for p in parts]
    success = None if any(s is None for s in reported) else torch.cat(reported)
    settings = {**rule.describe(), "seed": seed, "eot_samples": hook.draws,
                "bpda": hook.bpda is not False, "transform": hook.transform is not None}
    histories = [p.history for p in parts]
    history = None if any(h is None for h in histories) else torch.cat(histories, dim=1)
    return AttackResult(torch.cat([p.images for p in parts]), success,
                        torch.cat([p.steps for p in parts]), seconds, settings, history)


@register_attack("fgsm")
class FGSMAttack(AttackMethod):
    """FGSM (Goodfellow et al. 2015; 002 eq 4, 001, 004): one step of eps along the gradient
    sign."""

    steps = 1
    iterative = False
    paper = "Goodfellow et al. 2015"

    @classmethod
    def rule(cls, eps: float, steps: int, alpha: float | None, params: Any) -> Any:
        return FGSMStep(eps=eps)


@register_attack("pgd")
class PGDAttack(AttackMethod):
    """PGD in L-inf (Madry et al. 2018; 001, 002, 004): ``alpha`` per step (default
    2.5 * eps / steps), projected on the eps-ball."""

    uses_alpha = True
    steps = rule_default(PGDStep, "steps")
    paper = "Madry et al. 2018"
    params: ClassVar[dict[str, Param]] = {
        "random_start": Param(rule_default(PGDStep, "random_start"), bool,
                              doc="start from a random point of the eps-ball")}

    @classmethod
    def rule(cls, eps: float, steps: int, alpha: float | None, params: Any) -> Any:
        return PGDStep(eps=eps, alpha=alpha, steps=steps,
                       random_start=params["random_start"])


@register_attack("pgd-l2")
class PGDL2Attack(PGDAttack):
    """PGD in L2 (Madry et al. 2018): eps is the L2 radius in 8-bit levels."""

    norm = "l2"

    @classmethod
    def rule(cls, eps: float, steps: int, alpha: float | None, params: Any) -> Any:
        return PGDStep(eps=eps, alpha=alpha, steps=steps,
                       random_start=params["random_start"], norm="l2")


@register_attack("adam")
class AdamAttack(AttackMethod):
    """Adam on the perturbation with clipping (AIP 000 Alg. 1) on any objective."""

    paper = "000 Alg. 1"
    steps = rule_default(AdamStep, "steps")
    params: ClassVar[dict[str, Param]] = {
        "lr": Param(rule_default(AdamStep, "lr"), float, low=0, low_open=True,
                    doc="Adam's step in 8-bit levels"),
        "random_start": Param(rule_default(AdamStep, "random_start"), bool,
                              doc="start from a random point of the eps-ball"),
    }

    @classmethod
    def rule(cls, eps: float, steps: int, alpha: float | None, params: Any) -> Any:
        return AdamStep(eps=eps, lr=params["lr"], steps=steps,
                        random_start=params["random_start"])


__all__ = [
    "AdamStep",
    "AttackResult",
    "BatchResult",
    "FGSMStep",
    "PGDStep",
    "Problem",
    "StepRule",
    "affine_batch_norm",
    "evaluating",
    "frozen",
    "project",
    "run_attack",
]
