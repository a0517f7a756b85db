"""Carlini & Wagner: smaller perturbations than FGSM at equal success; the L-inf penalty form."""

from __future__ import annotations

import torch

from varsec.attacks import CW, FGSM, ClassifierObjective, CWL2Step, CWLinfStep, PGDStep, run_attack
from varsec.metrics.image import l2_distance, linf_levels


def test_cw_finds_smaller_l2_perturbations_than_fgsm_at_equal_success(easy_classifier,
                                                                       fmnist_batch):
    images, labels = fmnist_batch
    fgsm = FGSM(easy_classifier, eps=16).run(images, labels)
    cw = CW(easy_classifier, c=1.0, steps=60, lr=0.05, binary_search_steps=4).run(images, labels)
    both = fgsm.success & cw.success
    assert cw.success_rate >= fgsm.success_rate
    assert int(both.sum()) >= 8
    fgsm_l2 = l2_distance(images[both], fgsm.images[both])
    cw_l2 = l2_distance(images[both], cw.images[both])
    assert cw_l2.mean() < 0.75 * fgsm_l2.mean()


def test_cw_binary_search_keeps_the_smallest_successful_image(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    objective = ClassifierObjective(easy_classifier, labels)
    one = run_attack(objective, images, CWL2Step(c=10.0, steps=40, lr=0.05,
                                                 binary_search_steps=1))
    search = run_attack(objective, images, CWL2Step(c=10.0, steps=40, lr=0.05,
                                                    binary_search_steps=4))
    both = one.success & search.success
    assert bool(both.any())
    assert (l2_distance(images[both], search.images[both])
            <= l2_distance(images[both], one.images[both]) + 1e-9).all()


def test_cw_targeted_margin_and_success_on_quantised_images(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    result = CW(easy_classifier, c=5.0, steps=60, lr=0.05, binary_search_steps=3).targeted(
        7).run(images, labels)
    with torch.no_grad():
        predicted = easy_classifier(result.float_images()).argmax(1)
    assert torch.equal(result.success, predicted == 7)
    assert result.success_rate > 0.5


def test_cw_linf_penalty_form_stays_within_eps_and_shrinks_the_perturbation(easy_classifier,
                                                                            fmnist_batch):
    images, labels = fmnist_batch
    objective = ClassifierObjective(easy_classifier, labels)
    cw = run_attack(objective, images, CWLinfStep(eps=24, c=5.0, steps=60, lr=2.0,
                                                  check_every=5))
    pgd = run_attack(objective, images, PGDStep(24, alpha=4, steps=10, random_start=False),
                     early_stop=False)
    sizes = linf_levels(images, cw.images)
    assert sizes.max() <= 24
    both = (cw.success & pgd.success).numpy()
    assert both.sum() >= 8
    assert sizes[both].mean() < linf_levels(images, pgd.images)[both].mean()
