"""One training loop for every pairwise (BPR-loss) recommender.

- :class:`NegativeSampler`: vectorised uniform negatives over the warm items. Candidates are drawn
  for the whole minibatch at once; those that hit one of the user's training positives (looked
  up by binary search in a sorted array of ``user * n_items + item`` keys) are redrawn, again
  all at once, until none collide. Users whose positives fill almost the whole pool fall back to
  an exact draw from their complement after ``max_rounds`` rounds.
- :class:`PairwiseRecommender`: the base of BPR-MF, VBPR, AMR and DVBPR. A model supplies
  ``pair_scores(users, items)`` and the rows its L2 penalty covers; the loss is
  ``mean -ln σ(s_ui - s_uj) + reg · Σ‖rows‖² / B`` (001 eq 1 with the per-triplet penalty of
  Rendle's BPR), minimised by Adam or SGD over minibatches. One minibatch update is
  :meth:`PairwiseRecommender.train_step`: autograd by default; a model may compute its gradient in
  closed form instead (VBPR does).
- :class:`PairwiseOptimizer`: Adam or SGD in one object. Embedding tables with sparse gradients
  get ``torch.optim.SparseAdam``'s update (only the rows a batch touched move, duplicates summed
  first, applied with index_select / index_copy / index_add and no sparse-tensor bookkeeping),
  every other parameter ``torch.optim.Adam``'s.
- :func:`train_pairwise`: epochs (each with one shuffled order, its negatives drawn before the
  first step), early stopping on validation HR@10 with patience (restoring the best epoch), a
  progress bar and a per-epoch log.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from varsec.data.catalog import Dataset
from varsec.errors import ConfigError, DataError, TrainingError
from varsec.io import progress
from varsec.recsys.base import Param, Recommender, part_size, train_lists, warm_item_mask
from varsec.recsys.ranking import UserItems, build_exclusion, full_rank_counts, hit_probability

VALIDATION_K = 10
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


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
    pairwise: ClassVar[bool] = True
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

    def train_step(
        self, users: Tensor, pos: Tensor, neg: Tensor, optimizer: PairwiseOptimizer
    ) -> Tensor:
        """One minibatch update on ``triplet_loss``; returns the objective's value (detached).

        The default differentiates ``triplet_loss`` with autograd; a model may override this to
        apply a closed-form gradient of the same objective with ``optimizer.update_rows`` /
        ``optimizer.update_dense``.
        """
        loss = self.triplet_loss(users, pos, neg)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()

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
        train = dataset.part("train")
        return cls(
            test_items=test_items,
            exclude=build_exclusion(train.user, train.item, dataset.n_users, dataset.n_items),
            cold_items=torch.as_tensor(dataset.cold_items, dtype=torch.long),
        )

    @torch.no_grad()
    def hit_rate(self, model: Recommender) -> float:
        """Mean HR@10 of the validation items, each ranked among all warm items.

        Ties count by their expectation, exactly as ``varsec.metrics.ranking.evaluate_full``
        reports HR@10 (both use :mod:`varsec.recsys.ranking`).
        """

        def score_warm(users: Tensor) -> Tensor:
            scores = model._score(users.to(model.device), None)  # fit() has not finished yet
            return scores.index_fill_(1, self.cold_items.to(scores.device), -math.inf)

        _, higher, ties = full_rank_counts(score_warm, self.test_items, self.exclude)
        if higher.numel() == 0:
            return 0.0
        return float(hit_probability(VALIDATION_K, higher.double(), ties.double()).mean())


class PairwiseOptimizer:
    """Adam or SGD over a pairwise recommender's parameters, row-wise for embedding tables.

    Parameters of ``nn.Embedding(..., sparse=True)`` tables are updated like
    ``torch.optim.SparseAdam`` (or sparse SGD) does: the gradient rows of a batch are summed per
    distinct row, and only those rows and their moment estimates change. Every other parameter is
    updated like ``torch.optim.Adam`` (or SGD) with ``weight_decay``. Each parameter counts its own
    steps, as torch does. ``update_rows`` / ``update_dense`` are the same updates for a model that
    computes its gradients itself (see :meth:`PairwiseRecommender.train_step`).
    """

    def __init__(
        self,
        sparse: list[nn.Parameter],
        dense: list[nn.Parameter],
        kind: str,
        lr: float,
        weight_decay: float = 0.0,
    ) -> None:
        if kind not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {kind!r}.")
        self.sparse, self.dense = list(sparse), list(dense)
        self.kind, self.lr, self.weight_decay = kind, float(lr), float(weight_decay)
        self.state: dict[Any, tuple[list[int], Tensor, Tensor]] = {}

    @classmethod
    def for_model(cls, model: PairwiseRecommender) -> PairwiseOptimizer:
        """The optimizer ``model.hp`` asks for, over its trainable parameters."""
        sparse, dense = [], []
        for module in model.modules():
            for name, parameter in module.named_parameters(recurse=False):
                if not parameter.requires_grad:
                    continue
                is_sparse = isinstance(module, nn.Embedding) and module.sparse and name == "weight"
                (sparse if is_sparse else dense).append(parameter)
        return cls(sparse, dense, model.hp.optimizer, model.hp.lr, model.dense_weight_decay())

    def zero_grad(self) -> None:
        """Drop every parameter's gradient."""
        for parameter in (*self.sparse, *self.dense):
            parameter.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """Apply the gradients autograd left in ``.grad``."""
        for parameter in self.sparse:
            if parameter.grad is not None:
                rows, grad = merge_rows(parameter.grad._indices()[0], parameter.grad._values())
                self.update_rows(parameter, rows, grad)
        for parameter in self.dense:
            if parameter.grad is not None:
                self.update_dense(parameter, parameter.grad)

    def _moments(self, key: Any, like: Tensor) -> tuple[list[int], Tensor, Tensor]:
        """(step count, m, v) of a parameter or a group of tables, created at the first step."""
        if key not in self.state:
            self.state[key] = ([0], torch.zeros_like(like), torch.zeros_like(like))
        return self.state[key]

    def update_rows(self, tables: Tensor | Sequence[Tensor], rows: Tensor, grad: Tensor) -> None:
        """Update rows ``rows`` (distinct) of an embedding table given their gradient ``grad``.

        ``tables`` may also be several tables indexed alike (e.g. a user's two factor tables):
        ``grad`` then holds their gradients side by side, in order, and the group shares one
        step count and one moment matrix (the update of every entry is the same as for separate
        tables). Adam: the SparseAdam rule, ``m, v`` of those rows only and
        ``Δ = -lr · sqrt(1 - β2^t) / (1 - β1^t) · m / (sqrt(v) + ε)``. SGD: ``Δ = -lr · grad``.
        """
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.update_rows(tables, rows, grad)
        group = (tables,) if isinstance(tables, Tensor) else tuple(tables)
        if self.kind == "sgd":
            delta, step_size = grad, self.lr
        else:
            width = sum(table.shape[1] for table in group)
            like = group[0] if len(group) == 1 else group[0].new_empty(len(group[0]), width)
            steps, exp_avg, exp_avg_sq = self._moments(group, like)
            steps[0] += 1
            if rows.numel() == 0:
                return
            beta1, beta2 = ADAM_BETAS
            m = exp_avg.index_select(0, rows)
            v = exp_avg_sq.index_select(0, rows)
            m = grad.sub(m).mul_(1 - beta1).add_(m)
            v = (grad * grad).sub_(v).mul_(1 - beta2).add_(v)
            exp_avg.index_copy_(0, rows, m)
            exp_avg_sq.index_copy_(0, rows, v)
            step_size = self.lr * math.sqrt(1 - beta2 ** steps[0]) / (1 - beta1 ** steps[0])
            delta = m.div_(v.sqrt_().add_(ADAM_EPS))
        start = 0
        for table in group:
            stop = start + table.shape[1]
            table.index_add_(0, rows, delta[:, start:stop], alpha=-step_size)
            start = stop

    def update_dense(self, parameter: Tensor, grad: Tensor) -> None:
        """Update a dense parameter with its gradient (weight decay added to the gradient).

        Adam: ``torch.optim.Adam``'s rule; SGD: ``Δ = -lr · grad``.
        """
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.update_dense(parameter, grad)
        if self.weight_decay:
            grad = grad.add(parameter, alpha=self.weight_decay)
        if self.kind == "sgd":
            parameter.add_(grad, alpha=-self.lr)
            return
        steps, exp_avg, exp_avg_sq = self._moments(parameter, parameter)
        steps[0] += 1
        beta1, beta2 = ADAM_BETAS
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        correction1 = 1 - beta1 ** steps[0]
        correction2 = 1 - beta2 ** steps[0]
        denom = (exp_avg_sq.sqrt() / math.sqrt(correction2)).add_(ADAM_EPS)
        parameter.addcdiv_(exp_avg, denom, value=-self.lr / correction1)


