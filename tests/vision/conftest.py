"""Shared, session-scoped fixtures of the vision tests: tiny trainings on real Fashion-MNIST.

Standard and PGD adversarial training run once each, on the same small budget (2,000 training
images, 2 epochs, a 1,200-item validation part), so the tests that need a trained model stay
fast.
"""

from __future__ import annotations

import pytest

from varsec.vision.training import TrainConfig, train_classifier

TINY = {
    "epochs": 2,
    "max_train": 2000,
    "batch_size": 64,
    "lr": 0.05,
    "val_fraction": 0.02,
    "val_limit": 200,
    "val_steps": 5,
    "steps": 2,
    "seed": 0,
}


@pytest.fixture(scope="session")
def tiny_config() -> TrainConfig:
    """The small training budget shared by the training tests."""
    return TrainConfig(**TINY)


@pytest.fixture(scope="session")
def trained_standard(fmnist, tiny_config, tmp_path_factory):
    """fmnist-cnn trained normally on the tiny budget, saved as a checkpoint."""
    out = tmp_path_factory.mktemp("ckpt") / "standard.pt"
    return train_classifier(fmnist, tiny_config, out=out)


@pytest.fixture(scope="session")
def trained_pgd(fmnist, tiny_config, tmp_path_factory):
    """fmnist-cnn trained with PGD-AT (eps 8, 2 steps) on the same tiny budget."""
    out = tmp_path_factory.mktemp("ckpt") / "pgd.pt"
    return train_classifier(fmnist, tiny_config.replace(mode="pgd-at"), out=out)
