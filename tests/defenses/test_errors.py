"""Every bad input of issue 6: the error class and a message naming the value."""

from __future__ import annotations

import pytest
import torch

from varsec.defenses import JPEG, BitDepth, MedianSmoothing, ReconstructionNet, ResizePad
from varsec.defenses.joint import DefenseConfig
from varsec.errors import ConfigError


@pytest.mark.parametrize("quality", [0, -5, 96, 100, 50.5, "high", True])
def test_jpeg_quality_outside_1_to_95(quality):
    with pytest.raises(ConfigError, match=r"quality must be an integer >= 1 and <= 95, got"):
        JPEG(quality=quality)


@pytest.mark.parametrize("bits", [0, 9, -1, 4.0])
def test_bits_outside_1_to_8(bits):
    with pytest.raises(ConfigError, match=r"bits must be an integer >= 1 and <= 8, got"):
        BitDepth(bits=bits)


@pytest.mark.parametrize("window", [0, -3, 2, 4])
def test_median_window_even_or_not_positive(window):
    with pytest.raises(ConfigError, match=rf"window must be an odd positive integer.*got {window}"):
        MedianSmoothing(window=window)


@pytest.mark.parametrize("ratio", [0, -0.5, 1.01, 2, float("nan")])
def test_resize_ratio_outside_0_1(ratio):
    with pytest.raises(ConfigError, match=r"ratio must be a number > 0 and <= 1, got"):
        ResizePad(ratio=ratio)


def test_unknown_parameter_and_bad_images():
    with pytest.raises(ConfigError, match="has no parameter 'qualty'"):
        JPEG.from_params(qualty=5)
    with pytest.raises(ConfigError, match="images must be float"):
        JPEG(50)(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="must lie in"):
        BitDepth(3)(torch.full((1, 1, 8, 8), 2.0))
    with pytest.raises(ConfigError, match="takes 1 or 3-channel images, got 2"):
        JPEG(50)(torch.zeros(1, 2, 8, 8))


def test_bpda_transforms_refuse_eot():
    with pytest.raises(ConfigError, match="deterministic"):
        JPEG(50).adaptive_hook(eot_samples=5)


def test_reconstruction_and_config_values():
    with pytest.raises(ConfigError, match=r"width \(10\) must be a multiple of heads \(4\)"):
        ReconstructionNet(width=10, heads=4)
    with pytest.raises(ConfigError, match="blocks must be an integer >= 1, got 0"):
        ReconstructionNet(blocks=0)
    with pytest.raises(ConfigError, match="threshold must be one of accuracy, fpr or a number"):
        DefenseConfig(threshold="auto")
    with pytest.raises(ConfigError, match="eps must lie in"):
        DefenseConfig(eps=0)
    with pytest.raises(ConfigError, match="unknown defense config field 'epochs'"):
        DefenseConfig.from_dict({"epochs": 3})
