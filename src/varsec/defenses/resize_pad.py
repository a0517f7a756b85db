"""Random resize + random zero padding (Xie, Wang, Zhang, Ren & Yuille 2018, "Mitigating
adversarial effects through randomization"; the inference-time random layer of Yin et al. 002
sec 3.3: a 224 x 224 image is resized to n x n, n drawn in [212, 224], then zero-padded at a
random position back to 224 x 224).

Here the range scales with the image: for an image of side S, n is drawn uniformly from the
integers in ``[ceil(ratio * S), S]`` (Yin's setting is ``ratio = 212 / 224``), the image is
resized to n x n (bilinear by default), and placed at a uniformly random offset on a zero
canvas of size S. Non-square images keep their aspect ratio. Every image of a batch gets its
own draw. The transform is differentiable but random: its adaptive attack is EOT, averaging
the attack objective over T draws.

Randomness comes from the module's own generator when ``seed`` is given (reset it with
:meth:`ResizePad.reseed`), else from torch's global generator, which the attack engine seeds.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from varsec.defenses.base import InputTransform
from varsec.defenses.registry import register_defense
from varsec.errors import ConfigError
from varsec.params import Param

YIN_RATIO = 212 / 224
MODES = ("bilinear", "nearest")


@register_defense("resize-pad")
class ResizePad(InputTransform):
    """Random resize to n x n (n in [ceil(ratio*S), S]) + random zero pad; adaptive attack: EOT."""

    name = "resize-pad"
    strength = "ratio"
    default_sweep = (0.95, 0.9, 0.8)  # resize ratio; Yin: 212 / 224
    label = "random resize-pad"
    params: ClassVar[dict[str, Param]] = {
        "ratio": Param(YIN_RATIO, float, low=0, low_open=True, high=1,
                       doc="smallest resized side as a fraction of the image side"),
        "mode": Param("bilinear", str, choices=MODES, doc="interpolation of the resize"),
        "seed": Param(None, int, low=0, doc="seed of the module's own generator (None: global)"),
    }
    adaptive = "eot"
    ratio: float
    mode: str
    seed: int | None

    def __init__(self, ratio: float = YIN_RATIO, mode: str = "bilinear",
                 seed: int | None = None) -> None:
        super().__init__(ratio=ratio, mode=mode, seed=seed)
        self._generator: torch.Generator | None = None
        self.reseed(seed)

    @classmethod
    def from_max_pad(cls, max_pad: int, size: int, **options: object) -> ResizePad:
        """The resize-pad whose resized side shrinks by at most ``max_pad`` pixels of ``size``."""
        if isinstance(max_pad, bool) or not isinstance(max_pad, int) or not 0 <= max_pad < size:
            raise ConfigError(
                f"random resize-pad max_pad must be an integer in [0, {size - 1}] for {size}-pixel "
                f"images, got {max_pad!r}."
            )
        return cls(ratio=(size - max_pad) / size, **options)  # type: ignore[arg-type]

    def reseed(self, seed: int | None) -> None:
        """Restart the module's draws from ``seed`` (None: use torch's global generator)."""
        self.seed = seed
        self._generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def sizes(self, side: int) -> tuple[int, int]:
        """The smallest and largest resized side for an image side of ``side`` pixels."""
        return max(1, math.ceil(self.ratio * side - 1e-9)), side

    def _draw(self, low: int, high: int, count: int) -> Tensor:
        return torch.randint(low, high + 1, (count,), generator=self._generator)

    def _transform(self, x: Tensor) -> Tensor:
        n, _, height, width = x.shape
        low, _ = self.sizes(height)
        heights = self._draw(low, height, n).tolist()
        out = []
        for k, side in enumerate(heights):
            resized_w = min(width, max(1, round(side * width / height)))
            image = x[k : k + 1]
            if (side, resized_w) != (height, width):
                image = F.interpolate(image, size=(side, resized_w), mode=self.mode,
                                      **({"align_corners": False} if self.mode != "nearest"
                                         else {}))
            top = int(self._draw(0, height - side, 1))
            left = int(self._draw(0, width - resized_w, 1))
            pads = (left, width - resized_w - left, top, height - side - top)
            out.append(F.pad(image, pads, value=0.0))
        return torch.cat(out) if out else x.clone()


__all__ = ["MODES", "YIN_RATIO", "ResizePad"]
