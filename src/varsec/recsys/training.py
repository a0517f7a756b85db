"""One training loop for every pairwise (BPR-loss) recommender.

- :class:`NegativeSampler`: vectorised uniform negatives over the warm items. Candidates are drawn
  for the whole minibatch at once; those that hit one of the user's training positives (looked
  up by binary search in a sorted array of ``user * n_items + item`` keys) are redrawn, again
  all at once, until none collide. Users whose positives fill almost the whole pool fall back to
  an exact draw from their complement after ``max_rounds`` rounds.
- :class:`PairwiseRecommender`: the base of BPR-MF, VBPR, AMR and DVBPR. A model supplies
  ``pair_scores(users, items)`` and the rows its L2 penalty covers; the loss is
  ``mean -ln σ(s_ui - s_uj) + reg · Σ‖rows‖² / B`` (001 eq 1 with the per-triplet penalty of
  Rendle's BPR), minimised by Adam or SGD over minibatches.
- :func:`train_pairwise`: epochs, early stopping on validation HR@10 with patience (restoring the
  best epoch), a progress bar and a per-epoch log.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from varsec.data.catalog import Dataset
from varsec.errors import ConfigError, DataError, TrainingError
from varsec.io import progress
from varsec.recsys.base import Param, Recommender, part_size, train_lists, warm_item_mask

if TYPE_CHECKING:
    from varsec.metrics.ranking import UserItems

VALIDATION_K = 10


class NegativeSampler:
    """Uniform negative items for (user, positive) pairs, never one of the user's positives.

    ``pool`` is the set of items negatives come from (default: all items); the positives are the
    (``users``, ``items``) pairs, typically the train part.
    """

    def __init__(
        self,
        users: Tensor,
        items: Tensor,
        n_items: int,
        pool: Tensor | None = None,
        *,
        max_rounds: int = 64,
    ) -> None:
        self.n_items = int(n_items)
        self.pool = torch.arange(n_items) if pool is None else torch.unique(pool.long())
        if len(self.pool) == 0:
            raise DataError("there are no items to draw negatives from.")
        self.positive_keys = torch.unique(users.long() * self.n_items + items.long())
        self.max_rounds = max_rounds
        self._check_every_user_has_a_negative(users.long(), items.long())

    def _check_every_user_has_a_negative(self, users: Tensor, items: Tensor) -> None:
        keys_users = self.positive_keys // self.n_items
        keys_items = self.positive_keys % self.n_items
        in_pool = torch.isin(keys_items, self.pool)
        counts = torch.bincount(keys_users[in_pool], minlength=int(users.max()) + 1)
        full = torch.nonzero(counts >= len(self.pool)).reshape(-1)
        if len(full):
            raise DataError(
                f"user {int(full[0])} has interacted with all {len(self.pool)} items negatives are "
                "drawn from, so no negative item exists for it."
            )

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        """Bool tensor: True where ``items[k]`` is a positive of ``users[k]``."""
        keys = users.long() * self.n_items + items.long()
        where = torch.searchsorted(self.positive_keys, keys).clamp_(max=len(self.positive_keys) - 1)
        return self.positive_keys[where] == keys

    def sample(self, users: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One negative item per entry of ``users`` (a CPU LongTensor)."""
        users = users.long().cpu()
        negatives = self._draw(len(users), generator)
        pending = torch.nonzero(self.is_positive(users, negatives)).reshape(-1)
        for _ in range(self.max_rounds):
            if len(pending) == 0:
                return negatives
            negatives[pending] = self._draw(len(pending), generator)
            still = self.is_positive(users[pending], negatives[pending])
            pending = pending[still]
        for position in pending.tolist():  # only users with almost every pool item positive
            negatives[position] = self._exact_draw(int(users[position]), generator)
        return negatives

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        return self.pool[torch.randint(len(self.pool), (n,), generator=generator)]

    def _exact_draw(self, user: int, generator: torch.Generator | None) -> int:
        allowed = self.pool[~self.is_positive(torch.full_like(self.pool, user), self.pool)]
        return int(allowed[torch.randint(len(allowed), (1,), generator=generator)])


