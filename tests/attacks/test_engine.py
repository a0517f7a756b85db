"""The engine: the eps-ball after quantisation for every step rule, torchattacks parity, early
stopping, seeds, and the EOT / BPDA transform hooks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from varsec.attacks import (
    FGSM,
    PGD,
    AdamStep,
    ClassifierObjective,
    CWL2Step,
    CWLinfStep,
    FeatureTarget,
    FGSMStep,
    PGDStep,
    run_attack,
)
from varsec.attacks.engine import affine_batch_norm
from varsec.errors import ConfigError, VarsecWarning

RULES = {
    "fgsm": lambda eps: FGSMStep(eps),
    "pgd": lambda eps: PGDStep(eps, steps=3),
    "pgd-no-start": lambda eps: PGDStep(eps, alpha=eps / 2, steps=3, random_start=False),
    "adam": lambda eps: AdamStep(eps, lr=2.0, steps=3),
    "cw-l2": lambda eps: CWL2Step(c=5.0, steps=6, lr=0.05, binary_search_steps=2, eps=eps,
                                  check_every=3),
    "cw-linf": lambda eps: CWLinfStep(eps, c=5.0, steps=6, lr=2.0, check_every=3),
}


@pytest.mark.parametrize("eps", [7.65, 8, 2])
@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_stays_in_the_linf_ball_after_quantisation(name, eps, small_cnn, fmnist_batch):
    images, labels = fmnist_batch
    result = run_attack(ClassifierObjective(small_cnn, labels), images, RULES[name](eps),
                        batch_size=16)
    assert result.images.dtype == torch.uint8 and result.images.shape == images.shape
    diff = (result.images.int() - images.int()).abs()
    assert int(diff.max()) <= math.floor(eps)
    assert int(diff.max()) > 0


def test_l2_pgd_stays_in_the_l2_ball_after_quantisation(small_cnn, fmnist_batch):
    images, labels = fmnist_batch
    rule = PGDStep(eps=60, alpha=25, steps=4, norm="l2")
    result = run_attack(ClassifierObjective(small_cnn, labels), images, rule)
    norms = (result.images.float() - images.float()).flatten(1).norm(dim=1)
    assert float(norms.max()) <= 60 + 1e-4
    assert float(norms.min()) > 0


@pytest.mark.parametrize("model_name", ["small_cnn", "easy_classifier"])
def test_fgsm_and_pgd_match_torchattacks_within_one_level(model_name, fmnist_batch, request):
    model = request.getfixturevalue(model_name)
    images, labels = fmnist_batch
    x = images.float() / 255
    pairs = [
        (FGSM(model, eps=8), torchattacks.FGSM(model, eps=8 / 255)),
        (PGD(model, eps=8, alpha=2, steps=5, random_start=False),
         torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=5, random_start=False)),
    ]
    for ours, theirs in pairs:
        a, b = ours(x, labels), theirs(x, labels)
        assert float((a - b).abs().max()) * 255 <= 1.0 + 1e-4
        assert torch.equal(torch.round(a * 255), a * 255)  # on the 8-bit grid


def test_the_same_seed_gives_the_same_images(small_cnn, fmnist_batch):
    images, labels = fmnist_batch
    objective = ClassifierObjective(small_cnn, labels)
    rule = PGDStep(8, steps=2, random_start=True)
    first = run_attack(objective, images, rule, seed=3).images
    again = run_attack(objective, images, rule, seed=3).images
    other = run_attack(objective, images, rule, seed=4).images
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_early_stop_freezes_each_image_at_its_first_quantised_success(easy_classifier,
                                                                      fmnist_batch):
    images, labels = fmnist_batch
    objective = ClassifierObjective(easy_classifier, labels)
    rule = PGDStep(16, alpha=2, steps=12, random_start=False)
    stopped = run_attack(objective, images, rule, early_stop=True)
    full = run_attack(objective, images, rule, early_stop=False)
    assert stopped.success is not None and bool(stopped.success.any())
    assert int(stopped.steps.min()) < 12 and int(full.steps.min()) == 12
    with torch.no_grad():
        predicted = easy_classifier(stopped.float_images()).argmax(1)
    assert torch.equal(stopped.success, predicted != labels)
    early = stopped.steps < 12
    assert float((stopped.images[early].int() - images[early].int()).abs().amax()) <= 2 * 11


def test_success_is_none_without_a_notion_of_success(small_cnn, fmnist_batch):
    images, _ = fmnist_batch
    objective = FeatureTarget(small_cnn, target_images=images[:1])
    result = run_attack(objective, images[1:5], PGDStep(8, steps=2))
    assert result.success is None and result.success_rate is None


def test_bpda_attacks_through_a_non_differentiable_transform(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    objective = ClassifierObjective(easy_classifier, labels)

    def coarse(x):  # bit-depth reduction to 4 levels: zero gradient almost everywhere
        return torch.round(x * 3) / 3

    rule = PGDStep(24, alpha=4, steps=8, random_start=False)
    blind = run_attack(objective, images, rule, transform=coarse, early_stop=False)
    adaptive = run_attack(objective, images, rule, transform=coarse, bpda=True, early_stop=False)
    assert torch.equal(blind.images, images)  # no gradient: the attack cannot move
    assert adaptive.success_rate > blind.success_rate
    assert int((adaptive.images.int() - images.int()).abs().max()) <= 24


def test_eot_averages_over_draws_of_a_random_transform(small_cnn, fmnist_batch):
    images, labels = fmnist_batch
    calls = []

    def noisy(x):
        calls.append(len(x))
        return (x + 0.05 * torch.randn_like(x)).clamp(0, 1)

    objective = ClassifierObjective(small_cnn, labels)
    rule = PGDStep(8, steps=2, random_start=False)
    result = run_attack(objective, images[:8], rule, transform=noisy, eot_samples=4,
                        early_stop=False, seed=1)
    assert len(calls) == 2 * 4 + 1  # 4 draws per step, one for the final success check
    again = run_attack(objective, images[:8], rule, transform=noisy, eot_samples=4,
                       early_stop=False, seed=1)
    assert torch.equal(result.images, again.images)
    assert result.settings["eot_samples"] == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"eot_samples": 0}, "eot_samples must be an integer >= 1"),
     ({"eot_samples": 3}, "give transform="),
     ({"bpda": True}, "bpda replaces a transform's backward pass")],
)
def test_bad_transform_hooks(kwargs, message, small_cnn, fmnist_batch):
    images, labels = fmnist_batch
    with pytest.raises(ConfigError, match=message):
        run_attack(ClassifierObjective(small_cnn, labels), images, FGSMStep(8), **kwargs)


def test_bad_engine_inputs(small_cnn, fmnist_batch):
    images, labels = fmnist_batch
    objective = ClassifierObjective(small_cnn, labels[:5])
    with pytest.raises(ConfigError, match="labels has 5 entries for 32 images"):
        run_attack(objective, images, FGSMStep(8))
    with pytest.raises(ConfigError, match="objective must be a varsec Objective"):
        run_attack(small_cnn, images, FGSMStep(8))
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        run_attack(ClassifierObjective(small_cnn, labels), images, FGSMStep(8), batch_size=0)
    with pytest.raises(ConfigError, match=r"eps must lie in \[1, 255\].*got 300"):
        PGDStep(300)
    with pytest.raises(ConfigError, match="steps must be an integer >= 1, got 0"):
        PGDStep(8, steps=0)
    with pytest.warns(VarsecWarning, match="alpha=6 levels is larger than eps=4"):
        PGDStep(4, alpha=6)
    with pytest.warns(VarsecWarning, match="lr=9 levels is larger than eps=8"):
        AdamStep(8, lr=9)


def test_models_are_restored_after_an_attack(small_cnn, fmnist_batch):
    images, labels = fmnist_batch
    small_cnn.train()
    try:
        run_attack(ClassifierObjective(small_cnn, labels), images[:4], FGSMStep(8))
        assert small_cnn.training
        assert all(p.requires_grad for p in small_cnn.parameters())
    finally:
        small_cnn.eval()


def _batch_norm(cls, seed=0, **kwargs):
    torch.manual_seed(seed)
    bn = cls(4, **kwargs)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.2, 3.0)
        if bn.weight is not None:
            bn.weight.normal_()
            bn.bias.normal_()
    return bn.eval()


@pytest.mark.parametrize(
    ("cls", "shape", "affine"),
    [(nn.BatchNorm1d, (6, 4), True), (nn.BatchNorm1d, (6, 4, 5), False),
     (nn.BatchNorm2d, (6, 4, 5, 5), True), (nn.BatchNorm3d, (6, 4, 3, 3, 3), True)],
)
def test_affine_batch_norm_equals_the_native_kernel_and_is_restored(cls, shape, affine):
    bn = _batch_norm(cls, affine=affine)
    x = torch.randn(shape, requires_grad=True)
    upstream = torch.randn(shape)
    native = bn(x)
    (native_grad,) = torch.autograd.grad(native, x, upstream)
    with affine_batch_norm([nn.Sequential(bn)]):
        assert "forward" in bn.__dict__
        fast = bn(x)
        (fast_grad,) = torch.autograd.grad(fast, x, upstream)
        assert type(fast.grad_fn).__name__.startswith("Addcmul")
        with pytest.raises(ValueError, match="expected"):
            bn(torch.zeros(2, 4, *([3] * (len(shape) + 1))))  # wrong rank, as natively
        with torch.no_grad():
            bn.running_var.mul_(2.0)  # the map follows the module's current statistics
            moved = bn(x)
    assert "forward" not in bn.__dict__
    torch.testing.assert_close(moved, bn(x), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        bn.running_var.div_(2.0)
    torch.testing.assert_close(fast, native, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_grad, native_grad, rtol=1e-5, atol=1e-5)
    assert not torch.equal(fast, x)


def test_affine_batch_norm_leaves_training_and_statistics_free_batch_norms_alone():
    training = _batch_norm(nn.BatchNorm2d).train()
    no_stats = nn.BatchNorm2d(4, track_running_stats=False).eval()
    switched = _batch_norm(nn.BatchNorm2d, seed=1)
    x = torch.randn(8, 4, 3, 3)
    with affine_batch_norm([training, no_stats, switched]):
        assert "forward" not in training.__dict__ and "forward" not in no_stats.__dict__
        switched.train()  # switched to training inside the block: its own forward runs
        torch.testing.assert_close(switched(x), F.batch_norm(x, None, None, switched.weight,
                                                             switched.bias, training=True))
        switched.eval()
    before = training.running_mean.clone()
    training(x)
    assert not torch.equal(training.running_mean, before)  # still a training batch norm


def test_native_batch_norm_option_reproduces_torchattacks_bit_for_bit(small_cnn, fmnist_batch):
    images, labels = fmnist_batch
    x = images.float() / 255
    theirs = torchattacks.PGD(small_cnn, eps=8 / 255, alpha=2 / 255, steps=5,
                              random_start=False)(x, labels)
    native = PGD(small_cnn, eps=8, alpha=2, steps=5, random_start=False,
                 fast_batch_norm=False)(x, labels)
    fast = PGD(small_cnn, eps=8, alpha=2, steps=5, random_start=False)(x, labels)
    assert torch.equal(native * 255, torch.round(theirs * 255))
    assert float((fast - native).abs().max()) * 255 <= 1.0 + 1e-4
    assert not any("forward" in m.__dict__ for m in small_cnn.modules())
