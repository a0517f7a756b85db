"""c-SEMA: pixel-exact inset placement, channel handling and the optional caption."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from varsec.attacks import csema, csema_batch
from varsec.attacks.csema import inset_placement
from varsec.errors import ConfigError


@pytest.fixture(scope="module")
def pair(fmnist_small):
    return fmnist_small.images[0], fmnist_small.images[1]


def _lanczos(hook: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(hook[0]).resize((width, height), Image.Resampling.LANCZOS))


def test_inset_is_pasted_pixel_exactly_and_nothing_else_changes(pair):
    image, hook = pair
    result = csema(image, hook, size=0.5, corner="bottom-right", margin=1)
    assert (result.placement.top, result.placement.left) == (13, 13)
    assert (result.placement.height, result.placement.width) == (14, 14)
    assert np.array_equal(result.image[0, 13:27, 13:27], _lanczos(hook, 14, 14))
    outside = np.ones((28, 28), bool)
    outside[13:27, 13:27] = False
    assert np.array_equal(result.image[0][outside], image[0][outside])
    assert result.image.dtype == np.uint8 and not result.caption_drawn


@pytest.mark.parametrize(
    ("corner", "top", "left"),
    [("top-left", 2, 2), ("top-right", 2, 16), ("bottom-left", 16, 2), ("bottom-right", 16, 16)],
)
def test_every_corner(corner, top, left):
    placement = inset_placement((1, 28, 28), (1, 28, 28), size=0.36, corner=corner, margin=2)
    assert (placement.top, placement.left, placement.height, placement.width) == (top, left, 10,
                                                                                  10)


def test_the_hook_keeps_its_aspect_ratio():
    placement = inset_placement((3, 40, 60), (3, 20, 10), size=0.5, corner="top-left")
    assert (placement.height, placement.width) == (20, 10)


def test_grey_hook_in_a_colour_image_and_colour_hook_in_a_grey_image():
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    grey = rng.integers(0, 256, (1, 16, 16), dtype=np.uint8)
    out = csema(colour, grey, size=0.5, corner="top-left").image
    region = out[:, :16, :16]
    assert np.array_equal(region[0], region[1]) and np.array_equal(region[1], region[2])
    back = csema(grey, colour, size=1.0).image
    assert back.shape == (1, 16, 16)


def test_caption_only_where_it_can_be_read(pair):
    image, hook = pair
    small = csema(image, hook, caption="match your bag with")
    assert not small.caption_drawn
    rng = np.random.default_rng(1)
    large = rng.integers(100, 156, (3, 128, 128), dtype=np.uint8)
    hook_rgb = rng.integers(0, 256, (3, 64, 64), dtype=np.uint8)
    plain = csema(large, hook_rgb, corner="bottom-right")
    captioned = csema(large, hook_rgb, corner="bottom-right", caption="match your jeans with")
    assert captioned.caption_drawn
    changed = (captioned.image != plain.image).any(0)
    rows = np.flatnonzero(changed.any(1))
    assert rows.max() < captioned.placement.top  # the caption sits above the bottom inset
    assert (captioned.image[:, :rows.max() + 1] < 64).any()  # dark text on the white box


def test_batch_and_bad_inputs(pair):
    image, hook = pair
    batch = csema_batch(np.stack([image, image]), hook)
    assert tuple(batch.shape) == (2, 1, 28, 28)
    with pytest.raises(ConfigError, match="corner must be one of"):
        csema(image, hook, corner="middle")
    with pytest.raises(ConfigError, match=r"inset size must be a share of the image side"):
        csema(image, hook, size=0)
    with pytest.raises(ConfigError, match="hook image must be a uint8 C x H x W image"):
        csema(image, hook.astype(np.float32))
    with pytest.raises(ConfigError, match="does not fit"):
        csema(image, hook, size=1.0, margin=3)
