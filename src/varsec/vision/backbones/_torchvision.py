"""Shared code of the torchvision ImageNet backbones (``resnet50``, ``alexnet``, ``vgg16``).

Each takes [0, 1] images of any size from 16 px, repeats grey to RGB, resizes to 224 x 224 and
applies the ImageNet mean/std inside the module. Weights: ``"imagenet"`` (torchvision's cache,
or a sha256-checked download when ``download=True``), a path to a weights file, or None (random).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from varsec.errors import ConfigError
from varsec.vision.base import IMAGENET_MEAN, IMAGENET_STD, Backbone, load_state_into
from varsec.vision.weights import resolve_torchvision_weights


class TorchvisionBackbone(Backbone):
    """Base of the torchvision backbones: weights resolution, head replacement, input handling."""

    head = "ImageNet's 1000 classes"
    input_channels = 3
    min_size = 16
    image_size = 224
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    url: ClassVar[str] = ""
    builder: ClassVar[Callable[[], nn.Module]]
    layer_dims: ClassVar[dict[str, int]] = {}  # named feature layers; "logits" is added

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = "imagenet",
        download: bool = False,
        num_classes: int = 1000,
    ) -> None:
        if num_classes < 2:
            raise ConfigError(f"{self.name}: num_classes must be at least 2, got {num_classes}.")
        super().__init__(num_classes=num_classes)
        self.num_classes = num_classes
        found = resolve_torchvision_weights(self.name, self.url, weights, download=download)
        self.net = type(self).builder()
        if found is not None:
            state, source = found
            load_state_into(self.net, state, arch=self.name, source=source)
        if num_classes != 1000:
            self._replace_head(num_classes)
        self.feature_dims = {**self.layer_dims, "logits": num_classes}
        self.to(memory_format=torch.channels_last)  # faster convolutions on CPU

    def _replace_head(self, num_classes: int) -> None:
        raise NotImplementedError

    def _stages(self, z: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def _forward(self, z: Tensor, layer: str) -> Tensor:
        raise NotImplementedError


class SequentialFeaturesBackbone(TorchvisionBackbone):
    """AlexNet / VGG: ``features`` (convolutions), ``avgpool``, ``classifier`` (fc6, fc7, fc8).

    ``fc6`` is the first fully connected layer after the convolutional part (after its ReLU),
    the feature of Anelli et al. 001 section 2; ``fc7`` the second, as in VBPR's release.
    """

    feature_layer = "fc6"
    stage_indices: ClassVar[tuple[int, ...]] = ()
    fc_indices: ClassVar[dict[str, int]] = {}
    layer_dims: ClassVar[dict[str, int]] = {"fc6": 4096, "fc7": 4096}

    def _replace_head(self, num_classes: int) -> None:
        last = self.net.classifier[-1]
        self.net.classifier[-1] = nn.Linear(last.in_features, num_classes)

    def _stages(self, z: Tensor) -> list[Tensor]:
        outputs = []
        for index, module in enumerate(self.net.features):
            z = module(z)
            if index in self.stage_indices:
                outputs.append(z)
        return outputs

    def _forward(self, z: Tensor, layer: str) -> Tensor:
        x = self.net.avgpool(self.net.features(z)).flatten(1)
        stop = self.fc_indices[layer]
        for module in self.net.classifier[: stop + 1]:
            x = module(x)
        return x
