"""Image measures against hand-computed values and scikit-image itself; LPIPS stays honest."""

from __future__ import annotations

import importlib.util
import math
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from varsec.errors import ConfigError, VarsecWarning
from varsec.metrics import image
from varsec.metrics.image import (
    LPIPS_MIN_SIDE,
    image_measures,
    l2_distance,
    linf_levels,
    lpips_available,
    lpips_backbone_path,
    lpips_distance,
    lpips_status,
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


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """An empty torch cache ($TORCH_HOME) and a fresh warn-once memory."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(image, "_WARNED", set())
    return tmp_path / "torch-home"


def test_lpips_without_backbone_weights_is_nan_with_one_warning(pair, no_weights):
    if importlib.util.find_spec("lpips") is None:
        pytest.skip("the lpips package (dev extra) is not installed")
    # the real package, its backbone weights absent
    clean, adv = pair
    expected = no_weights / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert lpips_backbone_path() == expected
    assert not lpips_available()
    reason = lpips_status()
    assert "LPIPS backbone (AlexNet) are missing" in reason and str(expected) in reason
    assert "$TORCH_HOME/hub/checkpoints" in reason
    with pytest.warns(VarsecWarning, match="LPIPS not computed: .*alexnet-owt-7be5be79.pth") as w:
        frame = image_measures(clean, adv)
        again = image_measures(clean, adv)
        assert lpips_distance(clean, adv) is None
    assert len([x for x in w if issubclass(x.category, VarsecWarning)]) == 1  # once
    for measured in (frame, again):
        assert measured["lpips"].isna().all()
        assert measured.attrs["lpips"] == f"not computed: {reason}"
    summary = summarize_image_measures(frame).set_index("metric")
    assert np.isnan(summary.loc["lpips_mean", "value"]) and summary.loc["lpips_mean", "n"] == 0
    assert summary.loc["lpips_mean", "note"].startswith("not computed: the ImageNet weights")
    assert summary.loc["linf_max", "value"] == linf_levels(clean, adv).max()
    assert summary.loc["psnr_mean", "n"] == len(clean) - 1  # the inf of the untouched image


def test_lpips_without_the_package_says_how_to_install_it(pair, no_weights, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # import lpips -> ImportError
    clean, adv = pair
    with pytest.warns(VarsecWarning, match="lpips package is not installed .pip install lpips"):
        frame = image_measures(clean, adv)
    assert frame["lpips"].isna().all()
    assert image_measures(clean, adv, lpips=False).attrs["lpips"] == "not computed: not requested"
    with pytest.raises(ConfigError, match="unknown LPIPS network 'resnet'"):
        lpips_status("resnet")


class _StandInLPIPS:
    """Returns the next of a list of known distances per image and records its inputs."""

    def __init__(self, distances, seen, net="alex", verbose=True):
        self.distances, self.seen, self.net = distances, seen, net

    def eval(self):
        return self

    def __call__(self, x, y):
        self.seen.append((self.net, x.clone(), y.clone()))
        values = [self.distances.pop(0) for _ in range(len(x))]
        return torch.tensor(values).view(-1, 1, 1, 1)


def _install_stand_in(monkeypatch, tmp_path, distances):
    """A stand-in ``lpips`` module with its linear layers and the backbone file on disk."""
    package = tmp_path / "lpips"
    (package / "weights" / "v0.1").mkdir(parents=True)
    (package / "weights" / "v0.1" / "alex.pth").write_bytes(b"stand-in")
    module = types.ModuleType("lpips")
    module.__file__ = str(package / "__init__.py")
    seen = []
    module.LPIPS = lambda net="alex", verbose=True: _StandInLPIPS(distances, seen, net, verbose)
    monkeypatch.setitem(sys.modules, "lpips", module)
    backbone = lpips_backbone_path("alex")
    backbone.parent.mkdir(parents=True, exist_ok=True)
    backbone.write_bytes(b"stand-in")
    return seen


def test_lpips_values_reach_the_measures_when_package_and_weights_are_present(
    pair, no_weights, monkeypatch, tmp_path
):
    clean, adv = pair
    known = [0.0, 0.11, 0.25, 0.05, 0.3, 0.19]
    seen = _install_stand_in(monkeypatch, tmp_path, list(known))
    assert lpips_available() and lpips_status() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", VarsecWarning)  # no warning when LPIPS is computed
        frame = image_measures(clean, adv)
    assert frame.attrs["lpips"] == "computed"
    assert frame["lpips"].tolist() == pytest.approx(known)  # one value per image, in order
    summary = summarize_image_measures(frame).set_index("metric")
    assert summary.loc["lpips_mean", "value"] == pytest.approx(np.mean(known))
    assert summary.loc["lpips_mean", "n"] == len(known)
    assert summary.loc["lpips_mean", "note"] == ""
    # what LPIPS was given: both images in [-1, 1], grey repeated to RGB, 28 px raised to 64 px
    (net, x, y), = seen
    assert net == "alex" and x.shape == (6, 3, LPIPS_MIN_SIDE, LPIPS_MIN_SIDE)
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert torch.equal(x[0], y[0]) and not torch.equal(x[1], y[1])  # image 0 is untouched
    assert torch.equal(x[:, 0], x[:, 2])
    # batches: the values keep their order across them
    more = [0.4, 0.1, 0.2, 0.3, 0.5, 0.6]
    _install_stand_in(monkeypatch, tmp_path / "again", more.copy())
    assert lpips_distance(clean, adv, batch_size=4).tolist() == pytest.approx(more)


def test_measures_refuse_float_images_and_shape_mismatches(pair):
    clean, adv = pair
    with pytest.raises(ConfigError, match="quantise adversarial images before measuring"):
        image_measures(clean, adv.astype(np.float32) / 255)
    with pytest.raises(ConfigError, match="clean and adv shapes differ"):
        psnr(clean, adv[:2])
    with pytest.raises(ConfigError, match="N x C x H x W"):
        linf_levels(clean[0], adv[0])
