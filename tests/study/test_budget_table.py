"""The report's "Attack budgets: used here and in the paper" table: per attack stage the budget
it ran with (info["budget"]) beside the study's paper_budget, and whether it is the paper's."""

from __future__ import annotations

import json

import pytest
from study_standins import tiny_real_study, tiny_run_fixture

from varsec.study.cache import StageCache
from varsec.study.report import write_report
from varsec.study.report.budgets import (
    LESS,
    MIXED,
    MORE,
    NO_PAPER,
    NOT_COMPARABLE,
    TITLE,
    YES,
    as_the_paper,
    budget_row,
    budget_table,
)
from varsec.study.report.data import StudyResults

# Real attack stages on the tiny catalog (stand-in data and extractor only). insa declares the
# paper's budget (4 epochs, lr 2, 64 users per step): 3 epochs at lr 4 are fewer steps at a
# larger step size (mixed); pgd-paper has the paper's 6 steps of 1.5 (yes); pgd declares none.
# insa is re-run through JPEG (insa+adaptive), which carries the same paper budget.
STUDY = tiny_real_study("tiny-budgets", """\
  insa: {kind: insa, recommender: pipe, eps: [32], steps: 3, n_items: 8,
         params: {users_per_step: 32, lr: 4},
         paper_budget: {steps: 4, step_size: 2, users_per_step: 64, note: "made-up sec 1"}}
  pgd: {kind: pgd, extractor: cnn, source_category: Sandal, target_category: Sneaker,
        eps: [8], steps: 6, alpha: 1.5, n_items: 8}
  pgd-paper: {kind: pgd, extractor: cnn, source_category: Sandal, target_category: Sneaker,
              eps: [8], steps: 6, alpha: 1.5, n_items: 8,
              paper_budget: {steps: 6, step_size: 1.5, note: "PGD-6"}}
""", defenses="  jpeg: {kind: jpeg, strengths: [50], attacks: [insa], adaptive: true}\n")
budget_run = tiny_run_fixture(STUDY, "budget_run")


def _table_rows(markdown: str, title: str) -> list[list[str]]:
    section = markdown[markdown.index(f"## {title}\n"):]
    end = section.find("\n## ", 1)
    section = section if end < 0 else section[:end]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def _results(run) -> StudyResults:
    return StudyResults(run.config, run.table, run.plan, run.statuses, run.out)


def test_the_table_has_one_row_per_attack_run_with_its_verdict(budget_run):
    frame = budget_table(_results(budget_run))
    assert frame is not None
    by_attack = {r["attack"]: r for r in frame.to_dict("records")}
    assert len(frame) == 4 and {a: r["model"] for a, r in by_attack.items()} == {
        "insa": "pipe", "insa+adaptive": "pipe via jpeg=50", "pgd": "cnn", "pgd-paper": "cnn"}
    insa = by_attack["insa"]
    # 80 users / 32 per step = 3 minibatches per epoch: 3 epochs = 9 Adam steps of 4 levels
    assert insa["steps"] == "3 epochs" and insa["optimizer steps"] == "9"
    assert insa["step size"] == "4 levels" and insa["eps"] == "32"
    assert insa["reach"] == "36, reaches eps 32"
    assert insa["paper steps"] == "4 (64 users per step)"
    assert insa["paper step size"] == "2 levels" and insa["paper note"] == "made-up sec 1"
    assert insa["as the paper"] == MIXED  # 3 < 4 epochs, 4 > 2 levels
    adaptive = by_attack["insa+adaptive"]
    assert adaptive["as the paper"] == MIXED and adaptive["optimizer steps"] == "9"
    pgd, paper = by_attack["pgd"], by_attack["pgd-paper"]
    assert (pgd["steps"], pgd["step size"], pgd["reach"]) == ("6", "1.5 levels",
                                                            "9, reaches eps 8")
    assert pgd["optimizer steps"] == "" and pgd["paper steps"] == ""
    assert pgd["as the paper"] == NO_PAPER
    assert paper["as the paper"] == YES and paper["paper note"] == "PGD-6"


def test_the_table_is_in_report_md_html_and_tex(budget_run):
    out = budget_run.out
    markdown = (out / "report.md").read_text()
    rows = _table_rows(markdown, TITLE)
    assert rows[0] == ["#", "attack", "model", "eps", "steps", "optimizer steps", "step size",
                       "reach", "paper steps", "paper step size", "paper note", "as the paper"]
    verdicts = {r[1]: r[-1] for r in rows[2:]}
    assert verdicts == {"insa": MIXED, "insa+adaptive": MIXED, "pgd": NO_PAPER,
                        "pgd-paper": YES}
    assert markdown.index("## Convergence\n") < markdown.index(f"## {TITLE}\n")
    assert TITLE in (out / "report.html").read_text()
    tex = (out / "tables" / "budgets.tex").read_text()
    assert "as the paper" in tex and "made-up sec 1" in tex


