"""The adaptive attack that knows the reconstruction network and the detector."""

from __future__ import annotations

import numpy as np

from varsec.attacks import PGDStep
from varsec.attacks.quantize import perturbation_levels
from varsec.defenses import ResizePad, adaptive_bpr_attack


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
    import torch

    assert float(perturbation_levels(evasive.images, torch.from_numpy(clean)).max()) <= 16
    assert evasive.scores.mean() < plain.scores.mean()
    assert evasive.evasion_rate >= plain.evasion_rate
    with_layer = adaptive_bpr_attack(tiny_vbpr, tiny_dataset, network, detector,
                                     PGDStep(eps=16, steps=2), items[:8],
                                     random_layer=ResizePad(seed=0), eot_samples=2)
    assert 0.0 <= with_layer.evasion_rate <= 1.0
