"""BPR-MF: matrix factorisation trained with Bayesian Personalized Ranking (Rendle et al., 2009).

``s_ui = b_i + p_u · q_i``, learned by minimising ``-ln σ(s_ui - s_uj) + λ‖Θ‖²`` over sampled
triplets (Anelli et al., 001 sec 2 eq 1). Cold items never occur in training, so their factor and
bias stay exactly zero: BPR-MF scores every cold item 0 (it has nothing else to go on). It is the
first stage of the two-stage pipeline (AIP, 000 sec 5.2).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from varsec.data.catalog import Dataset
from varsec.recsys.base import Param, register_recommender, warm_item_mask
from varsec.recsys.training import PairwiseRecommender

INIT_STD = 0.1


def sparse_embedding(rows: int, dim: int, std: float, warm: Tensor | None = None) -> nn.Embedding:
    """An embedding table with sparse gradients, N(0, std²) rows (zero where ``warm`` is False)."""
    table = nn.Embedding(rows, dim, sparse=True)
    with torch.no_grad():
        if std > 0:
            table.weight.normal_(0.0, std)
        else:
            table.weight.zero_()
        if warm is not None:
            table.weight[~warm] = 0.0
    return table


@register_recommender("bpr-mf")
class BPRMF(PairwiseRecommender):
    """BPR-MF (Rendle et al., UAI 2009; 001 eq 1): ``s_ui = b_i + p_u · q_i``."""

    params: ClassVar[dict[str, Param]] = {
        **PairwiseRecommender.params,
        "factors": Param(64, int, low=1, doc="latent dimension of p_u and q_i"),
    }

    def _prepare(self, dataset: Dataset, features: Any | None, extractor: Any | None) -> None:
        self._build({})
        warm = warm_item_mask(dataset)
        with torch.no_grad():
            self.item_factors.weight[~warm] = 0.0

    def _build(self, shapes: dict[str, Any]) -> None:
        k = self.hp.factors
        self.user_factors = sparse_embedding(self.n_users, k, INIT_STD)
        self.item_factors = sparse_embedding(self.n_items, k, INIT_STD)
        self.item_bias = sparse_embedding(self.n_items, 1, 0.0)

    def pair_scores(self, users: Tensor, items: Tensor) -> Tensor:
        p_u, q_i = self.user_factors(users), self.item_factors(items)
        return self.item_bias(items).squeeze(1) + (p_u * q_i).sum(1)

    def regularised_rows(self, users: Tensor, pos: Tensor, neg: Tensor) -> list[Tensor]:
        return [
            self.user_factors(users), self.item_factors(pos), self.item_factors(neg),
            self.item_bias(pos), self.item_bias(neg),
        ]

    def _score(self, users: Tensor, items: Tensor | None) -> Tensor:
        q = self.item_factors.weight if items is None else self.item_factors.weight[items]
        b = self.item_bias.weight if items is None else self.item_bias.weight[items]
        return torch.addmm(b.T, self.user_factors.weight[users], q.T)


__all__ = ["BPRMF", "sparse_embedding"]
