"""``pop-visual``: look match to the user's history plus log popularity.

``s_ui = m_u . f_i + w * log(1 + n_i)``: ``m_u`` is the mean image feature of the user's train
interactions, ``f_i`` the item's feature, ``n_i`` its train interactions and ``w`` the
``popularity_weight``. Nothing is learned. An item given by its pixels (a new upload) has no
popularity yet: it is scored by its look alone, ``m_u . f(x)``, differentiably in ``x``.

Two ways in: the entry point ``pop-visual`` (``pyproject.toml``; a study says
``kind: pop-visual``) or the factory :func:`build` (a study says ``kind: external`` with
``factory: "varsec_example_plugin.model:build"``), which needs no entry point at all.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from varsec.data.catalog import SPLIT_CODES, Dataset
from varsec.params import Param
from varsec.recsys import Recommender
from varsec.recsys.base import resolve_features


class PopVisual(Recommender):
    """Look match to the user's history plus weighted log popularity (an example plugin)."""

    visual: ClassVar[bool] = True
    needs_features: ClassVar[bool] = True
    params: ClassVar[dict[str, Param]] = {
        **Recommender.params,
        "popularity_weight": Param(0.5, float, low=0, doc="weight of log(1 + interactions)"),
    }

    def _fit(self, dataset: Dataset, features: Any | None, extractor: Any | None) -> None:
        matrix = resolve_features(dataset, features, extractor, type(self).__name__)
        self.attach_extractor(extractor)
        self._build({"feature_dim": int(matrix.shape[1])})
        rows = dataset.split == SPLIT_CODES["train"]
        users = torch.as_tensor(dataset.interactions.user[rows])
        items = torch.as_tensor(dataset.interactions.item[rows])
        counts = torch.bincount(users, minlength=self.n_users).clamp(min=1).unsqueeze(1)
        sums = torch.zeros(self.n_users, matrix.shape[1])
        sums.index_add_(0, users, matrix[items].float())
        popularity = np.bincount(items.numpy(), minlength=self.n_items)
        with torch.no_grad():
            self.item_features.copy_(matrix)
            self.user_taste.copy_(sums / counts)
            self.log_popularity.copy_(torch.log1p(torch.as_tensor(popularity).float()))
        self.to(self.device)

    def _build(self, shapes: dict[str, Any]) -> None:
        self._feature_dim = int(shapes["feature_dim"])
        self.register_buffer("item_features", torch.zeros(self.n_items, self._feature_dim))
        self.register_buffer("user_taste", torch.zeros(self.n_users, self._feature_dim))
        self.register_buffer("log_popularity", torch.zeros(self.n_items))

    def _shapes(self) -> dict[str, Any]:
        return {"feature_dim": self._feature_dim}

    def _score(self, users: Tensor, items: Tensor | None) -> Tensor:
        features = self.item_features if items is None else self.item_features[items]
        bias = self.log_popularity if items is None else self.log_popularity[items]
        return self._score_features(users, features) + self.hp.popularity_weight * bias

    def _score_features(self, users: Tensor, features: Tensor) -> Tensor:
        return self.user_taste[users] @ features.T


def build(popularity_weight: float = 0.5, seed: int = 0, device: str = "cpu") -> PopVisual:
    """The factory a study names with ``kind: external``: called with the section's ``params``
    (and the study's ``seed`` and ``device``, which it takes), it returns the unfitted model."""
    return PopVisual(popularity_weight=popularity_weight, seed=seed, device=device)
