"""Fixtures of the defense tests: a tiny simulated world on real Fashion-MNIST images, a VBPR on
an untrained small fmnist-cnn, and one tiny training of the reconstruction + detection defense
(shared by the tests that need trained networks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

TINY_DEFENSE = {
    "recon_epochs": 5, "mix_epochs": 1, "detector_epochs": 6, "joint_epochs": 0,
    "width": 8, "blocks": 1, "heads": 2, "max_tokens": 64, "batch_size": 16, "pgd_steps": 3,
    "embed_dim": 16, "lr": 5e-3, "detector_lr": 3e-3, "holdout_fraction": 0.3, "seed": 0,
}



@pytest.fixture(scope="session")
def tiny_dataset(fmnist):
    """120 simulated users on 300 warm + 40 cold real Fashion-MNIST items."""
    from varsec.data.simulate import SimulationProfile, simulate
    from varsec.data.splits import leave_one_out

    rng = np.random.default_rng(0)
    catalog = fmnist.subset(np.sort(rng.choice(len(fmnist), 2000, replace=False)))
    profile = SimulationProfile("tiny", n_users=120, n_warm_items=300, n_cold_items=40,
                                mean_interactions=10.0)
    return leave_one_out(simulate(catalog, profile, seed=0), seed=0)


@pytest.fixture(scope="session")
def tiny_extractor():
    """An untrained (seeded) small fmnist-cnn, in eval mode."""
    from varsec.vision.registry import create_backbone

    torch.manual_seed(0)
    return create_backbone("fmnist-cnn", widths=[8, 16, 32]).eval()


@pytest.fixture(scope="session")
def tiny_vbpr(tiny_dataset, tiny_extractor):
    from varsec.recsys import VBPR

    with torch.random.fork_rng():
        torch.set_num_threads(1)
        return VBPR(factors=8, visual_factors=8, epochs=5, early_stopping=False,
                    lr=0.01).fit(tiny_dataset, extractor=tiny_extractor)


@pytest.fixture(scope="session")
def tiny_defense(tiny_vbpr, tiny_dataset):
    """The defense trained on the tiny budget (threshold calibrated on held-out items)."""
    from varsec.defenses.joint import DefenseConfig, train_defense

    torch.set_num_threads(1)
    return train_defense(tiny_vbpr, tiny_dataset, DefenseConfig(**TINY_DEFENSE))
