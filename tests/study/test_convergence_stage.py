"""The attack stage keeps each attack's objective curve (convergence.npz) and its verdict
(info["convergence"]); the report shows them as a table and one figure per attack kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from study_standins import tiny_real_study, tiny_run_fixture

from varsec.metrics.convergence import RULE, converged
from varsec.study.cache import StageCache

# Real attack stages on the tiny catalog (stand-in data and extractor only): Adam (INSA, EXPA),
# PGD and FGSM on the classifier, C&W-L2 and c-SEMA.
STUDY = tiny_real_study("tiny-convergence", """\
  insa: {kind: insa, recommender: pipe, eps: [16, 32], steps: 12, n_items: 8}
  insa-mb: {kind: insa, recommender: pipe, eps: [32], steps: 3, n_items: 8,
            params: {users_per_step: 32, lr: 4}}
  csema: {kind: csema, recommender: pipe, n_items: 8}
  pgd: {kind: pgd, extractor: cnn, source_category: Sandal, target_category: Sneaker,
        eps: [8], steps: 6, n_items: 16}
  fgsm: {kind: fgsm, extractor: cnn, source_category: Sandal, eps: [8], n_items: 16}
  cw: {kind: cw, extractor: cnn, source_category: Sandal, target_category: Sneaker,
       eps: [16], steps: 5, n_items: 8, params: {binary_steps: 2}}
""")
convergence_run = tiny_run_fixture(STUDY, "convergence_run")


def _attack(run, name: str, eps: float | None = None):
    stages = [s for s in run.plan if s.kind == "attack" and s.labels["attack"] == name
              and (eps is None or s.labels.get("eps") == eps)]
    assert stages, name
    path = StageCache(run.out).path(stages[0])
    return path, json.loads((path / "info.json").read_text())


@pytest.mark.parametrize(("name", "eps", "steps"), [("insa", 16, 12), ("pgd", 8, 6),
                                                    ("cw", 16, 5)])
def test_an_iterative_attack_stage_writes_its_curve_and_verdict(convergence_run, name, eps,
                                                                steps):
    path, info = _attack(convergence_run, name, eps)
    summary = info["convergence"]
    assert summary["iterative"] is True and summary["rule"] == RULE
    assert summary["steps"] == steps and isinstance(summary["converged"], bool)
    with np.load(path / "convergence.npz") as data:
        assert sorted(data.files) == ["mean", "q10", "q50", "q90", "step"]
        assert data["step"].tolist() == list(range(steps))
        assert bool((data["q10"] <= data["q50"] + 1e-9).all())
        assert bool((data["q50"] <= data["q90"] + 1e-9).all())
        check = converged(data["mean"])
    assert summary["total_gain"] == pytest.approx(check.total_gain)
    assert summary["tail_gain"] == pytest.approx(check.tail_gain)
    assert summary["converged"] == check.converged


def test_an_attack_that_raises_its_objective_shows_the_gain(convergence_run):
    path, info = _attack(convergence_run, "insa", 32)
    with np.load(path / "convergence.npz") as data:
        assert data["mean"][-1] > data["mean"][0]
    assert info["convergence"]["total_gain"] > 0 and not info["convergence"]["no_gain"]
    assert info["convergence"]["items"] == 8


def test_insa_over_user_minibatches_is_judged_per_epoch(convergence_run):
    path, info = _attack(convergence_run, "insa-mb")
    summary = info["convergence"]
    assert summary["unit"] == "epoch" and summary["steps"] == 3  # 80 users / 32: 9 Adam steps
    assert info["budget"]["optimizer_steps"] == 9
    with np.load(path / "convergence.npz") as data:
        assert data["step"].tolist() == [0, 1, 2]


def test_every_attack_stage_of_a_defense_study_records_convergence(defense_run):
    """Adaptive attacks (through JPEG with BPDA, through the reconstruction defense) too."""
    stages = [s for s in defense_run.plan if s.kind == "attack"]
    assert any(s.labels.get("defense") for s in stages)
    for stage in stages:
        info = json.loads((StageCache(defense_run.out).path(stage) / "info.json").read_text())
        summary = info["convergence"]
        assert {"converged", "iterative", "steps", "total_gain", "tail_gain"} <= set(summary)
        kind = defense_run.config.attacks[str(stage.labels["attack"]).split("+")[0]].kind
        assert summary["iterative"] is (kind == "insa"), stage.name
        if kind == "insa":
            assert summary["steps"] == 2


@pytest.mark.parametrize(("name", "steps"), [("fgsm", 1), ("csema", 0)])
def test_a_non_iterative_attack_is_recorded_as_such_without_a_curve(convergence_run, name,
                                                                    steps):
    path, info = _attack(convergence_run, name)
    summary = info["convergence"]
    assert summary["converged"] is True and summary["iterative"] is False
    assert summary["steps"] == steps
    assert summary["total_gain"] == 0.0 and summary["tail_gain"] == 0.0
    assert not (path / "convergence.npz").exists()


def _table_rows(markdown: str, title: str) -> list[list[str]]:
    section = markdown[markdown.index(f"## {title}\n"):]
    section = section[:section.index("\n## ", 1)]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_the_report_has_the_convergence_table_and_figures(convergence_run):
    out = convergence_run.out
    markdown = (out / "report.md").read_text()
    rows = _table_rows(markdown, "Convergence")
    assert rows[0] == ["#", "attack", "model", "eps", "steps", "total gain", "tail gain",
                       "converged"]
    body = {(r[1], r[3]): r for r in rows[2:]}
    assert set(body) == {("insa", "16"), ("insa", "32"), ("insa-mb", "32"), ("pgd", "8"),
                         ("cw", "16")}
    _, info = _attack(convergence_run, "pgd")
    pgd = body[("pgd", "8")]
    assert pgd[2] == "cnn" and pgd[4] == "6"
    assert float(pgd[5]) == pytest.approx(info["convergence"]["total_gain"], abs=1e-4)
    assert pgd[7] == ("yes" if info["convergence"]["converged"] else "NO")
    assert "Convergence" in (out / "report.html").read_text()
    assert (out / "tables" / "convergence.tex").is_file()
    for kind in ("insa", "pgd", "cw"):
        assert (out / "figures" / f"convergence_{kind}.png").is_file()
        assert f"figures/convergence_{kind}.png" in markdown
    assert not (out / "figures" / "convergence_fgsm.png").exists()
    assert not (out / "figures" / "convergence_csema.png").exists()
