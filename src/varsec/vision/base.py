"""The backbone base class: every feature extractor / classifier of varsec derives from it.

Conventions (DESIGN.md section 2): a backbone takes ``float32`` NCHW images in [0, 1] at the
item's native resolution. Any channel repetition, resize and mean/std normalisation happens
*inside* the module, so attacks and defenses work in raw pixel space and an epsilon of 8 really
means 8 levels of an 8-bit pixel.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varsec.errors import ConfigError, ModelError
from varsec.vision.perturbation import check_float_images

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module, ABC):
    """A feature extractor that may also classify.

    Subclasses set the class attributes below and implement :meth:`_forward` (the output of one
    named layer for prepared input) and :meth:`_stages` (intermediate maps for perceptual losses).

    Attributes:
        name: registry name, e.g. ``"fmnist-cnn"``.
        input_channels: channels the network consumes; 1-channel images are repeated to 3 when
            the network wants 3, other mismatches are a :class:`ConfigError`.
        min_size, max_size: accepted image height/width in pixels.
        image_size: the side every image is resized to inside the module (None: native size).
        feature_layer: the default layer of :meth:`features`.
        feature_dims: every layer :meth:`features` can return, with its dimension.
        num_classes: size of :meth:`logits` (None when the backbone does not classify).
        head: what the classifier head of the backbone, kept with its own weights (a study's
            ``training: none``), is about: "catalog" (built for the catalog's categories, e.g.
            fmnist-cnn), or the label space of its pretrained weights (ImageNet's 1000
            classes), which cannot judge an attack on the catalog's categories.
    """

    name: ClassVar[str] = ""
    head: ClassVar[str] = "catalog"
    input_channels: int = 3
    min_size: int = 16
    max_size: int = 4096
    image_size: int | None = None
    feature_layer: str = "pool"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __init__(self, **arch_config: Any) -> None:
        super().__init__()
        self.arch_config: dict[str, Any] = dict(arch_config)
        self.feature_dims: dict[str, int] = {}
        self.num_classes: int | None = None
        if self.mean is not None and self.std is not None:
            self.register_buffer("_mean", torch.tensor(self.mean).view(1, -1, 1, 1), False)
            self.register_buffer("_std", torch.tensor(self.std).view(1, -1, 1, 1), False)

    # -- public API --------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        """Dimension of the default feature layer."""
        return self.feature_dims[self.feature_layer]

    @property
    def device(self) -> torch.device:
        """The device of the backbone's parameters."""
        return next(self.parameters()).device

    def features(self, x: Tensor, layer: str | None = None) -> Tensor:
        """Feature vectors (N x D) of images ``x`` at ``layer`` (default :attr:`feature_layer`)."""
        layer = self.check_layer(layer)
        return self._forward(self.prepare(x), layer)

    def logits(self, x: Tensor) -> Tensor:
        """Class scores (N x num_classes) of images ``x``; a ModelError if it does not classify."""
        if self.num_classes is None:
            raise ModelError(f"backbone {self.name!r} has no classification head.")
        return self._forward(self.prepare(x), "logits")

    def stages(self, x: Tensor) -> list[Tensor]:
        """Outputs of the successive stages (coarser at each step), for perceptual losses."""
        return self._stages(self.prepare(x))

    def forward(self, x: Tensor) -> Tensor:
        """Logits when the backbone classifies, else the default features."""
        return self.logits(x) if self.num_classes is not None else self.features(x)

    def check_layer(self, layer: str | None) -> str:
        """Resolve ``layer`` (None: the default) or raise a ConfigError listing the known ones."""
        layer = self.feature_layer if layer is None else layer
        if layer not in self.feature_dims:
            known = ", ".join(self.feature_dims)
            raise ConfigError(f"backbone {self.name!r} has no layer {layer!r} (known: {known}).")
        return layer

    def check_images(self, x: Tensor) -> None:
        """Raise a ConfigError unless ``x`` is a float N x C x H x W batch this backbone takes."""
        check_float_images(x, self.name)
        channels = x.shape[1]
        if channels != self.input_channels and not (channels == 1 and self.input_channels == 3):
            raise ConfigError(
                f"{self.name} takes {self._channel_text()} images, got {channels} channels."
            )
        height, width = x.shape[-2:]
        low, high = self.min_size, self.max_size
        if not (low <= height <= high and low <= width <= high):
            raise ConfigError(
                f"{self.name} takes images of {self.min_size} to {self.max_size} pixels per side, "
                f"got {height} x {width}."
            )

    def prepare(self, x: Tensor) -> Tensor:
        """Check ``x``, then repeat grey to RGB, resize and normalise as the network expects.

        The result is channels-last, the faster layout of CPU convolutions (every backbone
        keeps its weights channels-last too).
        """
        self.check_images(x)
        if x.shape[1] == 1 and self.input_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size,) * 2:
            shrink = min(x.shape[-2:]) > self.image_size
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear",
                align_corners=False, antialias=shrink,
            )
        if self.mean is not None:
            x = (x - self._mean) / self._std
        return x.contiguous(memory_format=torch.channels_last)

    def weights_hash(self) -> str:
        """A sha256 over the architecture (name, config) and every parameter and buffer."""
        digest = hashlib.sha256()
        digest.update(self.name.encode())
        digest.update(json.dumps(self.arch_config, sort_keys=True, default=str).encode())
        for key, value in self.state_dict().items():
            digest.update(key.encode())
            tensor = value.detach().cpu().contiguous()
            digest.update(str(tensor.dtype).encode() + repr(tuple(tensor.shape)).encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    # -- to implement ------------------------------------------------------------------------
    @abstractmethod
    def _forward(self, z: Tensor, layer: str) -> Tensor:
        """The output of ``layer`` (a 2-D tensor) for prepared input ``z``."""

    @abstractmethod
    def _stages(self, z: Tensor) -> list[Tensor]:
        """The stage outputs for prepared input ``z``."""

    def _channel_text(self) -> str:
        return "1-channel" if self.input_channels == 1 else "1- or 3-channel"


def load_state_into(module: nn.Module, state: dict[str, Tensor], *, arch: str, source: str) -> None:
    """Load ``state`` strictly into ``module``; a mismatch is a ModelError naming the file."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing keys, e.g. {missing[0]!r}")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[0]!r}")
        raise ModelError(
            f"{source}: weights are not for the {arch} architecture ({'; '.join(detail)})."
        )
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise ModelError(
                f"{source}: weights do not fit the {arch} architecture ({key!r} has shape "
                f"{tuple(state[key].shape)}, expected {tuple(value.shape)})."
            )
    module.load_state_dict(state)
