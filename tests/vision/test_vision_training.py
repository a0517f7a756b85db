"""Classifier training: config validation, splits, the four modes, NaN handling, selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from varsec.data.catalog import ItemCatalog
from varsec.errors import ConfigError, DataError, TrainingError
from varsec.vision import TrainConfig, catalog_parts, evaluate_robustness, train_classifier
from varsec.vision.training import MODE_CLASSES
from varsec.vision.training.curriculum_at import CurriculumAdversarialTraining
from varsec.vision.training.free_at import FreeAdversarialTraining


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("replays", 0, "replays must be an integer >= 1 \\(free-at's replays m"),
        ("steps", 0, "steps must be an integer >= 1 \\(the PGD steps; curriculum-at's top K"),
        ("eps", 0, r"eps must lie in \[1, 255\]"),
        ("eps", 256, r"eps must lie in \[1, 255\] 8-bit levels .*got 256"),
        ("alpha", -1, r"alpha must lie in \(0, 255\]"),
        ("mode", "fgsm-at",
         "mode must be one of 'standard', 'pgd-at', 'free-at', 'curriculum-at', got 'fgsm-at'"),
        ("epochs", 0, "epochs must be an integer >= 1"),
        ("lr", 0, r"lr must be a number > 0, got 0\."),
        ("val_fraction", 1.0, r"val_fraction must be a number > 0 and < 1, got 1\.0\."),
        ("adv_fraction", 0, r"adv_fraction must be a number > 0 and <= 1, got 0\."),
        ("optimizer", "lbfgs", "optimizer must be one of 'sgd', 'adam', got 'lbfgs'"),
    ],
)
def test_bad_training_config_values_are_config_errors(field, value, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{field: value})


def test_free_and_curriculum_configs_with_m_or_k_below_one():
    with pytest.raises(ConfigError, match="free-at"):
        TrainConfig(mode="free-at", replays=0)
    with pytest.raises(ConfigError, match="curriculum-at's top K"):
        TrainConfig(mode="curriculum-at", steps=0)


def test_unusable_devices_are_config_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="^device 'cuda' needs CUDA, which this machine does "
                                          "not have; use cpu.$"):
        TrainConfig(device="cuda")
    with pytest.raises(ConfigError, match=r"^device must be cpu, cuda or cuda:N, got 'abacus'.$"):
        TrainConfig(device="abacus")


def test_config_round_trips_and_rejects_unknown_fields():
    config = TrainConfig(mode="pgd-at", eps=4, steps=5)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.attack_alpha == 2.0 and config.selection == "robust"
    assert TrainConfig().selection == "clean"
    with pytest.raises(ConfigError, match="unknown training config field 'epsilon'"):
        TrainConfig.from_dict({"epsilon": 8})


def test_free_at_divides_the_epochs_by_the_replays():
    mode = FreeAdversarialTraining(TrainConfig(mode="free-at", epochs=10, replays=4), None)
    assert mode.n_epochs == 3 and mode.updates_per_batch == 4
    assert set(MODE_CLASSES) == {"standard", "pgd-at", "free-at", "curriculum-at"}


def test_parts_honour_source_split_and_keep_test_out(fmnist):
    parts = catalog_parts(fmnist, val_fraction=0.1, seed=0)
    source = fmnist.extra["source_split"].to_numpy()
    assert parts.sizes() == {"train": 54000, "validation": 6000, "test": 10000}
    assert (source[parts.test] == "test").all()
    assert (source[parts.train] == "train").all() and (source[parts.validation] == "train").all()
    assert not set(parts.train) & set(parts.validation)
    again = catalog_parts(fmnist, val_fraction=0.1, seed=0)
    np.testing.assert_array_equal(parts.validation, again.validation)


def test_parts_without_source_split_are_seeded(fmnist_small):
    catalog = ItemCatalog(item_ids=fmnist_small.item_ids, images=fmnist_small.images,
                          categories=fmnist_small.categories,
                          category_names=fmnist_small.category_names)
    a = catalog_parts(catalog, seed=1)
    b = catalog_parts(catalog, seed=2)
    np.testing.assert_array_equal(a.test, b.test)  # the test part never moves
    assert not np.array_equal(a.validation, b.validation)
    assert len(a.test) == round(3000 / 7)
    assert len(set(a.train) | set(a.validation) | set(a.test)) == 3000


def test_catalog_with_a_validation_column_uses_it(fmnist_small):
    source = np.array(["train"] * 2000 + ["validation"] * 500 + ["test"] * 500)
    catalog = ItemCatalog(item_ids=fmnist_small.item_ids, images=fmnist_small.images,
                          categories=fmnist_small.categories,
                          extra=pd.DataFrame({"source_split": source}))
    parts = catalog_parts(catalog)
    assert parts.sizes() == {"train": 2000, "validation": 500, "test": 500}


def test_training_needs_pixels_and_labels(fmnist_small):
    features_only = ItemCatalog(item_ids=fmnist_small.item_ids[:10],
                                features=np.zeros((10, 4), np.float32))
    with pytest.raises(DataError, match="features only; a classifier needs its images"):
        train_classifier(features_only, TrainConfig(epochs=1))
    unlabelled = ItemCatalog(item_ids=fmnist_small.item_ids, images=fmnist_small.images)
    with pytest.raises(DataError, match="no category labels"):
        train_classifier(unlabelled, TrainConfig(epochs=1))


def test_catalog_images_the_backbone_cannot_take(fmnist_small):
    big = np.repeat(np.repeat(fmnist_small.images[:300], 2, axis=2), 2, axis=3)  # 56 x 56
    catalog = ItemCatalog(item_ids=fmnist_small.item_ids[:300], images=big,
                          categories=fmnist_small.categories[:300])
    with pytest.raises(ConfigError, match="28 to 32 pixels per side, got 56 x 56"):
        train_classifier(catalog, TrainConfig(epochs=1))


def test_nan_loss_stops_with_the_epoch_and_a_lower_learning_rate(fmnist_small):
    config = TrainConfig(epochs=2, lr=1e30, momentum=0.0, weight_decay=0.0, max_train=600,
                         batch_size=100)
    with pytest.raises(TrainingError, match=r"at epoch 1 \(batch \d+\) of standard training; "
                                            r"lower the learning rate \(lr=1e\+30\)"):
        train_classifier(fmnist_small, config)


def test_standard_training_loss_falls_and_model_is_selected_on_validation(trained_standard):
    history = trained_standard.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    metrics = trained_standard.metrics
    assert metrics["selected_on"] == "clean"
    best = max(history, key=lambda r: r["val_clean_acc"])
    assert metrics["best_epoch"] == best["epoch"]
    assert metrics["val_clean_acc"] > 0.6
    assert metrics["items"] == {"train": 2000, "validation": 1200, "test": 10000}


def test_pgd_at_is_more_robust_than_standard_on_the_same_budget(fmnist, trained_standard,
                                                                 trained_pgd):
    kwargs = {"eps": [8], "steps": 10, "limit": 300}
    standard = evaluate_robustness(trained_standard.backbone, fmnist, **kwargs)
    robust = evaluate_robustness(trained_pgd.backbone, fmnist, **kwargs)
    assert trained_pgd.history[-1]["train_loss"] < trained_pgd.history[0]["train_loss"]
    assert trained_pgd.metrics["selected_on"] == "robust"
    assert robust.robust_acc[8.0] > standard.robust_acc[8.0] + 0.1
    assert robust.clean_acc > 0.5


def test_a_last_batch_of_one_image_is_skipped(fmnist, tiny_config):
    config = tiny_config.replace(epochs=1, max_train=65, val_limit=10)  # batches of 64 and 1
    result = train_classifier(fmnist, config)
    assert np.isfinite(result.history[0]["train_loss"])
    with pytest.raises(DataError, match=r"has 1 training item\(s\); a classifier needs at least"):
        train_classifier(fmnist, tiny_config.replace(max_train=1))


def test_training_is_reproducible_with_a_seed(fmnist, tiny_config):
    config = tiny_config.replace(epochs=1, max_train=400, max_batches=2)
    a = train_classifier(fmnist, config)
    b = train_classifier(fmnist, config)
    assert a.checkpoint_hash == b.checkpoint_hash
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]


def test_free_at_runs_epochs_over_replays_and_keeps_a_persistent_delta(fmnist, tiny_config):
    config = tiny_config.replace(mode="free-at", epochs=4, replays=2, max_train=600)
    result = train_classifier(fmnist, config)
    assert result.metrics["epochs_run"] == 2 and len(result.history) == 2
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.history[0]["val_robust_acc"] is not None


def test_curriculum_raises_k_on_plateaus_up_to_the_top(fmnist, tiny_config):
    # min_gain 0.99 makes every epoch a plateau: with patience 1, k = 0 needs a first epoch as
    # its baseline, each later level is measured as it starts; k stops at the top K = 2.
    config = tiny_config.replace(mode="curriculum-at", epochs=5, steps=2, patience=1,
                                 min_gain=0.99, max_train=200, max_batches=1, val_limit=20)
    result = train_classifier(fmnist, config)
    assert [r["k"] for r in result.history] == [0, 0, 1, 2, 2]
    assert result.metrics["best_epoch"] in (4, 5)  # selected among the epochs at the top k


def test_curriculum_mixes_clean_and_adversarial_examples():
    config = TrainConfig(mode="curriculum-at", adv_fraction=0.25, steps=3)
    mode = CurriculumAdversarialTraining(config, torch.Generator().manual_seed(0))
    mode.k = 2
    seen = {}

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            seen.setdefault("batches", []).append(x.detach().clone())
            return torch.zeros(len(x), 10) + self.w + x.mean(dim=(1, 2, 3))[:, None]

    images = torch.full((8, 1, 28, 28), 0.5)
    mode.train_batch(Recorder(), images, torch.zeros(8, dtype=torch.long), lambda loss: None)
    trained_on = seen["batches"][-1]
    changed = (trained_on != images).flatten(1).any(1)
    assert changed.tolist() == [True, True] + [False] * 6
