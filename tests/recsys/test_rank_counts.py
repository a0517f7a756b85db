"""The rank-counting kernel of varsec.recsys.ranking against naive counts and hand values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from varsec.errors import ModelError
from varsec.metrics.ranking import evaluate_full
from varsec.recsys.ranking import (
    build_exclusion,
    count_beaten,
    full_rank_counts,
    hit_probability,
    pair_counts,
)


def _naive(scores: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (scores > x[:, None]).sum(1), (scores == x[:, None]).sum(1)


# widths around the kernel's 2040-cell word groups, rows around its row blocks
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (5, 2040), (4, 2041), (130, 2100), (2, 9000)])
def test_count_beaten_equals_naive_counts_with_many_ties(shape):
    rng = np.random.default_rng(sum(shape))
    scores = rng.integers(0, 5, size=shape).astype(np.float32)
    x = scores[np.arange(shape[0]), rng.integers(0, shape[1], size=shape[0])]
    higher, equal = count_beaten(torch.from_numpy(scores), torch.from_numpy(x))
    expected_higher, expected_equal = _naive(scores, x)
    np.testing.assert_array_equal(higher.numpy(), expected_higher)
    np.testing.assert_array_equal(equal.numpy(), expected_equal)
    assert higher.dtype == equal.dtype == torch.long


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_count_beaten_other_dtypes_and_strided_views(dtype):
    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.integers(-3, 3, size=(300, 40)).astype(np.float64)).to(dtype)
    scores = base.T[:, ::3]  # a non-contiguous [40, 100] view
    x = scores[:, 5]
    higher, equal = count_beaten(scores, x)
    expected_higher, expected_equal = _naive(scores.double().numpy(), x.double().numpy())
    np.testing.assert_array_equal(higher.numpy(), expected_higher)
    np.testing.assert_array_equal(equal.numpy(), expected_equal)


def test_count_beaten_infinite_scores_and_nan():
    scores = torch.tensor([[-np.inf, 0.0, np.inf], [1.0, -np.inf, -np.inf]])
    higher, equal = count_beaten(scores, torch.tensor([0.0, -np.inf]))
    assert higher.tolist() == [1, 1] and equal.tolist() == [1, 2]
    scores[1, 2] = float("nan")
    with pytest.raises(ModelError, match=r"the scorer returned NaN scores for the user in row 1"):
        count_beaten(scores, torch.tensor([0.0, 1.0]))


def test_pair_counts_remove_excluded_items_by_hand():
    # row 0: test item 2 (0.5); items 0 (0.9, excluded) and 1 (0.8) above, item 3 tied, item 4
    # (0.5, excluded) tied. row 1: test items 0 and 3 (both 0.7), item 1 (0.9) above.
    scores = torch.tensor([[0.9, 0.8, 0.5, 0.5, 0.5], [0.7, 0.9, 0.1, 0.7, 0.2]])
    rows, cols = torch.tensor([0, 1, 1]), torch.tensor([2, 0, 3])
    excluded = (torch.tensor([0, 0]), torch.tensor([0, 4]))  # (pair, item)
    x, higher, ties, test_higher, test_ties = pair_counts(scores, rows, cols, excluded)
    assert x.tolist() == pytest.approx([0.5, 0.7, 0.7])
    assert higher.tolist() == [1, 1, 1]
    assert ties.tolist() == [1, 1, 1]
    assert test_higher.tolist() == [0, 0, 0] and test_ties.tolist() == [0, 1, 1]


def test_hit_probability_is_the_tie_expectation():
    higher = torch.tensor([0.0, 8.0, 9.0, 12.0, 10.0])
    ties = torch.tensor([0.0, 3.0, 3.0, 0.0, 0.0])
    # ranks {0}, {8..11}, {9..12}, {12}, {10}: P(rank < 10) = 1, 2/4, 1/4, 0, 0
    assert hit_probability(10, higher, ties).tolist() == [1.0, 0.5, 0.25, 0.0, 0.0]


def test_full_rank_counts_give_evaluate_fulls_hit_rate():
    rng = np.random.default_rng(3)
    n_users, n_items = 70, 300
    scores = torch.from_numpy(rng.integers(0, 40, size=(n_users, n_items)).astype(np.float32))
    seen_users = np.repeat(np.arange(n_users), 8)
    seen_items = rng.integers(0, n_items, size=seen_users.size)
    exclude = build_exclusion(seen_users, seen_items, n_users, n_items)
    tests = torch.full((n_users,), -1, dtype=torch.long)
    for user in range(0, n_users, 2):  # every other user has a test item
        allowed = np.setdiff1d(np.arange(n_items), seen_items[seen_users == user])
        tests[user] = int(rng.choice(allowed))
    users, higher, ties = full_rank_counts(lambda u: scores[u], tests, exclude, chunk_size=16)
    result = evaluate_full(lambda u: scores[u], n_items, tests, exclude, ks=(10,))
    np.testing.assert_array_equal(users.numpy(), result.users)
    np.testing.assert_array_equal(higher.numpy(), result.n_higher)
    np.testing.assert_array_equal(ties.numpy(), result.n_tied)
    np.testing.assert_allclose(hit_probability(10, higher.double(), ties.double()).numpy(),
                               result["HR@10"], rtol=0, atol=1e-15)
    assert (ties > 0).sum() > 10  # the data exercised ties
