"""``fmnist-cnn``: a small ResNet (He et al., 2016) for 28-32 px product images, fast on CPU.

A 3x3 stride-2 stem, then one stage per entry of ``widths`` (default 16-32-64 channels), each of
``blocks`` basic residual blocks, the later stages halving the resolution (14, 7, 4 px for 28 px
input); global average pooling gives the ``pool`` feature (the penultimate layer, 64-d by
default) and a linear layer the logits. It is trained here on catalog categories
(``varsec train-extractor``).

The default width is chosen for CPU speed: about 2.5 M multiply-adds per image, so adversarial
training on all of Fashion-MNIST fits in minutes on two cores while standard training still
reaches about 92% clean test accuracy (``widths=(32, 64, 128)`` costs four times as much).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varsec.errors import ConfigError
from varsec.vision.base import Backbone
from varsec.vision.registry import register_backbone

# Channels-last weights only from this width up: with fewer channels, oneDNN's channels-last
# convolution backward (torch 2.14.1, CPU, 2+ threads, varying batch sizes) corrupts the heap
# (glibc "corrupted size vs. prev_size", or a segfault); contiguous weights do not.
CHANNELS_LAST_MIN_WIDTH = 16


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def _check_arch(in_channels: int, num_classes: int, widths: Sequence[int],
                blocks: Sequence[int]) -> None:
    if in_channels not in (1, 3):
        raise ConfigError(f"fmnist-cnn: in_channels must be 1 or 3, got {in_channels}.")
    if num_classes < 2:
        raise ConfigError(f"fmnist-cnn: num_classes must be at least 2, got {num_classes}.")
    if not widths or len(widths) != len(blocks) or min(widths) < 1 or min(blocks) < 1:
        raise ConfigError(
            f"fmnist-cnn: widths {list(widths)} and blocks {list(blocks)} must be non-empty "
            "lists of positive integers of equal length."
        )


@register_backbone("fmnist-cnn")
class FmnistCNN(Backbone):
    """Small ResNet classifier for Fashion-MNIST-sized images (1 or 3 channels, 28-32 px)."""

    min_size = 28
    max_size = 32
    feature_layer = "pool"

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 64),
        blocks: Sequence[int] = (1, 1, 1),
    ) -> None:
        _check_arch(in_channels, num_classes, widths, blocks)
        widths, blocks = [int(w) for w in widths], [int(b) for b in blocks]
        super().__init__(in_channels=in_channels, num_classes=num_classes, widths=widths,
                         blocks=blocks)
        self.input_channels = in_channels
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 2, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.layers = nn.ModuleList()
        cin = widths[0]
        for index, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(cin, width, stride)]
            stage += [BasicBlock(width, width, 1) for _ in range(count - 1)]
            self.layers.append(nn.Sequential(*stage))
            cin = width
        self.fc = nn.Linear(cin, num_classes)
        self.feature_dims = {"pool": cin, "logits": num_classes}
        if min(widths) >= CHANNELS_LAST_MIN_WIDTH:
            self.to(memory_format=torch.channels_last)  # faster convolutions on CPU

    def _channel_text(self) -> str:
        return f"{self.input_channels}-channel" if self.input_channels == 1 else "1- or 3-channel"

    def _stages(self, z: Tensor) -> list[Tensor]:
        outputs = [self.stem(z)]
        for stage in self.layers:
            outputs.append(stage(outputs[-1]))
        return outputs

    def _forward(self, z: Tensor, layer: str) -> Tensor:
        pooled = self._stages(z)[-1].mean(dim=(2, 3))
        return pooled if layer == "pool" else self.fc(pooled)
