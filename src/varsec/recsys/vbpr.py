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

Training minimises the BPR objective of :mod:`varsec.recsys.training` with its gradient written
out (:meth:`VBPR.train_step`) rather than taken by autograd: per minibatch the pairwise difference
``s_ui - s_uj = β_i - β_j + γ_u·(γ_i - γ_j) + θ_u·E(f_i - f_j) + β'·(f_i - f_j)`` needs one
projection of the feature *differences* (``[E; β']`` stacked, a single matmul), each parameter
row is gathered once for the score and the L2 penalty, and the gradients of repeated rows are
summed before one row-wise optimizer update per table. Subclasses that change the objective
(AMR) fall back to autograd on ``triplet_loss``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from varsec.data.catalog import Dataset
from varsec.recsys.base import Param, register_recommender, resolve_features, warm_item_mask
from varsec.recsys.bpr_mf import INIT_STD, sparse_embedding
from varsec.recsys.training import PairwiseOptimizer, PairwiseRecommender, merge_rows

# Item rows projected at once when the cached visual table is rebuilt.
PROJECTION_CHUNK = 65_536


@register_recommender("vbpr")
class VBPR(PairwiseRecommender):
    """VBPR (He & McAuley 2016; 000 eq 2), optionally Yin et al.'s shared form (002 sec 3.5)."""

    visual: ClassVar[bool] = True
    needs_features: ClassVar[bool] = True
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

    # -- training -----------------------------------------------------------------------------
    # The methods that define the training objective; a subclass overriding one uses autograd.
    _OBJECTIVE: ClassVar[tuple[str, ...]] = (
        "triplet_loss", "bpr_loss", "penalty", "pair_scores", "scores_from_features",
        "visual_terms", "regularised_rows",
    )

    def train_step(
        self, users: Tensor, pos: Tensor, neg: Tensor, optimizer: PairwiseOptimizer
    ) -> Tensor:
        """One minibatch update of ``triplet_loss`` with its closed-form gradient.

        The same objective as the autograd step (BPR loss ``mean -ln σ(x_uij)`` plus
        ``reg · Σ‖rows‖² / B`` over the rows the batch uses), the same optimizer rules; a subclass
        that overrides any part of the objective is trained by autograd instead.
        """
        closed_form = self.train_features is not None and all(
            getattr(type(self), name) is getattr(VBPR, name) for name in self._OBJECTIVE
        ) and all(parameter.requires_grad for parameter in self.parameters())
        if not closed_form:
            return super().train_step(users, pos, neg, optimizer)
        with torch.no_grad():
            return self._closed_form_step(users, pos, neg, optimizer)

    def _closed_form_step(
        self, users: Tensor, pos: Tensor, neg: Tensor, optimizer: PairwiseOptimizer
    ) -> Tensor:
        assert self.train_features is not None
        n, shared = len(users), self.hp.shared_factors
        items = torch.cat([pos, neg])
        gamma_u = self.user_gamma.weight.index_select(0, users)
        gamma_i = self.item_gamma.weight.index_select(0, items)
        gamma_difference = gamma_i[:n] - gamma_i[n:]
        features = self.train_features
        difference = torch.sub(features.index_select(0, pos), features.index_select(0, neg))
        difference.mul_(self.feature_scale)  # scaled f_i - f_j, [B, D]
        if shared:  # x = γ_u·(γ_i - γ_j + E(f_i - f_j))
            visual = difference @ self.embedding.weight.T.contiguous()
            user_side = gamma_difference + visual
            x = (gamma_u * user_side).sum(1)
            user_rows = [gamma_u]
            item_rows = [gamma_i]
        else:  # x = β_i - β_j + γ_u·(γ_i - γ_j) + θ_u·E(f_i - f_j) + β'·(f_i - f_j)
            weight = torch.cat([self.embedding.weight, self.visual_bias.weight]).T.contiguous()
            projected = difference @ weight  # [B, k2 + 1]
            visual, visual_bias = projected[:, :-1], projected[:, -1]
            theta_u = self.user_theta.weight.index_select(0, users)
            beta_i = self.item_bias.weight.index_select(0, items)
            x = ((gamma_u * gamma_difference).sum(1) + (theta_u * visual).sum(1) + visual_bias
                 + (beta_i[:n] - beta_i[n:]).squeeze(1))
            user_rows = [gamma_u, theta_u]
            item_rows = [gamma_i, beta_i]
        squares = sum(rows.pow(2).sum() for rows in (*user_rows, *item_rows))
        loss = -F.logsigmoid(x).mean() + self.hp.reg * squares / n
        # dloss/dx per triplet, and d(penalty)/d(row) = 2 reg row / B for every row the batch uses
        g = torch.sigmoid(-x).div_(-n).unsqueeze(1)
        decay = 2.0 * self.hp.reg / n
        signed = torch.cat([g, -g])
        item_grads = [torch.addcmul(gamma_i * decay, signed, gamma_u.repeat(2, 1))]
        if shared:
            user_grads = [torch.addcmul(gamma_u * decay, g, user_side)]
            dense_grads = [(g * gamma_u).T @ difference]
            dense = [self.embedding.weight]
        else:
            user_grads = [torch.addcmul(gamma_u * decay, g, gamma_difference),
                          torch.addcmul(theta_u * decay, g, visual)]
            item_grads.append(beta_i * decay + signed)
            weight_grad = torch.cat([g * theta_u, g], 1).T @ difference
            dense_grads = [weight_grad[:-1], weight_grad[-1:]]
            dense = [self.embedding.weight, self.visual_bias.weight]
        self._update_tables(optimizer, users, user_grads, self._user_tables())
        self._update_tables(optimizer, items, item_grads, self._item_tables())
        for parameter, grad in zip(dense, dense_grads, strict=True):
            optimizer.update_dense(parameter, grad)
        return loss

    def _user_tables(self) -> list[Tensor]:
        if self.hp.shared_factors:
            return [self.user_gamma.weight]
        return [self.user_gamma.weight, self.user_theta.weight]

    def _item_tables(self) -> list[Tensor]:
        if self.hp.shared_factors:
            return [self.item_gamma.weight]
        return [self.item_gamma.weight, self.item_bias.weight]

    @staticmethod
    def _update_tables(
        optimizer: PairwiseOptimizer, index: Tensor, grads: list[Tensor], tables: list[Tensor]
    ) -> None:
        """Sum the per-occurrence gradients of tables indexed alike, then update them as a group."""
        rows, summed = merge_rows(index, torch.cat(grads, 1))
        optimizer.update_rows(tables, rows, summed)

    def _user_visual(self, users: Tensor) -> Tensor:
        table = self.user_gamma if self.hp.shared_factors else self.user_theta
        return table.weight[users]

    def _score(self, users: Tensor, items: Tensor | None) -> Tensor:
        # eq 2 as one matrix product: [γ_u, θ_u, α + β_u, 1] · [γ_i, E f_i, 1, β_i + β'·f_i]
        select = slice(None) if items is None else items
        warm = self.warm[select].unsqueeze(1).to(self.item_visual.dtype)
        gamma_i = self.item_gamma.weight[select] * warm
        gamma_u = self.user_gamma.weight[users]
        if self.hp.shared_factors:  # γ_u·(γ_i + E f_i)
            return gamma_u @ (gamma_i + self.item_visual[select]).T
        bias = self.item_bias.weight[select].squeeze(1) * warm.squeeze(1)
        bias = bias + self.item_visual_bias[select]
        offset = (self.alpha + self.user_bias[users]).unsqueeze(1)
        user_side = torch.cat([gamma_u, self._user_visual(users), offset], 1)
        item_side = torch.cat([gamma_i, self.item_visual[select], torch.ones_like(warm)], 1)
        return torch.addmm(bias.unsqueeze(0), user_side, item_side.T)

    def _score_features(self, users: Tensor, features: Tensor) -> Tensor:
        projected, visual_bias = self.visual_terms(features)
        visual = self._user_visual(users) @ projected.T
        if self.hp.shared_factors:
            return visual
        return self.alpha + self.user_bias[users].unsqueeze(1) + visual + visual_bias

    def _shapes(self) -> dict[str, Any]:
        return {"feature_dim": self._feature_dim}


__all__ = ["VBPR"]
