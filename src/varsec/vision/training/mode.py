"""The base class of a training mode: how one minibatch updates the classifier."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from varsec.vision.base import Backbone
from varsec.vision.training.config import TrainConfig

# step(loss): check the loss is finite, back-propagate, update the weights and the schedule.
Step = Callable[[Tensor], None]
# measure(steps): validation accuracy under PGD with that many steps (0: clean accuracy).
Measure = Callable[[int], float]


class TrainingMode(ABC):
    """One way of training a classifier; subclasses live one per file (``standard.py``, ...)."""

    name: ClassVar[str] = ""

    def __init__(self, config: TrainConfig, generator: torch.Generator) -> None:
        self.config = config
        self.generator = generator

    @property
    def n_epochs(self) -> int:
        """Passes over the training part."""
        return self.config.epochs

    @property
    def updates_per_batch(self) -> int:
        """Optimizer steps taken per minibatch (sizes the learning-rate schedule)."""
        return 1

    @abstractmethod
    def train_batch(self, model: Backbone, images: Tensor, labels: Tensor, step: Step) -> float:
        """Update ``model`` on one minibatch; returns the mean training loss."""

    def end_epoch(self, epoch: int, measure: Measure) -> None:  # noqa: B027 (optional hook)
        """Called after each epoch's validation (the curriculum raises its k here)."""

    def phase(self) -> Any:
        """Epochs of different phases are not compared by model selection; only the epochs of
        the latest phase are candidates (the curriculum's phase is its k)."""
        return None

    def state(self) -> dict[str, Any]:
        """Mode state worth recording per epoch (e.g. the curriculum's k)."""
        return {}

    @staticmethod
    def loss(model: Backbone, images: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy of the model's logits."""
        return F.cross_entropy(model(images), labels)
