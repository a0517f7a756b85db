"""Diagnosis sweeps: an attack's ``diagnose`` section runs it at more eps (label
``<attack>+diagnose``); no claim rests on those runs, and the report says, per claim not held,
the smallest eps of the sweep at which it holds."""

from __future__ import annotations

import pytest
import torch
from study_standins import tiny_data, tiny_extractor

from varsec.errors import ConfigError, VarsecWarning
from varsec.study.plan import DIAGNOSE, plan_study
from varsec.study.report import write_report
from varsec.study.report.claims import CLAIMS, HELD, NOT_HELD, NOT_RUN, Claim, Verdict
from varsec.study.report.data import StudyResults
from varsec.study.report.diagnosis import NO_SWEEP, Diagnosis, diagnose, diagnosis_table
from varsec.study.runner import run_study
from varsec.study.schema import budget_warnings, load_study_text
from varsec.study.stages import override_stage

# Item-to-item PGD on the stand-in extractor: one step at eps 1 cannot pull an item to rank 3
# of its target; the sweep's 10 steps at eps 16 and 128 are far larger.
STUDY = """
study: tiny-diagnosis
threads: 1
extractors:
  cnn: {epochs: 1}
recommenders:
  knn: {kind: knn, extractor: cnn, params: {neighbours: 5}}
attacks:
  i2i: {kind: pgd, items: pairs, extractor: cnn, eps: [1], steps: 1, n_items: 24,
        diagnose: {eps: [16, 128], steps: 10}}
evaluation:
  protocols: [{kind: sampled, negatives: 20}]
  bootstrap: 0
  rank_min: [1, 3]
"""


def fit_extractor(ctx, config, inputs):
    """The stand-in extractor, recorded as a fit classifier: its floor is not under test."""
    return [{**row, "value": 0.9} for row in tiny_extractor(ctx, config, inputs)]


