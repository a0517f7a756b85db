"""Ranking metrics for top-N recommendation from scores alone: full and sampled protocols, CHR@K.

Nothing here knows about models. A *scorer* is any callable

* ``score_fn(users: LongTensor[B]) -> FloatTensor[B, n_items]`` (full ranking, top-k, CHR), or
* ``score_items_fn(users: LongTensor[B], items: LongTensor[B, C]) -> FloatTensor[B, C]`` (sampled),

and users are processed in chunks of ``chunk_size``, so no ``U x I`` matrix is ever allocated
(full ranking holds one chunk of scores plus a small bool buffer; top-k and CHR about
``chunk_size x n_items x 6`` bytes for float32 scores).

Full and sampled ranking never sort: a test item's rank is fixed by how many candidates score
strictly higher than it and how many tie with it, which the counting kernel of
:mod:`varsec.recsys.ranking` (shared with the training loop's validation) computes per chunk;
excluded items are removed by gathering their few scores, not by masking the chunk.

Conventions (DESIGN.md section 6)
---------------------------------
* **Candidates.** A user's test item is ranked against every item except the user's ``exclude`` set
  (training positives; add the validation item when evaluating test). A test item may not itself
  be excluded. Users without a test item (``-1`` / empty list) are skipped and counted.
* **Ties** are broken uniformly at random and every metric is the exact *expected value* under
  that tie-breaking. For a test item with ``h`` candidates scoring strictly higher and ``t`` other
  candidates tied with it, its 0-based rank is uniform on ``{h, ..., h + t}``; HR/Recall, NDCG and
  MRR are averaged over those ``t + 1`` positions (vectorised with cumulative tables, no sampling),
  and the reported rank is the expected rank ``h + t / 2``.
* **Metrics** for a user with test items ``T`` (``m = |T|``, usually 1 under leave-one-out), whose
  ranked list is all candidates including ``T``; ``F`` is the rank of the first test item:
  HR@k = P(F < k) (at least one hit); Recall@k = E[hits in top k] / m (not ``min(k, m)``);
  NDCG@k = E[DCG@k] / IDCG@k with ``DCG = sum 1/log2(rank + 2)`` over hits and IDCG over
  ``min(m, k)`` hits; MRR = E[1 / (F + 1)]; AUC = fraction of (test item, negative) pairs with the
  test item scoring higher, ties counting 0.5, where negatives are the non-excluded non-test items
  (NaN for a user with no negative). With one test item HR@k equals Recall@k.
* **Sampled protocol**: each user's test item is ranked against ``n_negatives`` items drawn
  uniformly without replacement from the items that are neither excluded nor the test item
  (He et al.'s NCF protocol uses 100; Yin et al. 002 sec 4.2 rank the test item among 20 sampled
  non-interacted items). The same seed gives the same negatives for every model, so two models can
  be compared per user.
* **CHR@K** (Di Noia, Malitesta & Merra, TAaMR, cited by Anelli et al. 001 sec 3 "Evaluation of
  Recommendation Performance"): the mean over users of the number of items of a category in the
  user's top-K list (the figure 001 Table 1 prints, e.g. 1.4462 for CHR@20), and that count divided
  by K (the share). Ties at the K-th place are counted by their expected share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from varsec.errors import ConfigError, ModelError
from varsec.io import progress
from varsec.recsys.ranking import (
    UserItems,
    as_index_tensor,
    build_exclusion,
    check_positive_int,
    hit_probability,
    pair_counts,
    user_items,
)

ScoreFn = Callable[[torch.Tensor], Any]
ScoreItemsFn = Callable[[torch.Tensor, torch.Tensor], Any]
DEFAULT_KS: tuple[int, ...] = (5, 10, 20)
_SAMPLE_BLOCK = 2048  # users per negative-sampling block (fixed: samples never depend on chunking)
_DENSE_CELLS = 1 << 24  # max rand cells per block of the random-key sampler
_TEST_LABELS = ("test_items users", "test_items")


# --------------------------------------------------------------------------------------------
# Per-user item sets (CSR)
# --------------------------------------------------------------------------------------------


def _csr_pairs(indptr: Any, indices: Any, n_users: int, name: str) -> tuple[torch.Tensor, ...]:
    """Validate a raw ``(indptr, indices)`` pair and expand it to ``(rows, items)``."""
    ptr = as_index_tensor(indptr, f"{name} indptr")
    idx = as_index_tensor(indices, f"{name} indices")
    if ptr.dim() != 1 or ptr.numel() != n_users + 1:
        raise ConfigError(
            f"{name} indptr must have n_users + 1 = {n_users + 1} entries, got {ptr.numel()}."
        )
    sizes = ptr[1:] - ptr[:-1]
    if int(ptr[0]) != 0 or bool((sizes < 0).any()) or int(ptr[-1]) != idx.numel():
        raise ConfigError(
            f"{name} indptr must start at 0, never decrease and end at len(indices) = "
            f"{idx.numel()}."
        )
    return torch.repeat_interleave(torch.arange(n_users), sizes), idx


def _as_exclusion(exclude: Any, n_users: int, n_items: int) -> UserItems:
    """Canonical :class:`UserItems` from None, ``(indptr, indices)``, torch or scipy sparse."""
    if exclude is None:
        empty = torch.zeros(0, dtype=torch.long)
        return UserItems(torch.zeros(n_users + 1, dtype=torch.long), empty)
    if isinstance(exclude, torch.Tensor) and exclude.layout != torch.strided:
        _check_matrix_shape(tuple(exclude.shape), n_users, n_items)
        coo = exclude.to_sparse_coo().coalesce()
        keep = coo.values() != 0
        rows, cols = coo.indices()[:, keep]
        return build_exclusion(rows, cols, n_users, n_items)
    if hasattr(exclude, "tocoo"):  # scipy.sparse matrix or array
        _check_matrix_shape(tuple(exclude.shape), n_users, n_items)
        coo = exclude.tocoo()
        keep = coo.data != 0
        return build_exclusion(coo.row[keep], coo.col[keep], n_users, n_items)
    if isinstance(exclude, tuple) and len(exclude) == 2:
        rows, cols = _csr_pairs(exclude[0], exclude[1], n_users, "exclude")
        return build_exclusion(rows, cols, n_users, n_items)
    raise ConfigError(
        "exclude must be None, an (indptr, indices) pair, a torch sparse tensor or a scipy sparse "
        f"matrix, got {type(exclude).__name__}."
    )


def _check_matrix_shape(shape: tuple[int, ...], n_users: int, n_items: int) -> None:
    if shape != (n_users, n_items):
        raise ConfigError(
            f"exclude has shape {shape}, expected (n_users, n_items) = ({n_users}, {n_items})."
        )


def _as_test_items(test_items: Any, n_items: int) -> UserItems:
    """Canonical per-user test sets from a 1-D array (-1 = none), padded 2-D, ragged or CSR."""
    if isinstance(test_items, UserItems):
        rows, cols = _csr_pairs(test_items.indptr, test_items.indices, test_items.n_users,
                                "test_items")
        return user_items(rows, cols, test_items.n_users, n_items, _TEST_LABELS)
    if isinstance(test_items, (list, tuple)) and any(_is_sequence(t) for t in test_items):
        return _ragged_test_items(test_items, n_items)
    tests = as_index_tensor(test_items, "test_items")
    if tests.dim() not in (1, 2) or tests.shape[0] == 0:
        raise ConfigError(
            "test_items must be a non-empty 1-D array (one item per user, -1 for none), a padded "
            f"2-D array, a list of per-user lists or a UserItems, got shape {tuple(tests.shape)}."
        )
    if bool((tests < -1).any()):
        raise ConfigError(f"test_items contains {int(tests.min())}; use -1 for 'no test item'.")
    rows, cols = (tests.reshape(tests.shape[0], -1) >= 0).nonzero(as_tuple=True)
    flat = tests.reshape(tests.shape[0], -1)[rows, cols]
    return user_items(rows, flat, tests.shape[0], n_items, _TEST_LABELS)


def _ragged_test_items(test_items: Sequence[Any], n_items: int) -> UserItems:
    lists = [np.asarray(t, dtype=np.int64).reshape(-1) for t in test_items]
    lists = [t[t >= 0] for t in lists]
    rows = np.repeat(np.arange(len(lists)), [t.size for t in lists])
    cols = np.concatenate(lists) if lists else np.zeros(0, np.int64)
    return user_items(rows, cols, len(lists), n_items, _TEST_LABELS)


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray, torch.Tensor)) and np.ndim(value) > 0


def _single_test_items(tests: UserItems) -> torch.Tensor:
    """The test item of each user (-1 for none); ConfigError when a user has several."""
    counts = tests.counts()
    if bool((counts > 1).any()):
        user = int(torch.nonzero(counts > 1)[0])
        raise ConfigError(
            f"the sampled protocol ranks one test item per user, but user {user} has "
            f"{int(counts[user])}."
        )
    single = torch.full((tests.n_users,), -1, dtype=torch.long)
    single[counts == 1] = tests.indices
    return single


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _check_ks(ks: int | Iterable[int], limit: int, what: str) -> tuple[int, ...]:
    """Sorted unique cutoffs, each a positive integer no larger than ``limit``."""
    values = (ks,) if isinstance(ks, int) else tuple(ks)
    if not values:
        raise ConfigError("ks must name at least one cutoff k, got an empty sequence.")
    checked = []
    for k in values:
        k = check_positive_int(k, "k")
        if k > limit:
            raise ConfigError(f"k={k} exceeds {what} = {limit}; a top-k list cannot be longer.")
        checked.append(k)
    return tuple(sorted(set(checked)))


def _scores(
    raw: Any, n_users: int, n_cols: int | None, what: str, check_nan: bool = True
) -> torch.Tensor:
    """Validate a scorer's output: a float tensor of shape (n_users, n_cols) without NaN.

    ``check_nan=False`` leaves the NaN check to the counting kernel, which makes it on the fly.
    """
    scores = raw.detach() if isinstance(raw, torch.Tensor) else torch.as_tensor(np.asarray(raw))
    if not scores.is_floating_point():
        scores = scores.to(torch.float64)
    expected = (n_users, n_cols if n_cols is not None else -1)
    if scores.dim() != 2 or scores.shape[0] != n_users or n_cols not in (None, scores.shape[1]):
        raise ConfigError(
            f"{what} returned scores of shape {tuple(scores.shape)} for {n_users} users, "
            f"expected {expected}."
        )
    if check_nan and bool(torch.isnan(scores.sum())) and bool(torch.isnan(scores).any()):
        row = int(torch.isnan(scores).any(1).nonzero()[0])
        raise ModelError(f"{what} returned NaN scores for the user in row {row} of a chunk.")
    return scores


def _split(values: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Consecutive chunks of at most ``size`` entries; no chunk at all for an empty tensor."""
    return list(values.split(size)) if values.numel() else []


