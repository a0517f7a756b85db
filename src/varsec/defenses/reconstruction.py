"""The adversarial image reconstruction network T of Yin, Liu, Gong & Li (002 sec 3.3, Fig. 4).

Architecture (no downsampling anywhere, so the output has the input's size):

* a 9 x 9 convolution from the image channels to ``width`` feature maps, PReLU;
* ``blocks`` (9) residual blocks, each conv3x3-BN-PReLU-conv3x3-BN plus the identity skip;
* one global self-attention block over the spatial positions (002: "a global vision transformer
  block", after Srinivas et al.'s bottleneck transformer): pre-norm multi-head attention over all
  H x W positions, then a pre-norm per-pixel MLP, both residual;
* a 3 x 3 convolution with batch norm, added to the output of the first convolution (the long
  skip of SRResNet-style networks);
* a 9 x 9 convolution back to the image channels.

The last convolution predicts a correction added to the input image (``residual=True``, the
default; 002 motivates residual learning because the network "excels in learning the
difference between input and output"), initialised near zero so that T starts close to the
identity; the result is clipped to [0, 1]. On large images, global attention over every pixel
is quadratic in H x W: above ``max_tokens`` positions the attention runs on an average-pooled
grid of at most ``max_tokens`` positions and its output is upsampled back (a documented
deviation; the image path itself is never downsampled).

Losses (002 eq 5-6): the pixel loss ``L_pix`` is the mean squared error between ``T(x)`` and the
clean image, the perceptual loss ``L_perc`` the sum over extractor stages of the mean squared
(L2) distance between the stage outputs of the clean image and of ``T(x)`` (002 uses ResNet-50's
stages 2-4, i.e. stages 1, 2, 3 of :meth:`~varsec.vision.base.Backbone.stages`, whose stage 0
is the stem). Training is :mod:`varsec.defenses.joint`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varsec.defenses.base import check_image_batch, module_hash
from varsec.errors import ConfigError
from varsec.params import check_int

KIND = "varsec-reconstruction"
PAPER_STAGES = (1, 2, 3)
_TAIL_INIT = 0.1  # scale of the last convolution's initial weights (T starts near identity)


def _positive_int(name: str, value: Any) -> int:
    return check_int(value, name, low=1, owner="reconstruction network")


class ResidualBlock(nn.Module):
    """conv3x3-BN-PReLU-conv3x3-BN plus the identity skip (002 Fig. 4, SRResNet)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.PReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x + body(x)``."""
        return x + self.body(x)


class GlobalSelfAttention(nn.Module):
    """One transformer block over the spatial positions of a feature map (002 sec 3.3).

    Pre-norm multi-head self-attention over all H x W positions, then a pre-norm per-pixel MLP;
    both are residual. Above ``max_tokens`` positions the attention runs on an average-pooled
    grid and its output is upsampled (bilinear) to the full map.
    """

    def __init__(self, width: int, heads: int, max_tokens: int) -> None:
        super().__init__()
        self.heads, self.max_tokens = heads, max_tokens
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(),
                                 nn.Linear(2 * width, width))

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The attention grid of an H x W map (the map itself when small enough)."""
        if height * width <= self.max_tokens:
            return height, width
        scale = math.sqrt(self.max_tokens / (height * width))
        return max(1, int(height * scale)), max(1, int(width * scale))

    def _attend(self, tokens: Tensor) -> Tensor:
        """Multi-head scaled dot-product attention of every token to every token."""
        n, length, width = tokens.shape
        q, k, v = self.qkv(tokens).reshape(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(n, length, width)

    def forward(self, x: Tensor) -> Tensor:
        """Attention over the positions, then the per-pixel MLP (both residual)."""
        n, c, h, w = x.shape
        gh, gw = self.grid(h, w)
        source = x if (gh, gw) == (h, w) else F.adaptive_avg_pool2d(x, (gh, gw))
        tokens = self.norm1(source.permute(0, 2, 3, 1).reshape(n, gh * gw, c))
        update = self.proj(self._attend(tokens)).reshape(n, gh, gw, c).permute(0, 3, 1, 2)
        if (gh, gw) != (h, w):
            update = F.interpolate(update, size=(h, w), mode="bilinear", align_corners=False)
        pixels = (x + update).permute(0, 2, 3, 1)
        pixels = pixels + self.mlp(self.norm2(pixels))
        return pixels.permute(0, 3, 1, 2)


class ReconstructionNet(nn.Module):
    """Yin et al.'s reconstruction network T (002 sec 3.3, Fig. 4); see the module docstring.

    ``channels``: image channels (1 for Fashion-MNIST, 3 for RGB); ``width``: feature maps;
    ``blocks``: residual blocks (9 in 002); ``heads``: attention heads (``width`` must be a
    multiple); ``max_tokens``: positions attended at full resolution; ``residual``: predict a
    correction of the input rather than the image itself.
    """

    def __init__(
        self,
        channels: int = 1,
        width: int = 64,
        blocks: int = 9,
        heads: int = 4,
        max_tokens: int = 1024,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.channels = _positive_int("channels", channels)
        self.width = _positive_int("width", width)
        self.n_blocks = _positive_int("blocks", blocks)
        self.heads = _positive_int("heads", heads)
        self.max_tokens = _positive_int("max_tokens", max_tokens)
        if self.width % self.heads:
            raise ConfigError(
                f"reconstruction network parameter width ({width}) must be a multiple of heads "
                f"({heads})."
            )
        if not isinstance(residual, bool):
            raise ConfigError(f"reconstruction network parameter residual must be true or false, "
                              f"got {residual!r}.")
        self.residual = residual
        self.head = nn.Sequential(nn.Conv2d(channels, width, 9, padding=4), nn.PReLU())
        self.blocks = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])
        self.attention = GlobalSelfAttention(width, heads, max_tokens)
        self.neck = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width))
        self.tail = nn.Conv2d(width, channels, 9, padding=4)
        self._memory_format = torch.channels_last
        self.to(memory_format=self._memory_format)  # faster convolutions on CPU
        if residual:
            with torch.no_grad():
                self.tail.weight.mul_(_TAIL_INIT)
                self.tail.bias.zero_()

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (what a checkpoint needs to rebuild the network)."""
        return {"channels": self.channels, "width": self.width, "blocks": self.n_blocks,
                "heads": self.heads, "max_tokens": self.max_tokens, "residual": self.residual}

    def weights_hash(self) -> str:
        """sha256 over the architecture and every parameter and buffer (pairs detectors)."""
        return module_hash(KIND, self.config, self)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstructed images, the size of ``x`` (float N x C x H x W in [0, 1])."""
        check_image_batch(x, "reconstruction network")
        if x.shape[1] != self.channels:
            raise ConfigError(
                f"reconstruction network takes {self.channels}-channel images, got "
                f"{x.shape[1]} channels."
            )
        start = self.head(x.contiguous(memory_format=self._memory_format))
        body = self.neck(self.attention(self.blocks(start))) + start
        out = self.tail(body)
        return (x + out if self.residual else out).clamp(0.0, 1.0)


