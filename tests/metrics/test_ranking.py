"""Ranking metrics against hand-computed values, brute-force enumeration and a naive reference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse
import torch

from varsec.errors import ConfigError, ModelError
from varsec.metrics import (
    RankingResult,
    UserItems,
    build_exclusion,
    chr_at_k,
    evaluate_full,
    evaluate_sampled,
    sample_negatives,
    topk,
)

L3, L5, L6 = math.log2(3), math.log2(5), math.log2(6)

# 4 users x 6 items. Scores are exact binary fractions or shared literals, so ties are exact.
SCORES = torch.tensor(
    [
        [0.9, 0.8, 0.5, 0.5, 0.5, 0.1],  # user 0: test item 2, tied with items 3 and 4
        [0.2, 0.9, 0.7, 0.3, 0.95, 0.1],  # user 1: test item 3; items 1, 4 are training items
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # user 2: no test item
        [0.4, 0.4, 0.4, 0.4, 0.4, 0.4],  # user 3: test item 0, everything tied; item 5 excluded
    ],
    dtype=torch.float64,
)
TEST = [2, 3, -1, 0]
EXCLUDE_USERS, EXCLUDE_ITEMS = [1, 1, 3], [1, 4, 5]
KS = (1, 3, 5)

# Hand computation (rank r is 0-based and uniform over the tie positions):
# user 0: h = 2 (items 0, 1), t = 2 (items 3, 4) -> r in {2, 3, 4}; 5 negatives, 1 below.
# user 1: candidates {0, 2, 3, 5}; h = 1 (item 2, 0.7), t = 0 -> r = 1; negatives {0, 2, 5}.
# user 3: candidates {0..4}; h = 0, t = 4 -> r in {0, ..., 4}; every negative tied.
EXPECTED = {
    "HR@1": [0.0, 0.0, 1 / 5],
    "HR@3": [1 / 3, 1.0, 3 / 5],  # user 0: only r = 2 < 3 out of {2, 3, 4}
    "HR@5": [1.0, 1.0, 1.0],
    "NDCG@1": [0.0, 0.0, 1 / 5],  # user 3: r = 0 with probability 1/5, gain 1/log2(2) = 1
    "NDCG@3": [(1 / 2) / 3, 1 / L3, (1 + 1 / L3 + 1 / 2) / 5],  # user 0: 1/log2(4) at r = 2
    "NDCG@5": [(1 / 2 + 1 / L5 + 1 / L6) / 3, 1 / L3, (1 + 1 / L3 + 1 / 2 + 1 / L5 + 1 / L6) / 5],
    "Recall@1": [0.0, 0.0, 1 / 5],
    "Recall@3": [1 / 3, 1.0, 3 / 5],
    "Recall@5": [1.0, 1.0, 1.0],
    # user 0: (1/3 + 1/4 + 1/5) / 3 = 47/180; user 3: (1 + 1/2 + 1/3 + 1/4 + 1/5) / 5 = 137/300
    "MRR": [47 / 180, 1 / 2, 137 / 300],
    # user 0: (1 below + 0.5 * 2 tied) / 5; user 1: items 0, 5 below, item 2 above -> 2/3;
    # user 3: 4 ties -> 0.5
    "AUC": [2 / 5, 2 / 3, 1 / 2],
}


def score_fn(users: torch.Tensor) -> torch.Tensor:
    return SCORES[users]


@pytest.fixture
def exclusion() -> UserItems:
    return build_exclusion(EXCLUDE_USERS, EXCLUDE_ITEMS, 4, 6)


@pytest.fixture
def hand_result(exclusion: UserItems) -> RankingResult:
    return evaluate_full(score_fn, 6, TEST, exclusion, ks=KS)


# ----------------------------------------------------------------------------- full ranking


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_full_ranking_matches_hand_values(hand_result: RankingResult, name: str) -> None:
    np.testing.assert_allclose(hand_result[name], EXPECTED[name], rtol=1e-12, atol=1e-15)


def test_full_ranking_skips_and_counts_users_without_test_item(hand_result):
    assert hand_result.users.tolist() == [0, 1, 3]
    assert hand_result.n_users == 3 and hand_result.n_skipped == 1
    assert hand_result.n_higher.tolist() == [2, 1, 0]
    assert hand_result.n_tied.tolist() == [2, 0, 4]
    np.testing.assert_allclose(hand_result.expected_rank, [3.0, 1.0, 2.0])  # h + t / 2


def test_excluded_training_items_would_otherwise_outrank(hand_result):
    plain = evaluate_full(score_fn, 6, TEST, None, ks=KS)
    # without exclusion items 4 (0.95), 1 (0.9) and 2 (0.7) beat user 1's test item: r = 3
    assert plain["HR@3"][1] == 0.0 and hand_result["HR@3"][1] == 1.0
    assert plain["MRR"][1] == pytest.approx(1 / 4)
    assert plain["AUC"][1] == pytest.approx(2 / 5)  # items 0, 5 below out of 5 negatives


def test_summary_and_tidy_frame(hand_result):
    summary = hand_result.summary()
    assert list(summary)[:3] == ["HR@1", "HR@3", "HR@5"] and list(summary)[-2:] == ["MRR", "AUC"]
    assert summary["MRR"] == pytest.approx((47 / 180 + 1 / 2 + 137 / 300) / 3)
    frame = hand_result.to_frame(protocol="full-test")
    assert list(frame.columns) == ["protocol", "metric", "k", "value", "n"]
    assert len(frame) == 3 * 3 + 2 and set(frame["protocol"]) == {"full-test"}
    row = frame[(frame.metric == "NDCG") & (frame.k == 3)].iloc[0]
    assert row.value == pytest.approx(np.mean(EXPECTED["NDCG@3"])) and row.n == 3
    assert frame[frame.metric == "AUC"]["k"].isna().all()


def test_multiple_test_items_hand_values():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0.9, 0.5, 0.5, 0.5, 0.1, 0.0]])
    result = evaluate_full(lambda u: scores[u], 6, [[1, 3], [1, 2]], ks=(1, 2, 4))
    # user 0: test items at ranks 1 and 3 -> Recall@2 = 1/2, Recall@4 = 1, first hit at rank 1.
    # user 1: item 0 above; tests 1, 2 tie with negative 3 -> each test rank uniform on {1, 2, 3};
    #   first test position F = 1 + p, p = 1 only if item 3 is first of the three (prob 1/3).
    ideal = 1 + 1 / L3  # two relevant items
    expected = {
        "HR@1": [0.0, 0.0],
        "HR@2": [1.0, 2 / 3],
        "Recall@2": [1 / 2, (1 / 3 + 1 / 3) / 2],
        "Recall@4": [1.0, 1.0],
        "NDCG@2": [(1 / L3) / ideal, 2 * (1 / L3) / 3 / ideal],
        "NDCG@4": [(1 / L3 + 1 / L5) / ideal, 2 * (1 / L3 + 1 / 2 + 1 / L5) / 3 / ideal],
        "MRR": [1 / 2, 2 / 3 * 1 / 2 + 1 / 3 * 1 / 3],
        # user 0: item 1 beats {2, 4, 5} of 4 negatives, item 3 beats {4, 5};
        # user 1: each test item: 1 above, 1 tied, 2 below -> 2.5 / 4
        "AUC": [(3 / 4 + 2 / 4) / 2, 5 / 8],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(result[name], values, rtol=1e-12, err_msg=name)
    assert result.n_test.tolist() == [2, 2]
    np.testing.assert_allclose(result.expected_rank, [1.0, 1 + 1 / 3])


def _brute_force(scores, tests, excluded, k_values):
    """Average every metric over all tie-breaking orders of the candidates."""
    n = scores.size
    candidates = [i for i in range(n) if i not in excluded]
    negatives = [i for i in candidates if i not in tests]
    sums = dict.fromkeys([f"{m}@{k}" for m in ("HR", "NDCG", "Recall") for k in k_values], 0.0)
    sums["MRR"] = 0.0
    perms = list(itertools.permutations(candidates))
    for perm in perms:
        order = sorted(candidates, key=lambda i: (-scores[i], perm.index(i)))
        ranks = sorted(order.index(t) for t in tests)
        for k in k_values:
            hits = [r for r in ranks if r < k]
            ideal = sum(1 / math.log2(r + 2) for r in range(min(k, len(tests))))
            sums[f"HR@{k}"] += float(bool(hits))
            sums[f"Recall@{k}"] += len(hits) / len(tests)
            sums[f"NDCG@{k}"] += sum(1 / math.log2(r + 2) for r in hits) / ideal
        sums["MRR"] += 1 / (ranks[0] + 1)
    values = {name: total / len(perms) for name, total in sums.items()}
    pairs = [(t, j) for t in tests for j in negatives]
    values["AUC"] = sum((scores[t] > scores[j]) + 0.5 * (scores[t] == scores[j])
                        for t, j in pairs) / len(pairs)
    return values


def test_tie_expectations_equal_enumeration_of_all_tie_orders():
    rng = np.random.default_rng(2)
    n_users, n_items = 16, 6
    scores = rng.integers(0, 2, size=(n_users, n_items)).astype(np.float32)
    tests, excluded = [], []
    for _ in range(n_users):
        items = rng.permutation(n_items)
        n_test = int(rng.integers(1, 4))
        tests.append(sorted(items[:n_test].tolist()))
        excluded.append(items[n_test:n_test + 1].tolist())
    users = [u for u, ex in enumerate(excluded) for _ in ex]
    exclusion = build_exclusion(users, [i for ex in excluded for i in ex], n_users, n_items)
    ks = (1, 2, 3)
    result = evaluate_full(lambda u: torch.from_numpy(scores)[u], n_items, tests, exclusion, ks)
    # the data must exercise several test items tied with each other and with negatives
    assert np.sum((result.n_tied_test > 0) & (result.n_tied > 0)) >= 5
    for u in range(n_users):
        expected = _brute_force(scores[u], tests[u], excluded[u], ks)
        for name, value in expected.items():
            assert result[name][u] == pytest.approx(value, rel=1e-10, abs=1e-12), (u, name)


def test_chunk_size_one_equals_one_chunk():
    rng = np.random.default_rng(1)
    scores = torch.from_numpy(rng.integers(0, 4, size=(37, 50)).astype(np.float32))
    tests = [rng.choice(50, size=int(rng.integers(0, 3)), replace=False) for _ in range(37)]
    users = np.repeat(np.arange(37), 5)
    items = np.concatenate([np.setdiff1d(rng.choice(50, 7, replace=False), t)[:5] for t in tests])
    exclusion = build_exclusion(users, items, 37, 50)
    one = evaluate_full(lambda u: scores[u], 50, tests, exclusion, ks=(1, 5, 10), chunk_size=1)
    big = evaluate_full(lambda u: scores[u], 50, tests, exclusion, ks=(1, 5, 10), chunk_size=999)
    assert one.n_skipped == big.n_skipped > 0
    np.testing.assert_array_equal(one.users, big.users)
    for name in big.metric_names:
        np.testing.assert_array_equal(one[name], big[name])


def _naive(scores, tests, excluded, k):
    """Per-user HR, NDCG, MRR and AUC by argsort (no ties in continuous random scores)."""
    out = {"HR": [], "NDCG": [], "MRR": [], "AUC": []}
    for u, t in enumerate(tests):
        masked = scores[u].copy()
        masked[list(excluded[u])] = -np.inf
        rank = int(np.nonzero(np.argsort(-masked) == t)[0][0])
        out["HR"].append(float(rank < k))
        out["NDCG"].append(1 / np.log2(rank + 2) if rank < k else 0.0)
        out["MRR"].append(1 / (rank + 1))
        n_neg = scores.shape[1] - len(excluded[u]) - 1
        out["AUC"].append(np.sum(masked < masked[t]) - len(excluded[u]))
        out["AUC"][-1] /= n_neg
    return {name: np.array(v) for name, v in out.items()}


def test_property_random_matrix_matches_naive_argsort():
    rng = np.random.default_rng(7)
    n_users, n_items = 50, 200
    scores = rng.standard_normal((n_users, n_items)).astype(np.float32)
    excluded = [set(rng.choice(n_items, int(rng.integers(0, 30)), replace=False).tolist())
                for _ in range(n_users)]
    tests = [int(rng.choice(sorted(set(range(n_items)) - ex))) for ex in excluded]
    users = [u for u, ex in enumerate(excluded) for _ in ex]
    exclusion = build_exclusion(users, [i for ex in excluded for i in sorted(ex)], n_users,
                                n_items)
    ks = (1, 5, 10, 20, 200)
    result = evaluate_full(lambda u: torch.from_numpy(scores[u.numpy()]), n_items, tests,
                           exclusion, ks=ks, chunk_size=16)
    for k in ks:
        naive = _naive(scores, tests, excluded, k)
        np.testing.assert_array_equal(result[f"HR@{k}"], naive["HR"])
        np.testing.assert_allclose(result[f"NDCG@{k}"], naive["NDCG"], rtol=1e-12)
    np.testing.assert_allclose(result["MRR"], naive["MRR"], rtol=1e-12)
    np.testing.assert_allclose(result["AUC"], naive["AUC"], rtol=1e-12)


def test_wide_catalog_rank_counts_equal_direct_counts():
    # wider than the counting kernel's 2040-item word groups, float16 scores with many ties
    rng = np.random.default_rng(11)
    n_users, n_items = 9, 4500
    scores = torch.from_numpy(rng.integers(0, 50, size=(n_users, n_items)).astype(np.float16))
    tests = rng.integers(0, n_items, size=n_users)
    tests[4] = -1
    excluded = [np.setdiff1d(rng.choice(n_items, 30, replace=False), [t]) for t in tests]
    exclusion = build_exclusion(np.repeat(np.arange(n_users), [len(e) for e in excluded]),
                                np.concatenate(excluded), n_users, n_items)
    result = evaluate_full(lambda u: scores[u], n_items, tests, exclusion, ks=(10,),
                           chunk_size=4)
    assert result.users.tolist() == [0, 1, 2, 3, 5, 6, 7, 8]
    for row, user in enumerate(result.users):
        values = scores[user].double().numpy()
        keep = np.ones(n_items, dtype=bool)
        keep[excluded[user]] = False
        keep[tests[user]] = False
        own = values[tests[user]]
        assert result.n_higher[row] == np.sum(values[keep] > own)
        assert result.n_tied[row] == np.sum(values[keep] == own)
        assert result["AUC"][row] == pytest.approx(
            (np.sum(values[keep] < own) + 0.5 * np.sum(values[keep] == own)) / keep.sum())


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_input_formats_agree(exclusion):
    base = evaluate_full(score_fn, 6, TEST, exclusion, ks=KS)
    dense = torch.zeros(4, 6)
    dense[EXCLUDE_USERS, EXCLUDE_ITEMS] = 1.0
    variants = [
        (np.array(TEST), tuple(exclusion)),
        (torch.tensor(TEST), dense.to_sparse()),
        ([[2], [3], [], [0]], dense.to_sparse_csr()),
        (np.array([[2, -1], [3, -1], [-1, -1], [0, -1]]), scipy.sparse.csr_matrix(dense.numpy())),
        (UserItems(torch.tensor([0, 1, 2, 2, 3]), torch.tensor([2, 3, 0])), exclusion),
    ]
    for tests, excl in variants:
        other = evaluate_full(lambda u: SCORES[u].numpy(), 6, tests, excl, ks=KS)
        np.testing.assert_array_equal(other.users, base.users)
        for name in base.metric_names:
            np.testing.assert_array_equal(other[name], base[name])


def test_build_exclusion_is_canonical():
    indptr, indices = build_exclusion([2, 0, 2, 2, 0], [5, 1, 3, 5, 1], 3, 6)
    assert indptr.tolist() == [0, 1, 1, 3] and indices.tolist() == [1, 3, 5]


# ---------------------------------------------------------------------------- sampled protocol


def test_sampled_negatives_are_allowed_distinct_and_seeded():
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 40
    tests = rng.integers(0, n_items, n_users)
    tests[::7] = -1
    users = np.repeat(np.arange(n_users), 10)
    items = rng.integers(0, n_items, users.size)
    keep = items != np.repeat(tests, 10)
    exclusion = build_exclusion(users[keep], items[keep], n_users, n_items)
    excluded = [set() for _ in range(n_users)]
    for u, i in zip(users[keep], items[keep], strict=True):
        excluded[u].add(int(i))
    for n in (5, 20, 29):  # 29 needs the dense sampler for users with <= 10 exclusions
        who, negatives = sample_negatives(n_items, tests, exclusion, n_negatives=n, seed=4)
        assert who.tolist() == [u for u in range(n_users) if tests[u] >= 0]
        for u, row in zip(who.tolist(), negatives.tolist(), strict=True):
            assert len(set(row)) == n
            assert not set(row) & excluded[u] and tests[u] not in row
        again = sample_negatives(n_items, tests, exclusion, n_negatives=n, seed=4)[1]
        other = sample_negatives(n_items, tests, exclusion, n_negatives=n, seed=5)[1]
        assert torch.equal(negatives, again) and not torch.equal(negatives, other)


@pytest.mark.parametrize("n", [3, 6])  # 3: rejection sampler, 6 > 9 / 2: random-key sampler
def test_sampled_negatives_are_uniform(n):
    n_users = 3000
    exclusion = build_exclusion(np.repeat(np.arange(n_users), 2), np.tile([0, 1], n_users),
                                n_users, 12)
    _, negatives = sample_negatives(12, np.full(n_users, 2), exclusion, n_negatives=n, seed=0)
    counts = np.bincount(negatives.flatten().numpy(), minlength=12)
    assert counts[:3].sum() == 0
    expected = n_users * n / 9  # 9 allowed items (3..11)
    assert np.all(np.abs(counts[3:] - expected) < 0.1 * expected)


def test_sampled_hand_values():
    # one user, test item 0 (0.5); items 1, 2 excluded; allowed negatives 3..7 are all drawn:
    # item 3 (0.8) above, item 5 (0.5) tied, 4, 6, 7 below -> rank uniform on {1, 2}
    item_scores = torch.tensor([0.5, 0.9, 0.95, 0.8, 0.1, 0.5, 0.2, 0.3])
    result = evaluate_sampled(lambda u, items: item_scores[items], 8, [0],
                              build_exclusion([0, 0], [1, 2], 1, 8), n_negatives=5,
                              ks=(1, 2, 3))
    assert result.protocol == "sampled-5"
    np.testing.assert_allclose(result["HR@1"], [0.0])
    np.testing.assert_allclose(result["HR@2"], [1 / 2])
    np.testing.assert_allclose(result["NDCG@2"], [(1 / L3) / 2])
    np.testing.assert_allclose(result["NDCG@3"], [(1 / L3 + 1 / 2) / 2])
    np.testing.assert_allclose(result["MRR"], [(1 / 2 + 1 / 3) / 2])
    np.testing.assert_allclose(result["AUC"], [(3 + 0.5) / 5])


def test_sampled_with_all_negatives_equals_full_ranking():
    rng = np.random.default_rng(2)
    n_users, n_items = 20, 30
    scores = torch.from_numpy(rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32))
    excluded = np.stack([rng.choice(n_items, 6, replace=False) for _ in range(n_users)])
    tests = excluded[:, 5].copy()  # a sixth random item per user becomes the test item
    tests[3] = -1
    exclusion = build_exclusion(np.repeat(np.arange(n_users), 5), excluded[:, :5].ravel(),
                                n_users, n_items)
    full = evaluate_full(lambda u: scores[u], n_items, tests, exclusion, ks=(1, 5, 10))
    sampled = evaluate_sampled(lambda u, items: scores[u.unsqueeze(1), items], n_items, tests,
                               exclusion, n_negatives=n_items - 6, ks=(1, 5, 10), chunk_size=7)
    assert sampled.n_skipped == full.n_skipped == 1
    np.testing.assert_array_equal(sampled.users, full.users)
    for name in full.metric_names:
        np.testing.assert_allclose(sampled[name], full[name], rtol=1e-12, err_msg=name)


def test_sampled_is_independent_of_chunk_size():
    rng = np.random.default_rng(5)
    scores = torch.from_numpy(rng.standard_normal((40, 60)).astype(np.float32))
    tests = rng.integers(0, 60, 40)

    def run(chunk_size: int) -> RankingResult:
        return evaluate_sampled(lambda u, items: scores[u.unsqueeze(1), items], 60, tests,
                                n_negatives=20, ks=(5,), seed=11, chunk_size=chunk_size)

    one, many = run(1), run(64)
    for name in one.metric_names:
        np.testing.assert_array_equal(one[name], many[name])


# ------------------------------------------------------------------------------- CHR and top-k

CATEGORIES = np.array(["a", "b", "b", "a", "b", "c"])
CHR_SCORES = torch.tensor(
    [
        [0.9, 0.8, 0.1, 0.7, 0.6, 0.5],  # top-2 {0 a, 1 b}: 1 of category b
        [0.1, 0.2, 0.9, 0.3, 0.8, 0.0],  # item 2 excluded -> top-2 {4 b, 3 a}: 1
        [0.5, 0.5, 0.5, 0.9, 0.1, 0.2],  # {3 a} + one of the tied {0 a, 1 b, 2 b}: 2/3 expected
    ]
)


def test_chr_hand_values():
    exclusion = build_exclusion([1], [2], 3, 6)
    share, count = chr_at_k(lambda u: CHR_SCORES[u], 3, CATEGORIES, "b", 2, exclusion,
                            chunk_size=2)
    assert count == pytest.approx((1 + 1 + 2 / 3) / 3)  # 8/9, the figure 001 Table 1 prints
    assert share == pytest.approx(count / 2)
    # without the exclusion user 1's top-2 is {2 b, 4 b}: 2
    _, plain = chr_at_k(lambda u: CHR_SCORES[u], 3, CATEGORIES, "b", 2)
    assert plain == pytest.approx((1 + 2 + 2 / 3) / 3)


def test_topk_hand_values_with_exclusion():
    exclusion = build_exclusion([1, 1], [2, 4], 3, 6)
    top = topk(lambda u: CHR_SCORES[u], 3, 3, exclusion, chunk_size=2)
    assert top.shape == (3, 3) and top.dtype == torch.long
    assert top[0].tolist() == [0, 1, 3] and top[1].tolist() == [3, 1, 0]
    assert top[2, 0] == 3 and set(top[2, 1:].tolist()) < {0, 1, 2}


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ks": (0, 5)}, r"k must be a positive integer, got 0\."),
        ({"ks": (-2,)}, r"k must be a positive integer, got -2\."),
        ({"ks": (7,)}, r"k=7 exceeds n_items = 6"),
        ({"ks": ()}, r"ks must name at least one cutoff"),
        ({"n_items": 0}, r"n_items must be a positive integer, got 0\."),
        ({"chunk_size": 0}, r"chunk_size must be a positive integer, got 0\."),
        ({"test_items": [2, 3, 6, 0]}, r"test_items contains 6, outside \[0, 6\)"),
        ({"test_items": [2, 3, -5, 0]}, r"test_items contains -5; use -1"),
        ({"test_items": [2, 1, -1, 0]}, r"test item 1 of user 1 is also in its exclude set"),
        ({"exclude": (torch.tensor([0, 1]), torch.tensor([0]))},
         r"exclude indptr must have n_users \+ 1 = 5 entries, got 2\."),
        ({"exclude": torch.zeros(3, 6).to_sparse()},
         r"exclude has shape \(3, 6\), expected \(n_users, n_items\) = \(4, 6\)\."),
        ({"exclude": [[1]]}, r"exclude must be None, an \(indptr, indices\) pair"),
    ],
)
def test_evaluate_full_rejects_bad_input(kwargs, message, exclusion):
    args = {"score_fn": score_fn, "n_items": 6, "test_items": TEST, "exclude": exclusion,
            "ks": KS} | kwargs
    if "n_items" in kwargs:
        args["ks"] = (1,)
    with pytest.raises(ConfigError, match=message):
        evaluate_full(**args)


def test_score_shape_mismatch_and_nan_scores(exclusion):
    with pytest.raises(ConfigError, match=r"score_fn returned scores of shape \(3, 5\) for 3 use"):
        evaluate_full(lambda u: SCORES[u][:, :5], 6, TEST, exclusion, ks=KS)
    bad = SCORES.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ModelError, match=r"score_fn returned NaN scores"):
        evaluate_full(lambda u: bad[u], 6, TEST, exclusion, ks=KS)
    with pytest.raises(ConfigError, match=r"score_items_fn returned scores of shape \(3, 2\)"):
        evaluate_sampled(lambda u, items: items[:, :2].float(), 6, TEST, exclusion,
                         n_negatives=3, ks=(1,))


def test_sampled_rejects_bad_input(exclusion):
    scorer = lambda u, items: items.float()  # noqa: E731
    with pytest.raises(ConfigError, match=r"n_negatives=4 exceeds the 3 items available as "
                                          r"negatives for user 1"):
        evaluate_sampled(scorer, 6, TEST, exclusion, n_negatives=4, ks=(1,))
    with pytest.raises(ConfigError, match=r"n_negatives must be a positive integer, got 0\."):
        evaluate_sampled(scorer, 6, TEST, exclusion, n_negatives=0)
    with pytest.raises(ConfigError, match=r"k=5 exceeds the sampled list length 1 \+ "
                                          r"n_negatives = 3"):
        evaluate_sampled(scorer, 6, TEST, exclusion, n_negatives=2, ks=(1, 5))
    with pytest.raises(ConfigError, match=r"one test item per user, but user 0 has 2\."):
        evaluate_sampled(scorer, 6, [[1, 2], [3]], None, n_negatives=2, ks=(1,))
    with pytest.raises(ConfigError, match=r"test item 4 of user 1 is also in its exclude set"):
        sample_negatives(6, [2, 4, -1, 0], exclusion, n_negatives=1)


def test_chr_topk_and_exclusion_reject_bad_input():
    scorer = lambda u: CHR_SCORES[u]  # noqa: E731
    with pytest.raises(ConfigError, match=r"category 'z' does not occur in item_categories\."):
        chr_at_k(scorer, 3, CATEGORIES, "z", 2)
    with pytest.raises(ConfigError, match=r"k must be a positive integer, got 0\."):
        chr_at_k(scorer, 3, CATEGORIES, "b", 0)
    with pytest.raises(ConfigError, match=r"k=7 exceeds n_items = 6"):
        topk(scorer, 3, 7)
    with pytest.raises(ConfigError, match=r"n_users must be a positive integer, got 0\."):
        topk(scorer, 0, 2)
    with pytest.raises(ConfigError, match=r"score_fn returned scores of shape \(3, 6\) for 3 "
                                          r"users, expected \(3, 5\)"):
        chr_at_k(scorer, 3, CATEGORIES[:5], "b", 2)
    with pytest.raises(ConfigError, match=r"user 1 has only 3 non-excluded items, fewer than k=4"):
        topk(scorer, 3, 4, build_exclusion([1, 1, 1], [0, 1, 2], 3, 6))
    with pytest.raises(ConfigError, match=r"exclude users and items must be 1-D arrays of equal "
                                          r"length, got shapes \(2,\) and \(1,\)\."):
        build_exclusion([0, 1], [2], 3, 6)
    with pytest.raises(ConfigError, match=r"exclude items contains 9, outside \[0, 6\)"):
        build_exclusion([0], [9], 3, 6)


def test_unknown_metric_name(hand_result):
    with pytest.raises(ConfigError, match=r"unknown metric 'HR@7'; known: HR@1"):
        hand_result["HR@7"]
