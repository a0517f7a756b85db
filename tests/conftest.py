"""Shared fixtures: the real Fashion-MNIST catalog (loaded once per session) and small slices."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

os.environ.setdefault("VARSEC_QUIET", "1")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tests run their tiny models on one thread: OpenMP spin-waits make several threads slower
    on small batches and busy shared cores. Restored after each module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


@pytest.fixture(scope="session")
def small_cnn():
    """An untrained, seeded ``fmnist-cnn`` with narrow stages (torchattacks parity)."""
    import torch

    from varsec.vision import create_backbone

    torch.manual_seed(0)
    return create_backbone("fmnist-cnn", widths=(8, 16, 16)).eval()


@pytest.fixture(scope="session")
def simulated(fmnist_small):
    """The ``quick`` simulation on the 3,000-item slice: 500 users, 2,100 items, 100 cold."""
    from varsec.data import simulate_and_split

    return simulate_and_split(fmnist_small, "quick", seed=0)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (needs root and mount); skipped where it cannot be mounted."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def scratch_registry():
    """Let a test register recommender classes; the registries are restored afterwards."""
    from varsec.recsys import base as recsys_base

    saved = [(table, dict(table)) for table in (recsys_base._NAMES, recsys_base._REGISTRY)]
    yield
    for table, content in saved:
        table.clear()
        table.update(content)
