"""The training schedule's pieces: config round trips, the item split, the recommender term."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from varsec.defenses.joint import (
    DefenseConfig,
    RecommenderLoss,
    calibration_halves,
    perceptual_extractor,
    split_items,
)
from varsec.errors import ConfigError


def test_config_round_trip_and_detector_budgets():
    config = DefenseConfig(detector_eps=(16, 32, 64), perceptual_stages=(1, 2))
    again = DefenseConfig.from_dict(config.to_dict())
    assert again == config
    assert config.detector_kinds == ("detector", "detector@32", "detector@64")
    assert DefenseConfig().detector_kinds == ("detector",)
    assert DefenseConfig().alpha == 1.0 and DefenseConfig().beta == 100.0
    assert DefenseConfig().gamma == 0.1
    with pytest.raises(ConfigError, match="at least one epoch"):
        DefenseConfig(recon_epochs=0, mix_epochs=0, joint_epochs=0)


def test_split_is_seeded_disjoint_and_warm(tiny_dataset):
    config = DefenseConfig(holdout_fraction=0.3, max_items=100)
    split = split_items(tiny_dataset, config)
    assert split.to_dict() == split_items(tiny_dataset, config).to_dict()
    parts = [set(split.train), set(split.calibration), set(split.test)]
    assert len(split.train) == 100
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert not set(tiny_dataset.cold_items) & set().union(*parts)
    clean, adv = calibration_halves(split.calibration, 0)
    assert not set(clean) & set(adv) and len(clean) + len(adv) == len(split.calibration)


def test_recommender_loss_on_clean_images_is_vbprs_bpr_loss(tiny_vbpr, tiny_dataset):
    split = split_items(tiny_dataset, DefenseConfig())
    term = RecommenderLoss(tiny_vbpr, tiny_dataset, split.train, seed=0)
    users, pos, neg = term.sample(12)
    assert set(pos.tolist()) <= set(split.train) and set(neg.tolist()) <= set(split.train)
    items = torch.cat([pos, neg])
    images = torch.from_numpy(np.ascontiguousarray(tiny_dataset.catalog.images[items])) / 255.0
    with torch.no_grad():
        offsets = term.offsets(users.repeat(2), items, images)
        value = term(users, images, offsets)
        scores = tiny_vbpr.score(users)
        expected = -F.logsigmoid(scores.gather(1, pos[:, None]) - scores.gather(1, neg[:, None]))
    assert float(value) == pytest.approx(float(expected.mean()), rel=1e-4)


def test_perceptual_extractor_comes_from_the_recommender(tiny_vbpr, tiny_extractor):
    assert perceptual_extractor(tiny_vbpr, None) is tiny_extractor
    with pytest.raises(ConfigError, match="stages"):
        perceptual_extractor(object(), lambda x: x)


def test_reconstruction_only_training_has_no_detector(tiny_vbpr, tiny_dataset):
    from varsec.defenses import train_defense

    result = train_defense(tiny_vbpr, tiny_dataset, recon_epochs=1, mix_epochs=0,
                           detector_epochs=0, width=4, blocks=1, heads=1, max_tokens=16,
                           batch_size=16, max_items=32)
    assert result.detector is None and result.calibration is None
    assert [r["phase"] for r in result.history] == ["reconstruction"]
    assert set(result.adversarial) == {"fgsm", "detector"}
