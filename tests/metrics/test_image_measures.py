"""Image measures against hand-computed values and scikit-image itself; LPIPS stays honest."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from varsec.errors import ConfigError
from varsec.metrics.image import (
    image_measures,
    l2_distance,
    linf_levels,
    lpips_available,
    lpips_distance,
    psnr,
    ssim,
    summarize_image_measures,
)


@pytest.fixture(scope="module")
def pair(fmnist_small):
    clean = fmnist_small.images[:6]
    rng = np.random.default_rng(0)
    noise = rng.integers(-8, 9, clean.shape)
    adv = np.clip(clean.astype(int) + noise, 0, 255).astype(np.uint8)
    adv[0] = clean[0]  # one untouched image
    return clean, adv


def test_linf_and_l2_by_hand():
    clean = np.zeros((2, 1, 2, 2), np.uint8)
    adv = clean.copy()
    adv[0, 0, 0, 0], adv[0, 0, 1, 1] = 3, 4
    adv[1, 0, 0, 1] = 255
    assert linf_levels(clean, adv).tolist() == [4, 255]
    assert np.allclose(l2_distance(clean, adv), [5 / 255, 1.0])


def test_psnr_matches_scikit_image_and_is_inf_for_identical_images(pair):
    clean, adv = pair
    values = psnr(clean, adv)
    assert math.isinf(values[0])
    for k in range(1, len(clean)):
        expected = peak_signal_noise_ratio(clean[k], adv[k], data_range=255)
        assert values[k] == pytest.approx(expected, rel=1e-12)
    mse = np.mean((clean[1].astype(float) - adv[1].astype(float)) ** 2)
    assert values[1] == pytest.approx(10 * np.log10(255**2 / mse))


def test_ssim_matches_scikit_image_for_grey_and_colour(pair):
    clean, adv = pair
    values = ssim(clean, adv)
    assert values[0] == pytest.approx(1.0)
    for k in range(len(clean)):
        assert values[k] == pytest.approx(
            structural_similarity(clean[k, 0], adv[k, 0], data_range=255))
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 256, (2, 3, 16, 16), dtype=np.uint8)
    moved = np.clip(colour.astype(int) + 5, 0, 255).astype(np.uint8)
    expected = structural_similarity(colour[1], moved[1], data_range=255, channel_axis=0)
    assert ssim(colour, moved)[1] == pytest.approx(expected)
    tiny = rng.integers(0, 256, (1, 1, 5, 5), dtype=np.uint8)
    assert ssim(tiny, tiny)[0] == pytest.approx(1.0)  # a 5x5 window for a 5x5 image


def test_lpips_is_never_made_up(pair):
    clean, adv = pair
    frame = image_measures(clean, adv)
    if lpips_available():
        assert frame.attrs["lpips"] == "computed"
        assert frame["lpips"].notna().all()
    else:
        assert frame["lpips"].isna().all()
        assert frame.attrs["lpips"].startswith("not computed: ")
        assert lpips_distance(clean, adv) is None
    summary = summarize_image_measures(frame).set_index("metric")
    assert summary.loc["linf_max", "value"] == linf_levels(clean, adv).max()
    assert summary.loc["psnr_mean", "n"] == len(clean) - 1  # the inf of the untouched image
    if not lpips_available():
        assert np.isnan(summary.loc["lpips_mean", "value"])
        assert summary.loc["lpips_mean", "note"].startswith("not computed")


def test_measures_refuse_float_images_and_shape_mismatches(pair):
    clean, adv = pair
    with pytest.raises(ConfigError, match="quantise adversarial images before measuring"):
        image_measures(clean, adv.astype(np.float32) / 255)
    with pytest.raises(ConfigError, match="clean and adv shapes differ"):
        psnr(clean, adv[:2])
    with pytest.raises(ConfigError, match="N x C x H x W"):
        linf_levels(clean[0], adv[0])
