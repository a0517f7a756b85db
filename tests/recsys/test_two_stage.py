"""The two-stage pipeline of AIP (000 sec 5.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from varsec.errors import ConfigError
from varsec.recsys import TwoStage


@pytest.fixture(scope="module")
def prepared(fitted, planted):
    pipeline = TwoStage(fitted["bpr"], fitted["vbpr"], k=20)
    return pipeline, pipeline.prepare(planted)


def test_candidate_sets_are_bpr_top_k_of_unseen_warm_items(prepared, planted):
    pipeline, sets = prepared
    assert sets.candidates.shape == (planted.n_users, 20)
    seen = np.isin(planted.split, (0, 1))
    for row, user in enumerate(sets.users.tolist()):
        candidates = set(sets.candidates[row].tolist())
        history = set(planted.interactions.item[seen & (planted.interactions.user == user)])
        assert not candidates & history
        assert not candidates & set(planted.cold_items.tolist())
        assert int(sets.test_items[row]) not in candidates
        allowed = np.setdiff1d(planted.warm_items(), [*history, int(sets.test_items[row])])
        stage1 = pipeline.first_stage.score([user], allowed)[0]
        kth = torch.topk(stage1, 20).values[-1]
        assert pipeline.first_stage.score([user], sets.candidates[row]).min() >= kth


def test_item_sets_contain_the_test_item_and_the_injected_item(prepared, planted):
    _, sets = prepared
    cold = int(planted.cold_items[0])
    lists = sets.item_sets(cold)
    assert lists.shape == (planted.n_users, 22)
    assert torch.equal(lists[:, 20], sets.test_items)
    assert (lists[:, 21] == cold).all()
    per_user = torch.as_tensor(planted.cold_items[: planted.n_users % 20 + 1]).repeat(60)[:60]
    assert torch.equal(sets.item_sets(per_user)[:, 21], per_user)


def test_ranks_match_a_brute_force_reranking(prepared, planted):
    pipeline, sets = prepared
    cold = planted.cold_items[:5]
    ranks = sets.rank_injected(pipeline.score_items(sets, cold))
    for column, item in enumerate(cold.tolist()):
        lists = sets.item_sets(item)
        for row, user in enumerate(sets.users.tolist()):
            scores = pipeline.ranker.score([user], lists[row])[0]
            injected, test = scores[-1], scores[-2]
            assert ranks.higher[row, column] == (scores[:-1] > injected).sum()
            assert ranks.tied[row, column] == (scores[:-1] == injected).sum()
            others = torch.cat([scores[:-2], scores[-1:]])
            assert ranks.test_higher[row, column] == (others > test).sum()
    first_user_scores = pipeline.ranker.score([int(sets.users[0])], sets.item_sets(cold[0])[0])
    order = torch.argsort(first_user_scores[0], descending=True)
    assert ranks.expected_rank[0, 0] == 1 + int(torch.nonzero(order == 21)[0])


def test_prepared_scores_are_computed_once_and_injection_costs_one_score_per_user(
    fitted, planted
):
    calls = []

    class Counting:
        def __init__(self, model):
            self.model = model

        def __getattr__(self, name):
            return getattr(self.model, name)

        def score(self, users, items=None):
            calls.append((len(users), None if items is None else len(items)))
            return self.model.score(users, items)

    pipeline = TwoStage(fitted["bpr"], fitted["vbpr"], k=10)
    pipeline.ranker = Counting(fitted["vbpr"])
    sets = pipeline.prepare(planted)
    assert calls == [(planted.n_users, None)]
    calls.clear()
    scores = pipeline.score_items(sets, planted.cold_items)
    assert calls == [(planted.n_users, len(planted.cold_items))]
    assert sets.rank_injected(scores).higher.shape == (planted.n_users, len(planted.cold_items))


def test_hit_rates_and_expected_ranks_with_ties(prepared):
    _, sets = prepared
    tie = sets.candidate_scores[:, :1].clone()  # ties with each user's first candidate
    ranks = sets.rank_injected(tie.squeeze(1))
    assert (ranks.tied >= 1).all()
    hit = ranks.hit(1)
    assert ((hit == 0) | (hit <= 0.5)).all()
    assert torch.equal(ranks.hit(22), torch.ones_like(hit))


def test_images_enter_through_the_ranker_with_gradients(prepared, planted):
    pipeline, sets = prepared
    images = torch.as_tensor(planted.catalog.images[planted.cold_items[:2]]).float() / 255
    images.requires_grad_(True)
    scores = pipeline.score_images(sets, images)
    scores.mean().backward()
    assert images.grad.abs().sum() > 0
    torch.testing.assert_close(scores.detach(), pipeline.score_items(sets, planted.cold_items[:2]),
                               atol=0.05, rtol=0.05)


def test_bad_two_stage_input(fitted, planted):
    with pytest.raises(ConfigError, match="two-stage k=81 is larger than the 80 warm items of "
                                          "catalog 'planted'"):
        TwoStage(fitted["bpr"], fitted["vbpr"], k=81).prepare(planted)
    with pytest.raises(ConfigError, match=r"two-stage k=75 exceeds the \d+ unseen warm items"):
        TwoStage(fitted["bpr"], fitted["vbpr"], k=75).prepare(planted)
    for k in (0, -3, 2.5):
        with pytest.raises(ConfigError, match=f"two-stage k must be a positive integer, got {k}"):
            TwoStage(fitted["bpr"], fitted["vbpr"], k=k)
    pipeline = TwoStage(fitted["bpr"], fitted["vbpr"], k=5)
    sets = pipeline.prepare(planted, users=[0, 1])
    for n in (0, -1):
        with pytest.raises(ConfigError, match=f"N must be a positive integer, got {n}"):
            sets.rank_injected(torch.zeros(2)).hit(n)
    with pytest.raises(ConfigError, match=r"injected scores must have shape \(2,\) or \(2, C\)"):
        sets.rank_injected(torch.zeros(3))
