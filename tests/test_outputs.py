"""Every command's --out: a user's file or directory is never replaced, and a bad --out is one
``error:`` line (exit 2) before any compute; a full disk is one line naming the file."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from varsec.cli import main
from varsec.data.catalog import Dataset, ItemCatalog
from varsec.errors import ConfigError

USER_BYTES = b"\x00a user's own file\n\xff"


def _single_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _user_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(USER_BYTES)
    return path


def _user_dir(path: Path) -> Path:
    _user_file(path / "notes.txt")
    return path


def _catalog_dir(path: Path) -> Path:
    catalog = ItemCatalog(item_ids=["a", "b"], images=np.zeros((2, 1, 28, 28), np.uint8),
                          categories=[0, 1], category_names=["x", "y"], name="tiny")
    return catalog.save(path)


def _no_compute(*args, **kwargs):
    raise AssertionError("compute started although --out is unusable")


def _lock(monkeypatch, directory: Path) -> None:
    """Make ``directory`` look read-only to os.access (tests run as root)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if Path(path) == directory else real_access(path, mode, **kw)))


# -- varsec data simulate ------------------------------------------------------------------------


def _simulate(out: Path, *extra: str) -> int:
    return main(["data", "simulate", "--profile", "quick", "--out", str(out), *extra])


@pytest.fixture
def no_simulation(monkeypatch):
    # The package exports a function of the same name as the module: take the module itself.
    module = importlib.import_module("varsec.data.simulate")
    monkeypatch.setattr(module, "simulate_and_split", _no_compute)
    monkeypatch.setattr("varsec.data.sources.open_source", _no_compute)


def test_simulate_refuses_an_existing_file(tmp_path, capsys, no_simulation):
    out = _user_file(tmp_path / "sim")
    assert _simulate(out) == 2
    assert f"{out} is a file, not a directory" in _single_error_line(capsys)
    assert out.read_bytes() == USER_BYTES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]


def test_simulate_refuses_a_users_directory(tmp_path, capsys, no_simulation):
    out = _user_dir(tmp_path / "sim")
    assert _simulate(out) == 2
    line = _single_error_line(capsys)
    assert f"{out} is a non-empty directory (not a varsec dataset output)" in line
    assert "--force" in line
    assert (out / "notes.txt").read_bytes() == USER_BYTES


def test_simulate_refuses_a_varsec_output_of_another_kind(tmp_path, capsys, no_simulation):
    out = _catalog_dir(tmp_path / "cat")
    assert _simulate(out) == 2
    assert "(a varsec catalog output)" in _single_error_line(capsys)
    assert ItemCatalog.load(out).name == "tiny"


def test_simulate_refuses_an_unwritable_parent(tmp_path, capsys, monkeypatch, no_simulation):
    _lock(monkeypatch, tmp_path)
    assert _simulate(tmp_path / "new" / "sim") == 2
    assert f"directory {tmp_path} is not writable" in _single_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_simulate_reruns_into_its_own_output_and_force_replaces_a_users_dir(tmp_path, capsys):
    out = tmp_path / "sim"
    assert _simulate(out, "--seed", "1") == 0
    assert _simulate(out, "--seed", "2") == 0
    assert Dataset.load(out).meta["seed"] == 2
    forced = _user_dir(tmp_path / "forced")
    assert _simulate(forced, "--force") == 0
    assert not (forced / "notes.txt").exists() and Dataset.load(forced).n_users == 500
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forced", "sim"]


def test_dataset_save_python_api(tmp_path):
    dataset_dir = tmp_path / "d"
    catalog = ItemCatalog.load(_catalog_dir(tmp_path / "cat"))
    with pytest.raises(ConfigError, match="not a varsec catalog output"):
        catalog.save(_user_dir(dataset_dir))
    assert (dataset_dir / "notes.txt").read_bytes() == USER_BYTES
    catalog.save(dataset_dir, overwrite=True)
    catalog.save(dataset_dir)  # its own output: replaced without overwrite
    assert sorted(p.name for p in dataset_dir.iterdir()) == ["images.npy", "items.parquet",
                                                            "manifest.json"]


# -- varsec train-defense ------------------------------------------------------------------------


def _defense_args(out: Path, *extra: str) -> list[str]:
    return ["train-defense", "--dataset", "data", "--recommender", "vbpr.pt", "--extractor",
            "fmnist-cnn", "--out", str(out), *extra]


@pytest.fixture
def no_defense_training(monkeypatch):
    import varsec.defenses.commands
    import varsec.defenses.joint

    monkeypatch.setattr(varsec.defenses.commands, "_load", _no_compute)
    monkeypatch.setattr(varsec.defenses.joint, "train_defense", _no_compute)


