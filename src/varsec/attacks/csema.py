"""c-SEMA, the composition semantic attack (Liu & Larson, AIP 000 sec 4.3, Fig. 3c).

The low-knowledge attacker edits the hook item's image into the cold item's image as an inset,
optionally with a caption such as "match your jeans with" so the composite reads like a normal
advertisement. No model is consulted; the image changes what it *depicts*, so no eps applies.

:func:`inset_placement` computes where the inset goes (``size`` is the inset's longer side as a
share of the image's shorter side, ``corner`` one of :data:`CORNERS`, ``margin`` in pixels); the
hook is resized with Pillow (Lanczos), converted to the image's channels, and pasted exactly
there. The caption is rendered with Pillow's built-in font only when the image is at least
``min_caption_height`` pixels tall (on a 28 px Fashion-MNIST item no caption would be legible);
:class:`CSemaResult` says whether it was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from varsec.attacks.registry import AttackMethod, register_attack
from varsec.errors import ConfigError
from varsec.params import Param

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
MIN_FONT = 8


@dataclass(frozen=True)
class InsetPlacement:
    """Where the inset sits: its top-left pixel and its size."""

    top: int
    left: int
    height: int
    width: int

    def region(self) -> tuple[slice, slice]:
        """Row and column slices of the inset."""
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


@dataclass
class CSemaResult:
    """The composite (uint8 C x H x W), the inset placement and whether a caption was drawn."""

    image: np.ndarray
    placement: InsetPlacement
    caption_drawn: bool


def _as_image(image: Any, name: str) -> np.ndarray:
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ConfigError(
            f"{name} must be a uint8 C x H x W image with 1 or 3 channels, got {array.dtype} "
            f"with shape {array.shape}."
        )
    return array


def inset_placement(
    image_shape: tuple[int, ...], hook_shape: tuple[int, ...], size: float = 0.4,
    corner: str = "bottom-right", margin: int = 0,
) -> InsetPlacement:
    """The inset's box for C x H x W shapes (the hook keeps its aspect ratio)."""
    if corner not in CORNERS:
        raise ConfigError(f"corner must be one of {', '.join(CORNERS)}, got {corner!r}.")
    if isinstance(size, bool) or not isinstance(size, int | float) or not 0 < size <= 1:
        raise ConfigError(f"inset size must be a share of the image side in (0, 1], got {size!r}.")
    height, width = image_shape[-2:]
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
        raise ConfigError(f"margin must be a non-negative number of pixels, got {margin!r}.")
    side = max(1, round(size * min(height, width)))
    hook_h, hook_w = hook_shape[-2:]
    scale = side / max(hook_h, hook_w)
    inset_h, inset_w = max(1, round(hook_h * scale)), max(1, round(hook_w * scale))
    if inset_h + margin > height or inset_w + margin > width:
        raise ConfigError(
            f"an inset of {inset_h} x {inset_w} px with margin {margin} does not fit a "
            f"{height} x {width} image."
        )
    top = margin if corner.startswith("top") else height - inset_h - margin
    left = margin if corner.endswith("left") else width - inset_w - margin
    return InsetPlacement(top, left, inset_h, inset_w)


def resize_hook(hook: Any, height: int, width: int, channels: int) -> np.ndarray:
    """The hook image resized (Lanczos) to ``height x width`` with ``channels`` channels."""
    from PIL import Image

    array = _as_image(hook, "hook image")
    picture = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    picture = picture.convert("L" if channels == 1 else "RGB")
    resized = np.asarray(picture.resize((width, height), Image.Resampling.LANCZOS))
    return resized[None] if resized.ndim == 2 else resized.transpose(2, 0, 1)


def _draw_caption(array: np.ndarray, text: str, placement: InsetPlacement) -> bool:
    """Draw ``text`` in a white box along the edge opposite the inset; False if it cannot fit."""
    from PIL import Image, ImageDraw, ImageFont

    channels, height, width = array.shape
    picture = Image.fromarray(array[0] if channels == 1 else array.transpose(1, 2, 0))
    draw = ImageDraw.Draw(picture)
    size = max(MIN_FONT, height // 12)
    while size >= MIN_FONT:
        font = ImageFont.load_default(size=size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left + 4 <= width:
            break
        size -= 1
    else:
        return False
    box_h = bottom - top + 4
    y = 0 if placement.top > 0 else height - box_h
    draw.rectangle((0, y, right - left + 3, y + box_h - 1), fill="white")
    draw.text((2 - left, y + 2 - top), text, fill="black", font=font)
    result = np.asarray(picture)
    array[:] = result[None] if result.ndim == 2 else result.transpose(2, 0, 1)
    return True


def csema(
    image: Any,
    hook: Any,
    *,
    size: float = 0.4,
    corner: str = "bottom-right",
    margin: int = 0,
    caption: str | None = None,
    min_caption_height: int = 64,
) -> CSemaResult:
    """Composite ``hook`` into ``image`` as an inset (000 sec 4.3); both uint8 C x H x W."""
    base = _as_image(image, "image").copy()
    hook_array = _as_image(hook, "hook image")
    placement = inset_placement(base.shape, hook_array.shape, size, corner, margin)
    rows, cols = placement.region()
    base[:, rows, cols] = resize_hook(hook_array, placement.height, placement.width,
                                      base.shape[0])
    drawn = False
    if caption and base.shape[1] >= min_caption_height:
        drawn = _draw_caption(base, caption, placement)
    return CSemaResult(base, placement, drawn)


def csema_batch(images: Any, hook: Any, **options: Any) -> Tensor:
    """:func:`csema` on every image of a uint8 N x C x H x W batch; returns a uint8 tensor."""
    array = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    if array.ndim != 4:
        raise ConfigError(f"images must be an N x C x H x W batch, got shape {array.shape}.")
    out = np.stack([csema(one, hook, **options).image for one in array]) if len(array) else array
    return torch.from_numpy(np.ascontiguousarray(out))


@register_attack("csema")
class CSemaAttack(AttackMethod):
    """c-SEMA (AIP 000 sec 4.3): no model at all; the hook item's image composited into the cold
    item's as an inset (eps and steps do not apply)."""

    objective = "none"
    family = "promotion"
    steps = 0
    iterative = False
    uses_eps = False
    gradient = False
    needs_gradients = False
    how = "a pasted patch"
    title = "c-SEMA"
    paper = "000 sec 4.3"
    params: ClassVar[dict[str, Param]] = {
        "size": Param(0.4, float, low=0, low_open=True, high=1, doc="inset side as a share of "
                      "the image side"),
        "corner": Param("bottom-right", str, choices=CORNERS, doc="where the inset goes"),
        "margin": Param(0, int, low=0, doc="pixels between the inset and the border"),
        "caption": Param(None, str, doc="a caption written under the image (null: none)"),
    }

    @classmethod
    def rule(cls, eps: float, steps: int, alpha: float | None, params: Any) -> Any:
        return None


__all__ = ["CORNERS", "CSemaResult", "InsetPlacement", "csema", "csema_batch",
           "inset_placement", "resize_hook"]
