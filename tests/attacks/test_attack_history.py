"""Every iterative attack records its objective per step and image (AttackResult.history)."""

from __future__ import annotations

import torch

from varsec.attacks import (
    INSA,
    AdamStep,
    ClassifierObjective,
    CWL2Step,
    FGSMStep,
    PGDStep,
    run_attack,
)
from varsec.metrics.convergence import converged


def test_pgd_history_has_one_row_per_step_and_rises(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    objective = ClassifierObjective(easy_classifier, labels)
    result = run_attack(objective, images, PGDStep(eps=8, alpha=1, steps=12, random_start=False),
                        early_stop=False)
    history = result.history
    assert history is not None and history.shape == (12, len(images))
    assert history.dtype == torch.float32 and history.device.type == "cpu"
    # row 0 is the objective of the clean images (no random start), as evaluate() gives it
    torch.testing.assert_close(history[0], objective.evaluate(images), rtol=1e-5, atol=1e-5)
    mean = history.mean(1)
    assert bool((mean[1:] >= mean[:-1] - 1e-6).all()), mean  # a fixed convex model: ascent
    assert float(mean[-1]) > float(mean[0])


def test_history_rows_of_images_that_stop_early_keep_their_last_value(easy_classifier,
                                                                      fmnist_batch):
    images, labels = fmnist_batch
    objective = ClassifierObjective(easy_classifier, labels)
    result = run_attack(objective, images, PGDStep(eps=16, alpha=2, steps=10), early_stop=True)
    stopped = torch.nonzero(result.steps < 10).flatten()
    assert len(stopped) > 0, "the test needs images that stop early"
    for i in stopped.tolist():
        taken = int(result.steps[i])
        column = result.history[:, i]
        assert bool((column[taken - 1:] == column[taken - 1]).all())


def test_history_spans_batches_in_image_order(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    objective = ClassifierObjective(easy_classifier, labels)
    rule = PGDStep(eps=8, steps=4, random_start=False)
    whole = run_attack(objective, images, rule, early_stop=False, batch_size=64)
    split = run_attack(objective, images, rule, early_stop=False, batch_size=10)
    assert split.history.shape == (4, 32)
    torch.testing.assert_close(split.history, whole.history, rtol=1e-5, atol=1e-5)


def test_the_same_seed_gives_the_same_history(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    objective = ClassifierObjective(easy_classifier, labels)
    result = run_attack(objective, images, PGDStep(eps=8, steps=3), seed=3)
    again = run_attack(objective, images, PGDStep(eps=8, steps=3), seed=3)
    assert torch.equal(result.images, again.images)
    assert torch.equal(result.history, again.history)


def test_fgsm_records_its_single_step(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    result = run_attack(ClassifierObjective(easy_classifier, labels), images, FGSMStep(eps=8))
    assert result.history.shape == (1, 32)
    check = converged(result.history.mean(1).numpy())
    assert check.converged and check.no_gain  # one point: nothing to judge


def test_adam_insa_history_rises(ranker, simulated):
    cold = torch.as_tensor(simulated.cold_items[:6])
    images = torch.as_tensor(simulated.catalog.images[cold.numpy()])
    result = run_attack(INSA(ranker), images, AdamStep(eps=16, lr=1, steps=15), seed=0)
    mean = result.history.mean(1)
    assert result.history.shape == (15, 6)
    assert float(mean[-1]) > float(mean[0])


def test_cw_records_every_round_as_minus_its_penalised_loss(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    objective = ClassifierObjective(easy_classifier, labels)
    rule = CWL2Step(c=1.0, steps=8, lr=0.05, binary_search_steps=2)
    result = run_attack(objective, images[:8], rule)
    assert result.history.shape == (16, 8)
    # a round starts at (almost) the clean image: minus c * f(clean), no distance yet
    clean_f = objective.cw_loss(images[:8].float() / 255, torch.arange(8)).detach()
    torch.testing.assert_close(result.history[0], -clean_f, rtol=1e-3, atol=1e-3)
    assert float(result.history[7].mean()) > float(result.history[0].mean())