def merge_rows(index: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
    """(distinct entries of ``index``, ``grads`` rows summed per distinct entry)."""
    rows, inverse = torch.unique(index, return_inverse=True)
    return rows, grads.new_zeros((rows.numel(), grads.shape[1])).index_add_(0, inverse, grads)


def _run_epoch(
    model: PairwiseRecommender,
    users: Tensor,
    items: Tensor,
    sampler: NegativeSampler,
    optimizer: PairwiseOptimizer,
    generator: torch.Generator,
    epoch: int,
) -> float:
    model.train()
    device = model.device
    order = torch.randperm(len(users), generator=generator)
    epoch_users, epoch_pos = users[order], items[order]
    # All negatives of the epoch before its first step, minibatch by minibatch: the draws (and
    # so the trained model) are those of sampling inside the loop, without its per-step cost.
    epoch_neg = torch.cat([sampler.sample(batch, generator)
                           for batch in epoch_users.split(model.hp.batch_size)])
    epoch_users, epoch_pos, epoch_neg = (t.to(device) for t in (epoch_users, epoch_pos, epoch_neg))
    total = torch.zeros((), dtype=torch.float64, device=device)
    starts = range(0, len(users), model.hp.batch_size)
    desc = f"{type(model).__name__} epoch {epoch}"
    for start in progress(starts, total=len(starts), desc=desc):
        stop = min(start + model.hp.batch_size, len(users))
        loss = model.train_step(epoch_users[start:stop], epoch_pos[start:stop],
                                epoch_neg[start:stop], optimizer)
        total += loss.double() * (stop - start)
    model.eval()
    return float(total) / max(len(users), 1)


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
    optimizer = PairwiseOptimizer.for_model(model)
    generator = model.generator(offset=1)
    log: list[dict[str, Any]] = []
    best_hr, best_state, best_epoch, stale = -1.0, None, model.hp.epochs, 0
    for epoch in range(1, model.hp.epochs + 1):
        started = time.perf_counter()
        model.on_epoch_start(epoch)
        loss = _run_epoch(model, users, items, sampler, optimizer, generator, epoch)
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


__all__ = [
    "NegativeSampler",
    "PairwiseOptimizer",
    "PairwiseRecommender",
    "ValidationSet",
    "merge_rows",
    "train_pairwise",
]
