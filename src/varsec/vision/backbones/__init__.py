"""The built-in backbones; importing this package registers them (one file per backbone)."""

from varsec.vision.backbones import alexnet, efficientnet_lite0, fmnist_cnn, resnet50, vgg16

__all__ = ["alexnet", "efficientnet_lite0", "fmnist_cnn", "resnet50", "vgg16"]
