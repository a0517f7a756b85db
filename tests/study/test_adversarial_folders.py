"""The report's adversarial/ folders: one per attack stage, never two stages in one folder."""

from pathlib import Path
from types import SimpleNamespace

from varsec.study.report import _copy_adversarial_pngs


def _stage(tmp_path: Path, key: str, **labels: object) -> SimpleNamespace:
    folder = tmp_path / "cache" / key / "adversarial"
    folder.mkdir(parents=True)
    (folder / "item-0.png").write_bytes(key.encode())
    return SimpleNamespace(key=key, labels={"seed": 0, "recommender": "aip", **labels})


def test_adaptive_runs_through_two_strengths_get_their_own_folders(tmp_path: Path) -> None:
    stages = [_stage(tmp_path, "a", attack="insa", eps=8),
              _stage(tmp_path, "b", attack="insa+adaptive", eps=8, defense="jpeg=70"),
              _stage(tmp_path, "c", attack="insa+adaptive", eps=8, defense="jpeg=30")]
    results = SimpleNamespace(
        out=tmp_path / "out",
        stages=lambda kind: stages if kind == "attack" else [],
        cache=SimpleNamespace(path=lambda stage: tmp_path / "cache" / stage.key),
    )
    _copy_adversarial_pngs(results)
    folders = sorted(p.name for p in (tmp_path / "out" / "adversarial").iterdir())
    assert folders == ["insa+adaptive-eps8-aip-jpeg=30-seed0",
                       "insa+adaptive-eps8-aip-jpeg=70-seed0", "insa-eps8-aip-seed0"]
    copied = tmp_path / "out" / "adversarial" / "insa+adaptive-eps8-aip-jpeg=30-seed0"
    assert (copied / "item-0.png").read_bytes() == b"c"
