"""The stage cache reuses a stage only when its files are the ones it wrote (sha256 in DONE).

A tampered, deleted, unlisted or unrecorded file is found, named in one warning, and its stage
recomputed with everything downstream; the results then equal an untampered run's byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from study_standins import tiny_stages

from varsec.errors import DataError, VarsecWarning
from varsec.study.cache import DONE, ROWS, StageCache, check_stage_dir
from varsec.study.plan import plan_study
from varsec.study.runner import dry_run, run_study
from varsec.study.schema import load_study_text

STUDY = """
study: tiny-verify
extractors:
  cnn: {epochs: 1}
recommenders:
  vbpr: {kind: vbpr, extractor: cnn, params: {factors: 8, visual_factors: 8, epochs: 2,
                                             early_stopping: false}}
attacks:
  pgd: {kind: pgd, extractor: cnn, source_category: Sandal, target_category: Sneaker, eps: [8]}
evaluation:
  protocols: [{kind: full}]
  cold_items: 20
  bootstrap: 0
"""


@pytest.fixture(scope="module")
def config():
    return load_study_text(STUDY)


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory):
    """An untampered run: its output directory and its results.csv bytes."""
    out = tmp_path_factory.mktemp("verify-reference")
    with tiny_stages():
        run_study(config, out, log=None, report=False)
    return out, (out / "results.csv").read_bytes()


def _copy(reference, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)  # copy2: sizes and mtimes as the stages left them
    (out / "results.csv").unlink()
    return out


def _plan(config):
    with tiny_stages():  # the stand-ins' versions are part of the stage keys
        return plan_study(config)


def _stage(out: Path, config, kind: str, name_part: str = ""):
    stages = [s for s in _plan(config) if s.kind == kind and name_part in s.name]
    return stages[0], StageCache(out).path(stages[0])


def _rerun(out: Path, config, **kwargs):
    with tiny_stages(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_study(config, out, log=None, report=False, **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, VarsecWarning)]


def _zero_npy(path: Path) -> None:
    array = np.load(path)
    np.save(path, np.zeros_like(array))


def _zero_npy_keeping_size_and_mtime(path: Path) -> None:
    """An edit the default cache check cannot see: same size, same modification time."""
    before = path.stat()
    _zero_npy(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_rows(path: Path) -> None:
    frame = pd.read_parquet(path)
    frame["value"] = frame["value"] + 1.0
    frame.to_parquet(path, index=False)


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


# (stage kind, part of its name, file in the stage directory, tamper, what the warning says)
CASES = {
    "zeroed adversarial.npy": ("attack", "", "adversarial.npy", _zero_npy, "changed"),
    "flipped byte in images.npy": ("data", "", "dataset/images.npy", _flip_last_byte,
                                   "changed"),
    "edited rows.parquet": ("evaluation", "category / vbpr / pgd", ROWS, _edit_rows, "changed"),
    "garbage rows.parquet": ("evaluation", "ranking", ROWS,
                             lambda p: p.write_bytes(b"not parquet"), "changed"),
    "garbage model.pt": ("recommender", "", "model.pt", _garbage, "changed"),
    "deleted features.npy": ("extractor", "", "features.npy", Path.unlink, "missing"),
    "old-format DONE": ("recommender", "", DONE, lambda p: p.write_text(""),
                        "older varsec"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_tampered_cached_file_is_found_named_and_recomputed(case, config, reference,
                                                              tmp_path):
    kind, part, name, tamper, words = CASES[case]
    out = _copy(reference, tmp_path)
    stage, directory = _stage(out, config, kind, part)
    tamper(directory / name)

    result, messages = _rerun(out, config)

    assert len(messages) == 1, messages
    assert str(directory / name) in messages[0] and words in messages[0]
    assert f"recomputing '{stage.name}'" in messages[0]
    assert (out / "results.csv").read_bytes() == reference[1]
    recomputed = {key for key, status in result.statuses.items() if status.state == "done"}
    assert recomputed == result.plan.downstream([stage.key])
    assert check_stage_dir(directory, full=True) is None


def test_a_file_varsec_did_not_write_is_kept_not_deleted(config, reference, tmp_path):
    out = _copy(reference, tmp_path)
    stage, directory = _stage(out, config, "attack")
    (directory / "notes.txt").write_text("the user's own notes")

    result, messages = _rerun(out, config)

    assert len(messages) == 2, messages
    assert str(directory / "notes.txt") in messages[0]
    assert "not written by the stage" in messages[0]
    kept = out / "kept" / f"attack-{stage.key}"
    assert f"kept as {kept}" in messages[1]
    assert (kept / "notes.txt").read_text() == "the user's own notes"
    assert (out / "results.csv").read_bytes() == reference[1]
    assert result.statuses[stage.key].state == "done"
    assert check_stage_dir(directory, full=True) is None


def test_dry_run_lists_a_tampered_stage_and_its_consumers_as_to_do(config, reference, tmp_path):
    out = _copy(reference, tmp_path)
    stage, directory = _stage(out, config, "attack")
    _zero_npy(directory / "adversarial.npy")
    with tiny_stages():
        entries = {e.stage.key: e for e in dry_run(config, out).entries}
        listing = dry_run(config, out).render()
    todo = {key for key, e in entries.items() if e.status == "to do"}
    assert todo == _plan(config).downstream([stage.key])
    assert "adversarial.npy changed" in entries[stage.key].reason
    assert "adversarial.npy changed" in listing


def test_an_edit_that_keeps_size_and_mtime_is_found_by_verify(config, reference, tmp_path):
    out = _copy(reference, tmp_path)
    stage, directory = _stage(out, config, "attack")
    path = directory / "adversarial.npy"
    _zero_npy_keeping_size_and_mtime(path)
    with tiny_stages():
        # Unchanged size and mtime are trusted by default (what keeps a cache hit cheap)...
        assert all(e.status == "cached" for e in dry_run(config, out).entries)
        # ... and --verify hashes every file.
        checked = {e.stage.key: e for e in dry_run(config, out, verify=True).entries}
    assert checked[stage.key].status == "to do"
    assert "adversarial.npy changed" in checked[stage.key].reason
    result, messages = _rerun(out, config, verify=True)
    assert len(messages) == 1 and str(path) in messages[0]
    assert result.statuses[stage.key].state == "done"
    assert (out / "results.csv").read_bytes() == reference[1]


def test_a_touched_but_unchanged_file_is_hashed_and_reused(config, reference, tmp_path):
    out = _copy(reference, tmp_path)
    _, directory = _stage(out, config, "data")
    os.utime(directory / "dataset" / "images.npy")  # new mtime, same bytes
    result, messages = _rerun(out, config)
    assert messages == []
    assert result.count("cached") == len(result.plan)


def test_unreadable_rows_and_info_are_one_line_data_errors(config, reference, tmp_path):
    out = _copy(reference, tmp_path)
    stage, directory = _stage(out, config, "recommender")
    (directory / ROWS).write_bytes(b"garbage")
    (directory / "info.json").write_text("{not json")
    cache = StageCache(out)
    with pytest.raises(DataError, match="rows.parquet: not a readable parquet file") as rows:
        cache.rows(stage)
    with pytest.raises(DataError, match="info.json: not a readable JSON file") as info:
        cache.info(stage)
    assert "\n" not in str(rows.value) and "\n" not in str(info.value)


def test_done_records_every_file_with_its_hash(config, reference):
    _, directory = _stage(reference[0], config, "data")
    record = json.loads((directory / DONE).read_text())
    assert set(record["files"]) == {"info.json", "rows.parquet", "stage.json",
                                    *(f"dataset/{p.name}" for p in
                                      (directory / "dataset").iterdir())}
    entry = record["files"]["dataset/images.npy"]
    assert entry["size"] == (directory / "dataset" / "images.npy").stat().st_size
    assert len(entry["sha256"]) == 64


def test_cli_verify_flag_recomputes_and_warns_once(config, reference, tmp_path, capsys):
    from varsec.cli import main

    out = _copy(reference, tmp_path)
    _, directory = _stage(out, config, "extractor")
    path = directory / "features.npy"
    _zero_npy_keeping_size_and_mtime(path)
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.replace("study: tiny-verify", "study: tiny-verify\nreport: "
                                   "{enabled: false}"))
    with tiny_stages():
        assert main(["run", str(study), "--out", str(out), "--verify"]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 1 and str(path) in warned[0], err
    assert check_stage_dir(directory, full=True) is None
