"""INSA as AIP runs it: epochs over user minibatches, one Adam step per minibatch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from varsec.attacks import INSA, AdamStep, catalog_pixels, run_attack
from varsec.errors import ConfigError


@pytest.fixture(scope="module")
def cold(simulated):
    items = np.asarray(simulated.cold_items[:6])
    return catalog_pixels(simulated, items)


class _Counting(INSA):
    """INSA that records the users of every gradient evaluation."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[torch.Tensor] = []

    def loss(self, x, index):
        self.seen.append(self.step_users().clone())
        return super().loss(x, index)


def test_steps_are_epochs_times_user_minibatches(ranker, cold):
    objective = _Counting(ranker, users_per_step=64, seed=3)
    users = len(objective.users)
    per_epoch = math.ceil(users / 64)
    assert objective.batches_per_epoch() == per_epoch
    epochs = 2
    steps = objective.optimizer_steps(epochs)
    assert steps == epochs * per_epoch
    run_attack(objective, cold, AdamStep(eps=8, lr=1.0, steps=steps), early_stop=False,
               report_success=False, batch_size=len(cold))
    assert len(objective.seen) == steps  # one gradient (one Adam step) per minibatch
    for epoch in range(epochs):  # every epoch covers each user exactly once
        batch = objective.seen[epoch * per_epoch:(epoch + 1) * per_epoch]
        assert [len(b) for b in batch[:-1]] == [64] * (per_epoch - 1)
        covered = torch.cat(batch).sort().values
        assert torch.equal(covered, objective.users.sort().values)
    first, second = objective.seen[:per_epoch], objective.seen[per_epoch:]
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=True))  # reshuffled


def test_the_schedule_is_the_same_for_every_image_batch(ranker, cold):
    def attack(batch_size):
        objective = INSA(ranker, users_per_step=100, seed=1)
        rule = AdamStep(eps=16, lr=2.0, steps=objective.optimizer_steps(2))
        return run_attack(objective, cold, rule, batch_size=batch_size).images

    assert torch.equal(attack(len(cold)), attack(2))


def test_epoch_attack_stays_in_the_ball_and_raises_the_objective(ranker, cold):
    objective = INSA(ranker, users_per_step=128, seed=0)
    rule = AdamStep(eps=8, lr=1.0, steps=objective.optimizer_steps(3))
    result = run_attack(objective, cold, rule)
    assert result.images.dtype == torch.uint8
    moved = (result.images.int() - cold.int()).abs().amax()
    assert 0 < int(moved) <= 8  # quantised, inside eps, and not a no-op
    assert bool((objective.evaluate(result.images) > objective.evaluate(cold)).all())


def test_without_minibatches_an_epoch_is_one_step(ranker):
    objective = INSA(ranker)
    assert objective.batches_per_epoch() == 1
    assert objective.optimizer_steps(5) == 5
    assert INSA(ranker, users_per_step=10**6).optimizer_steps(5) == 5


@pytest.mark.parametrize("epochs", [0, -1, 2.5, True])
def test_bad_epochs_are_config_errors(ranker, epochs):
    with pytest.raises(ConfigError, match="INSA epochs must be an integer >= 1"):
        INSA(ranker, users_per_step=64).optimizer_steps(epochs)
