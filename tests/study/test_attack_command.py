"""``varsec attack``: PNGs, manifest and tidy measures; --config; --resume; clear errors; and
that it runs through the study runner and its cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attacks"))
from attack_helpers import TinyRanker, install_stand_in_lpips

from varsec.attacks.quantize import load_png
from varsec.data.catalog import ItemCatalog
from varsec.errors import ConfigError, DataError, ModelError, VarsecWarning
from varsec.study.attack_command import AttackJob, register, run_job


@pytest.fixture(scope="module")
def files(tmp_path_factory, simulated, small_cnn):
    """The dataset, two backbones with different weights and two visual recommenders."""
    from varsec.vision import create_backbone
    from varsec.vision.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("cli")
    simulated.save(root / "data")
    save_checkpoint(root / "cnn.pt", small_cnn)
    torch.manual_seed(1)
    other = create_backbone("fmnist-cnn", widths=(8, 16, 16)).eval()
    save_checkpoint(root / "cnn-b.pt", other)
    TinyRanker(seed=0).fit(simulated, extractor=small_cnn).save(root / "ranker.pt")
    TinyRanker(seed=1).fit(simulated, extractor=small_cnn).save(root / "ranker-b.pt")
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
    assert manifest["settings"]["eps"] == 7.65 and list(manifest["models"]) == ["cnn"]
    model = manifest["models"]["cnn"]
    assert model["checkpoint"] == str(files / "cnn.pt") and len(model["checkpoint_sha256"]) == 64
    assert len(model["items"]) == 6
    frame = pd.read_csv(out / "measures.csv", dtype={"item_id": str})
    assert set(frame.columns) == {"model", "item_id", "attack", "objective", "eps", "metric",
                                  "value", "note"}
    assert set(frame["model"]) == {"cnn"}
    assert {"linf", "psnr", "ssim", "lpips", "success", "predicted_after"} <= set(frame["metric"])
    assert frame[frame["metric"] == "linf"]["value"].max() <= 7
    for item, entry in model["items"].items():
        assert entry["png"].startswith("images/cnn/")
        png = load_png(out / entry["png"])
        clean = simulated.catalog.images[simulated.catalog.index_of(item)[0]]
        assert int(np.abs(png.astype(int) - clean.astype(int)).max()) <= 7


def test_resume_skips_items_already_done(files, simulated):
    out = files / "resume"
    job = dict(dataset=str(files / "data"), out=str(out), attack="fgsm", objective="classifier",
               checkpoint=str(files / "cnn.pt"), items=_ids(simulated, 5), chunk=2)
    first = run_job(AttackJob.build(None, job))
    assert (first["attacked"], first["skipped"]) == (5, 0)
    assert first["stages"] == {"computed": 3, "cached": 0}  # chunks of 2, 2 and 1 items
    pngs = sorted((out / "images" / "cnn").iterdir())
    pngs[0].unlink()
    pngs[3].unlink()
    with pytest.raises(ConfigError, match="already holds an attack run; pass --resume"):
        run_job(AttackJob.build(None, job))
    again = run_job(AttackJob.build(None, {**job, "resume": True}))
    # the two lost PNGs are written again from their chunks' cached stages: nothing attacked
    assert (again["attacked"], again["from_cache"], again["skipped"]) == (0, 2, 3)
    assert again["stages"]["computed"] == 0
    assert all(png.is_file() for png in pngs)
    frame = pd.read_csv(out / "measures.csv", dtype={"item_id": str})
    assert frame.groupby("metric")["item_id"].nunique().eq(5).all()
    assert not frame.duplicated(["item_id", "metric"]).any()
    with pytest.raises(ConfigError, match="settings differ from the run being resumed"):
        run_job(AttackJob.build(None, {**job, "resume": True, "eps": 4.0}))


@pytest.mark.parametrize("damage", ["flipped byte", "other png", "deleted"])
def test_resume_writes_again_an_item_whose_png_changed(files, simulated, tmp_path, damage):
    from varsec.errors import VarsecWarning

    out = tmp_path / "resume"
    job = dict(dataset=str(files / "data"), out=str(out), attack="fgsm", objective="classifier",
               checkpoint=str(files / "cnn.pt"), items=_ids(simulated, 3), chunk=2)
    run_job(AttackJob.build(None, job))
    pngs = sorted((out / "images" / "cnn").iterdir())
    original = pngs[1].read_bytes()
    if damage == "flipped byte":
        pngs[1].write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    elif damage == "other png":
        pngs[1].write_bytes(pngs[0].read_bytes())  # a valid PNG, but not this item's
    else:
        pngs[1].unlink()
    with pytest.warns(VarsecWarning) as caught:
        again = run_job(AttackJob.build(None, {**job, "resume": True}))
    messages = [str(w.message) for w in caught if issubclass(w.category, VarsecWarning)]
    assert len(messages) == 1 and str(pngs[1]) in messages[0], messages
    assert ("is missing" if damage == "deleted" else "does not match its sha256") in messages[0]
    # written again from its chunk's verified stage in the cache: the same image, no attack
    assert (again["attacked"], again["from_cache"], again["skipped"]) == (0, 1, 2)
    assert again["stages"] == {"computed": 0, "cached": 1}
    assert pngs[1].read_bytes() == original
    frame = pd.read_csv(out / "measures.csv", dtype={"item_id": str})
    assert not frame.duplicated(["item_id", "metric"]).any()
    assert frame.groupby("metric")["item_id"].nunique().eq(3).all()


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
    with pytest.raises(ConfigError, match=r"eps must lie in \[1, 255\].*got 300"):
        AttackJob.build(None, {**base, "eps": 300.0})
    with pytest.raises(ConfigError, match="steps must be an integer >= 1, got 0"):
        AttackJob.build(None, {**base, "steps": 0})
    with pytest.raises(ConfigError, match="attack must be one of"):
        AttackJob.build(None, {**base, "attack": "deep-fool"})
    config = tmp_path / "bad.yaml"
    config.write_text("epsilon: 8\n")
    with pytest.raises(ConfigError, match="unknown setting 'epsilon'"):
        AttackJob.build(config, {})
    with pytest.raises(ConfigError, match="^hook item 'missing' is not in catalog"):
        run_job(AttackJob.build(None, {**base, "objective": "feature", "hook": "missing"}))
    with pytest.raises(ConfigError, match="^the insa objective needs --recommender"):
        run_job(AttackJob.build(None, {**base, "objective": "insa"}))
    no_model = {k: v for k, v in base.items() if k != "checkpoint"}
    for objective in ("classifier", "feature"):
        with pytest.raises(ConfigError, match=f"^the {objective} objective needs --checkpoint"):
            run_job(AttackJob.build(None, {**no_model, "objective": objective}))


# nine levels of ten aliases each: 10^9 nodes in a few hundred bytes
BOMB = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{level}: &{level} [{', '.join(['*' + below] * 10)}]\n"
    for below, level in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.mark.parametrize(("text", "message"), [
    ("eps: [8\n", r"bad\.yaml:2: not valid YAML"),
    ("eps: 8\neps: 16\n", r"bad\.yaml:2: .*duplicate key 'eps'"),
    ("- eps\n", r"bad\.yaml: an attack config must be a mapping of settings"),
    (BOMB, r"bad\.yaml:\d+: .*(alias|nodes)"),
])
def test_a_bad_attack_config_file_is_one_error_before_anything_runs(tmp_path, text, message):
    """The attack config is read as a study file is: within its limits, duplicates refused."""
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        AttackJob.build(config, {})
    with pytest.raises(ConfigError, match="cannot read the attack config"):
        AttackJob.build(tmp_path / "missing.yaml", {})


def test_features_only_catalog_is_refused(tmp_path):
    catalog = ItemCatalog(item_ids=["a", "b"], features=np.ones((2, 3), np.float32), name="feat")
    catalog.save(tmp_path / "cat")
    job = AttackJob.build(None, {"dataset": str(tmp_path / "cat"), "out": str(tmp_path / "o"),
                                 "checkpoint": "fmnist-cnn"})
    with pytest.raises(DataError, match="catalog 'feat' is features-only"):
        run_job(job)
    assert not (tmp_path / "o").exists()


def _frame(out):
    return pd.read_csv(out / "measures.csv", dtype={"model": str, "item_id": str})


def test_repeated_checkpoints_attack_each_model_with_the_same_settings(app, files, simulated):
    out = files / "two"
    ids = _ids(simulated, 4)
    args = ["attack", "--dataset", str(files / "data"), "--out", str(out), "--attack", "pgd",
            "--objective", "classifier", "--checkpoint", str(files / "cnn.pt"),
            "--checkpoint", str(files / "cnn-b.pt"), "--items", ids, "--eps", "8",
            "--steps", "2", "--batch-size", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "model cnn: 4 attacked, 0 already done" in result.output
    assert "model cnn-b: 4 attacked" in result.output
    assert "wrote 8 adversarial images" in result.output and "2 models" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["models"]) == ["cnn", "cnn-b"]
    hashes = {m["checkpoint_sha256"] for m in manifest["models"].values()}
    assert len(hashes) == 2
    for name, model in manifest["models"].items():
        assert sorted(model["items"]) == sorted(ids.split(","))
        assert {p.name for p in (out / "images" / name).iterdir()} == {
            f"{item}.png" for item in ids.split(",")}
    frame = _frame(out)
    assert set(frame["model"]) == {"cnn", "cnn-b"}
    assert not frame.duplicated(["model", "item_id", "metric"]).any()
    counts = frame.groupby("model")["item_id"].nunique()
    assert counts.to_dict() == {"cnn": 4, "cnn-b": 4}
    # the same settings (one --eps, --steps) for both, different weights: different images
    assert frame[frame["metric"] == "linf"]["value"].max() <= 8
    item = ids.split(",")[0]
    a, b = (load_png(out / "images" / m / f"{item}.png") for m in ("cnn", "cnn-b"))
    assert not np.array_equal(a, b)


def test_resume_skips_items_done_per_model_and_takes_new_models(files, simulated):
    out = files / "resume-two"
    ids = _ids(simulated, 4)
    first_job = dict(dataset=str(files / "data"), out=str(out), attack="fgsm",
                     objective="classifier", checkpoint=[str(files / "cnn.pt")], items=ids,
                     chunk=3)
    first = run_job(AttackJob.build(None, first_job))
    assert (first["attacked"], first["skipped"]) == (4, 0)
    before = _frame(out)
    # one PNG of cnn lost; a second model added on resume
    sorted((out / "images" / "cnn").iterdir())[1].unlink()
    both = {**first_job, "checkpoint": [str(files / "cnn.pt"), str(files / "cnn-b.pt")],
            "resume": True}
    again = run_job(AttackJob.build(None, both))
    parts = again["models"]
    assert (parts["cnn"]["from_cache"], parts["cnn"]["skipped"]) == (1, 3)
    assert (parts["cnn-b"]["attacked"], parts["cnn-b"]["skipped"]) == (4, 0)
    frame = _frame(out)
    assert not frame.duplicated(["model", "item_id", "metric"]).any()
    assert frame.groupby("model")["item_id"].nunique().to_dict() == {"cnn": 4, "cnn-b": 4}
    kept = frame[frame["model"] == "cnn"].set_index(["item_id", "metric"])["value"]
    old = before.set_index(["item_id", "metric"])["value"]
    assert kept.sort_index().equals(old.sort_index())  # same seed: the redone item is the same
    nothing = run_job(AttackJob.build(None, both))
    assert nothing["attacked"] == 0 and nothing["skipped"] == 8
    # a model of the same name with other weights is refused
    moved = files / "elsewhere"
    moved.mkdir(exist_ok=True)
    (moved / "cnn.pt").write_bytes((files / "cnn-b.pt").read_bytes())
    with pytest.raises(ConfigError, match="model 'cnn' was attacked with checkpoint"):
        run_job(AttackJob.build(None, {**both, "checkpoint": [str(moved / "cnn.pt")]}))


def test_config_lists_of_recommenders_share_one_extractor(files, simulated, tmp_path):
    config = tmp_path / "insa.yaml"
    config.write_text(
        f"dataset: {files / 'data'}\nattack: adam\nobjective: insa\neps: 16\nsteps: 3\n"
        f"checkpoint: {files / 'cnn.pt'}\n"
        f"recommenders:\n  - {files / 'ranker.pt'}\n  - {files / 'ranker-b.pt'}\n"
        f"items: {_ids(simulated, 2)}\nout: {tmp_path / 'insa'}\n"
    )
    job = AttackJob.build(config, {})
    assert [(m.name, m.checkpoint is not None) for m in job.models()] == [
        ("ranker", True), ("ranker-b", True)]
    summary = run_job(job)
    assert summary["attacked"] == 4
    frame = _frame(tmp_path / "insa")
    shift = frame[frame["metric"] == "prediction_shift"]
    assert shift.groupby("model")["value"].count().to_dict() == {"ranker": 2, "ranker-b": 2}
    assert (shift["value"] > 0).all()


def test_config_list_of_checkpoints(files, simulated, tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text(
        f"dataset: {files / 'data'}\nattack: fgsm\nobjective: classifier\n"
        f"checkpoints: [{files / 'cnn.pt'}, fmnist-cnn]\nitems: {_ids(simulated, 2)}\n"
        f"out: {tmp_path / 'o'}\n"
    )
    job = AttackJob.build(config, {})
    assert [m.name for m in job.models()] == ["cnn", "fmnist-cnn"]
    flags = AttackJob.build(config, {"checkpoint": [str(files / "cnn-b.pt")]})
    assert [m.name for m in flags.models()] == ["cnn-b"]  # flags replace the config's list
    summary = run_job(job)
    assert summary["attacked"] == 4
    manifest_models = json.loads((tmp_path / "o" / "manifest.json").read_text())["models"]
    assert manifest_models["fmnist-cnn"]["checkpoint_sha256"] is None  # a registry name


def test_bad_model_lists_are_one_sentence_errors(files, simulated, tmp_path):
    base = {"dataset": str(files / "data"), "out": str(tmp_path / "x"),
            "items": _ids(simulated, 1), "objective": "insa"}
    three = [str(files / "cnn.pt"), str(files / "cnn-b.pt"), "fmnist-cnn"]
    with pytest.raises(ConfigError, match="one checkpoint for all recommenders or one per "
                                          "recommender, got 3 checkpoints for 2"):
        AttackJob.build(None, {**base, "checkpoint": three,
                               "recommender": [str(files / "ranker.pt"),
                                               str(files / "ranker-b.pt")]})
    with pytest.raises(ConfigError, match="lists the same model twice"):
        AttackJob.build(None, {**base, "objective": "classifier",
                               "checkpoint": [str(files / "cnn.pt")] * 2})
    with pytest.raises(ConfigError, match="checkpoint must be a path or a list of paths"):
        AttackJob.build(None, {**base, "objective": "classifier", "checkpoint": [3]})
    with pytest.raises(ConfigError, match="'missing.pt' is neither a file nor a backbone name"):
        run_job(AttackJob.build(None, {**base, "objective": "classifier",
                                       "checkpoint": [str(files / "cnn.pt"), "missing.pt"]}))
    assert not (tmp_path / "x").exists()  # refused before anything was written
    config = tmp_path / "both.yaml"
    config.write_text("checkpoint: a.pt\ncheckpoints: [b.pt]\n")
    with pytest.raises(ConfigError, match="'checkpoint' is given twice"):
        AttackJob.build(config, {})
    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({"format": "varsec-attack", "version": 1}))
    with pytest.raises(ConfigError, match="another format .version 1"):
        run_job(AttackJob.build(None, {**base, "objective": "classifier", "out": str(old),
                                       "checkpoint": "fmnist-cnn", "resume": True}))


def test_lpips_values_land_in_the_measures_per_model_and_item(files, simulated, tmp_path,
                                                              monkeypatch):
    known = [0.1, 0.2, 0.3, 0.4]
    install_stand_in_lpips(monkeypatch, tmp_path, list(known))
    ids = _ids(simulated, 2)
    run_job(AttackJob.build(None, {
        "dataset": str(files / "data"), "out": str(tmp_path / "o"), "attack": "fgsm",
        "objective": "classifier", "checkpoint": [str(files / "cnn.pt"), str(files / "cnn-b.pt")],
        "items": ids}))
    rows = _frame(tmp_path / "o").query("metric == 'lpips'")
    assert rows[["model", "item_id"]].values.tolist() == [
        [model, item] for model in ("cnn", "cnn-b") for item in ids.split(",")]
    assert rows["value"].tolist() == pytest.approx(known)
    assert rows["note"].isna().all()  # computed: no "not computed" note


# -- the front runs through the study runner and its cache ----------------------------------------


def _stage_dirs(out):
    return sorted(p for p in (out / "study" / "cache" / "attack").iterdir() if p.is_dir())


def test_the_run_is_a_one_attack_study_cached_in_out(files, simulated, tmp_path):
    import yaml

    out = tmp_path / "o"
    ids = _ids(simulated, 5)
    summary = run_job(AttackJob.build(None, {
        "dataset": str(files / "data"), "out": str(out), "attack": "pgd", "steps": 2,
        "objective": "classifier", "target": "Sneaker", "checkpoint": str(files / "cnn.pt"),
        "items": ids, "chunk": 2}))
    assert summary["stages"] == {"computed": 3, "cached": 0}
    assert summary["study"] == str(out / "study") and len(_stage_dirs(out)) == 3
    resolved = yaml.safe_load((out / "study" / "config.resolved.yaml").read_text())
    assert resolved["dataset"]["as_is"] is True
    (attack,) = resolved["attacks"].values()
    assert (attack["item_ids"], attack["chunk"], attack["evaluation"]) == (ids.split(","), 2,
                                                                            False)
    assert attack["objective"] == "classifier-targeted" and attack["target_category"] == "Sneaker"
    (extractor,) = resolved["extractors"].values()
    assert (extractor["training"], extractor["features"]) == ("none", False)
    assert not list((out / "study" / "cache").glob("evaluation"))  # the attacks alone
    chunks = [list(np.load(d / "items.npy")) for d in _stage_dirs(out)]
    index = [int(simulated.catalog.index_of(i)[0]) for i in ids.split(",")]
    assert sorted(map(tuple, chunks)) == sorted([tuple(index[:2]), tuple(index[2:4]),
                                                 (index[4],)])


def test_the_measures_are_the_stages_per_item_tables_and_agree_with_their_rows(files, simulated,
                                                                               tmp_path):
    out = tmp_path / "o"
    run_job(AttackJob.build(None, {
        "dataset": str(files / "data"), "out": str(out), "attack": "pgd", "steps": 3,
        "objective": "classifier", "checkpoint": str(files / "cnn.pt"),
        "items": _ids(simulated, 6), "chunk": 4}))
    measures = _frame(out).set_index(["item_id", "metric"])["value"]
    for directory in _stage_dirs(out):
        table = pd.read_parquet(directory / "item_measures.parquet")
        rows = pd.read_parquet(directory / "rows.parquet").set_index("metric")["value"]
        means = table.groupby("metric")["value"].mean()
        assert means["success"] == pytest.approx(rows["success_rate"])
        for metric in ("linf", "l2", "psnr", "ssim"):
            assert means[metric] == pytest.approx(rows[metric])
        exported = measures.loc[list(zip(table["item_id"], table["metric"], strict=True))]
        assert exported.to_numpy() == pytest.approx(table["value"].to_numpy(), nan_ok=True)
        adversarial = np.load(directory / "adversarial.npy")
        for k, item in enumerate(table.drop_duplicates("item")["item_id"]):
            assert np.array_equal(load_png(out / "images" / "cnn" / f"{item}.png"),
                                  adversarial[k])
    # untargeted: success is a prediction other than the item's category
    wide = _frame(out).pivot(index="item_id", columns="metric", values="value")
    labels = simulated.catalog.categories[simulated.catalog.index_of(wide.index.to_numpy())]
    assert ((wide["predicted_after"] != labels) == wide["success"].astype(bool)).all()


def _fgsm(files, out, ids):
    """FGSM on the classifier ``cnn.pt`` in chunks of two items."""
    return {"dataset": str(files / "data"), "out": str(out), "attack": "fgsm",
            "objective": "classifier", "checkpoint": str(files / "cnn.pt"), "items": ids,
            "chunk": 2}


def test_a_run_killed_between_chunks_loses_at_most_one_chunk(files, simulated, tmp_path,
                                                             monkeypatch):
    import varsec.study.executors as executors

    out = tmp_path / "o"
    job = _fgsm(files, out, _ids(simulated, 7))
    real, attacks = executors.execute_stage, []

    def killed_at_the_third_chunk(stage, *args, **kwargs):
        if stage.kind == "attack":
            attacks.append(stage.key)
            if len(attacks) == 3:
                raise KeyboardInterrupt
        return real(stage, *args, **kwargs)

    monkeypatch.setattr(executors, "execute_stage", killed_at_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        run_job(AttackJob.build(None, job))
    monkeypatch.setattr(executors, "execute_stage", real)
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["models"]["cnn"]["items"]) == 4  # two chunks written, one lost
    assert len(_stage_dirs(out)) == 2
    again = run_job(AttackJob.build(None, {**job, "resume": True}))
    assert again["stages"] == {"computed": 2, "cached": 0}  # the lost chunk and the last one
    assert (again["attacked"], again["skipped"]) == (3, 4)
    assert _frame(out).groupby("metric")["item_id"].nunique().eq(7).all()


def test_a_chunk_finished_but_not_written_is_taken_from_the_cache(files, simulated, tmp_path,
                                                                  monkeypatch):
    from varsec.study import attack_command

    out = tmp_path / "o"
    job = _fgsm(files, out, _ids(simulated, 5))
    real, writes = attack_command._Export._write, []

    def killed_while_writing_the_second(self, *args):
        writes.append(1)
        if len(writes) == 2:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(attack_command._Export, "_write", killed_while_writing_the_second)
    with pytest.raises(KeyboardInterrupt):
        run_job(AttackJob.build(None, job))
    monkeypatch.setattr(attack_command._Export, "_write", real)
    again = run_job(AttackJob.build(None, {**job, "resume": True}))
    assert again["stages"] == {"computed": 1, "cached": 1}
    assert (again["attacked"], again["from_cache"], again["skipped"]) == (1, 2, 2)


def test_a_png_whose_cached_stage_is_gone_is_attacked_again(files, simulated, tmp_path):
    import shutil

    out = tmp_path / "o"
    job = _fgsm(files, out, _ids(simulated, 3))
    run_job(AttackJob.build(None, job))
    first = _ids(simulated, 1)
    png = out / "images" / "cnn" / f"{first}.png"
    original = png.read_bytes()
    png.unlink()
    shutil.rmtree(out / "study" / "cache")
    with pytest.warns(VarsecWarning, match="is missing"):
        again = run_job(AttackJob.build(None, {**job, "resume": True}))
    assert again["stages"] == {"computed": 1, "cached": 0}  # its chunk only
    assert (again["attacked"], again["skipped"]) == (1, 2)
    assert png.read_bytes() == original  # FGSM is deterministic: the same image again


def test_a_bare_catalog_is_attacked_as_it_is(tmp_path, fmnist_small):
    from varsec.attacks.csema import csema_batch
    from varsec.vision.checkpoint import load_checkpoint
    from varsec.vision.perturbation import uint8_to_float

    catalog = fmnist_small.subset(np.arange(6))
    catalog.save(tmp_path / "cat")
    ids = list(catalog.item_ids[:3])
    hook = str(catalog.item_ids[5])
    base = {"dataset": str(tmp_path / "cat"), "checkpoint": "fmnist-cnn", "items": ",".join(ids)}
    runs = {"c": {"attack": "fgsm", "target": "Bag"},
            "f": {"steps": 2, "objective": "feature", "metric": "cosine", "hook": hook},
            "s": {"attack": "csema", "hook": hook}}
    for out, settings in runs.items():
        assert run_job(AttackJob.build(None, {**base, **settings,
                                              "out": str(tmp_path / out)}))["attacked"] == 3
    (data,) = (tmp_path / "c" / "study" / "cache" / "data").iterdir()
    info = json.loads((data / "info.json").read_text())
    assert (info["as_is"], info["users"], info["items"]) == (True, 0, 6)  # nobody simulated
    (extractor,) = (tmp_path / "c" / "study" / "cache" / "extractor").iterdir()
    model = load_checkpoint(extractor / "extractor.pt", verify=False).backbone
    clean = torch.from_numpy(np.asarray(catalog.images[:3]))
    hook_image = torch.from_numpy(np.asarray(catalog.images[5:6]))
    with torch.no_grad():
        def features(images):
            return model.features(uint8_to_float(images)).flatten(1)

        reference = {
            "c": {"predicted_before": model.logits(uint8_to_float(clean)).argmax(1).double()},
            "f": {"distance_to_hook_before": 1 - torch.nn.functional.cosine_similarity(
                features(clean), features(hook_image))},
            "s": {"distance_to_hook_before": (features(clean) - features(hook_image)).norm(
                dim=1), "distance_to_hook_after": (features(csema_batch(
                    clean, hook_image[0])) - features(hook_image)).norm(dim=1)}}
    for out, expected in reference.items():
        wide = _frame(tmp_path / out).pivot(index="item_id", columns="metric", values="value")
        for metric, values in expected.items():
            assert wide.loc[ids, metric].to_numpy() == pytest.approx(values.numpy(), abs=1e-5)
    composed = csema_batch(clean, hook_image[0]).numpy()
    for k, item in enumerate(ids):
        assert np.array_equal(load_png(tmp_path / "s" / "images" / "fmnist-cnn" / f"{item}.png"),
                              composed[k])


def _refused(tmp_path, settings, error, message):
    out = tmp_path / "refused"
    with pytest.raises(error, match=message):
        run_job(AttackJob.build(None, {"out": str(out), **settings}))
    assert not out.exists()  # refused before anything was written


def test_new_bad_inputs_are_one_sentence_errors_before_compute(files, simulated, tmp_path):
    base = {"dataset": str(files / "data"), "checkpoint": str(files / "cnn.pt"),
            "items": _ids(simulated, 2)}
    one = _ids(simulated, 1)
    _refused(tmp_path, {**base, "items": f"{one},missing"}, ConfigError,
             r"^item 'missing' is not in catalog")
    _refused(tmp_path, {**base, "items": f"{one},{one}"}, ConfigError,
             f"^items lists item '{one}' twice")
    _refused(tmp_path, {**base, "objective": "insa", "recommender": str(tmp_path / "no.pt")},
             ConfigError, r"^recommender checkpoint '.*no\.pt' is not a file")
    _refused(tmp_path, {**base, "objective": "insa", "recommender": str(files / "cnn.pt")},
             ModelError, r"cnn\.pt: not a varsec recommender checkpoint")
    with pytest.raises(ConfigError, match="metric must be one of l2, cosine, got 'dot'"):
        AttackJob.build(None, {**base, "metric": "dot"})
    _refused(tmp_path, {**base, "target": "Spaceship"}, DataError,
             "^category 'Spaceship' is not in catalog")


def test_a_non_visual_or_unusable_recommender_is_refused_before_compute(files, simulated,
                                                                        tmp_path):
    from attack_helpers import TinyBPR

    TinyBPR(seed=0).fit(simulated).save(tmp_path / "bpr.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    base = {"dataset": str(files / "data"), "items": _ids(simulated, 2), "objective": "insa"}
    _refused(tmp_path, {**base, "recommender": str(tmp_path / "bpr.pt")}, ModelError,
             "needs a visual recommender that scores images; .*TinyBPR")
    _refused(tmp_path, {**base, "recommender": str(tmp_path / "text.pt")}, ModelError,
             r"text\.pt: not a readable varsec recommender checkpoint")


def test_bare_catalog_needs_are_one_sentence_errors(tmp_path, fmnist_small):
    fmnist_small.subset(np.arange(4)).save(tmp_path / "cat")
    base = {"dataset": str(tmp_path / "cat"), "checkpoint": "fmnist-cnn"}
    _refused(tmp_path, {**base, "objective": "feature"}, ConfigError,
             "choosing the hook item by popularity needs interactions; give a hook item id")
    _refused(tmp_path, {**base, "attack": "csema"}, ConfigError, "by popularity needs")


def test_resuming_after_the_dataset_changed_is_refused(tmp_path, fmnist_small):
    fmnist_small.subset(np.arange(4)).save(tmp_path / "cat")
    job = {"dataset": str(tmp_path / "cat"), "checkpoint": "fmnist-cnn", "attack": "fgsm",
           "out": str(tmp_path / "o")}
    run_job(AttackJob.build(None, job))
    fmnist_small.subset(np.arange(1, 5)).save(tmp_path / "cat")
    with pytest.raises(ConfigError, match="changed since the run being resumed"):
        run_job(AttackJob.build(None, {**job, "items": "all", "resume": True}))
