"""``standard``: empirical risk minimisation on clean images (the undefended baseline, "T" in
001 Tables 1-2)."""

from __future__ import annotations

from torch import Tensor

from varsec.vision.base import Backbone
from varsec.vision.training.mode import Step, TrainingMode


class StandardTraining(TrainingMode):
    """Cross-entropy on clean minibatches."""

    name = "standard"

    def train_batch(self, model: Backbone, images: Tensor, labels: Tensor, step: Step) -> float:
        """One SGD step on the clean batch."""
        loss = self.loss(model, images, labels)
        step(loss)
        return float(loss.detach())
