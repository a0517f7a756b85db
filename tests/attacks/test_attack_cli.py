"""``varsec attack``: PNGs, manifest and tidy measures; --config; --resume; clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from attack_helpers import TinyRanker
from typer.testing import CliRunner

from varsec.attacks.commands import AttackJob, register, run_job
from varsec.attacks.quantize import load_png
from varsec.data.catalog import ItemCatalog
from varsec.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def files(tmp_path_factory, simulated, small_cnn):
    from varsec.vision.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("cli")
    simulated.save(root / "data")
    save_checkpoint(root / "cnn.pt", small_cnn)
    TinyRanker(seed=0).fit(simulated, extractor=small_cnn).save(root / "ranker.pt")
    return root


@pytest.fixture(scope="module")
def app():
    root = typer.Typer()

    @root.callback()
    def _main() -> None:
        """test root"""

    register(root)
    return root


def _ids(simulated, n, cold=True):
    items = simulated.cold_items[:n] if cold else simulated.warm_items()[:n]
    return ",".join(simulated.catalog.item_ids[items])


def test_classifier_attack_writes_pngs_manifest_and_tidy_measures(app, files, simulated):
    out = files / "pgd"
    args = ["attack", "--dataset", str(files / "data"), "--out", str(out), "--attack", "pgd",
            "--objective", "classifier", "--checkpoint", str(files / "cnn.pt"),
            "--target", "Sneaker", "--items", _ids(simulated, 6), "--eps", "7.65", "--steps", "3",
            "--batch-size", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 6 adversarial images" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["eps"] == 7.65 and len(manifest["items"]) == 6
    frame = pd.read_csv(out / "measures.csv", dtype={"item_id": str})
    assert set(frame.columns) == {"item_id", "attack", "objective", "eps", "metric", "value",
                                  "note"}
    assert {"linf", "psnr", "ssim", "lpips", "success", "predicted_after"} <= set(frame["metric"])
    assert frame[frame["metric"] == "linf"]["value"].max() <= 7
    for item, entry in manifest["items"].items():
        png = load_png(out / entry["png"])
        clean = simulated.catalog.images[simulated.catalog.index_of(item)[0]]
        assert int(np.abs(png.astype(int) - clean.astype(int)).max()) <= 7


def test_resume_skips_items_already_done(files, simulated):
    out = files / "resume"
    job = dict(dataset=str(files / "data"), out=str(out), attack="fgsm", objective="classifier",
               checkpoint=str(files / "cnn.pt"), items=_ids(simulated, 5), chunk=2)
    first = run_job(AttackJob.build(None, job))
    assert (first["attacked"], first["skipped"]) == (5, 0)
    pngs = sorted((out / "images").iterdir())
    pngs[0].unlink()
    pngs[3].unlink()
    with pytest.raises(ConfigError, match="already holds an attack run; pass --resume"):
        run_job(AttackJob.build(None, job))
    again = run_job(AttackJob.build(None, {**job, "resume": True}))
    assert (again["attacked"], again["skipped"]) == (2, 3)
    frame = pd.read_csv(out / "measures.csv", dtype={"item_id": str})
    assert frame.groupby("metric")["item_id"].nunique().eq(5).all()
    assert not frame.duplicated(["item_id", "metric"]).any()
    with pytest.raises(ConfigError, match="settings differ from the run being resumed"):
        run_job(AttackJob.build(None, {**job, "resume": True, "eps": 4.0}))


def test_config_file_insa_and_csema(files, simulated, tmp_path):
    config = tmp_path / "insa.yaml"
    config.write_text(
        f"dataset: {files / 'data'}\nattack: adam\nobjective: insa\neps: 16\nsteps: 4\n"
        f"checkpoint: {files / 'cnn.pt'}\nrecommender: {files / 'ranker.pt'}\n"
        f"items: {_ids(simulated, 3)}\nout: {tmp_path / 'insa'}\n"
    )
    summary = run_job(AttackJob.build(config, {"lr": 2.0}))
    assert summary["attacked"] == 3
    frame = pd.read_csv(tmp_path / "insa" / "measures.csv")
    shift = frame[frame["metric"] == "prediction_shift"]["value"]
    assert len(shift) == 3 and (shift > 0).all()
    csema = run_job(AttackJob.build(None, {"dataset": str(files / "data"), "attack": "csema",
                                           "items": _ids(simulated, 2),
                                           "out": str(tmp_path / "csema")}))
    assert csema["attacked"] == 2 and (tmp_path / "csema" / "manifest.json").is_file()


def test_bad_settings_are_one_sentence_errors(files, tmp_path, simulated):
    base = {"dataset": str(files / "data"), "out": str(tmp_path / "x"),
            "checkpoint": str(files / "cnn.pt"), "items": _ids(simulated, 1)}
    with pytest.raises(ConfigError, match=r"eps must lie in \(0, 255\].*got 300"):
        AttackJob.build(None, {**base, "eps": 300.0})
    with pytest.raises(ConfigError, match="steps must be an integer >= 1, got 0"):
        AttackJob.build(None, {**base, "steps": 0})
    with pytest.raises(ConfigError, match="attack must be one of"):
        AttackJob.build(None, {**base, "attack": "deepfool"})
    config = tmp_path / "bad.yaml"
    config.write_text("epsilon: 8\n")
    with pytest.raises(ConfigError, match="unknown setting 'epsilon'"):
        AttackJob.build(config, {})
    with pytest.raises(ConfigError, match="^hook item 'missing' is not in catalog"):
        run_job(AttackJob.build(None, {**base, "objective": "feature", "hook": "missing"}))
    with pytest.raises(ConfigError, match="insa objective.* needs --recommender|INSA needs"):
        run_job(AttackJob.build(None, {**base, "objective": "insa"}))


def test_features_only_catalog_is_refused(tmp_path):
    catalog = ItemCatalog(item_ids=["a", "b"], features=np.ones((2, 3), np.float32), name="feat")
    catalog.save(tmp_path / "cat")
    job = AttackJob.build(None, {"dataset": str(tmp_path / "cat"), "out": str(tmp_path / "o"),
                                 "checkpoint": "fmnist-cnn"})
    with pytest.raises(DataError, match="catalog 'feat' is features-only"):
        run_job(job)
    assert not (tmp_path / "o").exists()