def test_stages_without_a_budget_are_skipped_and_no_budget_means_no_table(budget_run,
                                                                          tmp_path):
    """Older caches: the info.json of the attack stages carries no "budget"."""
    import shutil

    out = tmp_path / "old"
    shutil.copytree(budget_run.out / "cache", out / "cache")
    cache = StageCache(out)
    attacks = [s for s in budget_run.plan if s.kind == "attack"]
    for stage in attacks[1:]:  # the first stage keeps its budget
        path = cache.path(stage) / "info.json"
        info = json.loads(path.read_text())
        info.pop("budget")
        path.write_text(json.dumps(info))
    results = StudyResults(budget_run.config, budget_run.table, budget_run.plan,
                           budget_run.statuses, out)
    frame = budget_table(results)
    assert frame is not None and len(frame) == 1
    assert frame.iloc[0]["attack"] == attacks[0].labels["attack"]
    info = json.loads((cache.path(attacks[0]) / "info.json").read_text())
    info["budget"] = "not a dict"
    (cache.path(attacks[0]) / "info.json").write_text(json.dumps(info))
    assert budget_table(results) is None
    run = budget_run.__class__(**{**vars(budget_run), "out": out})
    write_report(run)
    markdown = (out / "report.md").read_text()
    assert f"## {TITLE}" not in markdown and "## Convergence" in markdown
    assert not (out / "tables" / "budgets.tex").exists()


def _budget(steps=5, taken=None, size=1.0, unit="8-bit levels", eps=4.0, paper=None):
    budget = {"steps": steps, "optimizer_steps": steps if taken is None else taken,
              "step_size": size, "unit": unit, "eps": eps, "paper": paper}
    if unit != "tanh" and size is not None:
        budget["reach"] = size * budget["optimizer_steps"]
    return budget


@pytest.mark.parametrize(("kind", "budget", "verdict"), [
    ("pgd", _budget(paper={"steps": 5, "step_size": 1.0, "note": ""}), YES),
    ("pgd", _budget(paper={"steps": 10, "step_size": 1.0}), LESS),  # fewer steps
    ("pgd", _budget(size=0.5, paper={"steps": 5, "step_size": 1.0}), LESS),  # smaller step
    ("pgd", _budget(steps=64, paper={"steps": 32, "step_size": None}), MORE),
    ("pgd", _budget(steps=4, size=2.0, paper={"steps": 5, "step_size": 1.0}), MIXED),
    ("pgd", _budget(), NO_PAPER),
    ("pgd", _budget(size=12.75 / 128, steps=128,
                    paper={"steps": 128, "step_size": 0.0996}), YES),  # paper's rounding
    # FGSM: its section's steps (default 10) do not count, its one step does
    ("fgsm", _budget(steps=10, taken=1, size=4.0, paper={"steps": 1}), YES),
    # INSA: the paper counts epochs, not the Adam steps over user minibatches
    ("insa", _budget(steps=5, taken=40, size=0.0255,
                     paper={"steps": 5, "step_size": 0.0255, "users_per_step": 256}), YES),
    ("insa", _budget(steps=5, taken=40, size=0.0255, paper={"steps": 6}), LESS),
    # C&W-L2's tanh-space rate is not a pixel step: only the steps are compared
    ("cw", _budget(steps=5, size=0.01, unit="tanh", paper={"steps": 5, "step_size": 1}), YES),
    ("csema", {"paper": {"note": "one-shot"}}, NOT_COMPARABLE),
    ("csema", {"paper": None}, NO_PAPER),
    # a hand-edited or foreign info.json: what is not a number is not compared
    ("pgd", {"steps": "five", "step_size": True, "paper": {"steps": 5, "step_size": 1}},
     NOT_COMPARABLE),
    ("pgd", _budget(paper="not a dict"), NO_PAPER),
])
def test_as_the_paper_on_hand_made_budgets(kind, budget, verdict):
    assert as_the_paper(kind, budget) == verdict


def test_a_row_from_a_hand_made_info_dict():
    labels = {"attack": "pgd", "extractor": "AT", "eps": 8.0, "seed": 0}
    row = budget_row(labels, "pgd", _budget(steps=4, size=1.0, eps=8.0,
                                           paper={"steps": 10, "step_size": 2.0,
                                                  "note": "paper sec 4"}))
    assert row == {"attack": "pgd", "model": "AT", "eps": "8", "seed": 0, "steps": "4",
                   "optimizer steps": "", "step size": "1 levels",
                   "reach": "4, short of eps 8", "paper steps": "10",
                   "paper step size": "2 levels", "paper note": "paper sec 4",
                   "as the paper": LESS}
    adaptive = budget_row({"attack": "insa+adaptive", "recommender": "vbpr",
                           "defense": "jpeg=50", "eps": 32.0}, "insa",
                          _budget(steps=5, taken=40, size=1.0, eps=32.0))
    assert adaptive["model"] == "vbpr via jpeg=50" and adaptive["steps"] == "5 epochs"
    assert adaptive["optimizer steps"] == "40" and adaptive["as the paper"] == NO_PAPER
    assert adaptive["reach"] == "40, reaches eps 32" and adaptive["paper steps"] == ""
    cw = budget_row({"attack": "cw", "extractor": "cnn", "eps": 255.0}, "cw",
                    _budget(size=0.01, unit="tanh", eps=255.0))
    assert cw["step size"] == "0.01 tanh" and cw["reach"] == "n/a (tanh space)"
    csema = budget_row({"attack": "csema", "recommender": "vbpr"}, "csema", {"paper": None})
    assert csema["steps"] == "one-shot" and csema["eps"] == "" and csema["reach"] == ""
    odd = budget_row({"attack": "pgd"}, None, {"steps": "five", "reach": float("nan"),
                                               "paper": {"steps": "x", "note": None}})
    assert (odd["steps"], odd["reach"], odd["paper steps"], odd["paper note"]) == (
        "", "", "", "")
