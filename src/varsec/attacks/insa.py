"""INSA, the insider attack (Liu & Larson, AIP 000 sec 4.1, eq 6).

The attacker knows the user embeddings of the trained recommender and perturbs a cold item's
image so that *every* user's preference for it rises:

    δ <- argmax_δ  Σ_{u ∈ U} exp(θ_u^T Φ(x_i + δ))          (000 eq 6)

varsec works through any visual recommender's ``score_images(users, images)`` (differentiable in
the pixels; VBPR, AMR, DVBPR, AlexRank, visual kNN), so ``θ_u^T Φ(x)`` is whatever that model's
cold-item score is. The objective per image is the log of eq 6's sum divided by ``|U|``
(``aggregate="logsumexp"``): the same maximiser, without overflow. ``aggregate="mean"`` raises the
mean score instead (the prediction shift Δ_i of eq 4). ``users_per_step`` draws a seeded random
minibatch of users at every evaluation (the paper's mini-batch gradient ascent); by default all
users enter every step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from varsec.attacks.objectives import Objective
from varsec.errors import ConfigError, ModelError

AGGREGATES = ("logsumexp", "mean")


def require_visual(recommender: Any, what: str) -> None:
    """A ModelError unless ``recommender`` is a visual model that scores images."""
    visual = getattr(recommender, "visual", False)
    if not visual or not callable(getattr(recommender, "score_images", None)):
        raise ModelError(
            f"{what} needs a visual recommender that scores images (score_images); "
            f"{type(recommender).__name__} is not visual."
        )


def recommender_modules(recommender: Any) -> list[nn.Module]:
    """The recommender and its attached image extractor (in eval mode during attacks)."""
    modules = [recommender] if isinstance(recommender, nn.Module) else []
    extractor = getattr(recommender, "extractor", None)
    owner = getattr(extractor, "__self__", extractor)
    if isinstance(owner, nn.Module):
        modules.append(owner)
    return modules


class INSA(Objective):
    """Raise the item's score for all users (000 eq 6); see the module docstring."""

    def __init__(
        self,
        recommender: Any,
        users: Any = None,
        *,
        users_per_step: int | None = None,
        aggregate: str = "logsumexp",
        seed: int = 0,
    ) -> None:
        require_visual(recommender, "INSA")
        if aggregate not in AGGREGATES:
            raise ConfigError(
                f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}."
            )
        self.recommender, self.aggregate = recommender, aggregate
        n_users = int(getattr(recommender, "n_users", 0))
        self.users = (torch.arange(n_users) if users is None
                      else torch.as_tensor(users, dtype=torch.long).reshape(-1))
        if len(self.users) == 0:
            raise ConfigError("INSA needs at least one user to raise the item's score for.")
        recommender.user_index(self.users)  # unknown users fail here, not at the first step
        if users_per_step is not None and (
            isinstance(users_per_step, bool) or not isinstance(users_per_step, int)
            or users_per_step < 1
        ):
            raise ConfigError(f"users_per_step must be an integer >= 1, got {users_per_step!r}.")
        self.users_per_step = users_per_step
        self.generator = torch.Generator().manual_seed(int(seed))

    def modules(self) -> list[nn.Module]:
        return recommender_modules(self.recommender)

    def step_users(self) -> Tensor:
        """The users of one evaluation: all, or a random minibatch of ``users_per_step``."""
        if self.users_per_step is None or self.users_per_step >= len(self.users):
            return self.users
        pick = torch.randperm(len(self.users), generator=self.generator)[: self.users_per_step]
        return self.users[pick]

    def scores(self, x: Tensor, users: Tensor | None = None) -> Tensor:
        """Scores [U, B] of the users for images ``x`` (differentiable in ``x``)."""
        return self.recommender.score_images(self.users if users is None else users, x)

    def evaluate(self, images: Any, index: Tensor | None = None, batch_size: int = 256) -> Tensor:
        """The objective over *all* users (no minibatch draw), without gradients."""
        per_step, self.users_per_step = self.users_per_step, None
        try:
            return super().evaluate(images, index, batch_size)
        finally:
            self.users_per_step = per_step

    def loss(self, x: Tensor, index: Tensor) -> Tensor:
        scores = self.scores(x, self.step_users())
        if self.aggregate == "mean":
            return scores.mean(0)
        return torch.logsumexp(scores, 0) - math.log(scores.shape[0])


__all__ = ["AGGREGATES", "INSA", "recommender_modules", "require_visual"]
