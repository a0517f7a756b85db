"""The per-user BPR objective (002 read per test triplet): clean scores equal the model's, the
image-by-image attack takes the joint attack's sign steps, the attack pushes each user's test
item down and its negatives up, and bad inputs are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from varsec.attacks import FGSMStep, PGDStep, run_attack
from varsec.attacks.bpr_per_user import BPRPerUser, per_user_users
from varsec.attacks.registry import objective_fact, objective_family
from varsec.errors import ConfigError, ModelError
from varsec.metrics.ranking import build_exclusion, evaluate_lists, evaluate_sampled, sampled_lists


def _lists(dataset, users=6, negatives=5, seed=0):
    """A few users' sampled lists: their first test item, then negatives among warm items."""
    test = dataset.part("test")
    tests = np.full(dataset.n_users, -1)
    tests[test.user[:users]] = test.item[:users]
    train = dataset.part("train")
    cold = np.asarray(dataset.cold_items)
    exclude = build_exclusion(np.concatenate([train.user, np.repeat(test.user[:users],
                                                                    len(cold))]),
                              np.concatenate([train.item, np.tile(cold, users)]),
                              dataset.n_users, dataset.n_items)
    return sampled_lists(dataset.n_items, tests, exclude, negatives, seed), tests, exclude


@pytest.fixture(scope="module")
def lists(simulated):
    (users, items), _, _ = _lists(simulated)
    return users.numpy(), items.numpy()


def test_registered_as_a_per_user_ranking_objective():
    assert objective_family("bpr-per-user") == "ranking" == objective_family("bpr")
    assert objective_fact("bpr-per-user", "per_user") is True
    assert objective_fact("bpr", "per_user") is False
    assert objective_fact("nope", "per_user", "absent") == "absent"


def test_clean_scores_are_the_models_and_images_follow_the_lists(ranker, simulated, lists):
    users, items = lists
    objective = BPRPerUser(ranker, simulated, users, items)
    expected = torch.stack([ranker.score(torch.as_tensor([u]))[0, torch.as_tensor(row)]
                            for u, row in zip(users, items, strict=True)])
    assert torch.allclose(objective.clean_scores, expected, atol=1e-5)
    assert torch.allclose(objective.attacked_scores(objective.images), expected, atol=1e-4)
    assert torch.equal(objective.images[7], torch.as_tensor(simulated.catalog.images[items[1, 1]]))


def test_one_image_at_a_time_takes_the_joint_attacks_sign_steps(ranker, simulated, lists):
    """The sign of the gradient of one user's joint loss over its triplets (u, t, n_k), every
    image of the list free, equals the sign of the per-image objective's gradient."""
    users, items = lists
    objective = BPRPerUser(ranker, simulated, users, items)
    width = items.shape[1]
    row = 2
    x = (objective.images[row * width:(row + 1) * width].float() / 255).requires_grad_(True)
    scores = ranker.score_images(torch.as_tensor([users[row]]), x)[0] + objective.offset[row]
    joint = -F.logsigmoid(scores[0] - scores[1:]).sum()
    (joint_grad,) = torch.autograd.grad(joint, x)
    y = x.detach().clone().requires_grad_(True)
    index = torch.arange(row * width, (row + 1) * width)
    (own_grad,) = torch.autograd.grad(objective.loss(y, index).sum(), y)
    assert torch.equal(joint_grad.sign(), own_grad.sign())
    per_image = objective.loss(x.detach(), index)
    assert torch.allclose(per_image[0], joint, atol=1e-5)  # the test image carries every triplet


def test_the_attack_pushes_the_test_item_down_and_the_negatives_up(ranker, simulated):
    (users, items), tests, exclude = _lists(simulated, users=40, negatives=20)
    objective = BPRPerUser(ranker, simulated, users, items)
    clean = objective.attacked_scores(objective.images)
    found = {}
    for name, rule in (("fgsm", FGSMStep(eps=16)),
                       ("pgd", PGDStep(eps=16, steps=5, random_start=False))):
        result = run_attack(objective, objective.images, rule)
        after = objective.attacked_scores(result.images)
        assert (after[:, 0] < clean[:, 0]).float().mean() > 0.9
        assert (after[:, 1:] > clean[:, 1:]).float().mean() > 0.9
        linf = (result.images.int() - objective.images.int()).abs().max()
        assert linf <= 16
        found[name] = evaluate_lists(lambda u, _i, s=after: s[torch.searchsorted(users, u)],
                                     users, items, ks=[5])["HR@5"].mean()
    reference = evaluate_sampled(lambda u, i: ranker.score(u).gather(1, i), simulated.n_items,
                                 tests, exclude, n_negatives=20, ks=[5])
    assert found["pgd"] <= found["fgsm"] < reference["HR@5"].mean()


def test_evaluate_lists_equals_evaluate_sampled_on_its_own_lists(ranker, simulated):
    (users, items), tests, exclude = _lists(simulated, users=30, negatives=10)
    reference = evaluate_sampled(lambda u, i: ranker.score(u).gather(1, i), simulated.n_items,
                                 tests, exclude, n_negatives=10, ks=[1, 5])
    again = evaluate_lists(lambda u, i: ranker.score(u).gather(1, i), users, items, ks=[1, 5])
    for name in ("HR@1", "HR@5", "NDCG@5", "MRR"):
        assert np.array_equal(again[name], reference[name])
    with pytest.raises(ConfigError, match=r"^items must be a users x \(1 \+ n\) matrix"):
        evaluate_lists(lambda u, i: ranker.score(u).gather(1, i), users, items[:, :1])


def test_bad_inputs_are_refused(ranker, first_stage, simulated, lists):
    users, items = lists
    with pytest.raises(ModelError, match="per-user BPR attack needs a visual recommender"):
        BPRPerUser(first_stage, simulated, users, items)
    with pytest.raises(ConfigError, match=r"^lists must be a users x \(1 \+ negatives\) matrix"):
        BPRPerUser(ranker, simulated, users[:2], items)
    with pytest.raises(ConfigError, match=r"^users must be user indices in \[0, 500\)"):
        BPRPerUser(ranker, simulated, users + 1000, items)
    with pytest.raises(ConfigError, match=r"^lists must hold item indices in \[0, 2100\)"):
        BPRPerUser(ranker, simulated, users, items + 5000)
    with pytest.raises(ConfigError, match="^dataset must be a varsec Dataset"):
        BPRPerUser(ranker, simulated.catalog, users, items)
    objective = BPRPerUser(ranker, simulated, users, items)
    with pytest.raises(ConfigError, match="^images must be uint8 of shape"):
        objective.attacked_scores(objective.images[:3])
    with pytest.raises(ConfigError, match="covers 36 list images, got 40 images"):
        objective.check_size(40)


def test_user_sample_is_seeded_sorted_and_all_when_not_smaller():
    users = np.arange(100, 200)
    sample = per_user_users(users, 10, seed=3)
    assert len(sample) == 10 and np.all(np.diff(sample) > 0) and np.isin(sample, users).all()
    assert np.array_equal(sample, per_user_users(users, 10, seed=3))
    assert not np.array_equal(sample, per_user_users(users, 10, seed=4))
    assert np.array_equal(per_user_users(users, None, 0), users)
    assert np.array_equal(per_user_users(users, 500, 0), users)
