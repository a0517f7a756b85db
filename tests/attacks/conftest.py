"""Tiny models for the attack tests, built here so the suite stays fast.

* ``easy_classifier``: logistic regression on 3,000 real Fashion-MNIST images (trained in a
  fraction of a second): an "easy" model for C&W vs FGSM.
* ``small_cnn`` and ``simulated`` (the ``quick`` simulation) live in ``tests/conftest.py``: the
  ``varsec attack`` tests of ``tests/study`` use them too.
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
def extractor():
    return RandomFeatures().eval()


@pytest.fixture(scope="session")
def ranker(simulated, extractor):
    return TinyRanker(seed=0).fit(simulated, extractor=extractor)


@pytest.fixture(scope="session")
def first_stage(simulated):
    return TinyBPR(seed=1).fit(simulated)
