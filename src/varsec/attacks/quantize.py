"""8-bit honesty (DESIGN.md section 2): budgets in 8-bit levels, uint8 rounding that stays inside
the eps-ball, and lossless, atomic PNG files.

Every adversarial image leaves the engine as ``uint8``. Rounding a float image to the 8-bit grid
can push a pixel past the budget (a float difference of 7.6 levels rounds to 8 when eps is 7.65),
so :func:`quantize` clamps in integer space to ``[x - b, x + b] ∩ [0, 255]`` with
``b = floor(eps)`` levels (L-inf), and for L2 falls back to truncating every difference towards
the clean pixel when rounding would leave the ball. Clean images are on the 8-bit grid (they come
from uint8 catalogs); :func:`to_float` snaps float inputs to the grid so that holds everywhere.
"""

from __future__ import annotations

import math
import os
import warnings
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from varsec.errors import ConfigError, DataError, VarsecWarning
from varsec.io import atomic_path
from varsec.params import check_int
from varsec.vision import perturbation
from varsec.vision.perturbation import (
    LEVELS,
    budget_levels,
    float_to_uint8,
    quantize_levels,
    to_levels,
    uint8_to_float,
)

NORMS = ("linf", "l2")
_SLACK = perturbation.BUDGET_SLACK  # float slack when comparing to a budget


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(float(value))


def check_eps(eps: Any, *, norm: str = "linf", name: str = "eps", step: bool = False) -> float:
    """Validate a budget in 8-bit levels and return it as a float.

    L-inf: ``1 <= eps <= 255`` (``eps=8`` means 8/255), checked by
    :func:`varsec.vision.perturbation.check_eps`; ``step=True`` (a step size) allows
    ``(0, 255]``. L2: ``eps >= 1``, the L2 norm of the perturbation measured in 8-bit levels
    (``||δ||_2 <= eps / 255`` on [0, 1] pixels). Both have the same floor: any nonzero uint8
    perturbation changes a pixel by at least one level, so a smaller budget rounds to no attack.
    """
    if check_norm(norm) == "linf":
        return perturbation.check_eps(eps, name, step=step)
    if isinstance(eps, bool) or not isinstance(eps, Real):
        raise ConfigError(f"{name} must be a number of 8-bit levels, got {eps!r}.")
    value = float(eps)
    if not perturbation.MIN_EPS <= value < math.inf:
        raise ConfigError(
            f"{name} (an L2 norm in 8-bit levels) must be at least 1 (rounding to uint8 undoes "
            f"a smaller perturbation), got {eps}."
        )
    return value


def check_norm(norm: Any) -> str:
    """Validate a norm name: ``linf`` or ``l2``."""
    if norm not in NORMS:
        raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}.")
    return str(norm)


def check_steps(steps: Any, name: str = "steps") -> int:
    """Validate a number of iterations: an integer >= 1."""
    return check_int(steps, name, low=1)


def check_positive(value: Any, name: str) -> float:
    """Validate a finite number > 0 (step sizes, learning rates, constants)."""
    if not _is_number(value) or float(value) <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}.")
    return float(value)


def check_alpha(alpha: Any, eps: float, name: str = "alpha") -> float:
    """Validate a step size in 8-bit levels; a step larger than eps is allowed but warned about."""
    value = check_positive(alpha, name)
    if value > eps:
        warnings.warn(
            f"{name}={value:g} levels is larger than eps={eps:g}: every step overshoots the "
            "eps-ball and is clipped back to its surface.",
            VarsecWarning,
            stacklevel=3,
        )
    return value


def to_float(images: Any, name: str = "images") -> Tensor:
    """Images as float32 NCHW on the 8-bit grid in [0, 1].

    uint8 arrays/tensors are divided by 255 (:func:`~varsec.vision.perturbation.uint8_to_float`);
    float inputs must lie in [0, 1] and are rounded to the nearest 8-bit level (a no-op for
    images that came from uint8).
    """
    tensor = images if isinstance(images, Tensor) else torch.as_tensor(np.asarray(images))
    if tensor.ndim != 4:
        raise ConfigError(
            f"{name} must be an N x C x H x W batch, got shape {tuple(tensor.shape)}."
        )
    if tensor.dtype == torch.uint8:
        return uint8_to_float(tensor)
    if not tensor.is_floating_point():
        raise ConfigError(f"{name} must be uint8 or float in [0, 1], got {tensor.dtype}.")
    tensor = tensor.detach().float()
    if tensor.numel() and (float(tensor.min()) < 0.0 or float(tensor.max()) > 1.0):
        raise ConfigError(
            f"{name} must lie in [0, 1] (float) or be uint8, got values in "
            f"[{float(tensor.min()):.3g}, {float(tensor.max()):.3g}]."
        )
    return torch.round(tensor * LEVELS).div_(LEVELS)


#: Float images in [0, 1] rounded to uint8, no budget (use :func:`quantize` for attacks).
to_uint8 = float_to_uint8


def quantize(
    adv: Tensor, clean: Tensor, eps: float | None = None, norm: str = "linf"
) -> Tensor:
    """Round adversarial images to uint8 so that the budget still holds after rounding.

    ``clean`` is on the 8-bit grid (float in [0, 1] or uint8). ``eps`` None: plain rounding.
    L-inf: the difference to the clean image is clamped to ``floor(eps)`` levels. L2: rounded
    images whose L2 distance exceeds ``eps`` levels are truncated towards the clean image
    instead, which never enlarges any pixel's difference, so they stay in the ball.
    """
    if eps is None or norm == "linf":  # the rounding vision's PGD uses too
        return quantize_levels(adv, clean, eps).to(torch.uint8)
    levels = torch.round(adv.detach() * LEVELS)
    base = to_levels(clean)
    distance = (levels - base).flatten(1).norm(dim=1)
    outside = distance > eps + _SLACK
    if bool(outside.any()):
        exact = adv.detach()[outside] * LEVELS - base[outside]
        levels[outside] = base[outside] + torch.trunc(exact)
    return levels.clamp_(0, LEVELS).to(torch.uint8)


def perturbation_levels(adv: Tensor, clean: Tensor) -> Tensor:
    """Per-image L-inf distance in 8-bit levels between two uint8 (or on-grid float) batches."""
    a = adv.float() if adv.dtype == torch.uint8 else adv * LEVELS
    b = clean.float() if clean.dtype == torch.uint8 else clean * LEVELS
    return (a - b).abs().flatten(1).amax(dim=1)


# -- PNG files -------------------------------------------------------------------------------
def save_png(path: str | os.PathLike[str], image: Any) -> Path:
    """Write one uint8 C x H x W image (C = 1 or 3) as a lossless PNG, atomically."""
    from PIL import Image

    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ConfigError(
            f"a PNG is written from a uint8 C x H x W image with 1 or 3 channels, got "
            f"{array.dtype} with shape {array.shape}."
        )
    picture = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    path = Path(path)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG", optimize=False)
    return path


def load_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PNG written by :func:`save_png` back as uint8 C x H x W."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            picture.load()
            mode = picture.mode
            array = np.asarray(picture if mode in ("L", "RGB") else picture.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: not a readable PNG image ({exc}).") from exc
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy()


__all__ = [
    "LEVELS",
    "NORMS",
    "budget_levels",
    "check_alpha",
    "check_eps",
    "check_norm",
    "check_positive",
    "check_steps",
    "load_png",
    "perturbation_levels",
    "quantize",
    "save_png",
    "to_float",
    "to_uint8",
]
