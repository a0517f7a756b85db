"""INSA, the insider attack (Liu & Larson, AIP 000 sec 4.1, eq 6).

The attacker knows the user embeddings of the trained recommender and perturbs a cold item's
image so that *every* user's preference for it rises:

    δ <- argmax_δ  Σ_{u ∈ U} exp(θ_u^T Φ(x_i + δ))          (000 eq 6)

varsec works through any visual recommender's ``score_images(users, images)`` (differentiable in
the pixels; VBPR, AMR, DVBPR, AlexRank, visual kNN), so ``θ_u^T Φ(x)`` is whatever that model's
cold-item score is. The objective per image is the log of eq 6's sum divided by ``|U|``
(``aggregate="logsumexp"``): the same maximiser, without overflow. ``aggregate="mean"`` raises the
mean score instead (the prediction shift Δ_i of eq 4).

**Epochs over user minibatches** (AIP's procedure, ``mount_AIP.py`` / ``AIP.py`` of the authors'
code): one *epoch* passes over all users in minibatches of ``users_per_step`` (AIP: 256 users for
VBPR / AMR, 512 for DVBPR, 5 epochs for VBPR, sec 5.2.2) and Adam takes one step per minibatch,
so an attack of ``E`` epochs takes ``E * ceil(|U| / users_per_step)`` optimizer steps
(:meth:`INSA.optimizer_steps`; a study's ``steps`` of an INSA attack are epochs). The users are
shuffled once per epoch by a permutation seeded by ``seed`` and the epoch, so every image batch
of an attack sees the same sequence of minibatches. The engine announces each step to the
objective (:meth:`INSA.begin_step`); outside the engine's loop every call uses all users. Without
``users_per_step`` every step uses all users and an epoch is one step.

What varsec does not copy from that code: AIP starts δ at ``torch.rand`` (uniform in [0, 1],
clipped to the ball: most pixels start at +eps, a brightening rather than a sample of the ball);
varsec starts at the clean image (or, with the step rule's ``random_start``, a uniform point of
the eps-ball). AIP's float image is rounded only when saved; varsec quantises the last iterate
inside the engine, and eps always bounds raw pixels (no mean/std normalisation in between).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from varsec.attacks.engine import AdamAttack
from varsec.attacks.objectives import Objective
from varsec.attacks.registry import register_attack, register_objective
from varsec.errors import ConfigError, ModelError
from varsec.params import Param, check_int

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


@register_objective("insa")
class INSA(Objective):
    """Raise the item's score for all users (000 eq 6); see the module docstring."""

    family = "promotion"
    params: ClassVar[dict[str, Param]] = {
        "users_per_step": Param(None, int, low=1, doc="users per Adam step (AIP's minibatches; "
                                "null: all users in one step)"),
        "aggregate": Param("logsumexp", str, choices=AGGREGATES, doc="how the users' scores "
                           "are combined"),
    }

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
        self.users_per_step = None if users_per_step is None else \
            check_int(users_per_step, "users_per_step", low=1)
        self.seed = int(seed)
        self._step_users: Tensor | None = None
        self._order: tuple[int, Tensor] | None = None  # (epoch, its permutation of the users)

    def modules(self) -> list[nn.Module]:
        return recommender_modules(self.recommender)

    def batches_per_epoch(self) -> int:
        """User minibatches in one epoch: ``ceil(|U| / users_per_step)`` (1 without minibatches)."""
        if self.users_per_step is None or self.users_per_step >= len(self.users):
            return 1
        return math.ceil(len(self.users) / self.users_per_step)

    def optimizer_steps(self, epochs: int) -> int:
        """The optimizer steps of ``epochs`` passes over the users (one per minibatch)."""
        return check_int(epochs, "INSA epochs", low=1) * self.batches_per_epoch()

    def begin_step(self, step: int) -> None:
        """Select the users of optimizer step ``step`` (1-based): minibatch ``(step - 1) mod B``
        of epoch ``(step - 1) div B`` of a per-epoch seeded shuffle (B = batches per epoch)."""
        per_epoch = self.batches_per_epoch()
        if per_epoch == 1:
            self._step_users = None
            return
        epoch, batch = divmod(int(step) - 1, per_epoch)
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.users), generator=generator))
        size = int(self.users_per_step or len(self.users))
        self._step_users = self.users[self._order[1][batch * size:(batch + 1) * size]]

    def step_users(self) -> Tensor:
        """The users of the current step: its minibatch (:meth:`begin_step`), else all users."""
        return self.users if self._step_users is None else self._step_users

    def scores(self, x: Tensor, users: Tensor | None = None) -> Tensor:
        """Scores [U, B] of the users for images ``x`` (differentiable in ``x``)."""
        return self.recommender.score_images(self.users if users is None else users, x)

    def evaluate(self, images: Any, index: Tensor | None = None, batch_size: int = 256) -> Tensor:
        """The objective over *all* users (no minibatch draw), without gradients."""
        current, self._step_users = self._step_users, None
        try:
            return super().evaluate(images, index, batch_size)
        finally:
            self._step_users = current

    def loss(self, x: Tensor, index: Tensor) -> Tensor:
        scores = self.scores(x, self.step_users())
        if self.aggregate == "mean":
            return scores.mean(0)
        return torch.logsumexp(scores, 0) - math.log(scores.shape[0])


@register_attack("insa")
class InsaAttack(AdamAttack):
    """INSA (Liu & Larson, AIP 000 sec 4.1, Alg. 1): Adam on the perturbation of a cold item's
    image, raising its score for every user (the insider knows the user embeddings); steps are
    epochs over user minibatches (``users_per_step``); AIP's lr 0.0001 in [0, 1] units is 0.0255
    levels."""

    objective = "insa"
    family = "promotion"
    paper = "000 sec 4.1"


__all__ = ["AGGREGATES", "INSA", "recommender_modules", "require_visual"]
