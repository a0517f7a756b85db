"""The training loop shared by every mode: data, optimiser, validation, model selection, checkpoint.

Model selection uses the validation part only (never the test part, a defect of the papers'
public code that varsec must not repeat, see papers/README.md).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from varsec.data.catalog import ItemCatalog
from varsec.errors import ConfigError, DataError, TrainingError
from varsec.io import progress
from varsec.vision.adversarial import default_alpha, eval_mode, pgd_linf, quantize_float
from varsec.vision.base import Backbone
from varsec.vision.checkpoint import save_checkpoint
from varsec.vision.perturbation import uint8_to_float
from varsec.vision.registry import backbone_parameters, create_backbone
from varsec.vision.splits import catalog_parts, image_batch, label_batch, num_classes
from varsec.vision.training.config import TrainConfig
from varsec.vision.training.curriculum_at import CurriculumAdversarialTraining
from varsec.vision.training.free_at import FreeAdversarialTraining
from varsec.vision.training.mode import Step, TrainingMode
from varsec.vision.training.pgd_at import PGDAdversarialTraining
from varsec.vision.training.standard import StandardTraining

log = logging.getLogger(__name__)

MODE_CLASSES: dict[str, type[TrainingMode]] = {
    cls.name: cls
    for cls in (StandardTraining, PGDAdversarialTraining, FreeAdversarialTraining,
                CurriculumAdversarialTraining)
}


@dataclass
class TrainResult:
    """The selected (best-on-validation) backbone, its metrics and where it was saved."""

    backbone: Backbone
    config: TrainConfig
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_path: Path | None = None
    checkpoint_hash: str | None = None


def build_backbone(config: TrainConfig, catalog: ItemCatalog) -> Backbone:
    """The backbone of ``config`` sized for the catalog (classes, channels)."""
    kwargs = dict(config.backbone_kwargs)
    accepted = backbone_parameters(config.backbone)
    n_classes = num_classes(catalog)
    if "num_classes" in accepted:
        kwargs.setdefault("num_classes", n_classes)
    if "in_channels" in accepted and catalog.image_shape is not None:
        kwargs.setdefault("in_channels", catalog.image_shape[0])
    backbone = create_backbone(config.backbone, **kwargs)
    if backbone.num_classes != n_classes:
        raise ConfigError(
            f"backbone {config.backbone!r} has {backbone.num_classes} classes but catalog "
            f"{catalog.name!r} has {n_classes} categories; pass num_classes={n_classes}."
        )
    return backbone


class _Data:
    """The three parts as tensors: uint8 training pixels, float validation images."""

    def __init__(self, catalog: ItemCatalog, config: TrainConfig) -> None:
        parts = catalog_parts(catalog, val_fraction=config.val_fraction, seed=config.seed)
        train = parts.train
        if config.max_train is not None and config.max_train < len(train):
            rng = np.random.default_rng(config.seed)
            train = np.sort(rng.choice(train, config.max_train, replace=False))
        if len(train) < 2:
            raise DataError(f"catalog {catalog.name!r} has {len(train)} training item(s); "
                            "a classifier needs at least 2.")
        assert catalog.images is not None
        self.train_pixels = torch.from_numpy(np.asarray(catalog.images[train]))
        self.train_labels = label_batch(catalog, train)
        self.val_images = image_batch(catalog, parts.validation)
        self.val_labels = label_batch(catalog, parts.validation)
        self.sizes = {"train": len(train), "validation": len(parts.validation),
                      "test": len(parts.test)}


def accuracy(
    model: Backbone,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float | None = None,
    steps: int = 0,
    alpha: float | None = None,
    batch_size: int = 500,
    seed: int = 0,
) -> float:
    """Accuracy of ``model`` on clean images (``steps=0``) or on quantised PGD-``steps`` images."""
    device = model.device
    generator = torch.Generator(device=device).manual_seed(seed)
    correct = 0
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            if steps > 0 and eps is not None:
                adv = pgd_linf(model, x, y, eps=eps, alpha=alpha, steps=steps,
                               generator=generator)
                x = quantize_float(adv, x, eps)
            with torch.no_grad():
                correct += int((model(x).argmax(1) == y).sum())
    return correct / max(1, len(images))


def _optimizer(model: Backbone, config: TrainConfig, total_updates: int):
    params = model.parameters()
    if config.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
            nesterov=config.momentum > 0,
        )
    else:
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.schedule == "cosine":
        sched: Any = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_updates))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def _make_step(opt, sched, config: TrainConfig, where: dict[str, int]) -> Step:
    def step(loss: Tensor) -> None:
        if not torch.isfinite(loss.detach()):
            raise TrainingError(
                f"the training loss became {float(loss.detach())} at epoch {where['epoch']} "
                f"(batch {where['batch']}) of {config.mode} training; lower the learning rate "
                f"(lr={config.lr})."
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    return step


class Trainer:
    """Runs one training: epochs of a mode, validation after each, the best state kept."""

    def __init__(self, catalog: ItemCatalog, config: TrainConfig,
                 on_epoch: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.catalog, self.config, self.on_epoch = catalog, config, on_epoch
        torch.manual_seed(config.seed)
        self.data = _Data(catalog, config)
        self.model = build_backbone(config, catalog).to(config.device)
        self.model.check_images(self.data.val_images[:1])
        self.generator = torch.Generator(device=config.device).manual_seed(config.seed)
        self.shuffler = torch.Generator().manual_seed(config.seed)
        self.mode = MODE_CLASSES[config.mode](config, self.generator)
        self.n_batches = self._batches_per_epoch()
        total = self.mode.n_epochs * self.n_batches * self.mode.updates_per_batch
        self.opt, self.sched = _optimizer(self.model, config, total)
        self.where = {"epoch": 0, "batch": 0}
        self.step = _make_step(self.opt, self.sched, config, self.where)
        self.history: list[dict[str, Any]] = []

    def _batches_per_epoch(self) -> int:
        n = math.ceil(len(self.data.train_labels) / self.config.batch_size)
        return min(n, self.config.max_batches) if self.config.max_batches else n

    def run_epoch(self, epoch: int) -> float:
        """One pass over (a shuffle of) the training part; returns the mean loss."""
        cfg, device = self.config, self.config.device
        order = torch.randperm(len(self.data.train_labels), generator=self.shuffler)
        self.model.train()
        losses = []
        self.where["epoch"] = epoch
        desc = f"{cfg.mode} epoch {epoch}/{self.mode.n_epochs}"
        for batch in progress(range(self.n_batches), total=self.n_batches, desc=desc):
            self.where["batch"] = batch + 1
            idx = order[batch * cfg.batch_size : (batch + 1) * cfg.batch_size]
            if len(idx) < 2:  # batch norm cannot train on a single image
                continue
            x = uint8_to_float(self.data.train_pixels[idx], device)
            y = self.data.train_labels[idx].to(device)
            losses.append(self.mode.train_batch(self.model, x, y, self.step))
        return float(np.mean(losses))

    def _robust_subset(self) -> tuple[Tensor, Tensor]:
        limit = self.config.val_limit or len(self.data.val_labels)
        return self.data.val_images[:limit], self.data.val_labels[:limit]

    def measure(self, steps: int, alpha: float | None = None) -> float:
        """Validation accuracy under PGD-``steps`` (0: clean, on the whole validation part)."""
        if steps == 0:
            return accuracy(self.model, self.data.val_images, self.data.val_labels)
        x, y = self._robust_subset()
        return accuracy(self.model, x, y, eps=self.config.eps, steps=steps, alpha=alpha,
                        seed=self.config.seed + 1)

    def validate(self) -> dict[str, float | None]:
        """Clean validation accuracy, and PGD accuracy when the selection needs it."""
        cfg = self.config
        robust = None
        if cfg.selection == "robust" or cfg.mode != "standard":
            robust = self.measure(cfg.val_steps, default_alpha(cfg.eps, cfg.val_steps))
        return {"val_clean_acc": self.measure(0), "val_robust_acc": robust}

    def fit(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """Train all epochs; returns the metrics and the best state dict."""
        cfg, started = self.config, time.perf_counter()
        best_score, best_state, best_record = -1.0, None, None
        train_seconds, best_phase = 0.0, None
        for epoch in range(1, self.mode.n_epochs + 1):
            phase = self.mode.phase()
            if phase != best_phase:  # a new phase: earlier epochs are no longer candidates
                best_score, best_phase = -1.0, phase
            tick = time.perf_counter()
            loss = self.run_epoch(epoch)
            train_seconds += time.perf_counter() - tick
            record = {"epoch": epoch, "train_loss": loss, **self.mode.state(), **self.validate(),
                      "seconds": round(time.perf_counter() - tick, 3)}
            self.mode.end_epoch(epoch, partial(self._plateau_metric, record=record))
            self.history.append(record)
            score = record["val_robust_acc" if cfg.selection == "robust" else "val_clean_acc"]
            if score is not None and score > best_score:
                best_score, best_record = score, record
                best_state = copy.deepcopy(self.model.state_dict())
            log.info("epoch %s: %s", epoch, record)
            if self.on_epoch:
                self.on_epoch(record)
        assert best_state is not None and best_record is not None
        metrics = {
            "best_epoch": best_record["epoch"],
            "val_clean_acc": best_record["val_clean_acc"],
            "val_robust_acc": best_record["val_robust_acc"],
            "selected_on": cfg.selection,
            "val_robust_attack": f"PGD-{cfg.val_steps} eps={cfg.eps:g} on "
                                 f"{len(self._robust_subset()[1])} validation items",
            "epochs_run": self.mode.n_epochs,
            "train_seconds": round(train_seconds, 2),
            "total_seconds": round(time.perf_counter() - started, 2),
            "items": self.data.sizes,
            "history": self.history,
        }
        return metrics, best_state

    def _plateau_metric(self, k: int, record: dict[str, Any]) -> float:
        if k == 0:
            return float(record["val_clean_acc"])
        return self.measure(k, self.config.attack_alpha)


def train_classifier(
    catalog: ItemCatalog,
    config: TrainConfig | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a classifier backbone on the catalog's categories (mode from ``config.mode``).

    ``overrides`` replace fields of ``config`` (e.g. ``mode="pgd-at", epochs=2``). The backbone
    returned (in eval mode) holds the best epoch's weights, chosen on the validation part; with
    ``out`` it is also saved as a checkpoint (see :mod:`varsec.vision.checkpoint`).
    """
    config = config or TrainConfig()
    if overrides:
        config = config.replace(**overrides)
    trainer = Trainer(catalog, config, on_epoch)
    metrics, best_state = trainer.fit()
    model = trainer.model
    model.load_state_dict(best_state)
    model.eval()
    result = TrainResult(backbone=model, config=config, metrics=metrics, history=trainer.history)
    if out is not None:
        result.checkpoint_hash = save_checkpoint(
            out, model, train_config=config.to_dict(), catalog_hash=catalog.content_hash(),
            category_names=catalog.category_names, metrics=metrics,
        )
        result.checkpoint_path = Path(out)
    else:
        result.checkpoint_hash = model.weights_hash()
    return result
