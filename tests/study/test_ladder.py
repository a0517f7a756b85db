"""The threat ladder: each promotion attack on the rung of what its merchant knows, with its
cost, its HR_cold@5 beside the cooperative image's, the paired test, and each defense; the
shipped ladder study plans every rung."""

from __future__ import annotations

import pytest
from study_standins import (
    TINY_MODELS,
    TINY_SURROGATE,
    run_tiny_real_study,
    tiny_real_study,
    tiny_run_fixture,
)

from varsec.study.plan import plan_study
from varsec.study.report.data import StudyResults
from varsec.study.report.ladder import RUNGS, ladder_figure, ladder_table
from varsec.study.schema import load_study

STUDY = tiny_real_study("tiny-ladder", """\
  insa: {kind: insa, recommender: pipe, eps: [32], steps: 3, n_items: 8, params: {lr: 8}}
  expa: {kind: expa, recommender: pipe, eps: [32], steps: 3, n_items: 8, params: {lr: 8}}
  transfer: {kind: insa, recommender: pipe-sur, evaluate: [pipe-sur, pipe], eps: [32], steps: 3,
             n_items: 8, params: {lr: 8}}
  score: {kind: square, objective: insa, recommender: pipe, eps: [32], steps: 12, n_items: 8}
  rank: {kind: square, objective: probe-rank, recommender: pipe, eps: [32], steps: 12,
         n_items: 8, params: {probes: 10}}
  csema: {kind: csema, recommender: pipe, n_items: 8}
""", models=TINY_MODELS + TINY_SURROGATE,
    defenses="  jpeg: {kind: jpeg, strengths: [50], attacks: [insa, score]}\n")
ladder_run = tiny_run_fixture(STUDY, "ladder_run")


def _results(run) -> StudyResults:
    return StudyResults(run.config, run.table, run.plan, run.statuses, run.out)


def test_every_rung_in_order_with_its_knowledge_cost_and_test(ladder_run):
    frame = ladder_table(_results(ladder_run))
    assert list(frame.index) == list(RUNGS)  # one attack each, most knowledge first
    assert list(frame["attack"]) == ["insa eps 32", "expa eps 32", "transfer eps 32",
                                     "score eps 32", "rank eps 32", "csema"]
    # the transfer row is measured on the platform; the surrogate's own evaluation is left out
    assert set(frame["model"]) == {"pipe"}
    assert frame.loc["query (score)", "cost"] == "12 queries per item"
    assert frame.loc["query (rank)", "knows"] == RUNGS["query (rank)"]
    assert frame.loc["semantic", "cost"] == "no gradient step"
    assert frame.loc["insider", "cost"].endswith("gradient steps")
    for _, row in frame.iterrows():
        assert 0 <= row["HR_cold@5"] <= 1 and 0 <= row["p"] <= 1
        assert row["promotes"] in ("yes", "no")
    defended = frame["jpeg=50 HR_cold@5"]
    assert defended.notna().sum() == 2  # the two attacks the defense covers


def test_the_ladder_figure_is_drawn(ladder_run, tmp_path):
    (path, caption), = ladder_figure(_results(ladder_run), tmp_path)
    assert path.is_file() and path.stat().st_size > 1000 and "threat ladder" in caption


def test_the_shipped_ladder_study_plans_every_rung():
    config = load_study("studies/ladder.yaml", profile="quick")
    attacks = {s.labels["attack"] for s in plan_study(config).of_kind("attack")}
    assert {"insa", "expa", "transfer", "score", "rank", "csema"} <= attacks


def _frame(promotes: list[str]):
    import pandas as pd

    rungs = ["insider", "transfer", "query (rank)"]
    return pd.DataFrame({
        "attack": ["insa eps 32", "transfer eps 32", "rank eps 32"], "model": ["pipe"] * 3,
        "knows": [RUNGS[r] for r in rungs], "cost": ["20 gradient steps"] * 2 + ["100 queries"],
        "HR_cold@5": [0.2, 0.05, 0.01], "cooperative": [0.01, 0.01, 0.01],
        "p": [1e-6, 0.01, 0.8], "promotes": ["yes", *promotes]}, index=rungs)


@pytest.mark.parametrize(("promotes", "status"), [
    (["yes", "no"], "held"), (["no", "no"], "not held")])
def test_the_outsider_claim_both_ways(ladder_run, monkeypatch, promotes, status):
    import varsec.study.report.ladder as ladder
    from varsec.study.report.claims import CLAIMS

    claim = next(c for c in CLAIMS if c.id == "varsec-outsider")
    monkeypatch.setattr(ladder, "ladder_table", lambda results: _frame(promotes))
    verdict = claim.check(_results(ladder_run))
    assert verdict.status == status
    assert "transfer: transfer eps 32 on pipe (20 gradient steps)" in verdict.evidence
    assert "insider" not in verdict.evidence.split(";")[0]  # the insider is not an outsider
    monkeypatch.setattr(ladder, "ladder_table", lambda results: _frame(promotes)[:1])
    assert claim.check(_results(ladder_run)).status == "not run"


CURVE = tiny_real_study("tiny-queries", """\
  score-4: {kind: square, objective: insa, recommender: pipe, eps: [32], steps: 4, n_items: 8}
  score-16: {kind: square, objective: insa, recommender: pipe, eps: [32], steps: 16, n_items: 8}
""")


def test_the_query_curve_has_each_budget_of_a_query_only_rung(tmp_path_factory, tmp_path):
    from varsec.study.report.ladder import query_curve, query_figure

    run = run_tiny_real_study(CURVE, tmp_path_factory.mktemp("queries"))
    curve = query_curve(_results(run))
    assert list(curve.index) == ["query (score)"] * 2 and list(curve["queries"]) == [4, 16]
    assert set(curve["model"]) == {"pipe"} and curve["HR_cold@5"].between(0, 1).all()
    (path, _), = query_figure(_results(run), tmp_path)
    assert path.is_file()


def test_one_budget_is_no_curve(ladder_run):
    from varsec.study.report.ladder import query_curve

    assert query_curve(_results(ladder_run)) is None  # score and rank at one budget each
