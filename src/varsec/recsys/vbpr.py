"""VBPR: Visual Bayesian Personalized Ranking (He & McAuley, AAAI 2016).

``s_ui = α + β_u + β_i + γ_u·γ_i + θ_u·(E f_i) + β'·f_i`` (AIP 000 sec 3.2.2 eq 2 with He &
McAuley's visual bias ``β'·f_i``; 001 eq 2), where ``f_i`` are features of item i's image from a
frozen extractor. With ``shared_factors=True`` the score is Yin et al.'s
``γ_u·(γ_i + E f_i)`` (002 sec 3.5), which shares one user vector between the two parts.

Cold items have no learned ``γ_i`` nor ``β_i`` (both are held at zero): they are scored by
``f_i`` alone, which is what :meth:`VBPR.score_features` and :meth:`VBPR.score_images` do for
items outside the catalog. ``α`` and ``β_u`` cancel in every pairwise difference, so BPR leaves
them at zero; they are kept so that scores (and prediction shifts) follow eq 2 literally.

Features are divided by their mean L2 norm over the warm items (``feature_scale``, fixed at
fit time and applied to every feature input), so the learning rate does not depend on the
extractor's output scale.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from varsec.data.catalog import Dataset
from varsec.recsys.base import Param, resolve_features, warm_item_mask
from varsec.recsys.bpr_mf import INIT_STD, sparse_embedding
from varsec.recsys.training import PairwiseRecommender

# Item rows projected at once when the cached visual table is rebuilt.
PROJECTION_CHUNK = 65_536


class VBPR(PairwiseRecommender):
    """VBPR (He & McAuley 2016; 000 eq 2), optionally Yin et al.'s shared form (002 sec 3.5)."""

    visual: ClassVar[bool] = True
    params: ClassVar[dict[str, Param]] = {
        **PairwiseRecommender.params,
        "factors": Param(32, int, low=1, doc="dimension of γ_u, γ_i"),
        "visual_factors": Param(32, int, low=1, doc="dimension of θ_u, E f_i (not shared)"),
        "reg_visual": Param(0.0, float, low=0, doc="weight decay of E and β'"),
        "shared_factors": Param(False, bool, doc="score γ_u·(γ_i + E f_i) (002 sec 3.5)"),
    }

    # -- building -----------------------------------------------------------------------------
    def _prepare(self, dataset: Dataset, features: Any | None, extractor: Any | None) -> None:
        matrix = resolve_features(dataset, features, extractor, type(self).__name__)
        self.attach_extractor(extractor)
        self._build({"feature_dim": int(matrix.shape[1])})
        warm = warm_item_mask(dataset)
        norms = matrix[warm].norm(dim=1).mean()
        with torch.no_grad():
            self.warm.copy_(warm)
            self.feature_scale.fill_(1.0 / float(norms) if float(norms) > 0 else 1.0)
            self.item_gamma.weight[~warm] = 0.0
        self.train_features = matrix.to(self.device)

    def _visual_dim(self) -> int:
        return self.hp.factors if self.hp.shared_factors else self.hp.visual_factors

    def _build(self, shapes: dict[str, Any]) -> None:
        self._feature_dim = int(shapes["feature_dim"])
        n_users, n_items, dim = self.n_users, self.n_items, self._feature_dim
        self.user_gamma = sparse_embedding(n_users, self.hp.factors, INIT_STD)
        self.item_gamma = sparse_embedding(n_items, self.hp.factors, INIT_STD)
        self.embedding = nn.Linear(dim, self._visual_dim(), bias=False)
        if not self.hp.shared_factors:
            self.user_theta = sparse_embedding(n_users, self.hp.visual_factors, INIT_STD)
            self.item_bias = sparse_embedding(n_items, 1, 0.0)
            self.visual_bias = nn.Linear(dim, 1, bias=False)
            nn.init.zeros_(self.visual_bias.weight)
            self.register_buffer("alpha", torch.zeros(()))
            self.register_buffer("user_bias", torch.zeros(n_users))
        self.register_buffer("warm", torch.ones(n_items, dtype=torch.bool))
        self.register_buffer("feature_scale", torch.ones(()))
        self.register_buffer("item_visual", torch.zeros(n_items, self._visual_dim()))
        self.register_buffer("item_visual_bias", torch.zeros(n_items))
        self.train_features: Tensor | None = None

    def dense_weight_decay(self) -> float:
        return self.hp.reg_visual

    def refresh(self) -> None:
        """Recompute ``E f_i`` and ``β'·f_i`` for every catalog item from the current E, β'."""
        if self.train_features is None:
            return
        with torch.no_grad():
            for rows in torch.arange(self.n_items).split(PROJECTION_CHUNK):
                projected, bias = self.visual_terms(self.train_features[rows.to(self.device)])
                self.item_visual[rows] = projected
                self.item_visual_bias[rows] = bias

    # -- the score function -------------------------------------------------------------------
    def visual_terms(self, raw_features: Tensor) -> tuple[Tensor, Tensor]:
        """``(E f, β'·f)`` for raw (unscaled) features ``f`` (β'·f is 0 in the shared form)."""
        scaled = raw_features * self.feature_scale
        projected = self.embedding(scaled)
        if self.hp.shared_factors:
            return projected, torch.zeros(len(scaled), device=scaled.device)
        return projected, self.visual_bias(scaled).squeeze(1)

    def scores_from_features(self, users: Tensor, items: Tensor, raw_features: Tensor) -> Tensor:
        """Pairwise scores of (users[k], items[k]) with item k's features ``raw_features[k]``."""
        projected, visual_bias = self.visual_terms(raw_features)
        gamma_u = self.user_gamma(users)
        score = (gamma_u * self.item_gamma(items)).sum(1)
        if self.hp.shared_factors:
            return score + (gamma_u * projected).sum(1)
        theta_u = self.user_theta(users)
        return (
            self.alpha + self.user_bias[users] + self.item_bias(items).squeeze(1)
            + score + (theta_u * projected).sum(1) + visual_bias
        )

    def pair_scores(self, users: Tensor, items: Tensor) -> Tensor:
        assert self.train_features is not None, "pair_scores is for training"
        return self.scores_from_features(users, items, self.train_features[items])

    def regularised_rows(self, users: Tensor, pos: Tensor, neg: Tensor) -> list[Tensor]:
        rows = [self.user_gamma(users), self.item_gamma(pos), self.item_gamma(neg)]
        if not self.hp.shared_factors:
            rows += [self.user_theta(users), self.item_bias(pos), self.item_bias(neg)]
        return rows

    def _user_visual(self, users: Tensor) -> Tensor:
        table = self.user_gamma if self.hp.shared_factors else self.user_theta
        return table.weight[users]

    def _score(self, users: Tensor, items: Tensor | None) -> Tensor:
        select = slice(None) if items is None else items
        warm = self.warm[select].unsqueeze(1).float()
        gamma_i = self.item_gamma.weight[select] * warm
        gamma_u = self.user_gamma.weight[users]
        visual = self._user_visual(users) @ self.item_visual[select].T
        if self.hp.shared_factors:
            return gamma_u @ gamma_i.T + visual
        item_bias = self.item_bias.weight[select].squeeze(1) * warm.squeeze(1)
        offset = self.alpha + self.user_bias[users].unsqueeze(1)
        return offset + gamma_u @ gamma_i.T + visual + (item_bias + self.item_visual_bias[select])

    def _score_features(self, users: Tensor, features: Tensor) -> Tensor:
        projected, visual_bias = self.visual_terms(features)
        visual = self._user_visual(users) @ projected.T
        if self.hp.shared_factors:
            return visual
        return self.alpha + self.user_bias[users].unsqueeze(1) + visual + visual_bias

    def _shapes(self) -> dict[str, Any]:
        return {"feature_dim": self._feature_dim}


__all__ = ["VBPR"]
