"""``pgd-at``: PGD adversarial training (Madry et al., 2018, "Towards deep learning models
resistant to adversarial attacks", eq 2.1; 001 eq 4, the "AT" defense of 001 Tables 1-2).

Each minibatch is replaced by its PGD examples (``steps`` steps of ``alpha`` levels from a
random start inside the ``eps`` ball); the weights then descend the loss on them. The attack runs
with batch-norm statistics frozen (eval mode) so it does not pollute the running averages.
"""

from __future__ import annotations

from torch import Tensor

from varsec.vision.adversarial import eval_mode, pgd_linf
from varsec.vision.base import Backbone
from varsec.vision.training.mode import Step, TrainingMode


class PGDAdversarialTraining(TrainingMode):
    """min over weights of the loss at the PGD maximiser (Madry et al., 2018)."""

    name = "pgd-at"

    def train_batch(self, model: Backbone, images: Tensor, labels: Tensor, step: Step) -> float:
        """Craft PGD examples of the batch, then one SGD step on them."""
        cfg = self.config
        with eval_mode(model):
            adv = pgd_linf(model, images, labels, eps=cfg.eps, alpha=cfg.attack_alpha,
                           steps=cfg.steps, generator=self.generator)
        loss = self.loss(model, adv, labels)
        step(loss)
        return float(loss.detach())
