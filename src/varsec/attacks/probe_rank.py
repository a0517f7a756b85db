"""Rank-only feedback from probe accounts: what a merchant who only queries the live system sees.

The merchant controls P probe accounts (users with histories, as real users have) and, after
each upload, sees only where its item lands in their top-N lists of the two-stage pipeline (the
first stage's K candidates re-ranked with the item among them). The objective is the item's
mean reciprocal rank over the probes (0 for a probe whose top N it misses); it has no gradient
(ranks are piecewise constant), so it is attacked by a query-only rule such as Square Attack,
each query one upload scored for all probes. The probes are drawn by the attack stage and left
out of the evaluation, which measures the other users.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from varsec.attacks.insa import recommender_modules
from varsec.attacks.objectives import Objective
from varsec.attacks.registry import register_objective
from varsec.params import Param, check_int


@register_objective("probe-rank")
class ProbeRank(Objective):
    """The mean reciprocal rank of an uploaded item in P probe accounts' top-N lists (rank-only
    feedback; issue 15's query-only merchant)."""

    family = "promotion"
    params: ClassVar[dict[str, Param]] = {
        "probes": Param(20, int, low=1, doc="probe accounts the merchant controls"),
        "top_n": Param(20, int, low=1, doc="the length of the lists the probes see"),
    }

    def __init__(self, pipeline: Any, sets: Any, top_n: int = 20) -> None:
        self.pipeline, self.sets = pipeline, sets
        self.top_n = check_int(top_n, "top_n", low=1)

    def modules(self) -> list[nn.Module]:
        return recommender_modules(self.pipeline.ranker)

    @torch.no_grad()
    def ranks(self, x: Tensor) -> Tensor:
        """Expected 1-based rank [P, B] of each image's item in each probe's list."""
        scores = self.pipeline.score_images(self.sets, x)
        return self.sets.rank_injected(scores.cpu()).expected_rank

    def loss(self, x: Tensor, index: Tensor) -> Tensor:
        ranks = self.ranks(x)
        reciprocal = torch.where(ranks <= self.top_n, 1.0 / ranks, torch.zeros_like(ranks))
        return reciprocal.mean(0).to(x.device)


__all__ = ["ProbeRank"]
