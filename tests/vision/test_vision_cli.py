"""The vision commands through the real ``varsec`` entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from varsec.cli import main
from varsec.vision import load_checkpoint


@pytest.mark.parametrize("command", ["train-extractor", "robustness", "features"])
def test_help_has_an_example(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example: varsec " + command in " ".join(out.split())


def test_train_extractor_writes_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "cli.pt"
    status = main(["train-extractor", "--mode", "pgd-at", "--epochs", "1", "--max-train", "200",
                   "--steps", "1", "--batch-size", "100", "--val-limit", "50", "--out", str(out)])
    assert status == 0
    captured = capsys.readouterr()
    assert f"wrote {out}" in captured.out and "epoch 1" in captured.err
    assert load_checkpoint(out).train_config["mode"] == "pgd-at"


def test_robustness_command(trained_standard, tmp_path, capsys):
    report = tmp_path / "report.json"
    status = main(["robustness", "--checkpoint", str(trained_standard.checkpoint_path),
                   "--eps", "2,8", "--steps", "2", "--limit", "100", "--json", str(report)])
    assert status == 0
    assert "| 8 (PGD-2) |" in capsys.readouterr().out
    saved = json.loads(report.read_text())
    assert saved["items"] == 100 and set(saved["robust_acc"]) == {"2", "8"}


def test_features_command_reports_cache_hits(trained_standard, tmp_path, capsys):
    out = tmp_path / "feats.npy"
    args = ["features", "--backbone", str(trained_standard.checkpoint_path), "--dataset",
            "fashion-mnist", "--limit", "200", "--out", str(out), "--cache-dir",
            str(tmp_path / "cache")]
    assert main(args) == 0
    assert "(computed)" in capsys.readouterr().out
    assert main(args) == 0
    assert "(cache hit)" in capsys.readouterr().out
    feats = np.load(out)
    assert feats.shape == (200, 64) and feats.dtype == np.float32
    meta = json.loads((tmp_path / "feats.npy.json").read_text())
    assert meta["backbone_hash"] == trained_standard.checkpoint_hash and meta["cache_hit"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["features", "--backbone", "resnet51", "--out", "x.npy"],
         "error: unknown backbone 'resnet51' (known: alexnet, efficientnet-lite0"),
        (["robustness", "--checkpoint", "missing.pt"],
         "missing.pt: no such varsec backbone checkpoint"),
        (["robustness", "--checkpoint", "missing.pt", "--eps", "0"], "eps must lie in [1, 255]"),
        (["train-extractor", "--mode", "free-at", "--replays", "0", "--out", "x.pt"],
         "replays must be an integer >= 1 (free-at's replays m"),
        (["train-extractor", "--mode", "curriculum-at", "--steps", "0", "--out", "x.pt"],
         "curriculum-at's top K"),
        (["train-extractor", "--eps", "256", "--out", "x.pt"], "got 256"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_robustness_refuses_a_catalog_with_other_categories(trained_standard, fmnist_small,
                                                            tmp_path, capsys):
    from varsec.data.catalog import ItemCatalog

    other = ItemCatalog(item_ids=fmnist_small.item_ids, images=fmnist_small.images,
                        categories=fmnist_small.categories,
                        category_names=[f"style-{i}" for i in range(10)],
                        extra=fmnist_small.extra, name="renamed")
    other.save(tmp_path / "renamed")
    status = main(["robustness", "--checkpoint", str(trained_standard.checkpoint_path),
                   "--dataset", str(tmp_path / "renamed")])
    assert status == 2
    assert "trained on categories ['T-shirt/top'" in capsys.readouterr().err
