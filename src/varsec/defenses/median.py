"""Median smoothing with a w x w window, per channel (Xu, Evans & Qi 2018, "Feature squeezing").

Borders are handled as ``scipy.ndimage.median_filter(mode="reflect")`` does (the edge pixel is
repeated in the mirror: ``c b a | a b c``), so the output equals
``median_filter(x, size=(1, 1, w, w), mode="reflect")``. A median of 8-bit values is an 8-bit
value. The median's gradient only reaches one pixel per window: the adaptive attack is BPDA
with the identity as the backward pass.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from varsec.defenses.base import InputTransform
from varsec.defenses.registry import register_defense
from varsec.errors import ConfigError
from varsec.params import Param


def symmetric_index(size: int, pad: int, device: torch.device) -> Tensor:
    """Indices of a length-``size`` axis padded by ``pad`` on both sides, mirroring the edge
    pixel (numpy's ``symmetric``, scipy's ``reflect``), for any ``pad``."""
    positions = torch.arange(-pad, size + pad, device=device)
    folded = torch.remainder(positions, 2 * size)
    return torch.where(folded >= size, 2 * size - 1 - folded, folded)


@register_defense("median")
class MedianSmoothing(InputTransform):
    """Median filter with an odd ``window`` (1 is the identity); adaptive attack: BPDA."""

    name = "median"
    strength = "window"
    default_sweep = (3, 5)
    label = "median smoothing"
    params: ClassVar[dict[str, Param]] = {
        "window": Param(3, int, doc="odd positive side of the square window, in pixels"),
    }
    adaptive = "bpda"
    window: int

    def __init__(self, window: int = 3) -> None:
        super().__init__(window=window)

    def _check_params(self) -> None:
        if self.window < 1 or self.window % 2 == 0:
            raise ConfigError(
                f"median smoothing parameter window must be an odd positive integer (the window "
                f"is centred on the pixel), got {self.window}."
            )

    def _transform(self, x: Tensor) -> Tensor:
        if self.window == 1:
            return x.clone()
        pad = self.window // 2
        height, width = x.shape[-2:]
        rows = symmetric_index(height, pad, x.device)
        cols = symmetric_index(width, pad, x.device)
        padded = x.index_select(2, rows).index_select(3, cols)
        patches = padded.unfold(2, self.window, 1).unfold(3, self.window, 1)
        return patches.reshape(*x.shape, -1).median(dim=-1).values


__all__ = ["MedianSmoothing", "symmetric_index"]
