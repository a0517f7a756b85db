"""``varsec train-defense`` on a standalone app (cli.py registers it from this module)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from varsec.defenses.commands import register
from varsec.errors import DataError


@pytest.fixture(scope="module")
def app():
    root = typer.Typer(rich_markup_mode=None)

    @root.callback()
    def _root() -> None:
        """varsec (test root)."""

    register(root)
    return root


def test_help_has_an_example(app):
    result = CliRunner().invoke(app, ["train-defense", "--help"])
    assert result.exit_code == 0
    assert "Example: varsec train-defense" in result.output


@pytest.fixture(scope="module")
def saved_inputs(tiny_dataset, tiny_vbpr, tiny_extractor, tmp_path_factory):
    from varsec.vision.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("inputs")
    tiny_dataset.save(root / "data")
    tiny_vbpr.save(root / "vbpr.pt")
    save_checkpoint(root / "cnn.pt", tiny_extractor)
    return root


def test_train_defense_writes_paired_checkpoints(app, saved_inputs, tmp_path):
    from varsec.defenses import load_defense

    out = tmp_path / "defense"
    args = ["train-defense", "--dataset", str(saved_inputs / "data"),
            "--recommender", str(saved_inputs / "vbpr.pt"),
            "--extractor", str(saved_inputs / "cnn.pt"), "--out", str(out),
            "--recon-epochs", "1", "--mix-epochs", "0", "--detector-epochs", "1",
            "--width", "8", "--blocks", "1", "--embed-dim", "8", "--batch-size", "16",
            "--max-items", "64", "--threshold", "0.2"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "detector threshold 0.2000 fixed" in result.output
    network, detector = load_defense(out)
    assert detector is not None and detector.detector.threshold == 0.2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["reconstruction_hash"] == network.weights_hash
    assert metrics["items"]["train"] == 64


def test_a_failed_run_leaves_nothing(app, saved_inputs, tmp_path):
    out = tmp_path / "defense"
    args = ["train-defense", "--dataset", str(tmp_path / "missing"),
            "--recommender", str(saved_inputs / "vbpr.pt"), "--extractor", "fmnist-cnn",
            "--out", str(out)]
    with pytest.raises(DataError, match="missing: no such file or directory"):
        CliRunner().invoke(app, args, catch_exceptions=False)
    assert not out.exists()


def test_a_catalog_alone_is_not_a_dataset(app, saved_inputs, tmp_path):
    from varsec.data.fashion_mnist import load_fashion_mnist

    load_fashion_mnist().subset(range(50)).save(tmp_path / "catalog")
    args = ["train-defense", "--dataset", str(tmp_path / "catalog"),
            "--recommender", str(saved_inputs / "vbpr.pt"), "--extractor", "fmnist-cnn",
            "--out", str(tmp_path / "defense")]
    with pytest.raises(DataError, match="train-defense needs a dataset with interactions"):
        CliRunner().invoke(app, args, catch_exceptions=False)