def _mask(scores: torch.Tensor, excl: UserItems, users: torch.Tensor) -> torch.Tensor:
    """A copy of ``scores`` with each user's excluded items set to NaN (never counted)."""
    rows, cols = excl.gather(users)
    nan = torch.tensor(float("nan"), dtype=scores.dtype, device=scores.device)
    return scores.index_put((rows.to(scores.device), cols.to(scores.device)), nan)


def _check_min_candidates(excl: UserItems, n_items: int, k: int) -> None:
    """Every user needs at least ``k`` non-excluded items for a top-k list."""
    available = n_items - excl.counts()
    if bool((available < k).any()):
        user = int(torch.nonzero(available < k)[0])
        raise ConfigError(
            f"user {user} has only {int(available[user])} non-excluded items, fewer than k={k}."
        )


# --------------------------------------------------------------------------------------------
# Exact expected metrics from tie counts
# --------------------------------------------------------------------------------------------


def _tables(max_k: int, n_candidates: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cumulative discounts ``D[m] = sum_{r < m} 1 / log2(r + 2)`` (m <= max_k) and harmonic
    numbers ``H[m] = sum_{r < m} 1 / (r + 1)`` (m <= n_candidates), float64, built once per call.
    """
    gains = 1.0 / torch.log2(torch.arange(max_k, dtype=torch.float64) + 2.0)
    discounts = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(gains, 0)])
    m = torch.arange(n_candidates + 1, dtype=torch.float64)
    harmonic = torch.special.digamma(m + 1.0) + 0.5772156649015329  # psi(m + 1) + Euler's gamma
    harmonic[0] = 0.0
    return discounts, harmonic


def _expected_gain(k: int, higher: torch.Tensor, ties: torch.Tensor, disc: torch.Tensor):
    """E[1{rank < k} / log2(rank + 2)] for a rank uniform on {higher, ..., higher + ties}."""
    top = (higher + ties + 1).clamp(max=k).long()
    low = higher.clamp(max=k).long()
    return (disc[top] - disc[low]) / (ties + 1)


def _survival(j: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """P(p >= j), p = number of ``a`` tied negatives placed before the first of ``b`` tied tests.

    Equals C(a, j) / C(a + b, j) = prod_{i < j} (a - i) / (a + b - i) for 0 <= j <= a, 1 below and
    0 above; (a + 1 - j) / (a + 1) when b = 1. Only + - * / are used, elementwise, so a user's
    value never depends on which users share its chunk.
    """
    jc = torch.minimum(j.clamp(min=0), a)
    result = (a + 1 - jc) / (a + 1)
    multi = (b > 1).nonzero(as_tuple=True)[0]
    if multi.numel():
        jm, am, bm = jc[multi], a[multi], b[multi]
        product = torch.ones_like(am)
        for i in range(int(jm.max())):
            product = torch.where(i < jm, product * (am - i) / (am + bm - i), product)
        result[multi] = product
    return torch.where(j > a, torch.zeros_like(result), result)


def _expected_reciprocal(
    g: torch.Tensor, a: torch.Tensor, b: torch.Tensor, harmonic: torch.Tensor
) -> torch.Tensor:
    """E[1 / (F + 1)] with F = g + p, p as in :func:`_survival` (float64 inputs).

    One tied test item (b = 1): F is uniform on {g, ..., g + a}, so the mean of 1 / (F + 1) is
    (H[g + a + 1] - H[g]) / (a + 1); several (b > 1): the pmf of p by the recurrence of
    :func:`_survival`.
    """
    gl, al = g.long(), a.long()
    result = (harmonic[gl + al + 1] - harmonic[gl]) / (a + 1)
    result = torch.where(a == 0, 1.0 / (g + 1), result)
    multi = ((b > 1) & (a > 0)).nonzero(as_tuple=True)[0]
    if multi.numel():
        gm, am, bm = g[multi], a[multi], b[multi]
        total, surv = torch.zeros_like(gm), torch.ones_like(gm)
        for j in range(int(am.max()) + 1):
            following = torch.where(j < am, surv * (am - j) / (am + bm - j), 0.0)
            total = total + (surv - following) / (gm + j + 1)
            surv = following
        result[multi] = total
    return result


def _user_metrics(
    rows: torch.Tensor, counts: tuple[torch.Tensor, ...], n_neg: torch.Tensor,
    ks: tuple[int, ...], tables: tuple[torch.Tensor, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-row metric values and rank information from :func:`pair_counts` output."""
    n_rows, f64, rows = n_neg.numel(), torch.float64, rows.cpu()
    higher, ties, test_higher, test_ties = (c.cpu().to(f64) for c in counts[1:])
    neg_higher, neg_ties = higher - test_higher, ties - test_ties
    m = torch.bincount(rows, minlength=n_rows).to(f64)

    def row_sum(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n_rows, dtype=f64).index_add_(0, rows, values)

    at_best = _first_relevant_pairs(rows, counts[0].cpu(), n_rows)
    g = torch.zeros(n_rows, dtype=f64)
    a, b = torch.zeros_like(g), torch.ones_like(g)
    g[rows[at_best]], a[rows[at_best]] = neg_higher[at_best], neg_ties[at_best]
    b[rows[at_best]] = test_ties[at_best] + 1
    disc, harmonic = tables
    values: dict[str, torch.Tensor] = {}
    for k in ks:
        values[f"HR@{k}"] = 1.0 - _survival(k - g, a, b)
    for k in ks:
        ideal = disc[m.clamp(max=k).long()]
        values[f"NDCG@{k}"] = row_sum(_expected_gain(k, higher, ties, disc)) / ideal
    for k in ks:
        values[f"Recall@{k}"] = row_sum(hit_probability(k, higher, ties)) / m
    values["MRR"] = _expected_reciprocal(g, a, b, harmonic)
    negatives = n_neg.cpu().to(f64)[rows]
    values["AUC"] = row_sum(1.0 - (neg_higher + 0.5 * neg_ties) / negatives) / m
    info = {"n_test": m.long(), "n_higher": g.long(), "n_tied": a.long(),
            "n_tied_test": (b - 1).long()}
    return values, info


def _first_relevant_pairs(rows: torch.Tensor, x: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Mask of pairs whose score is the best test score of their row."""
    best = torch.full((n_rows,), -math.inf, dtype=x.dtype)
    best = best.scatter_reduce(0, rows, x, reduce="amax")
    return x == best[rows]


def _chunk_metrics(
    scores: torch.Tensor, users: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
    n_neg: torch.Tensor, ks: tuple[int, ...], tables: tuple[torch.Tensor, torch.Tensor],
    what: str, excl: UserItems | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Metrics of one chunk of users from their raw ``scores`` (``excl``: items never counted)."""
    device = scores.device
    excluded = excl.gather(users[rows]) if excl is not None else (rows[:0], rows[:0])
    excluded = (excluded[0].to(device), excluded[1].to(device))
    counts = pair_counts(scores, rows.to(device), cols.to(device), excluded, what)
    values, info = _user_metrics(rows, counts, n_neg, ks, tables)
    info["users"] = users
    return values, info


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RankingResult:
    """Per-user ranking metrics of one protocol, kept for paired tests.

    ``values[name]`` holds one float64 value per evaluated user (same order as ``users``), for
    ``name`` in ``HR@k``, ``NDCG@k``, ``Recall@k`` (each k of ``ks``), ``MRR`` and ``AUC``. Rank
    information describes the user's best-scoring test item: ``n_higher`` non-test candidates score
    strictly higher, ``n_tied`` tie with it, and ``n_tied_test`` other test items tie with it.
    """

    protocol: str
    ks: tuple[int, ...]
    users: np.ndarray
    n_test: np.ndarray
    n_higher: np.ndarray
    n_tied: np.ndarray
    n_tied_test: np.ndarray
    values: dict[str, np.ndarray] = field(repr=False)
    n_skipped: int = 0

    @property
    def n_users(self) -> int:
        """Number of evaluated users (those with at least one test item)."""
        return int(self.users.size)

    @property
    def expected_rank(self) -> np.ndarray:
        """Expected 0-based rank of each user's first test item under random tie-breaking."""
        return self.n_higher + self.n_tied / (self.n_tied_test + 2.0)

    @property
    def metric_names(self) -> list[str]:
        """Names of the per-user metrics, in report order."""
        return list(self.values)

    def __getitem__(self, name: str) -> np.ndarray:
        """Per-user values of one metric, e.g. ``result["NDCG@10"]``."""
        if name not in self.values:
            raise ConfigError(f"unknown metric {name!r}; known: {', '.join(self.values)}.")
        return self.values[name]

    def summary(self) -> dict[str, float]:
        """Mean of every metric over the evaluated users (AUC ignores users without negatives)."""
        return {name: _nanmean(v) for name, v in self.values.items()}

    def to_frame(self, protocol: str | None = None) -> pd.DataFrame:
        """Tidy rows ``(protocol, metric, k, value, n)``; ``k`` is <NA> for MRR and AUC."""
        records = []
        for name, v in self.values.items():
            metric, _, k = name.partition("@")
            records.append({
                "protocol": protocol or self.protocol,
                "metric": metric,
                "k": int(k) if k else pd.NA,
                "value": _nanmean(v),
                "n": int(np.count_nonzero(~np.isnan(v))),
            })
        columns = ["protocol", "metric", "k", "value", "n"]
        frame = pd.DataFrame.from_records(records, columns=columns)
        return frame.astype({"k": "Int64"})


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _collect(
    parts: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]],
    ks: tuple[int, ...], protocol: str, n_skipped: int,
) -> RankingResult:
    """Concatenate per-chunk outputs into a :class:`RankingResult`."""
    names = [f"{m}@{k}" for m in ("HR", "NDCG", "Recall") for k in ks] + ["MRR", "AUC"]
    info_names = ("users", "n_test", "n_higher", "n_tied", "n_tied_test")

    def cat(index: int, key: str, dtype: Any) -> np.ndarray:
        tensors = [part[index][key] for part in parts]
        return torch.cat(tensors).numpy() if tensors else np.zeros(0, dtype)

    info = {key: cat(1, key, np.int64) for key in info_names}
    values = {name: cat(0, name, np.float64) for name in names}
    return RankingResult(protocol=protocol, ks=ks, values=values, n_skipped=n_skipped, **info)


