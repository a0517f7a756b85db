"""The two-stage recommender of AIP (Liu & Larson, 000 sec 5.2).

Stage 1, a collaborative model (BPR-MF), gives every user a *set* of its top-K items (K = 1000 in
the paper, 100 in the default profile) among the warm items the user has not seen (train and
validation positives excluded). The user's test item and one cold item (cooperative, or its
adversarial twin) are injected, and stage 2, a visually-aware ranker (AlexRank, VBPR, DVBPR, ...),
orders the K + 2 items; the order of stage 1 is not used.

The work is split so that attacks are cheap. :meth:`TwoStage.prepare` scores each user's K
candidates and its test item with the ranker ONCE (:class:`CandidateSets`). After that an
injected item costs one score per user: :meth:`TwoStage.score_items` (catalog cold items) or
:meth:`TwoStage.score_images` (pixels, differentiable) give the scores, and
:meth:`CandidateSets.rank_injected` compares them with the stored ones.

Ties are broken uniformly at random and reported as expectations, as in
:mod:`varsec.recsys.ranking` (and the metrics built on it): an item with ``h`` items scored
strictly higher and ``t`` tied has expected 1-based rank ``1 + h + t / 2`` and
HR@N = P(rank <= N) = clip((N - h) / (t + 1), 0, 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from varsec.data.catalog import SPLIT_CODES, Dataset
from varsec.errors import ConfigError, DataError
from varsec.recsys.base import Recommender, part_size
from varsec.recsys.ranking import UserItems, build_exclusion, hit_probability


@dataclass(frozen=True)
class InjectedRanks:
    """Where injected items land among the K + 2 items: counts per (user, injected item).

    ``higher``/``tied`` count the other K + 1 items (candidates and the test item) scored
    strictly above / equal to the injected item; ``test_higher``/``test_tied`` count the other
    K + 1 items (candidates and the injected item) relative to the test item.
    """

    higher: Tensor
    tied: Tensor
    test_higher: Tensor
    test_tied: Tensor

    @property
    def expected_rank(self) -> Tensor:
        """Expected 1-based rank of the injected item under random tie-breaking."""
        return 1.0 + self.higher + self.tied / 2.0

    @property
    def test_expected_rank(self) -> Tensor:
        """Expected 1-based rank of the test item under random tie-breaking."""
        return 1.0 + self.test_higher + self.test_tied / 2.0

    def hit(self, n: int) -> Tensor:
        """P(injected item in the top n), per (user, injected item)."""
        return _hit_probability(n, self.higher, self.tied)

    def test_hit(self, n: int) -> Tensor:
        """P(test item in the top n), per (user, injected item)."""
        return _hit_probability(n, self.test_higher, self.test_tied)


def _hit_probability(n: int, higher: Tensor, tied: Tensor) -> Tensor:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"HR@N: N must be a positive integer, got {n!r}.")
    return hit_probability(int(n), higher.double(), tied.double())


@dataclass
class CandidateSets:
    """Each user's stage-1 candidate set and test item, with their stage-2 scores.

    ``users[r]`` has candidates ``candidates[r]`` (K warm items, stage-1 best first) and test
    item ``test_items[r]``; ``candidate_scores``/``test_scores`` are the ranker's scores.
    """

    users: Tensor
    candidates: Tensor
    test_items: Tensor
    candidate_scores: Tensor
    test_scores: Tensor

    @property
    def k(self) -> int:
        return int(self.candidates.shape[1])

    def item_sets(self, injected_items: Any) -> Tensor:
        """LongTensor [U, K + 2]: candidates, the test item, then the injected item.

        ``injected_items`` is one catalog index for every user, or one per user ([U]).
        """
        injected = torch.as_tensor(injected_items, dtype=torch.long).reshape(-1)
        injected = injected.expand(len(self.users)) if injected.numel() == 1 else injected
        if injected.shape != self.users.shape:
            raise ConfigError(
                f"give one injected item or one per user ({len(self.users)}), "
                f"got {injected.numel()}."
            )
        return torch.cat([self.candidates, self.test_items[:, None], injected[:, None]], 1)

    def rank_injected(self, injected_scores: Tensor, chunk_columns: int = 64) -> InjectedRanks:
        """Ranks of injected items given their ranker scores ([U] or [U, C], one column each).

        Each column is one injected item competing with the user's K candidates and test item.
        """
        scores = injected_scores.detach()
        scores = scores.unsqueeze(1) if scores.ndim == 1 else scores
        if scores.ndim != 2 or scores.shape[0] != len(self.users):
            raise ConfigError(
                f"injected scores must have shape ({len(self.users)},) or ({len(self.users)}, C), "
                f"got {tuple(injected_scores.shape)}."
            )
        scores = scores.to(self.candidate_scores.device, self.candidate_scores.dtype)
        parts = [self._rank_columns(block) for block in scores.split(chunk_columns, dim=1)]
        return InjectedRanks(*(torch.cat(values, 1) for values in zip(*parts, strict=True)))

    def _rank_columns(self, scores: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        candidates = self.candidate_scores.unsqueeze(1)  # [U, 1, K]
        test = self.test_scores.unsqueeze(1)  # [U, 1]
        higher = (candidates > scores.unsqueeze(2)).sum(2) + (test > scores)
        tied = (candidates == scores.unsqueeze(2)).sum(2) + (test == scores)
        test_higher = (self.candidate_scores > self.test_scores[:, None]).sum(1, keepdim=True)
        test_tied = (self.candidate_scores == self.test_scores[:, None]).sum(1, keepdim=True)
        return higher, tied, test_higher + (scores > test), test_tied + (scores == test)


class TwoStage:
    """AIP's two-stage pipeline (000 sec 5.2): BPR candidate sets + a visual second stage."""

    def __init__(
        self, first_stage: Recommender, ranker: Recommender, k: int = 100, chunk_size: int = 1024
    ) -> None:
        for name, value in (("k", k), ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ConfigError(f"two-stage {name} must be a positive integer, got {value!r}.")
        for name, model in (("first_stage", first_stage), ("ranker", ranker)):
            if not isinstance(model, Recommender):
                raise ConfigError(f"two-stage {name} must be a varsec Recommender.")
        if first_stage.n_items != ranker.n_items or first_stage.n_users != ranker.n_users:
            raise ConfigError("the two stages were trained on different user or item sets.")
        self.first_stage, self.ranker = first_stage, ranker
        self.k, self.chunk_size = int(k), int(chunk_size)

    def prepare(self, dataset: Dataset, users: Sequence[int] | None = None) -> CandidateSets:
        """Candidate sets of the users with a test item (or of ``users``), scored by the ranker."""
        n_warm = dataset.n_items - len(dataset.cold_items)
        if self.k > n_warm:
            raise ConfigError(
                f"two-stage k={self.k} is larger than the {n_warm} warm items of catalog "
                f"{dataset.catalog.name!r}."
            )
        test_users, test_items = _test_items(dataset, users)
        seen = _seen_items(dataset)
        parts = [
            self._prepare_chunk(dataset, seen, test_users[rows], test_items[rows])
            for rows in torch.arange(len(test_users)).split(self.chunk_size)
        ]
        candidates, candidate_scores, test_scores = (torch.cat(p) for p in zip(*parts, strict=True))
        return CandidateSets(test_users, candidates, test_items, candidate_scores, test_scores)

    def _prepare_chunk(
        self, dataset: Dataset, seen: Any, users: Tensor, test_items: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        stage1 = self.first_stage.score(users).cpu()
        blocked = torch.zeros_like(stage1, dtype=torch.bool)
        rows, cols = seen.gather(users)
        blocked[rows, cols] = True
        blocked[:, torch.as_tensor(dataset.cold_items, dtype=torch.long)] = True
        blocked[torch.arange(len(users)), test_items] = True
        available = (~blocked).sum(1)
        if int(available.min()) < self.k:
            row = int(torch.argmin(available))
            raise ConfigError(
                f"two-stage k={self.k} exceeds the {int(available[row])} unseen warm items of "
                f"user {int(users[row])}."
            )
        candidates = torch.topk(stage1.masked_fill(blocked, -math.inf), self.k, dim=1).indices
        stage2 = self.ranker.score(users).cpu()
        return (candidates, stage2.gather(1, candidates),
                stage2.gather(1, test_items[:, None]).squeeze(1))

    def score_items(self, sets: CandidateSets, items: Any) -> Tensor:
        """Ranker scores [U, C] of catalog items (e.g. cold items) for the users of ``sets``."""
        return self.ranker.score(sets.users, items).cpu()

    def score_images(self, sets: CandidateSets, images: Tensor) -> Tensor:
        """Ranker scores [U, B] of items given by float images (differentiable in the images)."""
        return self.ranker.score_images(sets.users, images)

    def score_features(self, sets: CandidateSets, features: Tensor) -> Tensor:
        """Ranker scores [U, B] of items given by visual features."""
        return self.ranker.score_features(sets.users, features)


def _test_items(dataset: Dataset, users: Sequence[int] | None) -> tuple[Tensor, Tensor]:
    if part_size(dataset, "test") == 0:
        raise DataError("the dataset has no test interactions to inject into the candidate sets.")
    test = dataset.part("test")
    test_users, first = np.unique(test.user, return_index=True)
    test_items = test.item[first]
    if users is not None:
        wanted = np.asarray(users, dtype=np.int64).reshape(-1)
        missing = np.setdiff1d(wanted, test_users)
        if len(missing):
            raise DataError(f"user {int(missing[0])} has no test item to inject.")
        keep = np.isin(test_users, wanted)
        test_users, test_items = test_users[keep], test_items[keep]
    return torch.as_tensor(test_users), torch.as_tensor(test_items)


def _seen_items(dataset: Dataset) -> UserItems:
    rows = np.isin(dataset.split, [SPLIT_CODES["train"], SPLIT_CODES["validation"]])
    return build_exclusion(dataset.interactions.user[rows], dataset.interactions.item[rows],
                           dataset.n_users, dataset.n_items)


__all__ = ["CandidateSets", "InjectedRanks", "TwoStage"]
