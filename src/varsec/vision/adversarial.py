"""A small L-infinity PGD for classifiers, used by adversarial training and robustness evaluation.

Epsilon and step size are given in 8-bit levels (``eps=8`` means 8/255, DESIGN.md section 2).
PGD (Madry et al., 2018, "Towards deep learning models resistant to adversarial attacks",
section 2): start at a uniformly random point of the eps-ball (optional), take ``steps`` signed
gradient steps of size ``alpha`` on the cross-entropy, and after each step project back onto the
eps-ball around the clean image intersected with [0, 1]. It solves the inner maximisation of
001 eq 4 (untargeted) and eq 3 (targeted: the loss towards the target class is minimised).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from numbers import Real

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varsec.errors import ConfigError

log = logging.getLogger(__name__)


def check_eps(eps: float, name: str = "eps") -> float:
    """Validate an epsilon in 8-bit levels: 0 < eps <= 255; returns it as a float."""
    if isinstance(eps, bool) or not isinstance(eps, Real) or not math.isfinite(float(eps)):
        raise ConfigError(f"{name} must be a number of 8-bit levels in (0, 255], got {eps!r}.")
    if not 0 < float(eps) <= 255:
        raise ConfigError(
            f"{name} must lie in (0, 255] 8-bit levels (eps=8 means 8/255), got {eps}."
        )
    if name == "eps" and float(eps) < 1:
        log.warning("eps=%s is below one 8-bit level: quantisation will undo the attack.", eps)
    return float(eps)


def check_steps(steps: int, name: str = "steps") -> int:
    """Validate a number of attack steps (a non-negative integer)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {steps!r}.")
    return steps


def default_alpha(eps: float, steps: int) -> float:
    """Madry et al.'s rule of thumb for the step size: 2.5 * eps / steps (in 8-bit levels)."""
    return 2.5 * eps / max(steps, 1)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (batch-norm statistics frozen) and restore its mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def project(adv: Tensor, clean: Tensor, eps: float) -> Tensor:
    """Project ``adv`` onto the L-inf ball of radius ``eps`` levels around ``clean``, in [0, 1]."""
    radius = eps / 255.0
    return torch.min(torch.max(adv, clean - radius), clean + radius).clamp_(0.0, 1.0)


def random_start(clean: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly random point of the eps-ball around ``clean`` (clipped to [0, 1])."""
    radius = eps / 255.0
    noise = torch.rand(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
    return (clean + (2 * noise - 1) * radius).clamp_(0.0, 1.0)


def pgd_linf(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    labels: Tensor,
    *,
    eps: float,
    alpha: float | None = None,
    steps: int = 10,
    random_init: bool = True,
    targeted: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L-inf PGD (Madry et al., 2018): adversarial images within ``eps`` levels of ``images``.

    ``model`` maps [0, 1] images to logits; ``labels`` are the true classes (untargeted: the
    cross-entropy is raised) or the target classes (``targeted``: it is lowered). The caller
    chooses the model's mode (see :func:`eval_mode`). Returns float images, detached; quantise
    them with :func:`quantize` before measuring anything.
    """
    eps = check_eps(eps)
    steps = check_steps(steps)
    alpha = default_alpha(eps, steps) if alpha is None else check_eps(alpha, "alpha")
    clean = images.detach()
    adv = random_start(clean, eps, generator) if random_init else clean.clone()
    sign = -1.0 if targeted else 1.0
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), labels)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = project(adv.detach() + sign * (alpha / 255.0) * grad.sign(), clean, eps)
    return adv.detach()


def quantize(adv: Tensor, clean: Tensor | None = None, eps: float | None = None) -> Tensor:
    """Round images to the 8-bit grid; with ``clean`` and ``eps``, stay inside the eps-ball.

    Rounding can push a pixel half a level past a non-integer eps; it is then pulled back to the
    nearest grid value inside the ball, so the quantised image honours the budget exactly.
    """
    levels = torch.round(adv.detach() * 255.0)
    if clean is not None and eps is not None:
        base = torch.round(clean.detach() * 255.0)
        budget = math.floor(eps + 1e-6)
        levels = torch.min(torch.max(levels, base - budget), base + budget)
    return levels.clamp_(0, 255) / 255.0
