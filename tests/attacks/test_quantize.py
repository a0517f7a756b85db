"""Budgets in 8-bit levels, honest quantisation and lossless PNG files."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from varsec.attacks.quantize import (
    budget_levels,
    check_alpha,
    check_eps,
    check_steps,
    load_png,
    quantize,
    save_png,
    to_float,
)
from varsec.errors import ConfigError, DataError, VarsecWarning


def test_eps_bounds_and_l2_budgets():
    # L-inf budgets are checked by varsec.vision.perturbation.check_eps (tests/vision/
    # test_adversarial.py); the attack layer's check adds the L2 norm.
    assert check_eps(255) == 255.0 and check_eps(7.65) == 7.65
    with pytest.raises(ConfigError, match=r"^eps must lie in \[1, 255\] 8-bit levels"):
        check_eps(1000)
    assert check_eps(1000, norm="l2") == 1000.0
    with pytest.raises(ConfigError, match="must be at least 1 .*got 0"):
        check_eps(0, norm="l2")
    with pytest.raises(ConfigError, match="must be at least 1 .*got 0.5"):
        check_eps(0.5, norm="l2")
    with pytest.raises(ConfigError, match="norm must be one of linf, l2, got 'l1'"):
        check_eps(8, norm="l1")


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_steps_below_one_is_a_config_error(steps):
    with pytest.raises(ConfigError, match=r"^steps must be an integer >= 1, got"):
        check_steps(steps)


def test_alpha_larger_than_eps_warns_and_is_kept():
    with pytest.warns(VarsecWarning, match="alpha=10 levels is larger than eps=8"):
        assert check_alpha(10, 8.0) == 10.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_alpha(2, 8.0) == 2.0


def test_budget_levels_floors_non_integral_eps():
    assert budget_levels(8) == 8
    assert budget_levels(7.65) == 7
    assert budget_levels(0.5) == 0
    assert budget_levels(8.0 - 1e-9) == 8


@pytest.mark.parametrize("eps", [1, 4, 7.65, 8, 32])
def test_quantize_never_leaves_the_linf_ball(eps):
    generator = torch.Generator().manual_seed(int(eps * 100))
    clean = torch.randint(0, 256, (16, 1, 28, 28), generator=generator, dtype=torch.uint8)
    radius = eps / 255
    # the worst case for rounding: float images sitting exactly on the ball's surface
    signs = torch.randint(0, 2, clean.shape, generator=generator).float() * 2 - 1
    adv = (clean.float() / 255 + signs * radius).clamp(0, 1)
    q = quantize(adv, clean.float() / 255, eps)
    assert q.dtype == torch.uint8
    diff = (q.int() - clean.int()).abs()
    assert int(diff.max()) <= math.floor(eps)
    assert int(diff.max()) == math.floor(eps)  # the budget is used, not wasted


def test_quantize_rounds_to_nearest_inside_the_budget():
    clean = torch.tensor([[[[100, 0, 255]]]], dtype=torch.uint8)
    adv = torch.tensor([[[[103.4, 2.6, 250.2]]]]) / 255
    assert quantize(adv, clean, 8).flatten().tolist() == [103, 3, 250]
    assert quantize(adv, clean, 2).flatten().tolist() == [102, 2, 253]


def test_quantize_l2_stays_in_the_ball_after_rounding():
    generator = torch.Generator().manual_seed(3)
    clean = torch.randint(10, 245, (8, 1, 28, 28), generator=generator, dtype=torch.uint8)
    delta = torch.randn(clean.shape, generator=generator)
    eps = 20.0
    delta = delta / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps  # in levels
    adv = (clean.float() + delta) / 255
    q = quantize(adv, clean, eps, norm="l2")
    norms = (q.float() - clean.float()).flatten(1).norm(dim=1)
    assert float(norms.max()) <= eps + 1e-4


def test_to_float_snaps_to_the_grid_and_rejects_bad_ranges():
    x = to_float(torch.tensor([[[[0.1001, 1.0]]]]))
    assert torch.allclose(x * 255, torch.round(x * 255))
    with pytest.raises(ConfigError, match=r"must lie in \[0, 1\]"):
        to_float(torch.full((1, 1, 2, 2), 2.0))
    with pytest.raises(ConfigError, match="N x C x H x W"):
        to_float(torch.zeros(3, 3))


def test_png_round_trip_is_lossless_and_atomic(tmp_path):
    generator = torch.Generator().manual_seed(0)
    grey = torch.randint(0, 256, (1, 28, 28), generator=generator, dtype=torch.uint8)
    colour = torch.randint(0, 256, (3, 9, 7), generator=generator, dtype=torch.uint8)
    save_png(tmp_path / "a" / "grey.png", grey)
    save_png(tmp_path / "a" / "colour.png", colour)
    assert np.array_equal(load_png(tmp_path / "a" / "grey.png"), grey.numpy())
    assert np.array_equal(load_png(tmp_path / "a" / "colour.png"), colour.numpy())
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["colour.png", "grey.png"]


def test_png_rejects_float_images_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="uint8 C x H x W"):
        save_png(tmp_path / "x.png", torch.zeros(1, 4, 4))
    assert not (tmp_path / "x.png").exists()
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="not a readable PNG"):
        load_png(tmp_path / "bad.png")
