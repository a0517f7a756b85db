"""Untargeted BPR attack on item images (Yin, Liu, Gong & Li, 002 sec 3.1, eq 3-4).

The attacker perturbs item images so that the trained visual recommender's preferences flip on
its own training triplets: for ``(u, i, j)`` with ``i`` a positive and ``j`` a sampled negative of
user ``u``, the attack raises the BPR loss ``-ln σ(s_ui - s_uj)`` (002 sec 3.1: "maximizing the
BPR loss"), by perturbing both items' images. Applied to the whole catalog, every item's image
is attacked through the triplets it takes part in, as positive and as negative.

Decomposition. Each image is optimised against its own triplets with the partner item held at
its clean image, so images are attacked independently and in batches. For FGSM (one step from
the clean catalog, 002 eq 4) this is exactly the gradient of the joint loss; for PGD it is block
coordinate ascent. Item-specific terms a model learned for warm items (VBPR's ``γ_i``, ``β_i``)
are kept: the attacked score is ``s_ui + score_images(u, x_i + δ) - score_images(u, x_i)``.
Items in no training triplet (cold items) get no gradient and keep their image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varsec.attacks.hooks import catalog_pixels
from varsec.attacks.insa import recommender_modules, require_visual
from varsec.attacks.objectives import Objective
from varsec.attacks.registry import AttackMethod, register_attack, register_objective
from varsec.data.catalog import Dataset
from varsec.errors import ConfigError, DataError
from varsec.params import Param, check_int
from varsec.vision.perturbation import uint8_to_float

SCORE_CHUNK = 512  # users per catalog-scoring block, items per clean image-scoring block


@torch.no_grad()
def catalog_pair_scores(recommender: Any, users: Tensor, items: Tensor) -> Tensor:
    """Clean catalog scores of (``users[k]``, ``items[k]``) pairs, scoring users in chunks."""
    out = torch.empty(len(users))
    order = torch.argsort(users)
    unique, counts = torch.unique_consecutive(users[order], return_counts=True)
    bounds = torch.cumsum(counts, 0) - counts
    for block in torch.arange(len(unique)).split(SCORE_CHUNK):
        scores = recommender.score(unique[block]).cpu()
        start, stop = int(bounds[block[0]]), int(bounds[block[-1]] + counts[block[-1]])
        rows = order[start:stop]
        local = torch.repeat_interleave(torch.arange(len(block)), counts[block])
        out[rows] = scores[local, items[rows]]
    return out


def image_pair_scores(recommender: Any, x: Tensor, column: Tensor, user: Tensor) -> Tensor:
    """Image scores of (``user[k]``, image ``x[column[k]]``) pairs, differentiable in ``x``,
    scoring each distinct user once."""
    unique, inverse = torch.unique(user, return_inverse=True)
    scores = recommender.score_images(unique, x)
    return scores[inverse.to(scores.device), column.to(scores.device)]


@dataclass
class _Entries:
    """One row per (triplet, attacked item): who scores it, the partner score and the sign."""

    position: Tensor  # attacked image position (into ``items``)
    user: Tensor
    partner: Tensor  # the other item's clean catalog score
    offset: Tensor  # catalog score minus clean image score of the attacked item
    sign: Tensor  # +1: attacked item is the positive i, -1: the negative j
    indptr: Tensor  # entries of position p: [indptr[p], indptr[p + 1]) after sorting


@register_objective("bpr")
class BPRUntargeted(Objective):
    """Raise the BPR loss of the training triplets through item images (002 eq 3-4)."""

    family = "ranking"

    def __init__(
        self,
        recommender: Any,
        dataset: Dataset,
        items: Any = None,
        *,
        negatives: int = 1,
        seed: int = 0,
    ) -> None:
        require_visual(recommender, "the BPR-untargeted attack")
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"dataset must be a varsec Dataset, got {type(dataset).__name__}.")
        negatives = check_int(negatives, "negatives", low=1)
        self.recommender, self.dataset = recommender, dataset
        self.items = (np.arange(dataset.n_items) if items is None
                      else np.asarray(items, dtype=np.int64).reshape(-1))
        self.images = catalog_pixels(dataset, self.items, "the BPR-untargeted attack")
        users, pos, neg = self._triplets(negatives, seed)
        self.entries = self._entries(users, pos, neg)

    def modules(self) -> list[nn.Module]:
        return recommender_modules(self.recommender)

    def check_size(self, n_images: int) -> None:
        if n_images > len(self.items):
            raise ConfigError(
                f"the BPR-untargeted objective covers {len(self.items)} items, "
                f"got {n_images} images."
            )

    # -- building the triplet table ---------------------------------------------------------
    def _triplets(self, negatives: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        from varsec.recsys.training import NegativeSampler

        train = self.dataset.part("train")
        users = torch.as_tensor(train.user).repeat(negatives)
        pos = torch.as_tensor(train.item).repeat(negatives)
        pool = torch.as_tensor(self.dataset.warm_items())
        sampler = NegativeSampler(torch.as_tensor(train.user), torch.as_tensor(train.item),
                                  self.dataset.n_items, pool)
        neg = sampler.sample(users, torch.Generator().manual_seed(int(seed)))
        return users, pos, neg

    def _entries(self, users: Tensor, pos: Tensor, neg: Tensor) -> _Entries:
        position_of = torch.full((self.dataset.n_items,), -1, dtype=torch.long)
        position_of[torch.as_tensor(self.items)] = torch.arange(len(self.items))
        s_pos = catalog_pair_scores(self.recommender, users, pos)
        s_neg = catalog_pair_scores(self.recommender, users, neg)
        as_pos, as_neg = position_of[pos] >= 0, position_of[neg] >= 0
        position = torch.cat([position_of[pos][as_pos], position_of[neg][as_neg]])
        user = torch.cat([users[as_pos], users[as_neg]])
        own = torch.cat([s_pos[as_pos], s_neg[as_neg]])
        partner = torch.cat([s_neg[as_pos], s_pos[as_neg]])
        sign = torch.cat([torch.ones(int(as_pos.sum())), -torch.ones(int(as_neg.sum()))])
        order = torch.argsort(position, stable=True)
        position, user, own, partner, sign = (t[order] for t in (position, user, own, partner,
                                                                  sign))
        indptr = torch.zeros(len(self.items) + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(torch.bincount(position, minlength=len(self.items)), 0)
        offset = own - self._clean_image_scores(position, user, indptr)
        return _Entries(position, user, partner, offset, sign, indptr)

    @torch.no_grad()
    def _clean_image_scores(self, position: Tensor, user: Tensor, indptr: Tensor) -> Tensor:
        out = torch.empty(len(position))
        device = self.device
        for block in torch.arange(len(self.items)).split(SCORE_CHUNK):
            rows = torch.arange(int(indptr[block[0]]), int(indptr[block[-1] + 1]))
            if len(rows) == 0:
                continue
            images = uint8_to_float(self.images[block], device)
            out[rows] = image_pair_scores(self.recommender, images, position[rows] - block[0],
                                          user[rows]).cpu()
        return out

    # -- the objective ---------------------------------------------------------------------
    def loss(self, x: Tensor, index: Tensor) -> Tensor:
        e = self.entries
        index = index.cpu()
        starts, stops = e.indptr[index], e.indptr[index + 1]
        lengths = stops - starts
        if int(lengths.sum()) == 0:
            return (x * 0.0).flatten(1).sum(1)  # no triplet: zero loss, zero gradient
        column = torch.repeat_interleave(torch.arange(len(index)), lengths)
        first = torch.cumsum(lengths, 0) - lengths
        rows = starts[column] + torch.arange(len(column)) - first[column]
        device = x.device
        own = image_pair_scores(self.recommender, x, column, e.user[rows]) + \
            e.offset[rows].to(device)
        sign = e.sign[rows].to(device)
        difference = sign * (own - e.partner[rows].to(device))
        per_entry = -F.logsigmoid(difference)
        total = torch.zeros(len(index), device=device, dtype=per_entry.dtype)
        return total.index_add(0, column.to(device), per_entry)

    @property
    def triplet_counts(self) -> np.ndarray:
        """How many (triplet, role) entries each attacked item takes part in."""
        return (self.entries.indptr[1:] - self.entries.indptr[:-1]).numpy()


def poison_catalog(
    recommender: Any,
    dataset: Dataset,
    rule: Any,
    items: Any = None,
    *,
    negatives: int = 1,
    seed: int = 0,
    batch_size: int = 128,
    **engine_options: Any,
) -> tuple[np.ndarray, Any]:
    """Attack every item image of ``dataset`` (or ``items``) with the BPR-untargeted objective.

    Returns ``(items, AttackResult)``: the catalog indices and their quantised images.
    """
    from varsec.attacks.engine import run_attack

    if dataset.catalog.images is None:
        raise DataError(
            f"the BPR-untargeted attack perturbs pixels, but catalog {dataset.catalog.name!r} is "
            "features-only (it holds no images)."
        )
    objective = BPRUntargeted(recommender, dataset, items, negatives=negatives, seed=seed)
    result = run_attack(objective, objective.images, rule, batch_size=batch_size, seed=seed,
                        desc="BPR-untargeted", **engine_options)
    return objective.items, result


@register_attack("bpr-untargeted")
class BPRUntargetedAttack(AttackMethod):
    """Yin et al.'s untargeted attack (002 eq 3-4): every item image perturbed against the BPR
    loss of a pairwise visual recommender; one step is FGSM, more are PGD."""

    objective = "bpr"
    uses_alpha = True
    title = "BPR-untargeted"
    paper = "002 eq 3-4"
    params: ClassVar[dict[str, Param]] = {
        "random_start": Param(True, bool, doc="PGD: start from a random point of the eps-ball")}

    @classmethod
    def rule(cls, eps: float, steps: int, alpha: float | None, params: Any) -> Any:
        from varsec.attacks.engine import FGSMStep, PGDStep

        if steps <= 1:
            return FGSMStep(eps=eps)
        return PGDStep(eps=eps, alpha=alpha, steps=steps,
                       random_start=params["random_start"])


__all__ = ["BPRUntargeted", "catalog_pair_scores",
           "image_pair_scores", "poison_catalog"]
