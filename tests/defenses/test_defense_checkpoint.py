"""Checkpoints: round trips, hashes, and a detector paired with another reconstruction network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from varsec.defenses import (
    ReconstructionNet,
    load_defense,
    load_detector,
    load_reconstruction,
    save_detector,
    save_reconstruction,
)
from varsec.defenses.checkpoint import DETECTOR_FILE, RECONSTRUCTION_FILE
from varsec.errors import ModelError


@pytest.fixture(scope="module")
def saved(tiny_defense, tmp_path_factory):
    out = tmp_path_factory.mktemp("defense")
    network_hash = save_reconstruction(out / RECONSTRUCTION_FILE, tiny_defense.reconstruction,
                                       train_config=tiny_defense.config.to_dict())
    save_detector(out / DETECTOR_FILE, tiny_defense.detector, tiny_defense.reconstruction)
    return out, network_hash


def test_round_trip_keeps_weights_threshold_and_scores(saved, tiny_defense, tiny_dataset):
    out, network_hash = saved
    network, detector = load_defense(out)
    assert network.weights_hash == network_hash == tiny_defense.reconstruction.weights_hash()
    assert detector is not None
    assert detector.detector.threshold == tiny_defense.detector.threshold
    assert detector.detector.calibration == tiny_defense.calibration
    images = np.asarray(tiny_dataset.catalog.images[:8])
    expected = tiny_defense.detector.scores(images, tiny_defense.reconstruction)
    assert np.allclose(detector.detector.scores(images, network.network), expected, atol=1e-5)


def test_detector_paired_with_another_reconstruction_network(saved):
    out, _ = saved
    torch.manual_seed(123)
    other = ReconstructionNet(channels=1, width=8, blocks=1, heads=2)
    with pytest.raises(ModelError, match="trained with reconstruction network .* not with the "
                                         "given one"):
        load_detector(out / DETECTOR_FILE, other)


def test_corrupted_and_foreign_files(saved, tmp_path):
    out, _ = saved
    payload = torch.load(out / RECONSTRUCTION_FILE, weights_only=True)
    key = next(k for k in payload["state_dict"] if k.endswith("weight"))
    payload["state_dict"][key] = payload["state_dict"][key] + 1.0
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="weights do not match the hash recorded in the file"):
        load_reconstruction(tmp_path / "bad.pt")
    with pytest.raises(ModelError, match=r"not a varsec reconstruction network checkpoint "
                                         r"\(format 'varsec-detector'\)"):
        load_reconstruction(out / DETECTOR_FILE)
    with pytest.raises(ModelError, match="no such varsec reconstruction network checkpoint"):
        load_reconstruction(tmp_path / "missing.pt")
