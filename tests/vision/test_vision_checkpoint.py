"""Checkpoints: provenance, round trip, and the clear errors of bad files."""

from __future__ import annotations

import pytest
import torch

from varsec.errors import ConfigError, ModelError
from varsec.vision import create_backbone, load_checkpoint, open_backbone, save_checkpoint


def test_checkpoint_carries_config_data_hash_and_metrics(fmnist, trained_standard):
    loaded = load_checkpoint(trained_standard.checkpoint_path, expected_backbone="fmnist-cnn")
    assert loaded.backbone_name == "fmnist-cnn"
    assert loaded.backbone_kwargs == {"in_channels": 1, "num_classes": 10,
                                      "widths": [16, 32, 64], "blocks": [1, 1, 1]}
    assert loaded.train_config["mode"] == "standard" and loaded.train_config["max_train"] == 2000
    assert loaded.catalog_hash == fmnist.content_hash()
    assert loaded.metrics["best_epoch"] == trained_standard.metrics["best_epoch"]
    assert loaded.category_names[7] == "Sneaker"
    assert loaded.checkpoint_hash == trained_standard.checkpoint_hash
    assert not loaded.backbone.training
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded.backbone(x), trained_standard.backbone(x))


def test_checkpoint_of_another_architecture_is_refused(trained_standard):
    with pytest.raises(ModelError, match="checkpoint is for backbone 'fmnist-cnn', not the "
                                         "expected 'resnet50'"):
        load_checkpoint(trained_standard.checkpoint_path, expected_backbone="resnet50")


def test_checkpoint_whose_weights_do_not_fit_its_architecture(tmp_path):
    path = tmp_path / "wide.pt"
    save_checkpoint(path, create_backbone("fmnist-cnn", widths=[32, 64, 128]))
    payload = torch.load(path, weights_only=True)
    payload["backbone_kwargs"]["widths"] = [16, 32, 64]
    torch.save(payload, path)
    with pytest.raises(ModelError, match="wide.pt: weights do not fit the fmnist-cnn arch"):
        load_checkpoint(path)


def test_missing_unreadable_and_foreign_checkpoint_files(tmp_path):
    # Every failure a checkpoint file can have is tested once, in tests/test_checkpoints.py;
    # here: the backbone loader goes through that reader and names its own format.
    with pytest.raises(ModelError, match="absent.pt: no such varsec backbone checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="bad.pt: not a readable varsec backbone checkpoint"):
        load_checkpoint(bad)
    plain = tmp_path / "plain.pt"
    torch.save(create_backbone("fmnist-cnn").state_dict(), plain)
    with pytest.raises(ModelError, match=r"plain.pt: not a varsec backbone checkpoint \(it has "
                                         r"no format field\); plain weights go to a backbone's "
                                         "weights= argument"):
        load_checkpoint(plain)


def test_tampered_weights_fail_the_checkpoint_hash(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, create_backbone("fmnist-cnn"))
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["fc.bias"] += 1
    torch.save(payload, path)
    with pytest.raises(ModelError, match="weights do not match the hash recorded in the file"):
        load_checkpoint(path)


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, create_backbone("fmnist-cnn"))
    assert list(tmp_path.iterdir()) == []


def test_open_backbone_by_name_or_checkpoint(trained_standard):
    model, digest = open_backbone(str(trained_standard.checkpoint_path))
    assert digest == trained_standard.checkpoint_hash and model.name == "fmnist-cnn"
    model, digest = open_backbone("fmnist-cnn", num_classes=3)
    assert model.num_classes == 3 and digest == model.weights_hash()
    with pytest.raises(ConfigError, match="unknown backbone 'cnn'.*or a checkpoint file"):
        open_backbone("cnn")
    with pytest.raises(ConfigError, match="a checkpoint fixes its own architecture"):
        open_backbone(str(trained_standard.checkpoint_path), weights="x.pth")
