"""L-inf perturbation primitives in 8-bit levels, shared by vision's PGD and the attack engine.

Budgets and step sizes are given in 8-bit levels (``eps=8`` means 8/255, DESIGN.md section 2).
This module holds the one implementation of each piece that :mod:`varsec.vision.adversarial`
(adversarial training, robustness evaluation) and :mod:`varsec.attacks.engine` /
:mod:`varsec.attacks.quantize` both need; the attacks layer imports it (never the reverse):

* validation of an L-inf budget (:func:`check_eps`) and Madry's default step size
  (:func:`default_alpha`);
* eval mode for networks under attack (:func:`evaluating`, :func:`eval_mode`) and eval-mode batch
  norms evaluated as per-channel affine maps (:func:`affine_batch_norm`);
* the PGD L-inf pieces in torchattacks' floating-point form (Madry et al., 2018): the random
  start (:func:`random_start`), the signed step (:func:`linf_step`) and the projection onto the
  eps-ball intersected with [0, 1] (:func:`project_linf_`);
* rounding to the 8-bit grid inside the budget (:func:`quantize_levels`, :func:`budget_levels`);
* the one uint8 <-> float conversion of every layer (:func:`uint8_to_float`,
  :func:`float_to_uint8`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from numbers import Real
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from varsec.errors import ConfigError

log = logging.getLogger(__name__)

LEVELS = 255.0
BUDGET_SLACK = 1e-6  # float slack when flooring a budget: 8.0000001 levels is still 8
MIN_EPS = 1.0  # the smallest budget that survives rounding to uint8: one 8-bit level


# -- budgets -----------------------------------------------------------------------------------
def check_eps(eps: Any, name: str = "eps", *, step: bool = False) -> float:
    """Validate a budget in 8-bit levels, ``1 <= eps <= 255``; returns it as a float.

    A budget below one level is refused: rounding the adversarial image to uint8 undoes it, so
    the attack would silently be a no-op. A step size (``step=True``: PGD alpha) accumulates
    over iterations and may be any value in ``(0, 255]``.
    """
    if isinstance(eps, bool) or not isinstance(eps, Real):
        raise ConfigError(f"{name} must be a number of 8-bit levels, got {eps!r}.")
    value = float(eps)
    if step and not 0 < value <= LEVELS:  # also NaN and infinity
        raise ConfigError(f"{name} must lie in (0, 255] 8-bit levels, got {eps}.")
    if not step and not MIN_EPS <= value <= LEVELS:
        raise ConfigError(
            f"{name} must lie in [1, 255] 8-bit levels (eps=8 means 8/255; rounding to uint8 "
            f"undoes a budget below one level), got {eps}."
        )
    return value


def default_alpha(eps: float, steps: int) -> float:
    """Madry et al.'s rule of thumb for the step size: 2.5 * eps / steps (in 8-bit levels)."""
    return 2.5 * eps / max(steps, 1)


def budget_levels(eps: float) -> int:
    """The largest whole number of 8-bit levels inside an L-inf budget: ``floor(eps)``."""
    return math.floor(eps + BUDGET_SLACK)


