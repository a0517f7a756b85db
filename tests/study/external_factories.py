"""Factories the external-method tests name in their studies (``factory: "external_factories:..."``;
``tests/study`` is on ``sys.path``): a platform's own extractor and models, and broken ones."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from varsec.recsys import VBPR, Recommender
from varsec.vision.base import Backbone

NOT_CALLABLE = 42


class Embedder(Backbone):
    """A platform's image embedder varsec does not ship: average pooling to 7 x 7, then a
    linear map (no classification head)."""

    input_channels = 1
    min_size = 8
    feature_layer = "embedding"

    def __init__(self, dim: int = 8) -> None:
        super().__init__(dim=dim)
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.project = nn.Linear(49, dim)
        self.feature_dims = {"embedding": dim}

    def _forward(self, z: Tensor, layer: str) -> Tensor:
        return self.project(self.pool(z).flatten(1))

    def _stages(self, z: Tensor) -> list[Tensor]:
        return [self.pool(z)]


def embedder(dim: int = 8) -> Embedder:
    """The factory of :class:`Embedder`."""
    return Embedder(dim)


class QueryOnlyVBPR(VBPR):
    """A VBPR the platform exposes without gradients (as if it scored behind a wall)."""

    differentiable: ClassVar[bool] = False


class NoCheckpoint(Recommender):
    """A model that scores but cannot be rebuilt from its checkpoint (no ``_build``)."""

    def _fit(self, dataset: Any, features: Any, extractor: Any) -> None:
        self.table = torch.zeros(dataset.n_users, dataset.n_items)

    def _score(self, users: Tensor, items: Tensor | None) -> Tensor:
        return self.table[users] if items is None else self.table[users][:, items]


def broken(**params: Any) -> Any:
    """A factory whose own code fails."""
    raise RuntimeError("weights file missing")


def returns_dict(**params: Any) -> dict:
    """A factory that builds the wrong thing."""
    return {"model": params}
