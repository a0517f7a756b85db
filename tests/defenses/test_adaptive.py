"""The adaptive attack that knows the reconstruction network and the detector."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from varsec.attacks import PGDStep, run_attack
from varsec.attacks.objectives import Objective
from varsec.attacks.quantize import perturbation_levels
from varsec.defenses import ResizePad, adaptive_bpr_attack
from varsec.defenses.adaptive import DetectorAwareObjective


def test_adaptive_attack_evades_more_than_the_plain_one(tiny_defense, tiny_vbpr, tiny_dataset):
    items = tiny_defense.split.test[:24]
    network, detector = tiny_defense.reconstruction, tiny_defense.detector
    rule = PGDStep(eps=16, steps=5)
    plain = adaptive_bpr_attack(tiny_vbpr, tiny_dataset, network, detector, rule, items,
                                penalty=0.0)
    evasive = adaptive_bpr_attack(tiny_vbpr, tiny_dataset, network, detector, rule, items,
                                  penalty=1000.0, margin=0.05)
    assert evasive.images.shape == plain.images.shape
    clean = np.ascontiguousarray(tiny_dataset.catalog.images[items])
    assert float(perturbation_levels(evasive.images, torch.from_numpy(clean)).max()) <= 16
    assert evasive.scores.mean() < plain.scores.mean()
    assert evasive.evasion_rate >= plain.evasion_rate
    with_layer = adaptive_bpr_attack(tiny_vbpr, tiny_dataset, network, detector,
                                     PGDStep(eps=16, steps=2), items[:8],
                                     random_layer=ResizePad(seed=0), eot_samples=2)
    assert 0.0 <= with_layer.evasion_rate <= 1.0



class _StepRecorder(Objective):
    """A base objective that records the steps the engine announces (as INSA's minibatches)."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def begin_step(self, step: int) -> None:
        self.steps.append(step)

    def loss(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).mean(1)


class _ZeroDetector(nn.Module):
    def distance(self, x: torch.Tensor, reconstructed: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x))


def test_the_detector_aware_objective_passes_the_engines_steps_on():
    base = _StepRecorder()
    objective = DetectorAwareObjective(base, nn.Identity(), _ZeroDetector(), threshold=0.5)
    images = torch.full((4, 1, 8, 8), 128 / 255)  # on the 8-bit grid
    result = run_attack(objective, images, PGDStep(eps=8, steps=3), early_stop=False,
                        batch_size=2)
    assert base.steps == [1, 2, 3, 1, 2, 3]  # every step of each of the two batches
    assert float(perturbation_levels(result.images, images).max()) > 0
