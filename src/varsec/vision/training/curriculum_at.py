"""``curriculum-at``: curriculum adversarial training (thesis 004, "Defenses": PGD attacks with
up to k=8 steps, starting with k=0; after Cai et al., 2018, "Curriculum adversarial training").

The attack strength is the number k of PGD steps (step size fixed at ``alpha``, so k steps reach
at most k * alpha): k starts at 0 (clean training) and is raised by one, up to K = ``steps``,
whenever the validation accuracy under the current PGD-k has not improved by ``min_gain`` for
``patience`` epochs. Batches are mixed: an ``adv_fraction`` share of each minibatch is replaced
by its PGD-k examples, the rest stays clean, which trades some robustness for clean accuracy.
The best epoch is chosen among those trained at the highest k reached: earlier epochs, barely
trained, can look robust on validation without having learnt anything from the curriculum.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from varsec.vision.adversarial import eval_mode, pgd_linf
from varsec.vision.base import Backbone
from varsec.vision.training.config import TrainConfig
from varsec.vision.training.mode import Measure, Step, TrainingMode


class CurriculumAdversarialTraining(TrainingMode):
    """PGD-k training with k raised 0 -> K on validation plateaus, in mixed batches."""

    name = "curriculum-at"

    def __init__(self, config: TrainConfig, generator: torch.Generator) -> None:
        super().__init__(config, generator)
        self.k = 0
        self.best = -float("inf")
        self.stale = 0

    def train_batch(self, model: Backbone, images: Tensor, labels: Tensor, step: Step) -> float:
        """One SGD step on the batch with its first ``adv_fraction`` replaced by PGD-k examples."""
        n_adv = round(self.config.adv_fraction * len(images)) if self.k > 0 else 0
        if n_adv:
            with eval_mode(model):
                adv = pgd_linf(model, images[:n_adv], labels[:n_adv], eps=self.config.eps,
                               alpha=self.config.attack_alpha, steps=self.k,
                               generator=self.generator)
            images = torch.cat([adv, images[n_adv:]])
        loss = self.loss(model, images, labels)
        step(loss)
        return float(loss.detach())

    def end_epoch(self, epoch: int, measure: Measure) -> None:
        """Raise k when validation accuracy under PGD-k has not improved for ``patience`` epochs.

        The new level's baseline is measured at once (the current weights against PGD-(k+1)),
        so a level that brings no gain can be left after ``patience`` epochs as well.
        """
        accuracy = measure(self.k)
        if accuracy >= self.best + self.config.min_gain:
            self.best, self.stale = accuracy, 0
            return
        self.stale += 1
        if self.stale >= self.config.patience and self.k < self.config.steps:
            self.k += 1
            self.best, self.stale = measure(self.k), 0

    def phase(self) -> int:
        """Model selection only compares epochs trained at the highest k reached."""
        return self.k

    def state(self) -> dict[str, Any]:
        """The current number of PGD steps k."""
        return {"k": self.k}
