"""Where held-out items land in a full ranking: per-user item sets and the rank-counting kernel.

This is the low-level half of ranking evaluation, kept in the recsys layer because the training
loop (validation HR@10 for early stopping) and the two-stage pipeline need it;
:mod:`varsec.metrics.ranking` builds every metric on top of it.

* :class:`UserItems` / :func:`build_exclusion`: per-user item sets (training positives to exclude,
  test items) in CSR form.
* :func:`count_beaten`: for each row of a score matrix, how many entries score strictly higher
  than a given value and how many score equal to it. On the CPU it runs on NumPy in row blocks
  that stay in cache: two vectorised comparisons into one reusable bool buffer, counted eight
  cells at a time (the buffer is read as uint64 words whose byte lanes are summed). No top-k, no
  sort, no float64 copy of the scores.
* :func:`pair_counts`: those counts for (row, test item) pairs, with each pair's excluded items
  (e.g. training positives) removed by gathering their few scores instead of masking the matrix.
* :func:`full_rank_counts`: the chunked loop over users for one held-out item per user.
* :func:`hit_probability`: HR@k from the counts.

Ties are broken uniformly at random and every measure is its exact expectation: an item with
``h`` candidates scoring strictly higher and ``t`` others tied with it has a 0-based rank uniform
on ``{h, ..., h + t}``, so P(rank < k) = clip((k - h) / (t + 1), 0, 1).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from varsec.errors import ConfigError, ModelError

# Byte lanes of a uint64 word can each add up 255 words of 0/1 bytes without overflowing.
_WORDS_PER_SUM = 255
_CELLS_PER_SUM = 8 * _WORDS_PER_SUM
# Bool cells per row block of the CPU kernel (the block's scores and mask then stay in cache).
_BLOCK_CELLS = 1 << 18
_LOW_BYTES = np.uint64(0x00FF00FF00FF00FF)
_ADD_16BIT_LANES = np.uint64(0x0001000100010001)
_NUMPY_DTYPES = (torch.float32, torch.float64)


# --------------------------------------------------------------------------------------------
# Per-user item sets (CSR)
# --------------------------------------------------------------------------------------------


class UserItems(NamedTuple):
    """Per-user item sets in CSR form: user ``u`` holds ``indices[indptr[u]:indptr[u + 1]]``.

    Built by :func:`build_exclusion`, whose output is canonical (sorted, unique items per user,
    int64 CPU tensors). Unpacks as ``indptr, indices``.
    """

    indptr: Tensor
    indices: Tensor

    @property
    def n_users(self) -> int:
        """Number of users (rows)."""
        return self.indptr.numel() - 1

    def counts(self, users: Tensor | None = None) -> Tensor:
        """Number of items of each user (of ``users`` when given)."""
        sizes = self.indptr[1:] - self.indptr[:-1]
        return sizes if users is None else sizes[users]

    def gather(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """``(row, item)`` pairs of ``users``, where ``row`` is the position in ``users``."""
        starts = self.indptr[users]
        lengths = self.indptr[users + 1] - starts
        rows = torch.repeat_interleave(torch.arange(users.numel()), lengths)
        first = torch.cumsum(lengths, 0) - lengths
        offsets = torch.arange(rows.numel()) - first[rows]
        return rows, self.indices[starts[rows] + offsets]

    def keys(self, n_items: int) -> Tensor:
        """Globally sorted ``user * n_items + item`` keys (for membership tests)."""
        rows = torch.repeat_interleave(torch.arange(self.n_users), self.counts())
        return rows * n_items + self.indices


def build_exclusion(users: Any, items: Any, n_users: int, n_items: int) -> UserItems:
    """Build the per-user excluded sets from parallel ``users`` / ``items`` arrays.

    Duplicates are dropped and each user's items are sorted, so ``indptr, indices = result`` is a
    canonical CSR structure of the ``(n_users, n_items)`` exclusion matrix.
    """
    return user_items(users, items, n_users, n_items, ("exclude users", "exclude items"))


def user_items(
    users: Any, items: Any, n_users: int, n_items: int, labels: tuple[str, str]
) -> UserItems:
    """:func:`build_exclusion` for any per-user item set, with the names used in error messages."""
    check_positive_int(n_users, "n_users")
    check_positive_int(n_items, "n_items")
    u, i = as_index_tensor(users, labels[0]), as_index_tensor(items, labels[1])
    if u.shape != i.shape or u.dim() != 1:
        raise ConfigError(
            f"{labels[0]} and items must be 1-D arrays of equal length, "
            f"got shapes {tuple(u.shape)} and {tuple(i.shape)}."
        )
    check_index_range(u, n_users, labels[0], "n_users")
    check_index_range(i, n_items, labels[1], "n_items")
    key = torch.unique(u * n_items + i)
    rows = torch.div(key, n_items, rounding_mode="floor")
    indptr = torch.zeros(n_users + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=n_users), 0)
    return UserItems(indptr, key - rows * n_items)


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an int, or raise ConfigError unless it is a positive integer."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    try:
        number = operator.index(value)
    except TypeError:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.") from None
    if number <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    return number


def as_index_tensor(values: Any, name: str) -> Tensor:
    """An int64 CPU tensor from a tensor, array or sequence of integers."""
    if isinstance(values, Tensor):
        tensor = values.detach().cpu()
    else:
        array = np.asarray(values)
        if array.dtype == object:
            raise ConfigError(f"{name} must be an array of integers, got ragged or mixed values.")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.numel() == 0:
        return tensor.to(torch.long)
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise ConfigError(f"{name} must hold integers, got dtype {tensor.dtype}.")
    return tensor.to(torch.long)


def check_index_range(values: Tensor, size: int, name: str, size_name: str) -> None:
    """ConfigError unless every entry of ``values`` lies in ``[0, size)``."""
    if values.numel() and (int(values.min()) < 0 or int(values.max()) >= size):
        bad = int(values.min()) if int(values.min()) < 0 else int(values.max())
        raise ConfigError(f"{name} contains {bad}, outside [0, {size}) for {size_name}={size}.")


# --------------------------------------------------------------------------------------------
# The counting kernel
# --------------------------------------------------------------------------------------------


def count_beaten(scores: Tensor, x: Tensor, what: str = "the scorer") -> tuple[Tensor, Tensor]:
    """Per row ``r``: entries of ``scores[r]`` strictly above ``x[r]``, and entries equal to it.

    ``scores`` is ``[R, n]`` (any strided layout), ``x`` is ``[R]``; both int64 counts are
    returned on the scores' device. A NaN anywhere in ``scores`` raises ModelError naming ``what``
    (NaN compares false both ways, so it would silently drop out of every count).
    """
    scores, x = scores.detach(), x.detach()
    if scores.device.type != "cpu":
        higher = (scores > x[:, None]).sum(1)
        equal = (scores == x[:, None]).sum(1)
        nan_rows = torch.isnan(scores).any(1)
        if bool(nan_rows.any()):
            raise _nan_error(what, int(nan_rows.nonzero()[0]))
        return higher, equal
    if scores.dtype not in _NUMPY_DTYPES:  # float16 / bfloat16: widening is exact and monotone
        scores, x = scores.float(), x.float()
    higher, equal = _count_beaten_numpy(scores.numpy(), x.to(scores.dtype).numpy(), what)
    return torch.from_numpy(higher), torch.from_numpy(equal)


def _count_beaten_numpy(
    matrix: np.ndarray, x: np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray]:
    n_rows, n_cols = matrix.shape
    width = -(-n_cols // _CELLS_PER_SUM) * _CELLS_PER_SUM  # padding columns stay False
    block = max(1, min(n_rows, _BLOCK_CELLS // width))
    buffer = np.zeros((block, width), dtype=bool)
    higher = np.empty(n_rows, dtype=np.int64)
    equal = np.empty(n_rows, dtype=np.int64)
    for start in range(0, n_rows, block):
        stop = min(n_rows, start + block)
        values, threshold = matrix[start:stop], x[start:stop, None]
        mask = buffer[: stop - start]
        if np.isnan(values.max()):
            raise _nan_error(what, start + int(np.isnan(values).any(1).argmax()))
        np.greater(values, threshold, out=mask[:, :n_cols])
        higher[start:stop] = _true_per_row(mask)
        np.equal(values, threshold, out=mask[:, :n_cols])
        equal[start:stop] = _true_per_row(mask)
    return higher, equal


def _true_per_row(mask: np.ndarray) -> np.ndarray:
    """True cells per row of a C-contiguous bool ``[r, w]`` array, ``w`` a multiple of 2040."""
    words = mask.view(np.uint64)
    rows, n_words = words.shape
    lanes = words.reshape(rows, n_words // _WORDS_PER_SUM, _WORDS_PER_SUM).sum(2, dtype=np.uint64)
    pairs = (lanes & _LOW_BYTES) + ((lanes >> np.uint64(8)) & _LOW_BYTES)  # four 16-bit lanes
    return ((pairs * _ADD_16BIT_LANES) >> np.uint64(48)).sum(1, dtype=np.int64)


def _nan_error(what: str, row: int) -> ModelError:
    return ModelError(f"{what} returned NaN scores for the user in row {row} of a chunk.")


def pair_counts(
    scores: Tensor, rows: Tensor, cols: Tensor, excluded: tuple[Tensor, Tensor],
    what: str = "the scorer",
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """For each (row, test item) pair of a score chunk: its score and how many candidates beat
    or tie it.

    ``rows[p], cols[p]`` is pair ``p``'s row of ``scores`` and its test item (a row may hold
    several test items); ``excluded`` lists ``(pair, item)`` entries that are not candidates of
    that pair (they are counted on the raw scores and subtracted, so the chunk is never copied or
    masked). Returns ``(x, higher, ties, test_higher, test_ties)``: ``higher`` / ``ties`` count
    all other candidates of the row (its other test items included) scoring strictly higher /
    equal, ``test_*`` only the row's other test items.
    """
    x = scores[rows, cols]
    n_rows = scores.shape[0]
    if rows.numel() == n_rows and bool((rows == torch.arange(n_rows, device=rows.device)).all()):
        higher, equal = count_beaten(scores, x, what)
        test_higher = test_ties = torch.zeros_like(higher)
    else:  # several test items per row: compare in blocks of n_rows pairs to bound memory
        if bool(torch.isnan(scores.sum())) and bool(torch.isnan(scores).any()):  # sum: fast
            raise _nan_error(what, int(torch.isnan(scores).any(1).nonzero()[0]))
        per_row = torch.bincount(rows, minlength=n_rows)
        first = torch.cumsum(per_row, 0) - per_row
        slot = torch.arange(rows.numel(), device=rows.device) - first[rows]
        table = torch.full((n_rows, int(per_row.max())), float("nan"), dtype=scores.dtype,
                           device=scores.device)
        table[rows, slot] = x
        test_higher = (table[rows] > x[:, None]).sum(1)
        test_ties = (table[rows] == x[:, None]).sum(1) - 1
        blocks = torch.arange(rows.numel(), device=rows.device).split(max(n_rows, 1))
        parts = [count_beaten(scores[rows[block]], x[block], what) for block in blocks]
        higher, equal = (torch.cat(p) for p in zip(*parts, strict=True))
    ties = equal - 1  # the pair's own item
    pair, item = excluded
    if pair.numel():
        value, own = scores[rows[pair], item], x[pair]
        higher = higher - torch.zeros_like(higher).index_add_(0, pair, (value > own).long())
        ties = ties - torch.zeros_like(ties).index_add_(0, pair, (value == own).long())
    return x, higher, ties, test_higher, test_ties


def hit_probability(k: int, higher: Tensor, ties: Tensor) -> Tensor:
    """P(rank < k) for a 0-based rank uniform on ``{higher, ..., higher + ties}`` (float input)."""
    return (k - higher).clamp(min=0).minimum(ties + 1) / (ties + 1)


@torch.no_grad()
def full_rank_counts(
    score_fn: Callable[[Tensor], Tensor],
    test_items: Tensor,
    exclude: UserItems,
    chunk_size: int = 1024,
) -> tuple[Tensor, Tensor, Tensor]:
    """Rank each user's single held-out item among all items but the user's excluded ones.

    ``test_items[u]`` is user u's item (-1: none, the user is skipped); ``score_fn(users)``
    returns the ``[B, n_items]`` scores of a chunk of users (items it should never rank, such as
    cold items, may be given ``-inf``). Returns ``(users, higher, ties)`` as CPU int64 tensors:
    the users ranked, and per user the candidates scoring strictly higher than / equal to its
    item.
    """
    users = torch.nonzero(test_items >= 0).reshape(-1)
    parts: list[tuple[Tensor, Tensor]] = []
    for chunk in users.split(check_positive_int(chunk_size, "chunk_size")):
        scores = score_fn(chunk)
        rows = torch.arange(chunk.numel(), device=scores.device)
        pair, item = exclude.gather(chunk)
        excluded = (pair.to(scores.device), item.to(scores.device))
        counts = pair_counts(scores, rows, test_items[chunk].to(scores.device), excluded)
        parts.append((counts[1].cpu(), counts[2].cpu()))
    if not parts:
        empty = torch.zeros(0, dtype=torch.long)
        return users, empty, empty
    higher, ties = (torch.cat(p) for p in zip(*parts, strict=True))
    return users, higher, ties


__all__ = [
    "UserItems",
    "as_index_tensor",
    "build_exclusion",
    "check_index_range",
    "check_positive_int",
    "count_beaten",
    "full_rank_counts",
    "hit_probability",
    "pair_counts",
    "user_items",
]