@pytest.fixture
def fake_defense_training(monkeypatch):
    """A training that returns a tiny untrained network at once (the writing is real)."""
    import varsec.defenses.commands
    import varsec.defenses.joint
    from varsec.defenses.reconstruction import ReconstructionNet

    data = SimpleNamespace(content_hash=lambda: "0" * 64)
    monkeypatch.setattr(varsec.defenses.commands, "_load",
                        lambda *args: (data, None, (None, "1" * 64)))
    split = SimpleNamespace(to_dict=lambda: {"train": [0], "calibration": [], "test": [1]})
    result = SimpleNamespace(reconstruction=ReconstructionNet(width=4, blocks=1, heads=1),
                             detector=None, history=[], seconds=0.0, split=split,
                             calibration=None)
    monkeypatch.setattr(varsec.defenses.joint, "train_defense", lambda *a, **k: result)


@pytest.mark.parametrize("make, message", [
    (lambda p: _user_file(p), "is a file, not a directory"),
    (lambda p: _user_dir(p), "(not a varsec defense output)"),
    (lambda p: _catalog_dir(p), "(a varsec catalog output)"),
])
def test_train_defense_refuses_before_training(tmp_path, capsys, no_defense_training, make,
                                               message):
    out = make(tmp_path / "defense")
    before = {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} \
        if out.is_dir() else out.read_bytes()
    assert main(_defense_args(out)) == 2
    assert message in _single_error_line(capsys)
    after = {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} \
        if out.is_dir() else out.read_bytes()
    assert after == before


def test_train_defense_refuses_an_unwritable_parent(tmp_path, capsys, monkeypatch,
                                                    no_defense_training):
    _lock(monkeypatch, tmp_path)
    assert main(_defense_args(tmp_path / "defense")) == 2
    assert "is not writable" in _single_error_line(capsys)


def test_train_defense_writes_a_manifest_reruns_and_forces(tmp_path, capsys,
                                                           fake_defense_training):
    from varsec.defenses import load_defense
    from varsec.io import output_kind

    out = tmp_path / "defense"
    assert main(_defense_args(out)) == 0
    assert output_kind(out) == "defense"
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["metrics.json", "reconstruction.pt"]
    assert main(_defense_args(out)) == 0  # its own earlier output: no --force needed
    load_defense(out)
    forced = _user_dir(tmp_path / "forced")
    assert main(_defense_args(forced, "--force")) == 0
    assert not (forced / "notes.txt").exists() and output_kind(forced) == "defense"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["defense", "forced"]
    capsys.readouterr()


# -- varsec train-extractor and varsec features (file outputs) -----------------------------------


@pytest.fixture
def no_vision_compute(monkeypatch):
    import varsec.vision.commands
    import varsec.vision.training

    monkeypatch.setattr(varsec.vision.training, "train_classifier", _no_compute)
    monkeypatch.setattr(varsec.vision.commands, "load_catalog", _no_compute)
    monkeypatch.setattr("varsec.vision.checkpoint.open_backbone", _no_compute)


def test_train_extractor_refuses_a_directory_before_training(tmp_path, capsys,
                                                             no_vision_compute):
    out = _user_dir(tmp_path / "runs")
    assert main(["train-extractor", "--epochs", "1", "--out", str(out)]) == 2
    assert f"{out} is a directory; expected a checkpoint file path" in _single_error_line(capsys)
    assert (out / "notes.txt").read_bytes() == USER_BYTES


@pytest.mark.parametrize("command", [["train-extractor"], ["features", "--backbone",
                                                            "fmnist-cnn"]])
def test_file_outputs_refuse_an_unwritable_or_file_parent(tmp_path, capsys, monkeypatch,
                                                          no_vision_compute, command):
    parent = _user_file(tmp_path / "file")
    assert main([*command, "--out", str(parent / "x.out")]) == 2
    assert f"{parent} is a file, not a directory" in _single_error_line(capsys)
    assert parent.read_bytes() == USER_BYTES
    _lock(monkeypatch, tmp_path)
    assert main([*command, "--out", str(tmp_path / "x.out")]) == 2
    assert f"directory {tmp_path} is not writable" in _single_error_line(capsys)


