"""Bit-depth reduction to b bits (Xu, Evans & Qi 2018, "Feature squeezing"; evaluated against AIP
attacks by Liu & Larson, 000 sec 5.4, Table 7: b = 7 ... 2).

Each pixel is encoded with ``b`` bits, ``k = round(x * (2^b - 1))``, and displayed again as an
8-bit image, ``round(k * 255 / (2^b - 1)) / 255``, so the output stays on the 8-bit grid
(8 bits is the identity on 8-bit images). Rounding has a zero gradient almost everywhere: the
adaptive attack is BPDA with the identity as the backward pass.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from varsec.defenses.base import InputTransform
from varsec.defenses.registry import register_defense
from varsec.params import Param


@register_defense("bit-depth")
class BitDepth(InputTransform):
    """Reduce every pixel to ``bits`` bits (1-8); adaptive attack: BPDA."""

    name = "bit-depth"
    strength = "bits"
    default_sweep = (7, 6, 5, 4, 3, 2)  # 000 Table 7
    label = "bit-depth reduction"
    params: ClassVar[dict[str, Param]] = {
        "bits": Param(4, int, low=1, high=8, doc="bits per pixel and channel"),
    }
    adaptive = "bpda"
    bits: int

    def __init__(self, bits: int = 4) -> None:
        super().__init__(bits=bits)

    def _transform(self, x: Tensor) -> Tensor:
        top = float(2**self.bits - 1)
        codes = torch.round(x.clamp(0, 1) * top)
        return torch.round(codes * (255.0 / top)) / 255.0


__all__ = ["BitDepth"]
