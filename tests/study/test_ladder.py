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
from varsec.study.report.ladder import RUNGS, converged_text, ladder_figure, ladder_table
from varsec.study.schema import load_study

STUDY = tiny_real_study("tiny-ladder", """\
  insa: {kind: insa, recommender: pipe, eps: [32], steps: 3, n_items: 8, params: {lr: 8}}
  expa: {kind: expa, recommender: pipe, eps: [32], steps: 3, n_items: 8, params: {lr: 8}}
  transfer: {kind: insa, recommender: pipe-sur, evaluate: [pipe-sur, pipe], eps: [32], steps: 3,
             n_items: 8, params: {lr: 8}}
  score: {kind: square, objective: insa, recommender: pipe, eps: [32], steps: 12, n_items: 8}
  score-5: {kind: square, objective: insa, recommender: pipe, eps: [32], steps: 5, n_items: 8}
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
    # most knowledge first; within a rung by budget (score-5 before score's 12 queries)
    assert list(dict.fromkeys(frame.index)) == list(RUNGS)
    assert list(frame["attack"]) == ["insa eps 32", "expa eps 32", "transfer eps 32",
                                     "score-5 eps 32", "score eps 32", "rank eps 32", "csema"]
    # the transfer row is measured on the platform; the surrogate's own evaluation is left out
    assert set(frame["model"]) == {"pipe"}
    assert list(frame.loc["query (score)", "cost"]) == ["5 queries per item",
                                                        "12 queries per item"]
    assert frame.loc["semantic", "cost"] == "no gradient step"
    assert frame.loc["insider", "cost"].endswith("gradient steps")
    assert frame.loc["query (rank)", "knows"] == \
        "its item's rank in 10 probe accounts' top-20 lists"  # the study's probes, top_n default
    for _, row in frame.iterrows():
        assert 0 <= row["HR_cold@5"] <= 1 and 0 <= row["p"] <= 1
        assert row["promotes"] in ("yes", "no")
    assert frame.loc["semantic", "converged"] == "one step"
    assert set(frame["converged"]) <= {"yes", "no", "one step"}
    results = _results(ladder_run)
    for stage in results.plan.of_kind("attack"):  # the column is the stage's own record
        record = results.info(stage)["convergence"]
        if record.get("iterative", True):
            assert converged_text(results, stage) == ("yes" if record["converged"] else "no")
    defended = frame["jpeg=50 HR_cold@5"]
    assert defended.notna().sum() == 2  # the two attacks the defense covers


def test_the_ladder_figure_is_drawn(ladder_run, tmp_path):
    (path, caption), = ladder_figure(_results(ladder_run), tmp_path)
    assert path.is_file() and path.stat().st_size > 1000 and "threat ladder" in caption


def test_the_shipped_ladder_study_plans_every_rung():
    config = load_study("studies/ladder.yaml", profile="quick")
    attacks = {s.labels["attack"] for s in plan_study(config).of_kind("attack")}
    assert {"insa", "expa", "transfer", "score", "rank", "csema"} <= attacks


def _frame(promotes: list[str], converged: tuple[str, ...] = ("yes", "yes", "yes")):
    import pandas as pd

    rungs = ["insider", "transfer", "query (rank)"]
    return pd.DataFrame({
        "attack": ["insa eps 32", "transfer eps 32", "rank eps 32"], "model": ["pipe"] * 3,
        "knows": [RUNGS[r] for r in rungs], "cost": ["20 gradient steps"] * 2 + ["100 queries"],
        "HR_cold@5": [0.2, 0.05, 0.01], "cooperative": [0.01, 0.01, 0.01],
        "p": [1e-6, 0.01, 0.8], "promotes": ["yes", *promotes],
        "converged": list(converged)}, index=rungs)


@pytest.mark.parametrize(("promotes", "converged", "status"), [
    (["yes", "no"], ("yes", "yes", "no"), "held"),  # one outsider promotes: enough
    (["no", "no"], ("yes", "yes", "yes"), "not held"),
    (["no", "no"], ("yes", "yes", "no"), "inconclusive"),  # the rank rung might with more
])
def test_the_outsider_claim_both_ways(ladder_run, monkeypatch, promotes, converged, status):
    import varsec.study.report.ladder as ladder
    from varsec.study.report.claims import CLAIMS

    claim = next(c for c in CLAIMS if c.id == "varsec-outsider")
    monkeypatch.setattr(ladder, "ladder_table", lambda results: _frame(promotes, converged))
    verdict = claim.check(_results(ladder_run))
    assert verdict.status == status
    if status == "inconclusive":
        assert "rank eps 32: 100 queries" in verdict.evidence
        assert "[left open: rank eps 32 did not converge]" in verdict.evidence
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
    assert set(curve["feedback"]) == {RUNGS["query (score)"]}
    assert set(curve["model"]) == {"pipe"} and curve["HR_cold@5"].between(0, 1).all()
    (path, _), = query_figure(_results(run), tmp_path)
    assert path.is_file()


def test_the_curve_has_each_budget_of_a_rung_and_one_budget_is_no_curve(ladder_run,
                                                                          monkeypatch):
    import varsec.study.report.ladder as ladder

    results = _results(ladder_run)
    curve = ladder.query_curve(results)
    assert list(curve.loc["query (score)", "queries"]) == [5, 12]  # score-5, then score
    assert list(curve.loc[["query (rank)"], "queries"]) == [12]  # one budget: a point
    frame = ladder.ladder_table(results)
    one_each = frame[frame["attack"] != "score-5 eps 32"]
    monkeypatch.setattr(ladder, "ladder_table", lambda results: one_each)
    assert ladder.query_curve(results) is None  # score and rank at one budget each


def test_the_query_curve_keeps_each_feedback_its_own_series(ladder_run, monkeypatch):
    """Richer rank feedback (more probes) at one budget is a point of its own series, not a
    second value of the 20-probe curve."""
    import pandas as pd

    import varsec.study.report.ladder as ladder

    def knows(probes: int) -> str:
        return f"its item's rank in {probes} probe accounts' top-20 lists"

    frame = pd.DataFrame({
        "attack": ["rank-100", "rank", "rank-p100"], "model": ["pipe"] * 3,
        "knows": [knows(20), knows(20), knows(100)],
        "cost": ["100 queries per item", "1000 queries per item", "1000 queries per item"],
        "HR_cold@5": [0.001, 0.002, 0.004], "cooperative": [0.001] * 3, "p": [0.9, 0.4, 1e-5],
        "promotes": ["no", "no", "yes"], "converged": ["yes"] * 3},
        index=["query (rank)"] * 3)
    monkeypatch.setattr(ladder, "ladder_table", lambda results: frame)
    curve = ladder.query_curve(_results(ladder_run))
    twenty = curve[curve["feedback"] == knows(20)]
    assert list(twenty["queries"]) == [100, 1000] and list(twenty["HR_cold@5"]) == [0.001, 0.002]
    assert list(curve[curve["feedback"] == knows(100)]["queries"]) == [1000]


def test_the_papers_claims_rest_on_the_platforms_models_not_the_attackers_surrogate(
        ladder_run):
    """The surrogate pipeline (fitted on 30% of the users) is the merchant's tool: its rows
    leave the view the papers' claims are checked on, the platform's rows stay."""
    from varsec.study.report.claims import CLAIMS

    results = _results(ladder_run)
    assert results.surrogate("pipe-sur") and results.surrogate("vbpr-sur")
    assert not results.surrogate("pipe") and not results.surrogate("vbpr")
    platform = results.platform()
    assert "pipe-sur" in set(results.table["recommender"].dropna())
    assert not {"pipe-sur", "vbpr-sur", "bpr-sur"} & set(platform.table["recommender"].dropna())
    assert not any(results.surrogate(s.labels.get("recommender")) for s in platform.plan)
    assert "pipe" in set(platform.table["recommender"].dropna())
    promote = next(c for c in CLAIMS if c.id == "000-promote")
    assert "pipe-sur" in promote.check(results.white_box()).evidence  # white-box on it
    verdict = promote.judge(results)
    assert "pipe-sur" not in verdict.evidence and "pipe" in verdict.evidence
