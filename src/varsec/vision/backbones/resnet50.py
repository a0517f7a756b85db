"""``resnet50``: torchvision's ResNet-50 (He et al., 2016), ImageNet weights IMAGENET1K_V1.

``pool`` is the 2048-d global average pool, the item feature of Yin et al. (002 section 3.5).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn
from torchvision.models import resnet50

from varsec.vision.backbones._torchvision import TorchvisionBackbone
from varsec.vision.registry import register_backbone


@register_backbone("resnet50")
class ResNet50(TorchvisionBackbone):
    """ResNet-50 with features at the average pool (2048-d)."""

    url = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    builder = staticmethod(lambda: resnet50(weights=None))
    feature_layer = "pool"
    layer_dims: ClassVar[dict[str, int]] = {"pool": 2048}

    def _replace_head(self, num_classes: int) -> None:
        self.net.fc = nn.Linear(self.net.fc.in_features, num_classes)

    def _stages(self, z: Tensor) -> list[Tensor]:
        net = self.net
        x = net.relu(net.bn1(net.conv1(z)))
        outputs = [x]
        x = net.maxpool(x)
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = stage(x)
            outputs.append(x)
        return outputs

    def _forward(self, z: Tensor, layer: str) -> Tensor:
        pooled = self.net.avgpool(self._stages(z)[-1]).flatten(1)
        return pooled if layer == "pool" else self.net.fc(pooled)