@pytest.fixture(scope="module")
def diagnosis_run(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with override_stage("data", tiny_data), override_stage("extractor", fit_extractor):
            return run_study(load_study_text(STUDY), tmp_path_factory.mktemp("diagnosis"),
                             log=None)
    finally:
        torch.set_num_threads(before)


def _results(run) -> StudyResults:
    return StudyResults(run.config, run.table, run.plan, run.statuses, run.out)


def _claim(claim_id: str) -> Claim:
    return next(c for c in CLAIMS if c.id == claim_id)


def test_the_sweep_runs_as_its_own_attack_stages_with_more_steps():
    plan = plan_study(load_study_text(STUDY))
    attacks = {(s.labels["attack"], s.labels["eps"]): s for s in plan.of_kind("attack")}
    assert set(attacks) == {("i2i", 1.0), (f"i2i{DIAGNOSE}", 16.0), (f"i2i{DIAGNOSE}", 128.0)}
    assert attacks[("i2i", 1.0)].config["steps"] == 1
    assert attacks[(f"i2i{DIAGNOSE}", 16.0)].config["steps"] == 10
    evaluations = [s.labels["attack"] for s in plan.of_kind("evaluation")
                   if s.config["scenario"] == "item2item"]
    assert sorted(evaluations) == ["i2i", f"i2i{DIAGNOSE}", f"i2i{DIAGNOSE}"]


def test_a_sweep_at_an_eps_of_the_attack_is_still_its_own_stage():
    text = STUDY.replace("eps: [16, 128], steps: 10", "eps: [1]")
    labels = [s.labels["attack"] for s in plan_study(load_study_text(text)).of_kind("attack")]
    assert labels == ["i2i", f"i2i{DIAGNOSE}"]


def test_the_primary_results_leave_the_sweep_out(diagnosis_run):
    results = _results(diagnosis_run)
    assert (results.table["attack"] == f"i2i{DIAGNOSE}").any()
    primary = results.primary()
    assert not primary.table["attack"].astype(str).str.contains(DIAGNOSE, regex=False).any()
    assert all(DIAGNOSE not in str(s.labels.get("attack")) for s in primary.plan)
    assert results.sweeps() == [("i2i", [16.0, 128.0])]


def test_a_sweep_view_puts_the_sweep_in_the_attacks_place(diagnosis_run):
    results = _results(diagnosis_run)
    view = results.sweep_view("i2i", 128.0)
    rows = view.rows(protocol="item2item")
    assert set(rows["attack"]) == {"i2i"} and set(rows["eps"]) == {128.0}
    swept = results.rows(protocol="item2item", attack=f"i2i{DIAGNOSE}", eps=128.0)
    assert sorted(rows["value"]) == sorted(swept["value"])
    assert [s.labels["eps"] for s in view.stages("attack", attack="i2i")] == [128.0]


def test_the_claim_rests_on_the_attack_and_the_diagnosis_on_the_sweep(diagnosis_run):
    results = _results(diagnosis_run)
    claim = _claim("004-pgd")
    verdict = claim.check(results.primary())
    assert verdict.status == NOT_HELD and "eps 1:" in verdict.evidence
    found = diagnose(results, claim, verdict)
    assert [d.attack for d in found] == ["i2i"]
    outcomes = found[0].outcomes
    assert [eps for eps, _ in outcomes] == [16.0, 128.0]
    for eps, outcome in outcomes:  # each eps is the claim re-checked on the sweep's view
        again = claim.check(results.sweep_view("i2i", eps))
        assert (outcome.status, outcome.numbers) == (again.status, again.numbers)
    assert outcomes[-1][1].evidence != verdict.evidence


def test_the_report_has_a_diagnosis_section(diagnosis_run):
    write_report(diagnosis_run)
    markdown = (diagnosis_run.out / "report.md").read_text()
    section = markdown[markdown.index("## Diagnosis of the claims not held"):]
    section = section[:section.find("\n## ", 1)]
    assert "| 004-pgd | i2i+diagnose |" in section
    assert "the study ran eps 1 at 1 steps" in section
    claims = markdown[markdown.index("## Claims"):markdown.index("## Diagnosis")]
    assert "eps 128" not in claims  # no verdict rests on the sweep
    assert (diagnosis_run.out / "tables" / "diagnosis.tex").is_file()


# -- the finding, from hand-made outcomes --------------------------------------------------------
def _verdict(status: str, value: float) -> Verdict:
    return Verdict(status, f"rate {value}", numbers={"rate": value})


def test_the_finding_is_the_smallest_eps_that_holds():
    found = Diagnosis("c", "pgd", "eps 8 at 10 steps", "64 steps",
                      [(16.0, _verdict(NOT_HELD, 0.2)), (32.0, _verdict(HELD, 0.95)),
                       (64.0, _verdict(HELD, 0.99))])
    assert found.reached == 32.0
    assert found.finding == "holds from eps 32 (64 steps); the study ran eps 8 at 10 steps"
    assert found.evidence == "eps 32: rate 0.95"


def test_the_finding_says_not_held_up_to_the_largest_eps():
    found = Diagnosis("c", "pgd", "eps 8 at 10 steps", "10 steps",
                      [(16.0, _verdict(NOT_HELD, 0.2)), (64.0, _verdict(NOT_HELD, 0.5))])
    assert found.reached is None
    assert found.finding.startswith("not held up to eps 64 (10 steps)")
    assert found.evidence == "eps 64: rate 0.5"


def test_a_claim_no_sweep_bears_on_says_so(diagnosis_run):
    results = _results(diagnosis_run)
    unchanged = Claim("x-same", "x", "a claim the sweep does not touch",
                      lambda r: _verdict(NOT_HELD, 0.1))
    never_run = Claim("x-none", "x", "a claim the sweep has no rows for",
                      lambda r: Verdict(NOT_RUN, "nothing"))

    # judged on something else, the swept attack only in a remark whose text differs (as
    # 002-restore's catalog-wide FGSM beside its per-user one): the sweep does not bear on it
    remark_only = Claim("x-remark", "x", "a claim the sweep only remarks on",
                        lambda r: Verdict(NOT_HELD, "rate 0.1; a remark on the sweep",
                                          numbers={"rate": 0.1}))
    verdicts = [(unchanged, _verdict(NOT_HELD, 0.1)), (never_run, _verdict(NOT_HELD, 0.1)),
                (remark_only, Verdict(NOT_HELD, "rate 0.1", numbers={"rate": 0.1})),
                (_claim("004-fgsm"), Verdict(HELD, "held"))]
    frame = diagnosis_table(results, verdicts)
    assert list(frame.index) == ["x-same", "x-none", "x-remark"]
    assert set(frame["what it takes here"]) == {NO_SWEEP}


# -- bad input ------------------------------------------------------------------------------------
def test_a_sweep_without_eps_is_refused():
    with pytest.raises(ConfigError, match=r"attacks\.i2i\.diagnose\.eps.*at least one eps"):
        load_study_text(STUDY.replace("eps: [16, 128], steps: 10", "eps: []"))


def test_csema_cannot_be_swept():
    swept = """  cs: {kind: csema, recommender: pipe, diagnose: {eps: [8]}}\n  i2i: {"""
    text = STUDY.replace("""  i2i: {""", swept).replace("""  knn: {""", """  bpr: {kind: bpr-mf}
  vbpr: {kind: vbpr, extractor: cnn}
  pipe: {kind: two-stage, first_stage: bpr, ranker: vbpr, k: 20}
  knn: {""")
    with pytest.raises(ConfigError, match=r"attacks\.cs\.diagnose.*c-SEMA has no eps"):
        load_study_text(text)


@pytest.mark.parametrize(("value", "match"), [
    ("eps: [300]", r"diagnose\.eps\[0\]: must lie in \[1, 255\]"),
    ("eps: [16], steps: 0", r"diagnose\.steps"),
    ("eps: [16], step: 3", r"diagnose\.step\b")])
def test_bad_sweep_values_are_refused(value, match):
    with pytest.raises(ConfigError, match=match):
        load_study_text(STUDY.replace("eps: [16, 128], steps: 10", value))


def test_a_sweep_names_only_targets_of_its_attack():
    with pytest.raises(ConfigError, match=r"diagnose\.targets\[0\]: 'knn' is not a target of "
                       r"this attack \(its targets: cnn\)"):
        load_study_text(STUDY.replace("steps: 10}", "steps: 10, targets: [knn]}"))


def test_a_sweep_runs_on_the_targets_it_names():
    text = STUDY.replace("extractor: cnn, eps: [1]", "extractor: [cnn, cnn2], eps: [1]") \
        .replace("steps: 10}", "steps: 10, targets: [cnn2]}") \
        .replace("  cnn: {epochs: 1}", "  cnn: {epochs: 1}\n  cnn2: {epochs: 1}")
    plan = plan_study(load_study_text(text))
    swept = {s.labels["extractor"] for s in plan.of_kind("attack")
             if s.labels["attack"] == f"i2i{DIAGNOSE}"}
    assert swept == {"cnn2"}


def test_a_sweep_whose_steps_cannot_reach_its_eps_warns_before_compute():
    text = STUDY.replace("steps: 1, n_items", "steps: 1, alpha: 1, n_items")
    with pytest.warns(VarsecWarning, match="diagnose: 10 steps x alpha 1"):
        warnings = budget_warnings(load_study_text(text))
    assert [path for path, _ in warnings] == [("attacks", "i2i", "diagnose")]
    assert "cannot reach eps 16, 128" in warnings[0][1]
