"""Robust extractors in the loop (001 Tables 1-2) on tiny budgets."""

from __future__ import annotations

import pytest
import torch

from varsec.defenses.robust_extractors import (
    PAPER_ATTACKS,
    AttackSpec,
    build_recommenders,
    robust_extractor_table,
    train_extractors,
)
from varsec.errors import ConfigError


def test_train_extractors_one_per_mode(fmnist_small):
    from varsec.vision.training import TrainConfig

    config = TrainConfig(epochs=1, max_train=200, max_batches=2, batch_size=50, val_limit=20,
                         val_steps=1, steps=1, replays=2, backbone_kwargs={"widths": [4, 8],
                                                                           "blocks": [1, 1]})
    extractors = train_extractors(fmnist_small, ("standard", "free-at"), config)
    assert set(extractors) == {"standard", "free-at"}
    assert all(not e.training for e in extractors.values())


def test_table_has_the_t_at_fat_columns(tiny_dataset):
    from varsec.vision.registry import create_backbone

    extractors = {}
    for seed, mode in enumerate(("standard", "pgd-at")):
        torch.manual_seed(seed)
        extractors[mode] = create_backbone("fmnist-cnn", widths=[4, 8], blocks=[1, 1]).eval()
    models = build_recommenders(tiny_dataset, extractors, factors=4, visual_factors=4, epochs=2,
                                early_stopping=False)
    assert set(models) == {("vbpr", "standard"), ("amr", "standard"), ("vbpr", "pgd-at"),
                           ("amr", "pgd-at")}
    attacks = [AttackSpec("fgsm", 8), AttackSpec("pgd", 8, steps=2), AttackSpec("cw", None,
                                                                                 steps=3)]
    table = robust_extractor_table(tiny_dataset, extractors, models, "Sandal", "Sneaker",
                                   attacks, k=5, max_items=10)
    assert set(table["column"]) == {"T", "AT"}
    assert set(table["attack"]) == {"No-Attack", "FGSM (eps=8)", "PGD (eps=8)", "C&W"}
    rates = table[table["metric"] == "success_rate"]["value"]
    assert len(rates) == 6 and rates.between(0, 1).all()
    assert (table[table["metric"] == "feature_loss"]["value"] >= 0).all()
    counts = table[table["metric"] == "CHR@5"]
    assert len(counts) == 2 * 2 * 4 and counts["value"].between(0, 5).all()


def test_specs_are_validated():
    assert [s.label for s in PAPER_ATTACKS] == ["FGSM (eps=4)", "FGSM (eps=8)", "PGD (eps=4)",
                                                "PGD (eps=8)", "C&W"]
    with pytest.raises(ConfigError, match="attack kind must be one of fgsm, pgd, cw"):
        AttackSpec("deepfool")
    with pytest.raises(ConfigError, match="a pgd attack needs eps"):
        AttackSpec("pgd", None)
