"""AlexRank: visual similarity to the user's history (AIP, Liu & Larson, 000 sec 3.2.1 eq 1).

AIP defines the predictor as the mean squared Euclidean distance between the features of item i
and those of every item j the user interacted with, ``(1/|D_u|) Σ_j ‖Φ_f(x_i) - Φ_f(x_j)‖²``,
where a smaller distance means a higher preference. varsec returns its negative, so that, as for
every other recommender, a larger score is better:

    s_ui = -(1/|D_u|) Σ_{j ∈ D_u} ‖f_i - f_j‖² = 2 f_i·m_u - ‖f_i‖² - c_u,

with ``m_u`` the mean and ``c_u`` the mean squared norm of the user's history features (exact,
and O(D) per (user, item) pair). Nothing is learned; ``D_u`` is the train part (optionally plus
validation). A user without history gets ``-‖f_i‖²``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from varsec.data.catalog import SPLIT_CODES, Dataset
from varsec.recsys.base import Param, Recommender, register_recommender, resolve_features


@register_recommender("alexrank")
class AlexRank(Recommender):
    """AlexRank (000 eq 1): minus the mean squared feature distance to the user's history."""

    visual: ClassVar[bool] = True
    needs_features: ClassVar[bool] = True
    params: ClassVar[dict[str, Param]] = {
        **Recommender.params,
        "history": Param("train", str, choices=("train", "train+validation"),
                         doc="the interactions that make up D_u"),
    }

    def _fit(self, dataset: Dataset, features: Any | None, extractor: Any | None) -> None:
        matrix = resolve_features(dataset, features, extractor, type(self).__name__)
        self.attach_extractor(extractor)
        self._build({"feature_dim": int(matrix.shape[1])})
        codes = [SPLIT_CODES["train"]]
        if self.hp.history == "train+validation":
            codes.append(SPLIT_CODES["validation"])
        rows = np.isin(dataset.split, codes)
        users = torch.as_tensor(dataset.interactions.user[rows])
        history = matrix[torch.as_tensor(dataset.interactions.item[rows])].double()
        counts = torch.bincount(users, minlength=self.n_users).double().clamp(min=1).unsqueeze(1)
        sums = torch.zeros(self.n_users, matrix.shape[1], dtype=torch.float64)
        squares = torch.zeros(self.n_users, dtype=torch.float64)
        sums.index_add_(0, users, history)
        squares.index_add_(0, users, history.pow(2).sum(1))
        with torch.no_grad():
            self.item_features.copy_(matrix)
            self.user_mean.copy_(sums / counts)
            self.user_square.copy_(squares / counts.squeeze(1))
        self.to(self.device)

    def _build(self, shapes: dict[str, Any]) -> None:
        self._feature_dim = int(shapes["feature_dim"])
        self.register_buffer("item_features", torch.zeros(self.n_items, self._feature_dim))
        self.register_buffer("user_mean", torch.zeros(self.n_users, self._feature_dim))
        self.register_buffer("user_square", torch.zeros(self.n_users))

    def _shapes(self) -> dict[str, Any]:
        return {"feature_dim": self._feature_dim}

    def _score(self, users: Tensor, items: Tensor | None) -> Tensor:
        features = self.item_features if items is None else self.item_features[items]
        return self._score_features(users, features)

    def _score_features(self, users: Tensor, features: Tensor) -> Tensor:
        cross = self.user_mean[users] @ features.T
        return 2.0 * cross - features.pow(2).sum(1) - self.user_square[users].unsqueeze(1)


__all__ = ["AlexRank"]
