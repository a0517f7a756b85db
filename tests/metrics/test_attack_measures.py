"""Attack measures against hand-computed values: prediction shift, AIP hit rates in the
two-stage set, oracle ranks, classifier success, feature loss, CHR, item-to-item, poisoning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from varsec.errors import ConfigError
from varsec.metrics.attack import (
    aip_measures_from_scores,
    attacked_scorer,
    chr_before_after,
    classifier_success_rate,
    feature_loss,
    item_to_item_ranks,
    oracle_rank_measures,
    poisoning_measures,
    prediction_shift,
    random_item_pairs,
    success_at_rank_min,
)
from varsec.metrics.ranking import chr_at_k
from varsec.recsys.two_stage import CandidateSets


def test_prediction_shift_by_hand():
    before = np.array([[1.0, 2.0], [3.0, 5.0], [0.0, 0.0]])
    after = np.array([[2.0, 2.0], [3.0, 8.0], [3.0, -3.0]])
    delta, delta_cold = prediction_shift(before, after)
    assert delta.tolist() == pytest.approx([4 / 3, 0.0])  # mean_u (p' - p), 000 eq 4
    assert delta_cold == pytest.approx(2 / 3)
    with pytest.raises(ConfigError, match="differ in shape"):
        prediction_shift(before, after[:2])


@pytest.fixture()
def sets():
    """Two users, K = 3 candidates each, and a test item."""
    return CandidateSets(
        users=torch.tensor([0, 1]),
        candidates=torch.tensor([[10, 11, 12], [10, 13, 14]]),
        test_items=torch.tensor([20, 21]),
        candidate_scores=torch.tensor([[5.0, 3.0, 1.0], [4.0, 4.0, 0.0]], dtype=torch.float64),
        test_scores=torch.tensor([2.0, 1.0], dtype=torch.float64),
    )


def test_aip_hit_rates_in_the_two_stage_set_by_hand(sets):
    coop = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    adv = torch.tensor([[4.0], [4.0]], dtype=torch.float64)
    m = aip_measures_from_scores(sets, coop, adv, items=["cold-a"], ks=(1, 2, 3))
    # user 0 ranks 5, 3, 2 (test), 1 | coop 0 -> rank 5; adv 4 -> rank 2
    # user 1 ranks 4, 4, 1 (test), 0 | coop 2 -> rank 3; adv 4 ties the two 4s: ranks 1-3, mean 2
    row = m.items.iloc[0]
    assert row["item"] == "cold-a"
    assert row["delta"] == pytest.approx(3.0)
    assert row["rank_coop"] == pytest.approx((5 + 3) / 2)
    assert row["rank_adv"] == pytest.approx((2 + 2) / 2)
    assert row["HR@1_adv"] == pytest.approx((0 + 1 / 3) / 2)
    assert row["HR@2_adv"] == pytest.approx((1 + 2 / 3) / 2)
    assert row["HR@3_coop"] == pytest.approx((0 + 1) / 2)
    # the test item: user 0 rank 3 alone/with coop, 4 with adv; user 1 rank 3 alone, 4 with either
    assert m.value("HR_test_original", 3) == pytest.approx(1.0)
    assert m.value("HR_test_with_coop", 3) == pytest.approx(0.5)
    assert m.value("HR_test_with_adv", 3) == pytest.approx(0.0)
    assert m.value("delta_HR_test", 3) == pytest.approx(-0.5)
    assert m.value("delta_HR_test_vs_original", 3) == pytest.approx(-1.0)
    assert m.value("delta_HR_cold", 2) == pytest.approx((1 + 2 / 3) / 2 - 0.0)
    assert m.value("delta_cold") == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="no single summary value"):
        m.value("HR_cold_adv")


def test_oracle_deserved_vs_achieved_rank_by_hand():
    oracle = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    coop = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    adv = np.array([[5.0, 0.0, 2.5], [0.5, 3.0, 3.5]])
    frame = oracle_rank_measures(oracle, coop, adv)
    # item 0: deserved ranks 1 and 3 -> 2; coop ranks 3 and 3; adv beats the coop versions of
    # items 1, 2 for user 0 (rank 1) and loses to both for user 1 (rank 3).
    # item 1: adv 0.0 is last for user 0 (rank 3); adv 3.0 ties item 2's coop 3.0 for user 1
    # (rank 1.5), so 2.25 on average.
    assert frame["rank_deserved"].tolist() == pytest.approx([2.0, 2.0, 2.0])
    assert frame["rank_coop"].tolist() == pytest.approx([3.0, 2.0, 1.0])
    assert frame["rank_adv"].tolist() == pytest.approx([2.0, 2.25, 1.0])
    assert frame["rank_gain"].tolist() == pytest.approx([0.0, -0.25, 1.0])
    tied = oracle_rank_measures(np.ones((1, 3)), coop[:1], coop[:1])
    assert tied["rank_deserved"].tolist() == pytest.approx([2.0, 2.0, 2.0])


class _Threshold(nn.Module):
    """Class 1 when the first pixel is brighter than the second, else class 0."""

    def forward(self, x):
        flat = x.flatten(1)
        return torch.stack([flat[:, 1], flat[:, 0]], 1)


def test_classifier_success_rate_and_feature_loss_by_hand():
    images = torch.tensor([[[[200, 10]]], [[[10, 200]]], [[[90, 80]]], [[[0, 5]]]],
                          dtype=torch.uint8)
    model = _Threshold()
    assert classifier_success_rate(model, images, labels=[1, 1, 1, 1]) == pytest.approx(0.5)
    assert classifier_success_rate(model, images, target=0) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="give the true labels"):
        classifier_success_rate(model, images)
    with pytest.raises(ConfigError, match="quantise adversarial images"):
        classifier_success_rate(model, images.float(), labels=[0] * 4)
    moved = images.clone()
    moved[0, 0, 0, 0] = 100
    losses = feature_loss(lambda x: x.flatten(1) * 255, images, moved)
    assert losses.tolist() == pytest.approx([100**2 / 2, 0, 0, 0])


def test_chr_before_after_equals_chr_at_k():
    categories = np.array([0, 0, 1, 1, 2])
    before = torch.tensor([[5.0, 4, 3, 2, 1], [1.0, 2, 3, 4, 5]])
    after = torch.tensor([[1.0, 2, 5, 4, 3], [5.0, 4, 3, 2, 1]])
    frame = chr_before_after(lambda u: before[u], lambda u: after[u], 2, categories, 1, 0, k=2)
    lookup = frame.set_index(["role", "when"])
    assert lookup.loc[("source", "before"), "count"] == pytest.approx(0.5)
    assert lookup.loc[("source", "after"), "count"] == pytest.approx(1.0)
    assert lookup.loc[("target", "after"), "chr"] == pytest.approx(
        chr_at_k(lambda u: after[u], 2, categories, 0, 2)[0])


def test_random_pairs_are_seeded_and_cross_category():
    categories = np.repeat([0, 1, 2], 20)
    pairs = random_item_pairs(categories, 500, seed=3)
    assert pairs.shape == (500, 2)
    assert (categories[pairs[:, 0]] != categories[pairs[:, 1]]).all()
    assert np.array_equal(pairs, random_item_pairs(categories, 500, seed=3))
    assert not np.array_equal(pairs, random_item_pairs(categories, 500, seed=4))
    with pytest.raises(ConfigError, match="at least two categories"):
        random_item_pairs(np.zeros(5), 3)


def test_item_to_item_rank_and_success_at_rank_min_by_hand():
    angles = np.deg2rad([0, 10, 20, 30, 90])
    features = np.stack([np.cos(angles), np.sin(angles)], 1)
    # target 0; attacker 4 (90 deg) moved to 15 deg: beats items 3 (30) and loses to 1 (10)
    adv = np.array([[np.cos(np.deg2rad(15)), np.sin(np.deg2rad(15))]])
    ranks = item_to_item_ranks(features, [0], [4], adv)
    assert ranks.tolist() == pytest.approx([2.0])
    unchanged = item_to_item_ranks(features, [0], [4], features[[4]])
    assert unchanged.tolist() == pytest.approx([4.0])
    table = success_at_rank_min([1, 2, 4, 150], rank_mins=(1, 3, 10, 100))
    assert table["success_rate"].tolist() == pytest.approx([0.25, 0.5, 0.75, 0.75])
    assert table["n"].tolist() == [4, 4, 4, 4]


class _LinearVisual:
    """score(u, i) = b_i + u_vec · f(x_i) with f(x) = sum of pixels (one feature)."""

    device = torch.device("cpu")

    def __init__(self, images: torch.Tensor) -> None:
        self.user = torch.tensor([[1.0], [-1.0]])
        self.bias = torch.tensor([0.0, 1.0, 2.0])
        self.features = self.image_features(images.float() / 255)

    def image_features(self, x):
        return x.flatten(1).sum(1, keepdim=True)

    def score_features(self, users, features):
        return self.user[users] @ features.T

    def score(self, users):
        return self.bias + self.score_features(users, self.features)


def test_attacked_scorer_and_poisoning_measures():
    images = torch.tensor([[[[0]]], [[[51]]], [[[102]]]], dtype=torch.uint8)
    model = _LinearVisual(images)
    adv = torch.tensor([[[[153]]]], dtype=torch.uint8)
    score = attacked_scorer(model, [1], images[[1]], adv)
    users = torch.tensor([0, 1])
    expected = model.score(users).clone()
    expected[:, 1] += torch.tensor([0.4, -0.4])  # (153 - 51) / 255 times the user vector
    assert torch.allclose(score(users), expected)
    same = poisoning_measures(model.score, model.score, 3, [2, 0], ks=(1,), n_negatives=None)
    assert (same["change"] == 0).all() and set(same["metric"]) == {"HR", "NDCG"}
    worse = poisoning_measures(model.score, score, 3, [1, 1], ks=(1,), n_negatives=1)
    hr = worse.set_index(["protocol", "metric"])
    assert hr.loc[("full", "HR"), "clean"] == pytest.approx(0.0)
    assert hr.loc[("full", "HR"), "attacked"] == pytest.approx(0.0)
    assert set(worse["protocol"]) == {"full", "sampled-1"}
