"""The internal L-inf PGD: epsilon validation, the eps-ball, quantisation, torchattacks parity."""

from __future__ import annotations

import math

import pytest
import torch
import torchattacks

from varsec.errors import ConfigError
from varsec.vision import check_eps, create_backbone, eval_mode, pgd_linf, quantize_float
from varsec.vision.adversarial import default_alpha, project


@pytest.mark.parametrize("eps", [0, 0.5, 0.99, -1, -3, 255.01, 255.5, 300, 1000, math.nan,
                                 math.inf])
def test_eps_outside_1_255_is_a_config_error_naming_the_value(eps):
    with pytest.raises(ConfigError, match=r"^eps must lie in \[1, 255\] 8-bit levels") as info:
        check_eps(eps)
    assert str(info.value).endswith(f"got {eps}.")


@pytest.mark.parametrize("eps", ["8", None, True])
def test_eps_must_be_a_number(eps):
    with pytest.raises(ConfigError, match=f"^eps must be a number of 8-bit levels, got {eps!r}"):
        check_eps(eps)


def test_eps_bounds_are_inclusive_of_255():
    assert check_eps(255) == 255.0 and check_eps(7.65) == 7.65


def test_pgd_rejects_bad_eps_and_steps():
    model = create_backbone("fmnist-cnn").eval()
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([0, 1])
    with pytest.raises(ConfigError, match="got 0"):
        pgd_linf(model, x, y, eps=0)
    with pytest.raises(ConfigError, match="steps must be a non-negative integer"):
        pgd_linf(model, x, y, eps=8, steps=-1)


@pytest.fixture(scope="module")
def fixed_model(trained_standard):
    return trained_standard.backbone.eval()


@pytest.fixture(scope="module")
def batch(fmnist):
    images = torch.from_numpy(fmnist.images[60000:60064]).float() / 255
    labels = torch.from_numpy(fmnist.categories[60000:60064])
    return images, labels


def test_pgd_stays_inside_the_eps_ball_and_the_pixel_range(fixed_model, batch):
    images, labels = batch
    adv = pgd_linf(fixed_model, images, labels, eps=8, steps=5,
                   generator=torch.Generator().manual_seed(0))
    assert float((adv - images).abs().max()) <= 8 / 255 + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    with torch.no_grad():
        clean_acc = (fixed_model(images).argmax(1) == labels).float().mean()
        adv_acc = (fixed_model(quantize_float(adv, images, 8)).argmax(1) == labels).float().mean()
    assert adv_acc < clean_acc


def test_pgd_is_reproducible_with_a_seeded_generator(fixed_model, batch):
    images, labels = batch
    runs = [pgd_linf(fixed_model, images, labels, eps=4, steps=2,
                     generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    torch.testing.assert_close(runs[0], runs[1])


def test_pgd_matches_torchattacks_within_one_level(fixed_model, batch):
    images, labels = batch
    ours = pgd_linf(fixed_model, images, labels, eps=8, alpha=2, steps=10, random_init=False)
    attack = torchattacks.PGD(fixed_model, eps=8 / 255, alpha=2 / 255, steps=10,
                              random_start=False)
    theirs = attack(images, labels)
    to_uint8 = lambda t: torch.round(t * 255).to(torch.int16)  # noqa: E731
    assert int((to_uint8(ours) - to_uint8(theirs)).abs().max()) <= 1


def test_targeted_pgd_moves_towards_the_target(fixed_model, batch):
    images, labels = batch
    target = torch.full_like(labels, 7)  # "Sneaker", the twin of 001's running shoe
    adv = pgd_linf(fixed_model, images, target, eps=16, steps=10, targeted=True,
                   random_init=False)
    with torch.no_grad():
        before = (fixed_model(images).argmax(1) == 7).float().mean()
        after = (fixed_model(quantize_float(adv, images, 16)).argmax(1) == 7).float().mean()
    assert after > before


def test_zero_steps_without_random_start_is_the_clean_image(fixed_model, batch):
    images, labels = batch
    torch.testing.assert_close(pgd_linf(fixed_model, images, labels, eps=8, steps=0,
                                        random_init=False), images)


def test_quantize_float_rounds_to_the_grid_and_honours_a_fractional_eps():
    clean = torch.tensor([0.0, 100.0, 200.0, 255.0]) / 255
    adv = clean + torch.tensor([7.6, -7.6, 3.4, 1.0]) / 255
    out = quantize_float(adv, clean, eps=7.65)
    assert out.dtype == torch.float32
    levels = out * 255
    torch.testing.assert_close(levels, torch.round(levels))
    assert float((levels - clean * 255).abs().max()) <= 7.0 + 1e-4
    assert float(out.max()) <= 1.0


def test_project_and_default_alpha():
    clean = torch.full((1, 1, 2, 2), 0.5)
    out = project(clean + 1.0, clean, 8)
    torch.testing.assert_close(out, clean + 8 / 255)
    assert default_alpha(8, 20) == 1.0


def test_eval_mode_restores_training_mode():
    model = create_backbone("fmnist-cnn").train()
    with eval_mode(model):
        assert not model.training
    assert model.training
