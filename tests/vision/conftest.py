"""Shared, session-scoped fixtures of the vision tests: tiny trainings on real Fashion-MNIST.

Standard and PGD adversarial training run once each, on the same small budget (2,000 training
images, 2 epochs, a 1,200-item validation part), so the tests that need a trained model stay
fast.
"""

from __future__ import annotations

import os

import pytest
import torch

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


@pytest.fixture(scope="package", autouse=True)
def _torch_threads():
    """One torch thread by default (``VARSEC_TEST_THREADS`` overrides): on 2 cores shared with
    other jobs, two OpenMP threads stall at every barrier and run several times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("VARSEC_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(previous)


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
