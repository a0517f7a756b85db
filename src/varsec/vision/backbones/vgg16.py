"""``vgg16``: torchvision's VGG-16 (Simonyan & Zisserman, 2015), ImageNet weights.

Stages are relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (the LPIPS / perceptual-loss layers);
features ``fc6`` / ``fc7`` (4096-d).
"""

from __future__ import annotations

from typing import ClassVar

from torchvision.models import vgg16

from varsec.vision.backbones._torchvision import SequentialFeaturesBackbone
from varsec.vision.registry import register_backbone


@register_backbone("vgg16")
class VGG16(SequentialFeaturesBackbone):
    """VGG-16 with 4096-d ``fc6`` (default) and ``fc7`` features."""

    url = "https://download.pytorch.org/models/vgg16-397923af.pth"
    builder = staticmethod(lambda: vgg16(weights=None))
    stage_indices = (3, 8, 15, 22, 29)
    # classifier: Linear, ReLU (fc6), Dropout, Linear, ReLU (fc7), Dropout, Linear (logits)
    fc_indices: ClassVar[dict[str, int]] = {"fc6": 1, "fc7": 4, "logits": 6}
