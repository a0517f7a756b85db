"""AlexRank and visual item-kNN against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from recsys_helpers import tiny_dataset

from varsec.errors import ConfigError
from varsec.recsys import AlexRank, VisualKNN, cosine_topk


def test_alexrank_is_minus_the_mean_squared_distance_to_the_history():
    # items 0-2 warm, 3 cold; user 0 saw {0, 1}, user 1 saw {2}
    dataset = tiny_dataset(
        features=[[0, 0], [1, 0], [0, 2], [3, 4]],
        train={0: [0, 1], 1: [2]},
        test={0: 2, 1: 0},
        cold=[3],
    )
    model = AlexRank().fit(dataset)
    expected = torch.tensor([
        [-0.5, -0.5, -(4 + 5) / 2, -(25 + 20) / 2],  # e.g. item 2: |(0,2)|² = 4, |(-1,2)|² = 5
        [-4.0, -5.0, 0.0, -13.0],
    ])
    torch.testing.assert_close(model.score([0, 1]), expected)
    new_item = torch.tensor([[1.0, 1.0]])  # distances² to items 0, 1: 2 and 1
    torch.testing.assert_close(model.score_features([0], new_item), torch.tensor([[-1.5]]))


def test_alexrank_history_may_include_validation():
    dataset = tiny_dataset(features=[[0.0], [2.0], [5.0]], train={0: [0]}, test={0: 2}, cold=[])
    dataset.split[dataset.split == 2] = 1  # make the held-out item a validation item
    with_validation = AlexRank(history="train+validation").fit(dataset)
    torch.testing.assert_close(with_validation.score([0], [1]), torch.tensor([[-(4 + 9) / 2]]))


def angle(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


@pytest.fixture
def knn_dataset():
    # warm items at 0°, 30°, 90°, 160°; cold item 4 at -45°
    return tiny_dataset(
        features=[angle(0), angle(30), angle(90), angle(160), angle(-45)],
        train={0: [0, 2], 1: [3]},
        test={0: 1, 1: 2},
        cold=[4],
    )


C30, C60, C70, C130, C45, C75 = (math.cos(math.radians(d)) for d in (30, 60, 70, 130, 45, 75))


def test_knn_neighbours_by_hand(knn_dataset):
    model = VisualKNN(neighbours=2).fit(knn_dataset)
    items, similarity = model.neighbours(query_items=[0, 4], k=3)
    assert items.tolist() == [[1, 4, 2], [0, 1, 2]]
    torch.testing.assert_close(similarity, torch.tensor([[C30, C45, 0.0], [C45, C75, -C45]]))
    warm_only, _ = model.neighbours(query_items=[0], k=2, include_cold=False)
    assert warm_only.tolist() == [[1, 2]]
    by_features, _ = model.neighbours(query_features=torch.tensor([angle(85)]), k=2)
    assert by_features.tolist() == [[2, 1]]


def test_knn_user_scores_by_hand(knn_dataset):
    # N_2: item 0 -> {1, 2}, 1 -> {0, 2}, 2 -> {1, 3}, 3 -> {2, 1}, cold 4 -> {0, 1}
    model = VisualKNN(neighbours=2).fit(knn_dataset)
    expected = torch.tensor([
        [0.0, C30 + C60, 0.0, C70, C45],  # user 0 saw {0, 2}
        [0.0, 0.0, C70, 0.0, 0.0],  # user 1 saw {3}
    ])
    torch.testing.assert_close(model.score([0, 1]), expected)
    torch.testing.assert_close(model.score([1, 0, 1], [4, 1]), expected[[1, 0, 1]][:, [4, 1]])
    cold_features = torch.tensor([angle(-45)])
    torch.testing.assert_close(model.score_features([0, 1], cold_features), expected[:, [4]])


def test_knn_rejects_too_many_neighbours(knn_dataset):
    with pytest.raises(ConfigError, match=r"neighbours \(4\) must be smaller than the 4 warm"):
        VisualKNN(neighbours=4).fit(knn_dataset)
    model = VisualKNN(neighbours=2).fit(knn_dataset)
    with pytest.raises(ConfigError, match="k=5 exceeds the 4 other candidate items"):
        model.neighbours(query_items=[0], k=5)
    with pytest.raises(ConfigError, match="k must be a positive integer, got 0"):
        model.neighbours(query_items=[0], k=0)
    with pytest.raises(ConfigError, match="give exactly one of query_items and query_features"):
        model.neighbours(k=1)


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_chunked_cosine_topk_matches_brute_force(chunk_size):
    generator = torch.Generator().manual_seed(0)
    items = torch.nn.functional.normalize(torch.randn(300, 12, generator=generator), dim=1)
    queries = items[:50]
    indices, similarity = cosine_topk(queries, items, 5, exclude=torch.arange(50),
                                      chunk_size=chunk_size)
    full = queries @ items.T
    full[torch.arange(50), torch.arange(50)] = -np.inf
    expected = torch.topk(full, 5, dim=1)
    assert torch.equal(indices, expected.indices)
    torch.testing.assert_close(similarity, expected.values)
