"""The torchattacks-like front: calling convention, target modes, outputs on the 8-bit grid."""

from __future__ import annotations

import pytest
import torch
import torchattacks

from varsec.attacks import CW, FGSM, PGD, PGDL2, CWLinf
from varsec.attacks.registry import attack_method, objective_params
from varsec.errors import ConfigError
from varsec.metrics.image import l2_distance


def test_call_returns_float_images_on_the_grid_inside_the_ball(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    x = images.float() / 255
    adv = PGD(easy_classifier, eps=7.65, alpha=2, steps=4)(x, labels)
    assert adv.dtype == torch.float32 and adv.shape == x.shape
    assert torch.equal(torch.round(adv * 255), adv * 255)
    assert float((adv - x).abs().max()) * 255 <= 7 + 1e-4


def test_uint8_inputs_are_accepted(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    result = FGSM(easy_classifier, eps=4).run(images, labels)
    assert result.images.dtype == torch.uint8 and result.success is not None


@pytest.mark.parametrize("mode", ["int", "tensor", "callable", "by_label"])
def test_target_modes(mode, easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    attack = PGD(easy_classifier, eps=32, alpha=4, steps=10, random_start=False)
    sevens = torch.full_like(labels, 7)
    if mode == "int":
        attack.targeted(7)
        result = attack.run(images, labels)
    elif mode == "tensor":
        result = attack.targeted(sevens).run(images, labels)
    elif mode == "callable":
        result = attack.targeted(lambda x, y: torch.full_like(y, 7)).run(images, labels)
    else:
        result = attack.targeted(by_label=True).run(images, sevens)
    with torch.no_grad():
        predicted = easy_classifier(result.float_images()).argmax(1)
    assert torch.equal(result.success, predicted == 7)
    reference = PGD(easy_classifier, eps=32, alpha=4, steps=10, random_start=False).targeted(
        7).run(images, labels)
    assert torch.equal(result.images, reference.images)
    assert result.success_rate > 0.25


def test_untargeted_resets_the_mode(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    attack = FGSM(easy_classifier, eps=8).targeted(3).untargeted()
    assert "untargeted" in repr(attack)
    result = attack.run(images, labels)
    with torch.no_grad():
        predicted = easy_classifier(result.float_images()).argmax(1)
    assert torch.equal(result.success, predicted != labels)


def test_l2_and_cw_fronts(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    l2 = PGDL2(easy_classifier, eps=120, alpha=40, steps=4).run(images, labels)
    norms = (l2.images.float() - images.float()).flatten(1).norm(dim=1)
    assert float(norms.max()) <= 120 + 1e-4
    linf = CWLinf(easy_classifier, eps=16, c=5.0, steps=20).run(images, labels)
    assert int((linf.images.int() - images.int()).abs().max()) <= 16
    capped = CW(easy_classifier, steps=20, eps=4).run(images, labels)
    assert int((capped.images.int() - images.int()).abs().max()) <= 4


def test_bad_front_inputs(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    with pytest.raises(ConfigError, match="model must be callable"):
        PGD(object())
    with pytest.raises(ConfigError, match=r"eps must lie in \[1, 255\]"):
        FGSM(easy_classifier, eps=0)
    with pytest.raises(ConfigError, match=r"target must be class indices in \[0, 9\]"):
        PGD(easy_classifier).targeted(12).run(images, labels)


@pytest.mark.parametrize(("front", "name", "eps"), [
    (FGSM, "fgsm", 8), (PGD, "pgd", 8), (PGDL2, "pgd-l2", 255), (CW, "cw", 255),
    (CWLinf, "cw-linf", 8)])
def test_settings_left_out_take_the_registered_defaults(front, name, eps, easy_classifier,
                                                        fmnist_batch):
    attack = front(easy_classifier)
    assert attack.rule().describe() == attack_method(name).build(eps).describe()
    kappa = objective_params("classifier-untargeted")["kappa"].default
    assert attack.objective(*fmnist_batch).kappa == kappa


def test_given_settings_are_checked_against_the_declaration(easy_classifier):
    with pytest.raises(ConfigError, match="^PGD parameter random_start must be true or false, "
                                          "got 'yes'.$"):
        PGD(easy_classifier, random_start="yes")
    with pytest.raises(ConfigError, match="^CW parameter binary_steps must be an integer >= 1, "
                                          "got 0.$"):
        CW(easy_classifier, binary_search_steps=0)
    attack = CW(easy_classifier, c=2.0, steps=7, lr=0.1, binary_search_steps=2, eps=16)
    assert {k: v for k, v in attack.rule().describe().items() if k != "norm"} == {
        "attack": "cw-l2", "eps": 16.0, "steps": 7, "c": 2.0, "lr": 0.1,
        "binary_search_steps": 2}


def test_cw_matches_torchattacks_with_its_settings_on_both_sides(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    settings = {"c": 1.0, "kappa": 0.0, "steps": 50, "lr": 0.01}
    ours = CW(easy_classifier, **settings, binary_search_steps=1).run(images, labels)
    theirs = torchattacks.CW(easy_classifier, **settings)(images.float() / 255, labels)
    with torch.no_grad():
        fooled = easy_classifier(theirs).argmax(1) != labels
    assert abs(ours.success_rate - float(fooled.float().mean())) <= 2 / len(labels)
    both = ours.success & fooled
    assert int(both.sum()) >= len(labels) // 2
    theirs_uint8 = torch.round(theirs[both] * 255).to(torch.uint8)
    ratio = (l2_distance(images[both], ours.images[both]).mean()
             / l2_distance(images[both], theirs_uint8).mean())
    assert 0.8 < ratio < 1.25
