"""uint8 <-> float: the one conversion of every layer (varsec.vision.perturbation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from varsec.attacks.quantize import to_float, to_uint8
from varsec.errors import ConfigError
from varsec.vision.perturbation import float_to_uint8, uint8_to_float

EVERY_LEVEL = torch.arange(256, dtype=torch.uint8)


def test_uint8_to_float_is_the_float32_division_by_255():
    out = uint8_to_float(EVERY_LEVEL.view(1, 1, 16, 16))
    assert out.dtype == torch.float32 and out.shape == (1, 1, 16, 16)
    expected = np.arange(256, dtype=np.float32) / np.float32(255.0)  # IEEE division, not * 1/255
    assert np.array_equal(out.flatten().numpy(), expected)
    assert out.flatten()[[0, 51, 255]].tolist() == [0.0, np.float32(0.2), 1.0]


def test_uint8_to_float_reads_numpy_arrays_and_memory_maps(tmp_path):
    path = tmp_path / "pixels.npy"
    np.save(path, EVERY_LEVEL.numpy().reshape(4, 1, 8, 8))
    mapped = np.load(path, mmap_mode="r")
    reference = uint8_to_float(EVERY_LEVEL.view(4, 1, 8, 8))
    assert torch.equal(uint8_to_float(np.asarray(mapped)), reference)
    assert torch.equal(uint8_to_float(mapped[:, :, ::2]), reference[:, :, ::2])  # strided view


def test_uint8_to_float_keeps_the_device_or_moves_first_and_leaves_its_input():
    pixels = EVERY_LEVEL.clone()
    assert uint8_to_float(pixels).device == pixels.device
    moved = uint8_to_float(pixels, "meta")
    assert moved.device.type == "meta" and moved.dtype == torch.float32
    assert torch.equal(pixels, EVERY_LEVEL)


@pytest.mark.parametrize(("images", "got"), [
    (torch.rand(2, 1, 3, 3), "torch.float32"),
    (np.zeros((2, 3), np.int64), "int64"),
    ([0, 255], "list"),
])
def test_uint8_to_float_refuses_anything_but_uint8(images, got):
    with pytest.raises(ConfigError, match=f"^catalog must be uint8 pixels \\(a tensor or numpy "
                                          f"array\\), got {got}\\.$"):
        uint8_to_float(images, name="catalog")


def test_float_to_uint8_rounds_halves_to_even_and_clips():
    halves = ((torch.arange(256, dtype=torch.float64) + 0.5) / 255).float()
    assert torch.equal(halves * 255, torch.arange(256).float() + 0.5)  # exact ties in float32
    out = float_to_uint8(halves)
    assert out.dtype == torch.uint8
    assert out[:4].tolist() == [0, 2, 2, 4] and out[-2:].tolist() == [254, 255]
    edges = torch.tensor([-0.2, -0.0, 1.0, 1.3, float("inf"), -float("inf")])
    assert float_to_uint8(edges).tolist() == [0, 0, 255, 255, 255, 0]


def test_float_to_uint8_undoes_uint8_to_float_and_keeps_the_device():
    assert torch.equal(float_to_uint8(uint8_to_float(EVERY_LEVEL)), EVERY_LEVEL)
    assert float_to_uint8(torch.rand(3, device="meta")).device.type == "meta"


def test_float_to_uint8_gives_the_bytes_of_the_roundings_it_replaced():
    values = torch.rand(100_000, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.2
    clamp_first = torch.round(values.clamp(0, 1) * 255.0).to(torch.uint8)  # defenses, study
    numpy_rint = np.rint(np.clip(values.numpy(), 0.0, 1.0) * 255.0).astype(np.uint8)  # JPEG
    assert torch.equal(float_to_uint8(values), clamp_first)
    assert np.array_equal(float_to_uint8(values).numpy(), numpy_rint)


@pytest.mark.parametrize(("images", "got"), [(EVERY_LEVEL, "torch.uint8"),
                                             (np.zeros(3, np.float32), "ndarray")])
def test_float_to_uint8_refuses_anything_but_a_float_tensor(images, got):
    with pytest.raises(ConfigError, match=f"^adversarial must be a float tensor in \\[0, 1\\], "
                                          f"got {got}\\.$"):
        float_to_uint8(images, name="adversarial")


def test_the_attack_layer_converts_through_the_same_helpers():
    batch = EVERY_LEVEL.view(1, 1, 16, 16)
    assert torch.equal(to_float(batch), uint8_to_float(batch))
    floats = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(to_uint8(floats), float_to_uint8(floats))
    with pytest.raises(ConfigError, match="must be a float tensor in \\[0, 1\\], got torch.uint8"):
        to_uint8(batch)
