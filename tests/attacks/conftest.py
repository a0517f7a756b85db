"""Tiny models for the attack tests, built here so the suite stays fast.

* ``easy_classifier``: logistic regression on 3,000 real Fashion-MNIST images (trained in a
  fraction of a second): an "easy" model for C&W vs FGSM.
* ``small_cnn``: an untrained, seeded ``fmnist-cnn`` with narrow stages (torchattacks parity).
* ``ranker``: a VBPR-like visual recommender on a fixed random feature map and ``first_stage``
  a non-visual one, fitted on the ``quick`` simulation (see ``attack_helpers.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attack_helpers import RandomFeatures, TinyBPR, TinyRanker, logistic_classifier


@pytest.fixture(scope="session")
def fmnist_batch(fmnist_small):
    """32 real images (uint8) and their categories."""
    images = torch.from_numpy(np.ascontiguousarray(fmnist_small.images[:32]))
    labels = torch.from_numpy(fmnist_small.categories[:32]).long()
    return images, labels


@pytest.fixture(scope="session")
def easy_classifier(fmnist_small):
    """Logistic regression on the 3,000-item slice (about 80 % training accuracy)."""
    return logistic_classifier(fmnist_small, None, epochs=60)


@pytest.fixture(scope="session")
def small_cnn():
    from varsec.vision import create_backbone

    torch.manual_seed(0)
    return create_backbone("fmnist-cnn", widths=(8, 16, 16)).eval()


@pytest.fixture(scope="session")
def simulated(fmnist_small):
    """The ``quick`` simulation on the 3,000-item slice: 500 users, 2,100 items, 100 cold."""
    from varsec.data import simulate_and_split

    return simulate_and_split(fmnist_small, "quick", seed=0)


@pytest.fixture(scope="session")
def extractor():
    return RandomFeatures().eval()


@pytest.fixture(scope="session")
def ranker(simulated, extractor):
    return TinyRanker(seed=0).fit(simulated, extractor=extractor)


@pytest.fixture(scope="session")
def first_stage(simulated):
    return TinyBPR(seed=1).fit(simulated)
