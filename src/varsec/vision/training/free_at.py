"""``free-at``: free adversarial training (Shafahi et al., 2019, "Adversarial training for
free!", Algorithm 1; the "FAT" defense of 001 Tables 1-2).

Each minibatch is replayed ``m = replays`` times. Every replay does one forward/backward pass
on ``x + delta`` that yields both the weight gradient (one SGD step) and the gradient on the
perturbation (one signed ascent step of ``eps``, projected onto the eps-ball). ``delta``
persists across replays *and* minibatches. The number of epochs is divided by ``m`` so the total
work equals that of ``epochs`` standard epochs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from varsec.vision.base import Backbone
from varsec.vision.training.mode import Step, TrainingMode


class FreeAdversarialTraining(TrainingMode):
    """Shafahi et al.'s free adversarial training with ``replays`` replays per minibatch."""

    name = "free-at"
    delta: Tensor | None = None

    @property
    def n_epochs(self) -> int:
        """ceil(epochs / m): the same number of gradient computations as ``epochs`` epochs."""
        return max(1, math.ceil(self.config.epochs / self.config.replays))

    @property
    def updates_per_batch(self) -> int:
        """One weight update per replay."""
        return self.config.replays

    def _perturbation(self, images: Tensor) -> Tensor:
        size = (self.config.batch_size, *images.shape[1:])
        if self.delta is None or self.delta.shape != size:
            self.delta = torch.zeros(size, dtype=images.dtype, device=images.device)
        return self.delta[: len(images)]

    def train_batch(self, model: Backbone, images: Tensor, labels: Tensor, step: Step) -> float:
        """``replays`` simultaneous weight-descent / perturbation-ascent steps on one batch."""
        radius = self.config.eps / 255.0
        total = 0.0
        for _ in range(self.config.replays):
            delta = self._perturbation(images).clone().requires_grad_(True)
            loss = self.loss(model, (images + delta).clamp(0.0, 1.0), labels)
            step(loss)
            assert delta.grad is not None
            updated = (delta + radius * delta.grad.sign()).clamp(-radius, radius).detach()
            self._perturbation(images).copy_(updated)
            total += float(loss.detach())
        return total / self.config.replays
