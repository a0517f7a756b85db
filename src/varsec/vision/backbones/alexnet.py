"""``alexnet``: torchvision's AlexNet (Krizhevsky et al., 2012; the "one weird trick" variant),
ImageNet weights. The extractor of VBPR (He & McAuley, 2016) and of 001's threat model.

Stages are the outputs of the five convolution ReLUs (as in LPIPS); features ``fc6`` / ``fc7``.
"""

from __future__ import annotations

from typing import ClassVar

from torchvision.models import alexnet

from varsec.vision.backbones._torchvision import SequentialFeaturesBackbone
from varsec.vision.registry import register_backbone


@register_backbone("alexnet")
class AlexNet(SequentialFeaturesBackbone):
    """AlexNet with 4096-d ``fc6`` (default) and ``fc7`` features."""

    url = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    builder = staticmethod(lambda: alexnet(weights=None))
    stage_indices = (1, 4, 7, 9, 11)
    # classifier: Dropout, Linear, ReLU (fc6), Dropout, Linear, ReLU (fc7), Linear (logits)
    fc_indices: ClassVar[dict[str, int]] = {"fc6": 2, "fc7": 5, "logits": 6}