# --------------------------------------------------------------------------------------------
# Full ranking
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_full(
    score_fn: ScoreFn,
    n_items: int,
    test_items: Any,
    exclude: Any = None,
    ks: int | Sequence[int] = DEFAULT_KS,
    chunk_size: int = 1024,
) -> RankingResult:
    """Rank every user's test item(s) among all items except the user's excluded ones.

    ``test_items`` is one item per user (``-1`` = none, skipped and counted in ``n_skipped``), a
    padded 2-D array, a list of per-user lists, or a :class:`UserItems`; ``exclude`` is None, an
    ``(indptr, indices)`` pair (see :func:`build_exclusion`), or a torch / scipy sparse matrix of
    shape ``(n_users, n_items)``. Ties are handled as exact expectations (see module docstring).
    """
    n_items = check_positive_int(n_items, "n_items")
    ks = _check_ks(ks, n_items, "n_items")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    tests = _as_test_items(test_items, n_items)
    excl = _as_exclusion(exclude, tests.n_users, n_items)
    users = torch.nonzero(tests.counts() > 0).flatten()
    pair_users = torch.repeat_interleave(torch.arange(tests.n_users), tests.counts())
    _check_tests_not_excluded(excl.keys(n_items), pair_users, tests.indices, n_items)
    tables = _tables(max(ks), n_items)
    parts = []
    for chunk in progress(_split(users, chunk_size), desc="full ranking"):
        scores = _scores(score_fn(chunk), chunk.numel(), n_items, "score_fn", check_nan=False)
        rows, cols = tests.gather(chunk)
        n_neg = n_items - excl.counts(chunk) - tests.counts(chunk)
        parts.append(_chunk_metrics(scores, chunk, rows, cols, n_neg, ks, tables, "score_fn",
                                    excl))
    return _collect(parts, ks, "full", tests.n_users - users.numel())


