"""A small L-infinity PGD for classifiers, used by adversarial training and robustness evaluation.

Epsilon and step size are given in 8-bit levels (``eps=8`` means 8/255, DESIGN.md section 2).
PGD (Madry et al., 2018, "Towards deep learning models resistant to adversarial attacks",
section 2): start at a uniformly random point of the eps-ball (optional), take ``steps`` signed
gradient steps of size ``alpha`` on the cross-entropy, and after each step project back onto the
eps-ball around the clean image intersected with [0, 1]. It solves the inner maximisation of
001 eq 4 (untargeted) and eq 3 (targeted: the loss towards the target class is minimised).

The pieces (budget check, default step, eval mode, random start, step, projection, rounding to
the 8-bit grid) live in :mod:`varsec.vision.perturbation`, shared with the attack engine; they
are re-exported here under their historical names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varsec.errors import ConfigError
from varsec.vision.perturbation import (
    LEVELS,
    affine_batch_norm,
    check_eps,
    default_alpha,
    eval_mode,
    linf_step,
    project_linf_,
    quantize_levels,
    random_start,
)


def check_steps(steps: int, name: str = "steps") -> int:
    """Validate a number of attack steps (a non-negative integer)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {steps!r}.")
    return steps


def project(adv: Tensor, clean: Tensor, eps: float) -> Tensor:
    """Project ``adv`` onto the L-inf ball of radius ``eps`` levels around ``clean``, in [0, 1].

    ``adv`` is left unchanged (:func:`varsec.vision.perturbation.project_linf_` works in place).
    """
    return project_linf_(adv.clone(), clean, eps)


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
    fast_batch_norm: bool = True,
) -> Tensor:
    """L-inf PGD (Madry et al., 2018): adversarial images within ``eps`` levels of ``images``.

    ``model`` maps [0, 1] images to logits; ``labels`` are the true classes (untargeted: the
    cross-entropy is raised) or the target classes (``targeted``: it is lowered). The caller
    chooses the model's mode (see :func:`eval_mode`). With ``fast_batch_norm`` (the default,
    as in the attack engine) an ``nn.Module`` model's eval-mode batch norms run as affine maps
    while attacking (:func:`~varsec.vision.perturbation.affine_batch_norm`: the same values up
    to float rounding, a cheaper backward pass); False keeps the native kernels. Steps,
    projection and random start are torchattacks' floating-point operations. Returns float
    images, detached; quantise them with :func:`quantize_float` before measuring anything.
    """
    eps = check_eps(eps)
    steps = check_steps(steps)
    alpha = default_alpha(eps, steps) if alpha is None else check_eps(alpha, "alpha", step=True)
    clean = images.detach()
    adv = random_start(clean, eps, generator) if random_init else clean.clone()
    affine = (affine_batch_norm([model]) if fast_batch_norm and isinstance(model, nn.Module)
              else contextlib.nullcontext())
    with affine:
        for _ in range(steps):
            adv.requires_grad_(True)
            loss = F.cross_entropy(model(adv), labels)
            (grad,) = torch.autograd.grad(loss, adv)
            adv = linf_step(adv.detach(), grad.neg_() if targeted else grad, alpha, clean, eps)
    return adv.detach()


def quantize_float(adv: Tensor, clean: Tensor | None = None,
                   eps: float | None = None) -> Tensor:
    """Round images to the 8-bit grid and return them as *float* in [0, 1]; with ``clean`` and
    ``eps``, stay inside the eps-ball.

    Rounding can push a pixel half a level past a non-integer eps; it is then pulled back to the
    nearest grid value inside the ball, so the quantised image honours the budget exactly.
    :func:`varsec.attacks.quantize.quantize` rounds the same way and returns uint8.
    """
    return quantize_levels(adv, clean, eps).div_(LEVELS)


__all__ = [
    "check_eps",
    "check_steps",
    "default_alpha",
    "eval_mode",
    "pgd_linf",
    "project",
    "quantize_float",
    "random_start",
]
