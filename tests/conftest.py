"""Shared fixtures: the real Fashion-MNIST catalog (loaded once per session) and small slices."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("VARSEC_QUIET", "1")


@pytest.fixture(scope="session")
def fmnist():
    """All 70,000 Fashion-MNIST items; the suite runs against the real files."""
    from varsec.data.fashion_mnist import load_fashion_mnist

    return load_fashion_mnist()


@pytest.fixture(scope="session")
def fmnist_small(fmnist):
    """A seeded 3,000-item slice of Fashion-MNIST for fast tests."""
    rng = np.random.default_rng(0)
    return fmnist.subset(np.sort(rng.choice(len(fmnist), 3000, replace=False)))