# --------------------------------------------------------------------------------------------
# Sampled ranking
# --------------------------------------------------------------------------------------------


def sample_negatives(
    n_items: int,
    test_items: Any,
    exclude: Any = None,
    n_negatives: int = 100,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw each user's sampled-protocol negatives: ``(users[E], negatives[E, n_negatives])``.

    Negatives are uniform without replacement over the items that are neither in the user's
    ``exclude`` set nor its test item, drawn by vectorised rejection sampling (or, for a user who
    needs more than half of its available items, by random keys) from a ``torch.Generator`` seeded
    with ``seed``. Users without a test item are left out. The result depends only on the
    arguments, so every model evaluated with the same seed sees the same negatives.
    """
    n_items = check_positive_int(n_items, "n_items")
    n = check_positive_int(n_negatives, "n_negatives")
    tests = _single_test_items(_as_test_items(test_items, n_items))
    excl = _as_exclusion(exclude, tests.numel(), n_items)
    users = torch.nonzero(tests >= 0).flatten()
    keys = excl.keys(n_items)
    _check_tests_not_excluded(keys, users, tests[users], n_items)
    available = n_items - excl.counts(users) - 1
    if users.numel() and int(available.min()) < n:
        pos = int(torch.argmin(available))
        raise ConfigError(
            f"n_negatives={n} exceeds the {int(available[pos])} items available as negatives for "
            f"user {int(users[pos])} (items neither excluded nor its test item)."
        )
    sampler = _Sampler(torch.Generator().manual_seed(int(seed)), n_items, n, keys, excl)
    out = torch.empty((users.numel(), n), dtype=torch.long)
    for block in _split(torch.arange(users.numel()), _SAMPLE_BLOCK):
        out[block] = sampler.sample(users[block], tests[users[block]], available[block])
    return users, out


def _check_tests_not_excluded(
    keys: torch.Tensor, users: torch.Tensor, tests: torch.Tensor, n_items: int
) -> None:
    clash = _member(keys, users * n_items + tests)
    if bool(clash.any()):
        pos = int(clash.nonzero()[0])
        raise ConfigError(
            f"test item {int(tests[pos])} of user {int(users[pos])} is also in its exclude set; a "
            "held-out item must remain a candidate."
        )


def _member(keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Elementwise ``queries in keys`` for sorted ``keys``."""
    if keys.numel() == 0:
        return torch.zeros_like(queries, dtype=torch.bool)
    pos = torch.searchsorted(keys, queries).clamp(max=keys.numel() - 1)
    return keys[pos] == queries


@dataclass
class _Sampler:
    """Uniform sampling without replacement of each user's allowed negatives."""

    generator: torch.Generator
    n_items: int
    n: int
    keys: torch.Tensor
    excl: UserItems

    def sample(self, users: torch.Tensor, tests: torch.Tensor, available: torch.Tensor):
        """``[len(users), n]`` negatives; dense users (n > available / 2) use random keys."""
        out = torch.empty((users.numel(), self.n), dtype=torch.long)
        dense = 2 * self.n > available
        sparse_pos = (~dense).nonzero(as_tuple=True)[0]
        dense_pos = dense.nonzero(as_tuple=True)[0]
        if sparse_pos.numel():
            out[sparse_pos] = self._reject(users[sparse_pos], tests[sparse_pos],
                                           int(available[sparse_pos].min()))
        if dense_pos.numel():
            out[dense_pos] = self._random_keys(users[dense_pos], tests[dense_pos])
        return out

    def _reject(self, users: torch.Tensor, tests: torch.Tensor, min_available: int):
        """Rejection sampling: draw with replacement, keep the first n distinct allowed items."""
        out = torch.empty((users.numel(), self.n), dtype=torch.long)
        pending = torch.arange(users.numel())
        draws = math.ceil(1.5 * self.n * self.n_items / min_available) + 16
        while pending.numel():
            cand = torch.randint(self.n_items, (pending.numel(), draws), generator=self.generator)
            allowed = ~_member(self.keys, users[pending].unsqueeze(1) * self.n_items + cand)
            valid = allowed & (cand != tests[pending].unsqueeze(1)) & _first_occurrence(cand)
            position = valid.cumsum(1) - 1
            done = valid.sum(1) >= self.n
            r, c = (valid & (position < self.n) & done[:, None]).nonzero(as_tuple=True)
            out[pending[r], position[r, c]] = cand[r, c]
            pending = pending[~done]
            draws *= 2
        return out

    def _random_keys(self, users: torch.Tensor, tests: torch.Tensor):
        """Exact sampling by the n smallest uniform keys among each user's allowed items."""
        parts = []
        for block in _split(torch.arange(users.numel()), max(1, _DENSE_CELLS // self.n_items)):
            keys = torch.rand((block.numel(), self.n_items), generator=self.generator)
            rows, cols = self.excl.gather(users[block])
            keys[rows, cols] = 2.0
            keys[torch.arange(block.numel()), tests[block]] = 2.0
            parts.append(torch.topk(keys, self.n, dim=1, largest=False).indices)
        return torch.cat(parts)


def _first_occurrence(cand: torch.Tensor) -> torch.Tensor:
    """Mask of the first occurrence of each value in every row."""
    sorted_vals, order = torch.sort(cand, dim=1, stable=True)
    first_sorted = torch.ones_like(cand, dtype=torch.bool)
    first_sorted[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    return torch.zeros_like(first_sorted).scatter_(1, order, first_sorted)


def sampled_lists(
    n_items: int,
    test_items: Any,
    exclude: Any = None,
    n_negatives: int = 100,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidate lists of the sampled protocol: ``(users[E], items[E, 1 + n_negatives])``,
    each user's test item in column 0 and its :func:`sample_negatives` after it; exactly the
    lists :func:`evaluate_sampled` ranks with the same arguments."""
    n_items = check_positive_int(n_items, "n_items")
    tests = _single_test_items(_as_test_items(test_items, n_items))
    users, negatives = sample_negatives(n_items, tests, exclude, n_negatives, seed)
    return users, torch.cat([tests[users].unsqueeze(1), negatives], 1)


@torch.no_grad()
def evaluate_sampled(
    score_items_fn: ScoreItemsFn,
    n_items: int,
    test_items: Any,
    exclude: Any = None,
    n_negatives: int = 100,
    ks: int | Sequence[int] = DEFAULT_KS,
    seed: int = 0,
    chunk_size: int = 1024,
) -> RankingResult:
    """Rank each user's test item among ``n_negatives`` sampled negatives (sampled protocol).

    ``score_items_fn(users[B], items[B, 1 + n])`` scores the test item (column 0) and the
    negatives of :func:`sample_negatives`. Metric definitions and tie handling are those of
    :func:`evaluate_full` with the candidate set restricted to the ``1 + n`` items; Yin et al. (002
    sec 4.2) use ``n_negatives=20``, the common (NCF) protocol 100.
    """
    n_items = check_positive_int(n_items, "n_items")
    n = check_positive_int(n_negatives, "n_negatives")
    _check_ks(ks, n + 1, "the sampled list length 1 + n_negatives")
    tests = _single_test_items(_as_test_items(test_items, n_items))
    users, items = sampled_lists(n_items, tests, exclude, n, seed)
    return evaluate_lists(score_items_fn, users, items, ks, chunk_size,
                          n_skipped=tests.numel() - users.numel())


@torch.no_grad()
def evaluate_lists(
    score_items_fn: ScoreItemsFn,
    users: Any,
    items: Any,
    ks: int | Sequence[int] = DEFAULT_KS,
    chunk_size: int = 1024,
    n_skipped: int = 0,
) -> RankingResult:
    """Rank column 0 of each user's candidate list ``items[E, 1 + n]`` among the rest (the
    sampled protocol on given lists, e.g. a subset of :func:`sampled_lists`' rows).

    ``score_items_fn(users[B], items[B, 1 + n])`` scores a block of lists; metric definitions and
    ties are :func:`evaluate_sampled`'s.
    """
    users = torch.as_tensor(np.asarray(users), dtype=torch.long).reshape(-1)
    items = torch.as_tensor(np.asarray(items), dtype=torch.long)
    if items.ndim != 2 or items.shape[0] != users.numel() or items.shape[1] < 2:
        raise ConfigError(f"items must be a users x (1 + n) matrix with one row per user "
                          f"({users.numel()} users), got shape {tuple(items.shape)}.")
    n = items.shape[1] - 1
    ks = _check_ks(ks, n + 1, "the sampled list length 1 + n_negatives")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    tables = _tables(max(ks), n + 1)
    parts = []
    for block in progress(_split(torch.arange(users.numel()), chunk_size), desc="sampled ranking"):
        raw = score_items_fn(users[block], items[block])
        scores = _scores(raw, block.numel(), n + 1, "score_items_fn", check_nan=False)
        rows, cols = torch.arange(block.numel()), torch.zeros(block.numel(), dtype=torch.long)
        n_neg = torch.full((block.numel(),), n, dtype=torch.long)
        parts.append(_chunk_metrics(scores, users[block], rows, cols, n_neg, ks, tables,
                                    "score_items_fn"))
    return _collect(parts, ks, f"sampled-{n}", n_skipped)


# --------------------------------------------------------------------------------------------
# Top-k lists and CHR@K
# --------------------------------------------------------------------------------------------


def _score_users(
    score_fn: ScoreFn, n_users: int, n_items: int | None, exclude: Any, k: int, chunk_size: int,
    desc: str,
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(users, masked scores)`` chunks over all users, validating k on the way."""
    n_users = check_positive_int(n_users, "n_users")
    k = check_positive_int(k, "k")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    excl = None
    for chunk in progress(_split(torch.arange(n_users), chunk_size), desc=desc):
        scores = _scores(score_fn(chunk), chunk.numel(), n_items, "score_fn")
        if excl is None:
            n_items = scores.shape[1]
            _check_ks(k, n_items, "n_items")
            excl = _as_exclusion(exclude, n_users, n_items)
            _check_min_candidates(excl, n_items, k)
        yield chunk, _mask(scores, excl, chunk)


@torch.no_grad()
def topk(
    score_fn: ScoreFn,
    n_users: int,
    k: int,
    exclude: Any = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Top-k items of every user, best first, never an excluded item: ``LongTensor[n_users, k]``.

    Ties are ordered as :func:`torch.topk` orders them. Every user needs at least ``k``
    non-excluded items; excluded items are filled with ``-inf``, so they can only appear when a
    user's candidates themselves score ``-inf``.
    """
    parts = []
    for _, scores in _score_users(score_fn, n_users, None, exclude, k, chunk_size, "top-k"):
        filled = torch.where(torch.isnan(scores), -math.inf, scores)
        parts.append(torch.topk(filled, k, dim=1).indices.cpu())
    return torch.cat(parts)


@torch.no_grad()
def chr_at_k(
    score_fn: ScoreFn,
    n_users: int,
    item_categories: Any,
    category: Any,
    k: int,
    exclude: Any = None,
    chunk_size: int = 1024,
) -> tuple[float, float]:
    """Category Hit Ratio CHR@K of ``category``: ``(share, count)`` averaged over all users.

    ``count`` is the mean number of items of the category in a user's top-k list (what Anelli et
    al. 001 sec 3 / Table 1 report as CHR@20, after TAaMR) and ``share = count / k``. Items tied at
    the k-th place contribute their expected share of the remaining slots.
    """
    categories = np.asarray(
        item_categories.cpu() if isinstance(item_categories, torch.Tensor) else item_categories
    )
    if categories.ndim != 1 or categories.size == 0:
        raise ConfigError(
            f"item_categories must be a non-empty 1-D array, got shape {categories.shape}."
        )
    in_category = torch.from_numpy(np.asarray(categories == category, dtype=bool).reshape(-1))
    if not bool(in_category.any()):
        raise ConfigError(f"category {category!r} does not occur in item_categories.")
    total = torch.zeros((), dtype=torch.float64)
    for _, scores in _score_users(score_fn, n_users, categories.size, exclude, k, chunk_size,
                                  "CHR@K"):
        total += _expected_category_hits(scores, in_category.to(scores.device), k).sum().cpu()
    count = float(total) / n_users
    return count / k, count


def _expected_category_hits(scores: torch.Tensor, in_category: torch.Tensor, k: int):
    """Expected number of category items in each row's top-k (excluded entries are NaN)."""
    filled = torch.where(torch.isnan(scores), -math.inf, scores)
    kth = torch.topk(filled, k, dim=1).values[:, -1:]
    above, tied = scores > kth, scores == kth
    n_above, n_tied = above.sum(1), tied.sum(1)
    cat_above = (above & in_category).sum(1).double()
    cat_tied = (tied & in_category).sum(1).double()
    return cat_above + cat_tied * (k - n_above) / n_tied