class PairwiseRecommender(Recommender):
    """A recommender trained with the BPR pairwise loss by :func:`train_pairwise`.

    Subclasses build their parameters in ``_prepare`` and implement ``pair_scores`` (the score
    of each (user, item) pair of two equal-length index tensors) and ``regularised_rows``.
    Embedding tables should be ``nn.Embedding(..., sparse=True)``: their rows then get sparse
    gradients and are updated by SparseAdam / SGD only where a batch touched them.
    """

    params: ClassVar[dict[str, Param]] = {
        **Recommender.params,
        "epochs": Param(30, int, low=1, doc="maximum number of passes over the train part"),
        "batch_size": Param(256, int, low=1, doc="triplets per minibatch"),
        "lr": Param(0.01, float, low=0, low_open=True, doc="learning rate"),
        "optimizer": Param("adam", str, choices=("adam", "sgd")),
        "reg": Param(1e-4, float, low=0, doc="L2 weight λ on the rows a triplet uses"),
        "early_stopping": Param(True, bool, doc="stop on validation HR@10, keep the best epoch"),
        "patience": Param(5, int, low=1, doc="epochs without improvement before stopping"),
        "val_max_users": Param(0, int, low=0, doc="validation users evaluated (0 = all)"),
    }
    # The epoch whose parameters the model holds after fit (the last one without early stopping).
    best_epoch: int | None = None

    def _fit(self, dataset: Dataset, features: Any | None, extractor: Any | None) -> None:
        self._prepare(dataset, features, extractor)
        self.to(self.device)
        train_pairwise(self, dataset)

    def _prepare(self, dataset: Dataset, features: Any | None, extractor: Any | None) -> None:
        raise NotImplementedError

    def pair_scores(self, users: Tensor, items: Tensor) -> Tensor:
        raise NotImplementedError

    def regularised_rows(self, users: Tensor, pos: Tensor, neg: Tensor) -> list[Tensor]:
        """The parameter rows of one batch that the L2 penalty covers."""
        raise NotImplementedError

    def bpr_loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """Mean of ``-ln σ(s_ui - s_uj)`` over the batch (no penalty)."""
        scores = self.pair_scores(torch.cat([users, users]), torch.cat([pos, neg]))
        difference = scores[: len(users)] - scores[len(users) :]
        return -nn.functional.logsigmoid(difference).mean()

    def penalty(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """``reg · Σ‖rows‖² / B`` over the rows the batch uses."""
        rows = self.regularised_rows(users, pos, neg)
        total = sum(row.pow(2).sum() for row in rows)
        return self.hp.reg * total / max(len(users), 1)

    def triplet_loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """The minibatch objective: BPR loss plus L2 penalty (AMR adds its adversarial term)."""
        return self.bpr_loss(users, pos, neg) + self.penalty(users, pos, neg)

    def dense_weight_decay(self) -> float:
        """Weight decay applied by the optimizer to dense (non-embedding) parameters."""
        return 0.0

    def on_epoch_start(self, epoch: int) -> None:
        """Hook before each epoch (1-based), e.g. to switch on a regulariser after warm-up."""

    def selectable(self, epoch: int) -> bool:
        """Whether early stopping may pick (and count patience from) this epoch."""
        return True


@dataclass
class ValidationSet:
    """Each user's validation item (-1 for none) and training positives (excluded from ranking)."""

    test_items: Tensor
    exclude: UserItems
    cold_items: Tensor

    @classmethod
    def from_dataset(cls, dataset: Dataset, max_users: int, seed: int) -> ValidationSet:
        if part_size(dataset, "validation") == 0:
            raise ConfigError(
                "early stopping needs validation interactions, but the dataset has none: "
                "split it with validation=True or set early_stopping=False."
            )
        validation = dataset.part("validation")
        users, first = np.unique(validation.user, return_index=True)
        items = validation.item[first]
        if max_users and len(users) > max_users:
            keep = np.sort(np.random.default_rng(seed).choice(len(users), max_users, replace=False))
            users, items = users[keep], items[keep]
        test_items = torch.full((dataset.n_users,), -1, dtype=torch.long)
        test_items[torch.as_tensor(users)] = torch.as_tensor(items)
        from varsec.metrics.ranking import build_exclusion

        train = dataset.part("train")
        return cls(
            test_items=test_items,
            exclude=build_exclusion(train.user, train.item, dataset.n_users, dataset.n_items),
            cold_items=torch.as_tensor(dataset.cold_items, dtype=torch.long),
        )

    def hit_rate(self, model: Recommender) -> float:
        """Mean HR@10 of the validation items, each ranked among all warm items."""
        from varsec.metrics.ranking import evaluate_full

        def score_warm(users: Tensor) -> Tensor:
            scores = model._score(users.to(model.device), None)  # fit() has not finished yet
            scores[:, self.cold_items.to(scores.device)] = -math.inf
            return scores

        result = evaluate_full(
            score_warm, model.n_items, self.test_items, self.exclude, ks=(VALIDATION_K,)
        )
        return float(np.mean(result[f"HR@{VALIDATION_K}"]))


def _build_optimizers(model: PairwiseRecommender) -> list[torch.optim.Optimizer]:
    sparse, dense = [], []
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            is_sparse = isinstance(module, nn.Embedding) and module.sparse and name == "weight"
            (sparse if is_sparse else dense).append(parameter)
    lr, decay = model.hp.lr, model.dense_weight_decay()
    optimizers: list[torch.optim.Optimizer] = []
    if model.hp.optimizer == "adam":
        if sparse:
            optimizers.append(torch.optim.SparseAdam(sparse, lr=lr))
        if dense:
            optimizers.append(torch.optim.Adam(dense, lr=lr, weight_decay=decay))
    else:
        if sparse:
            optimizers.append(torch.optim.SGD(sparse, lr=lr))
        if dense:
            optimizers.append(torch.optim.SGD(dense, lr=lr, weight_decay=decay))
    return optimizers


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterable[Tensor]:
    order = torch.randperm(n, generator=generator)
    return order.split(batch_size)


def _run_epoch(
    model: PairwiseRecommender,
    users: Tensor,
    items: Tensor,
    sampler: NegativeSampler,
    optimizers: list[torch.optim.Optimizer],
    generator: torch.Generator,
    epoch: int,
) -> float:
    model.train()
    device = model.device
    total, count = 0.0, 0
    batches = _batches(len(users), model.hp.batch_size, generator)
    desc = f"{type(model).__name__} epoch {epoch}"
    for index in progress(batches, total=len(batches), desc=desc):
        batch_users, batch_pos = users[index], items[index]
        batch_neg = sampler.sample(batch_users, generator)
        batch = (batch_users.to(device), batch_pos.to(device), batch_neg.to(device))
        loss = model.triplet_loss(*batch)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        total += float(loss.detach()) * len(index)
        count += len(index)
    model.eval()
    return total / max(count, 1)


def train_pairwise(model: PairwiseRecommender, dataset: Dataset) -> list[dict[str, Any]]:
    """Train ``model`` on the train part of ``dataset``; returns (and stores) the epoch log.

    Each log entry has ``epoch``, ``loss`` (mean minibatch objective), ``val_hr@10`` (None
    without early stopping) and ``seconds``. With early stopping the parameters of the epoch
    with the best validation HR@10 are restored and ``model.best_epoch`` records it.
    """
    users, items = train_lists(dataset)
    warm = torch.nonzero(warm_item_mask(dataset)).reshape(-1)
    sampler = NegativeSampler(users, items, dataset.n_items, pool=warm)
    validation = None
    if model.hp.early_stopping:
        validation = ValidationSet.from_dataset(dataset, model.hp.val_max_users, model.hp.seed)
    optimizers = _build_optimizers(model)
    generator = model.generator(offset=1)
    log: list[dict[str, Any]] = []
    best_hr, best_state, best_epoch, stale = -1.0, None, model.hp.epochs, 0
    for epoch in range(1, model.hp.epochs + 1):
        started = time.perf_counter()
        model.on_epoch_start(epoch)
        loss = _run_epoch(model, users, items, sampler, optimizers, generator, epoch)
        if not math.isfinite(loss):
            raise TrainingError(
                f"{type(model).__name__} diverged at epoch {epoch} (loss {loss}); "
                f"lower lr (now {model.hp.lr:g})."
            )
        entry: dict[str, Any] = {"epoch": epoch, "loss": loss, "val_hr@10": None}
        if validation is not None and model.selectable(epoch):
            model.refresh()
            entry["val_hr@10"] = validation.hit_rate(model)
            if entry["val_hr@10"] > best_hr:
                best_hr, best_epoch, stale = entry["val_hr@10"], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        entry["seconds"] = time.perf_counter() - started
        log.append(entry)
        if validation is not None and stale >= model.hp.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.best_epoch = best_epoch
    model.training_log = log
    return log


__all__ = ["NegativeSampler", "PairwiseRecommender", "ValidationSet", "train_pairwise"]
