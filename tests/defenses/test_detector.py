"""The contrastive detector: eq 9 by hand, calibration, decisions and the direction of training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from varsec.defenses import ContrastiveDetector, contrastive_loss
from varsec.defenses.detector import best_accuracy_threshold
from varsec.errors import ModelError


def small_detector(**options):
    torch.manual_seed(0)
    kwargs = {"widths": [4, 8], "blocks": [1, 1]}
    return ContrastiveDetector("fmnist-cnn", kwargs, embed_dim=8, **options)


def test_contrastive_loss_by_hand():
    views = {"clean": torch.tensor([[1.0, 0.0]]), "adv": torch.tensor([[0.0, 1.0]]),
             "clean_recon": torch.tensor([[1.0, 1.0]]), "adv_recon": torch.tensor([[1.0, 0.0]])}
    tau = 0.5
    c = 1 / math.sqrt(2)
    # positives: (clean, clean_recon)=c, (clean, adv_recon)=1, (clean_recon, adv_recon)=c
    # negatives: (adv, clean)=0, (adv, adv_recon)=0, (clean_recon, adv)=c
    pos = [c, 1.0, c]
    neg = [0.0, 0.0, c]
    top = sum(math.exp(s / tau) for s in pos)
    bottom = top + sum(math.exp(s / tau) for s in neg)
    expected = -math.log(top / bottom)
    assert float(contrastive_loss(views, tau)) == pytest.approx(expected, rel=1e-6)


def test_embedding_shape_and_distance_range():
    detector = small_detector().eval()
    x = torch.rand(3, 1, 28, 28)
    assert detector.embed(x).shape == (3, 8)
    distance = detector.distance(x, x)
    assert torch.allclose(distance, torch.zeros(3), atol=1e-5)
    far = detector.distance(x, torch.rand(3, 1, 28, 28))
    assert bool((far >= 0).all() and (far <= 2 + 1e-6).all())


def test_best_accuracy_threshold_separates_separable_scores():
    clean, adv = np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.6])
    threshold = best_accuracy_threshold(clean, adv)
    assert 0.3 < threshold < 0.5


def test_calibrate_records_the_threshold_and_how():
    detector = small_detector()
    clean, adv = np.linspace(0.0, 0.4, 50), np.linspace(0.3, 1.0, 50)
    calibration = detector.calibrate(clean, adv, "accuracy")
    assert detector.threshold == calibration.threshold
    assert calibration.method == "accuracy" and calibration.accuracy > 0.9
    fpr = detector.calibrate(clean, adv, "fpr", target_fpr=0.1)
    assert fpr.false_positive_rate <= 0.1
    fixed = detector.set_threshold(0.2)
    assert fixed.method == "fixed" and detector.decide([0.1, 0.3]).tolist() == [False, True]


def test_an_uncalibrated_threshold_is_an_error():
    detector = small_detector()
    with pytest.raises(ModelError, match="threshold was never calibrated"):
        detector.decide([0.1])
    with pytest.raises(ModelError, match="set_threshold"):
        detector.predict(np.zeros((1, 1, 28, 28), np.uint8), lambda x: x)


def test_detector_scores_adversarial_above_clean(tiny_defense, tiny_dataset):
    """Held-out test items (never trained on), tiny budget: the direction of 002 Table 3."""
    items = tiny_defense.split.test
    detector, network = tiny_defense.detector, tiny_defense.reconstruction
    clean = torch.from_numpy(np.ascontiguousarray(tiny_dataset.catalog.images[items]))
    adv = tiny_defense.adversarial_images("detector", items)
    assert detector.scores(adv, network).mean() > detector.scores(clean, network).mean()
    assert tiny_defense.calibration is not None and tiny_defense.calibration.method == "accuracy"
    assert detector.threshold == tiny_defense.calibration.threshold