class PerceptualLoss(nn.Module):
    """``L_perc`` (002 eq 5): the sum over ``stages`` of the MSE between the extractor's stage
    outputs of ``T(x)`` and of the clean image (the extractor is not trained)."""

    def __init__(self, extractor: Any, stages: Sequence[int] = PAPER_STAGES) -> None:
        super().__init__()
        if not callable(getattr(extractor, "stages", None)):
            raise ConfigError(
                "the perceptual loss needs an extractor with stages(x) (a varsec backbone), got "
                f"{type(extractor).__name__}."
            )
        picked = [int(s) for s in stages]
        if not picked or len(set(picked)) != len(picked) or min(picked) < 0:
            raise ConfigError(
                f"perceptual stages must be distinct stage indices >= 0, got {list(stages)}."
            )
        self.extractor = extractor
        self.stage_indices = tuple(picked)

    def _pick(self, maps: list[Tensor]) -> list[Tensor]:
        if max(self.stage_indices) >= len(maps):
            raise ConfigError(
                f"perceptual stages {list(self.stage_indices)} do not exist: the extractor has "
                f"{len(maps)} stages (0 to {len(maps) - 1})."
            )
        return [maps[i] for i in self.stage_indices]

    def forward(self, output: Tensor, clean: Tensor) -> Tensor:
        """The perceptual distance between reconstructed and clean images (a scalar)."""
        with torch.no_grad():
            targets = self._pick(self.extractor.stages(clean))
        outputs = self._pick(self.extractor.stages(output))
        return sum(F.mse_loss(o, t) for o, t in zip(outputs, targets, strict=True))


def pixel_loss(output: Tensor, clean: Tensor) -> Tensor:
    """``L_pix`` (002 eq 6): mean squared error between reconstructed and clean images."""
    return F.mse_loss(output, clean)


__all__ = [
    "KIND",
    "PAPER_STAGES",
    "GlobalSelfAttention",
    "PerceptualLoss",
    "ReconstructionNet",
    "ResidualBlock",
    "pixel_loss",
]