@pytest.mark.parametrize("directory", ["feats.npy", "feats.npy.json"])
def test_features_refuses_a_directory_before_extracting(tmp_path, capsys, no_vision_compute,
                                                        directory):
    _user_dir(tmp_path / directory)
    assert main(["features", "--backbone", "fmnist-cnn", "--out",
                 str(tmp_path / "feats.npy")]) == 2
    assert f"{tmp_path / directory} is a directory" in _single_error_line(capsys)
    assert (tmp_path / directory / "notes.txt").read_bytes() == USER_BYTES


def test_features_rewrites_its_own_earlier_output(tmp_path, capsys):
    out = tmp_path / "feats.npy"
    args = ["features", "--backbone", "fmnist-cnn", "--limit", "8", "--no-cache", "--out",
            str(out)]
    assert main(args) == 0
    assert main(args) == 0
    assert np.load(out).shape[0] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.npy", "feats.npy.json"]
    capsys.readouterr()


# -- varsec attack --------------------------------------------------------------------------------


def _attack_args(out: Path, dataset: Path, *extra: str) -> list[str]:
    return ["attack", "--dataset", str(dataset), "--attack", "fgsm", "--checkpoint",
            "fmnist-cnn", "--eps", "8", "--out", str(out), *extra]


@pytest.mark.parametrize("make, message", [
    (lambda p: _user_file(p), "is a file, not a directory"),
    (lambda p: _user_dir(p), "(not a varsec attack output); an attack writes its files"),
    (lambda p: _catalog_dir(p), "(a varsec catalog output)"),
])
def test_attack_refuses_before_attacking(tmp_path, capsys, monkeypatch, make, message):
    monkeypatch.setattr("varsec.study.attack_command.run_job", _no_compute)
    out = make(tmp_path / "attack")
    before = sorted((p.name, p.read_bytes()) for p in out.rglob("*") if p.is_file()) \
        if out.is_dir() else out.read_bytes()
    assert main(_attack_args(out, tmp_path / "unused", "--resume")) == 2
    assert message in _single_error_line(capsys)
    after = sorted((p.name, p.read_bytes()) for p in out.rglob("*") if p.is_file()) \
        if out.is_dir() else out.read_bytes()
    assert after == before


def test_attack_resumes_into_its_own_output(tmp_path, capsys):
    data = _catalog_dir(tmp_path / "cat")
    out = tmp_path / "attack"
    assert main(_attack_args(out, data)) == 0
    assert main(_attack_args(out, data, "--resume")) == 0
    assert "0 adversarial images" in capsys.readouterr().out
    assert main(_attack_args(out, data)) == 2  # without --resume: refused, as before
    assert "--resume" in _single_error_line(capsys)


# -- varsec run ------------------------------------------------------------------------------------


def test_run_refuses_a_file_out_before_any_stage(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("varsec.study.runner.run_study", _no_compute)
    monkeypatch.setattr("varsec.study.runner.dry_run", _no_compute)
    out = _user_file(tmp_path / "demo")
    assert main(["run", "demo", "--out", str(out)]) == 2
    assert f"{out} is a file, not a directory" in _single_error_line(capsys)
    assert out.read_bytes() == USER_BYTES
    _lock(monkeypatch, tmp_path)
    assert main(["run", "demo", "--out", str(tmp_path / "new")]) == 2
    assert f"directory {tmp_path} is not writable" in _single_error_line(capsys)


# -- a really full disk ----------------------------------------------------------------------------


def test_simulate_onto_a_full_disk_is_one_line_and_leaves_nothing(small_disk, capsys):
    out = small_disk / "sim"
    assert _simulate(out) == 2
    line = _single_error_line(capsys)
    assert line == f"error: cannot write {out}/images.npy: no space left on device."
    assert list(small_disk.iterdir()) == []


def test_a_parquet_table_onto_a_full_disk_names_the_table(small_disk):
    from varsec.data.catalog import Interactions
    from varsec.io import WriteError

    rng = np.random.default_rng(0)
    n = 200_000
    log = Interactions(rng.integers(0, 1000, n), rng.integers(0, 5000, n),
                       rng.integers(0, 10**9, n), [str(i) for i in range(1000)])
    with pytest.raises(WriteError, match=f"^cannot write {small_disk}/log/interactions.parquet: "
                       "no space left on device.$"):
        log.save(small_disk / "log")
    assert list(small_disk.iterdir()) == []


def test_write_results_on_a_full_disk_names_the_table(tmp_path, monkeypatch):
    import errno

    import pandas as pd

    from varsec.io import WriteError
    from varsec.study.results import empty_table, write_results

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(WriteError, match=f"^cannot write {tmp_path}/results.parquet: no space "
                       "left on device.$"):
        write_results(tmp_path, empty_table())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
