"""The input transforms against reference implementations and hand-computed values."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from varsec.attacks.engine import Problem
from varsec.attacks.objectives import Objective
from varsec.defenses import JPEG, BitDepth, MedianSmoothing, ResizePad, defend_images


def grid_images(n: int = 3, channels: int = 1, side: int = 28, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, channels, side, side), generator=generator)
    return pixels.float() / 255.0


def pillow_round_trip(array: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return np.array(Image.open(io.BytesIO(buffer.getvalue())))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("quality", [10, 50, 95])
def test_jpeg_is_pillows_own_round_trip(channels, quality, fmnist):
    pixels = np.asarray(fmnist.images[:4])
    if channels == 3:
        pixels = np.concatenate([pixels, 255 - pixels, pixels // 2], axis=1)
    out = JPEG(quality=quality)(torch.from_numpy(pixels).float() / 255.0)
    for k, image in enumerate(pixels):
        source = image[0] if channels == 1 else image.transpose(1, 2, 0)
        expected = pillow_round_trip(source, quality)
        expected = expected[None] if channels == 1 else expected.transpose(2, 0, 1)
        assert torch.equal(torch.round(out[k] * 255).to(torch.uint8), torch.from_numpy(expected))


def test_jpeg_changes_images_more_at_lower_quality(fmnist):
    x = torch.from_numpy(np.asarray(fmnist.images[:16])).float() / 255.0
    errors = [float((JPEG(quality=q)(x) - x).abs().mean()) for q in (90, 50, 10)]
    assert errors[0] < errors[1] < errors[2]


def test_bit_depth_hand_computed():
    x = torch.tensor([0, 1, 37, 127, 128, 200, 254, 255], dtype=torch.float32).view(1, 1, 2, 4)
    x = x / 255.0
    # 1 bit: k = round(x) -> {0, 255}; 2 bits: k = round(3x) -> round(85 k); 3 bits: 255 k / 7
    assert (BitDepth(1)(x) * 255).round().flatten().tolist() == [0, 0, 0, 0, 255, 255, 255, 255]
    assert (BitDepth(2)(x) * 255).round().flatten().tolist() == [0, 0, 0, 85, 170, 170, 255, 255]
    assert (BitDepth(3)(x) * 255).round().flatten().tolist() == [0, 0, 36, 109, 146, 182, 255,
                                                                 255]


def test_bit_depth_8_is_the_identity_on_8_bit_images():
    x = grid_images()
    assert torch.equal(BitDepth(8)(x), x)


@pytest.mark.parametrize("window", [1, 3, 5, 7])
def test_median_matches_scipy(window):
    from scipy.ndimage import median_filter

    x = grid_images(n=2, channels=3, side=12)
    expected = median_filter(x.numpy(), size=(1, 1, window, window), mode="reflect")
    assert np.array_equal(MedianSmoothing(window)(x).numpy(), expected)


def test_median_matches_skimage():
    from skimage.filters import median

    x = grid_images(n=1, channels=1, side=20)
    ours = np.round(MedianSmoothing(3)(x)[0, 0].numpy() * 255).astype(np.uint8)
    pixels = np.round(x[0, 0].numpy() * 255).astype(np.uint8)
    expected = median(pixels, footprint=np.ones((3, 3), dtype=bool), mode="reflect")
    assert np.array_equal(ours, expected)


def test_resize_pad_shape_and_zero_border():
    x = torch.ones(8, 3, 28, 28)
    out = ResizePad(ratio=0.5, seed=0)(x)
    assert out.shape == x.shape
    assert float(out.min()) == 0.0  # some padding is always there when n < 28
    assert bool((out.sum(dim=(1, 2, 3)) > 0).all())


def test_resize_pad_is_seeded():
    x = grid_images(n=4)
    first = ResizePad(ratio=0.7, seed=3)(x)
    assert torch.equal(first, ResizePad(ratio=0.7, seed=3)(x))
    assert not torch.equal(first, ResizePad(ratio=0.7, seed=4)(x))
    layer = ResizePad(ratio=0.7, seed=3)
    layer(x)
    layer.reseed(3)
    assert torch.equal(layer(x), first)


def test_resize_pad_draws_stay_within_the_ratio_bounds():
    layer = ResizePad(ratio=0.75, seed=0)
    assert layer.sizes(28) == (21, 28)
    x = torch.ones(64, 1, 28, 28)
    out = layer(x)
    rows = (out[:, 0].amax(dim=2) > 0).sum(dim=1)  # non-zero rows = the resized side
    assert int(rows.min()) >= 21 and int(rows.max()) <= 28
    assert len(set(rows.tolist())) > 1
    assert torch.equal(ResizePad(ratio=1.0)(x), x)


def test_resize_pad_from_max_pad():
    assert ResizePad.from_max_pad(4, 28).sizes(28) == (24, 28)


class _Square(Objective):
    """loss = sum of squared pixels (a smooth objective to compare gradients with)."""

    def loss(self, x, index):
        return x.pow(2).flatten(1).sum(1)


@pytest.mark.parametrize("transform", [JPEG(30), BitDepth(3), MedianSmoothing(3)])
def test_bpda_forward_is_the_transform_and_gradient_the_identity(transform):
    hook = transform.adaptive_hook()
    assert hook.bpda is True and hook.eot_samples == 1
    x = grid_images(n=2).requires_grad_(True)
    y = hook(x)
    assert torch.allclose(y, transform(x.detach()))
    weights = torch.randn_like(x)
    (y * weights).sum().backward()
    assert torch.equal(x.grad, weights)


def test_eot_averages_the_objective_over_draws():
    layer = ResizePad(ratio=0.6)
    hook = layer.adaptive_hook(eot_samples=5)
    assert hook.eot_samples == 5 and hook.bpda is False
    x = grid_images(n=3)
    problem = Problem(_Square(), hook, x, torch.arange(3), 8.0, "linf", False)
    torch.manual_seed(11)
    value = problem.value(x, None)
    torch.manual_seed(11)
    draws = [_Square().loss(layer(x), torch.arange(3)) for _ in range(5)]
    assert torch.allclose(value, torch.stack(draws).mean(0))
    torch.manual_seed(11)
    grad = problem.gradient(x, None)
    torch.manual_seed(11)
    manual = torch.zeros_like(x)
    for _ in range(5):
        z = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(_Square().loss(layer(z), torch.arange(3)).sum(), z)
        manual += g / 5
    assert torch.allclose(grad, manual, atol=1e-6)


def test_defend_images_returns_uint8_on_the_8_bit_grid():
    pixels = (grid_images(n=5) * 255).round().to(torch.uint8)
    out = defend_images(BitDepth(3), pixels, batch_size=2)
    assert out.dtype == torch.uint8 and out.shape == pixels.shape
    expected = torch.round(BitDepth(3)(pixels.float() / 255) * 255).to(torch.uint8)
    assert torch.equal(out, expected)
    assert torch.equal(BitDepth(8).defend(pixels), pixels)