# -- networks under attack ---------------------------------------------------------------------
@contextlib.contextmanager
def evaluating(modules: list[nn.Module]) -> Iterator[None]:
    """Eval mode (batch norm on running statistics, no dropout) for ``modules``, restored after.

    Every submodule gets its own training flag back, so networks that keep some parts in eval
    mode while training come back exactly as they were. Attacks take gradients with respect to
    the *inputs* only (``torch.autograd.grad``), so the parameters' ``.grad`` are never touched
    and need not be frozen (freezing them makes the input-only backward pass about 5 % slower
    on CPU).
    """
    switched = [m for m in modules if any(sub.training for sub in m.modules())]
    modes = [(m, [sub.training for sub in m.modules()]) for m in switched]
    try:
        for module in switched:
            module.eval()
        yield
    finally:
        for module, flags in modes:
            for sub, flag in zip(module.modules(), flags, strict=True):
                sub.training = flag


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (batch-norm statistics frozen) and restore its mode after."""
    with evaluating([model]):
        yield model


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _AffineBatchNorm:
    """The forward of an eval-mode batch norm as the fixed per-channel affine map it is.

    ``y = x * scale + shift`` with ``scale = weight / sqrt(running_var + eps)`` and
    ``shift = bias - running_mean * scale`` (from the module's current values, in float64, then
    rounded; recomputed when any of them changes; no gradient flows to them). Its backward is
    one multiplication, where the native kernel's costs about three times the forward on CPU.
    The values agree with the native kernel's up to float rounding. In training mode, or for
    inputs of another dtype or device, the module's own forward runs.
    """

    __slots__ = ("key", "module", "terms")

    def __init__(self, module: nn.modules.batchnorm._BatchNorm) -> None:
        self.module = module
        self.key: tuple[Any, ...] = ()
        self.terms: tuple[Tensor, Tensor] | None = None

    def _terms(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(scale, shift)``, recomputed whenever a statistic or parameter has changed."""
        module = self.module
        tensors = (module.running_var, module.running_mean, module.weight, module.bias)
        key = (module.eps, dtype, *((t.data_ptr(), t._version) for t in tensors if t is not None))
        if key != self.key or self.terms is None:
            with torch.no_grad():
                scale = torch.rsqrt(module.running_var.double() + module.eps)
                if module.weight is not None:
                    scale = scale * module.weight.double()
                shift = -module.running_mean.double() * scale
                if module.bias is not None:
                    shift = shift + module.bias.double()
            self.key, self.terms = key, (scale.to(dtype), shift.to(dtype))
        return self.terms

    def __call__(self, x: Tensor) -> Tensor:
        module = self.module
        var, mean = module.running_var, module.running_mean
        if (module.training or var is None or mean is None or x.dtype != var.dtype
                or x.device != var.device):
            return type(module).forward(module, x)
        module._check_input_dim(x)
        scale, shift = self._terms(x.dtype)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return torch.addcmul(shift.view(shape), x, scale.view(shape))


@contextlib.contextmanager
def affine_batch_norm(modules: list[nn.Module]) -> Iterator[None]:
    """Evaluate every eval-mode batch norm of ``modules`` as its affine map (see
    :class:`_AffineBatchNorm`) inside the block; the modules' own forwards are restored after.

    For attacks, which take gradients with respect to the *inputs* only: the affine map has
    no gradient for the batch norm's weight and bias. Batch norms in training mode, without
    running statistics, of subclasses, or with a forward already replaced are left alone.
    :func:`varsec.attacks.engine.run_attack` uses it inside :func:`evaluating`; together they
    are the floor an attack step is measured against in ``benchmarks/attacks.py``.
    """
    patched: list[nn.Module] = []
    try:
        for module in modules:
            for sub in module.modules():
                if (type(sub) in _BATCH_NORMS and not sub.training
                        and sub.running_var is not None and sub.running_mean is not None
                        and "forward" not in sub.__dict__):
                    sub.forward = _AffineBatchNorm(sub)
                    patched.append(sub)
        yield
    finally:
        for sub in patched:
            del sub.forward


