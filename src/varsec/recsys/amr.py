"""AMR: Adversarial Multimedia Recommendation (Tang et al., TKDE 2019).

VBPR (:mod:`varsec.recsys.vbpr`) trained with an adversarial regulariser on the visual features
(He et al.'s APR applied to ``f_i``; 001 sec 3, DESIGN.md section 5). For each minibatch the
worst-case perturbation of the (scaled) features of the positive and the negative item is

    Δ = ε · g / ‖g‖,   g = ∂L_BPR(Θ, f + Δ) / ∂Δ at Δ = 0,

taken row by row, i.e. a step that RAISES the BPR loss (a public implementation subtracts it and
so trains against the easiest perturbation instead). The minibatch objective is
``L(Θ) + λ_adv · L(Θ, Δ) + reg · ‖Θ‖²``, with Δ held constant (no gradient through it).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torch.nn import functional as F

from varsec.errors import ConfigError
from varsec.params import Param
from varsec.recsys.base import register_recommender
from varsec.recsys.vbpr import VBPR


@register_recommender("amr")
class AMR(VBPR):
    """AMR (Tang et al. 2019): VBPR + adversarial regulariser on the visual features."""

    params: ClassVar[dict[str, Param]] = {
        **VBPR.params,
        "adv_eps": Param(0.1, float, low=0, low_open=True,
                         doc="L2 size ε of Δ per item (features have mean norm 1)"),
        "adv_reg": Param(1.0, float, low=0, doc="weight λ_adv of the adversarial loss"),
        "adv_warmup_epochs": Param(0, int, low=0,
                                   doc="plain VBPR epochs before the regulariser starts"),
    }

    def _check_params(self) -> None:
        super()._check_params()
        if self.hp.adv_warmup_epochs >= self.hp.epochs:
            raise ConfigError(
                f"AMR parameter adv_warmup_epochs ({self.hp.adv_warmup_epochs}) must be smaller "
                f"than epochs ({self.hp.epochs}), or AMR never trains adversarially."
            )

    def on_epoch_start(self, epoch: int) -> None:
        self._adversarial = epoch > self.hp.adv_warmup_epochs

    def selectable(self, epoch: int) -> bool:
        return epoch > self.hp.adv_warmup_epochs

    def _loss_with_deltas(
        self, users: Tensor, pos: Tensor, neg: Tensor, delta_pos: Tensor, delta_neg: Tensor
    ) -> Tensor:
        assert self.train_features is not None
        score_pos = self.scores_from_features(users, pos, self.train_features[pos] + delta_pos)
        score_neg = self.scores_from_features(users, neg, self.train_features[neg] + delta_neg)
        return -F.logsigmoid(score_pos - score_neg).mean()

    def adversarial_perturbation(
        self, users: Tensor, pos: Tensor, neg: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Δ for the positive and the negative items' raw features: the loss-raising direction.

        ``ε`` is measured on scaled features (mean norm 1), so the returned raw-feature Δ has
        norm ``ε / feature_scale``.
        """
        assert self.train_features is not None
        zeros = torch.zeros_like(self.train_features[pos])
        delta_pos = zeros.clone().requires_grad_(True)
        delta_neg = zeros.clone().requires_grad_(True)
        loss = self._loss_with_deltas(users, pos, neg, delta_pos, delta_neg)
        grad_pos, grad_neg = torch.autograd.grad(loss, [delta_pos, delta_neg])
        size = self.hp.adv_eps / self.feature_scale
        return (
            size * F.normalize(grad_pos, dim=1).detach(),
            size * F.normalize(grad_neg, dim=1).detach(),
        )

    def adversarial_loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """The BPR loss under the worst-case feature perturbation Δ (differentiable in Θ)."""
        delta_pos, delta_neg = self.adversarial_perturbation(users, pos, neg)
        return self._loss_with_deltas(users, pos, neg, delta_pos, delta_neg)

    def triplet_loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        loss = self.bpr_loss(users, pos, neg) + self.penalty(users, pos, neg)
        if getattr(self, "_adversarial", True) and self.hp.adv_reg > 0:
            loss = loss + self.hp.adv_reg * self.adversarial_loss(users, pos, neg)
        return loss


__all__ = ["AMR"]
