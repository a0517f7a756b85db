"""JPEG compression at quality q as a defense (Dziugaite et al. 2016; Das et al. 2017; evaluated
against AIP attacks by Liu & Larson, 000 sec 5.4, Table 7: q = 90, 70, 50, 30, 10).

Each image is rounded to 8 bits, encoded with Pillow's JPEG encoder at ``quality`` in memory and
decoded again: exactly Pillow's own round trip (grey images as mode ``L``, colour as ``RGB``
with Pillow's default chroma subsampling). The transform has no useful gradient, so its
adaptive attack is BPDA with the identity as the backward pass.
"""

from __future__ import annotations

import io
from typing import ClassVar

import numpy as np
from PIL import Image
from torch import Tensor

from varsec.defenses.base import InputTransform
from varsec.defenses.registry import register_defense
from varsec.params import Param
from varsec.vision.perturbation import float_to_uint8, uint8_to_float

MAX_QUALITY = 95  # Pillow: "values above 95 should be avoided"


def jpeg_round_trip(pixels: np.ndarray, quality: int) -> np.ndarray:
    """Encode one uint8 H x W (grey) or H x W x 3 image as JPEG in memory and decode it."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded)


@register_defense("jpeg")
class JPEG(InputTransform):
    """JPEG compression at ``quality`` (1-95), with Pillow, in memory; adaptive attack: BPDA."""

    name = "jpeg"
    strength = "quality"
    default_sweep = (90, 70, 50, 30, 10)  # 000 Table 7
    label = "JPEG compression"
    params: ClassVar[dict[str, Param]] = {
        "quality": Param(75, int, low=1, high=MAX_QUALITY, doc="JPEG quality (1 worst, 95 best)"),
    }
    adaptive = "bpda"
    channels = (1, 3)
    quality: int

    def __init__(self, quality: int = 75) -> None:
        super().__init__(quality=quality)

    def _transform(self, x: Tensor) -> Tensor:
        pixels = float_to_uint8(x.detach().cpu()).numpy()
        out = np.empty_like(pixels)
        for k, image in enumerate(pixels):
            if image.shape[0] == 1:
                out[k, 0] = jpeg_round_trip(image[0], self.quality)
            else:
                out[k] = jpeg_round_trip(image.transpose(1, 2, 0), self.quality).transpose(2, 0, 1)
        return uint8_to_float(out).to(x.device, x.dtype)


__all__ = ["JPEG", "MAX_QUALITY", "jpeg_round_trip"]