# -- PGD in L-inf (torchattacks' floating-point form) -------------------------------------------
def random_start(clean: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly random point of the eps-ball around ``clean`` (clipped to [0, 1]).

    ``clean + U(-r, r)`` with ``r = eps / 255``, drawn as torchattacks draws it (from torch's
    global RNG unless a ``generator`` is given).
    """
    radius = eps / LEVELS
    noise = torch.empty_like(clean).uniform_(-radius, radius, generator=generator)
    return (clean + noise).clamp_(0.0, 1.0)


def project_linf_(adv: Tensor, clean: Tensor, eps: float) -> Tensor:
    """Project ``adv`` *in place* onto the L-inf ball of radius ``eps`` levels around ``clean``,
    intersected with [0, 1]; returns ``adv``.

    torchattacks' form, the same floating-point operations:
    ``clamp(clean + clamp(adv - clean, -r, r), 0, 1)``.
    """
    radius = eps / LEVELS
    return adv.sub_(clean).clamp_(-radius, radius).add_(clean).clamp_(0.0, 1.0)


def linf_step(x: Tensor, grad: Tensor, alpha: float, clean: Tensor, eps: float) -> Tensor:
    """One L-inf PGD ascent step: ``x + alpha * sign(grad)`` (``alpha`` in 8-bit levels),
    projected onto the eps-ball around ``clean`` and [0, 1]. A new tensor; the same rounding as
    torchattacks' update. Descend by passing ``-grad``.
    """
    moved = grad.sign().mul_(alpha / LEVELS).add_(x)
    return project_linf_(moved, clean, eps)


# -- the 8-bit grid ----------------------------------------------------------------------------
def to_levels(images: Tensor) -> Tensor:
    """Images as float 8-bit levels: uint8 as they are, float [0, 1] rounded to the nearest."""
    images = images.detach()
    return images.float() if images.dtype == torch.uint8 else torch.round(images * LEVELS)


def quantize_levels(adv: Tensor, clean: Tensor | None = None, eps: float | None = None) -> Tensor:
    """Round float images in [0, 1] to 8-bit levels (a float tensor of whole numbers in
    [0, 255]); with ``clean`` (float on the grid, or uint8) and ``eps``, every level is clamped
    to ``floor(eps)`` levels around the clean one, so the rounded image honours an L-inf budget
    exactly (rounding alone can push a pixel half a level past a non-integer eps).
    """
    levels = torch.round(adv.detach() * LEVELS)
    if clean is not None and eps is not None:
        base = to_levels(clean)
        budget = float(budget_levels(eps))
        levels = torch.minimum(torch.maximum(levels, base - budget), base + budget)
    return levels.clamp_(0, LEVELS)


# -- uint8 <-> float ---------------------------------------------------------------------------
def _from_numpy(array: np.ndarray) -> Tensor:
    """A tensor over ``array`` (a copy of a read-only one, e.g. a memory map opened ``r``, which
    torch would warn about)."""
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def uint8_to_float(images: Tensor | np.ndarray, device: torch.device | str | None = None,
                   name: str = "images") -> Tensor:
    """uint8 pixels -> float32 in [0, 1], ``x / 255`` (DESIGN.md section 2: images are stored as
    uint8 and worked on as float32 in [0, 1]).

    ``images``: a uint8 tensor or numpy array (a memory map too), any shape; with ``device``
    the uint8 pixels are moved there first, then converted. Any other dtype is refused: float
    images divided by 255 again would silently turn almost black.
    """
    if not isinstance(images, Tensor | np.ndarray) or images.dtype not in (torch.uint8, np.uint8):
        got = images.dtype if isinstance(images, Tensor | np.ndarray) else type(images).__name__
        raise ConfigError(f"{name} must be uint8 pixels (a tensor or numpy array), got {got}.")
    tensor = _from_numpy(images) if isinstance(images, np.ndarray) else images
    if device is not None:
        tensor = tensor.to(device)
    return tensor.float().div_(LEVELS)


RANGE_SLACK = 1e-5  # float images may overshoot [0, 1] by rounding noise


def check_float_images(x: Any, what: str, *, in_range: bool = False) -> None:
    """A ConfigError naming ``what`` unless ``x`` is a float N x C x H x W tensor (and, with
    ``in_range``, its values lie in [0, 1]): what every model and transform takes."""
    if not isinstance(x, Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ConfigError(f"{what}: images must be an N x C x H x W tensor, got {shape}.")
    if not x.is_floating_point():
        raise ConfigError(f"{what}: images must be float32 in [0, 1], got {x.dtype} (convert "
                          "uint8 pixels with x.float() / 255).")
    if in_range and x.numel():
        low, high = (float(v) for v in torch.aminmax(x.detach()))
        if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:
            raise ConfigError(
                f"{what}: images must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]."
            )


def float_to_uint8(images: Tensor, name: str = "images") -> Tensor:
    """Float images in [0, 1] -> uint8 on the same device: every pixel rounded to the nearest
    8-bit level (halves to even, as :func:`torch.round`), values outside [0, 1] clipped.

    No budget: adversarial images are rounded with :func:`quantize_levels` and a clean image
    instead, so that they stay inside their eps-ball.
    """
    if not isinstance(images, Tensor) or not images.is_floating_point():
        got = images.dtype if isinstance(images, Tensor) else type(images).__name__
        raise ConfigError(f"{name} must be a float tensor in [0, 1], got {got}.")
    return quantize_levels(images).to(torch.uint8)


__all__ = [
    "BUDGET_SLACK",
    "LEVELS",
    "affine_batch_norm",
    "budget_levels",
    "check_eps",
    "default_alpha",
    "eval_mode",
    "evaluating",
    "float_to_uint8",
    "linf_step",
    "project_linf_",
    "quantize_levels",
    "random_start",
    "to_levels",
    "uint8_to_float",
]
