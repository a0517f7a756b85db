"""Every claim of the report can fail both ways: on synthetic study results it holds, it does
not hold, and it is inconclusive when a model it rests on is below its sanity floor or an attack
that did not converge leaves its outcome open (issue 13).

The results are built without computing anything: a real study config and plan, every stage
marked done, rows made with the results module and per-unit vectors / info.json written where
the cache keeps them.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from varsec.study.cache import UNITS, StageCache
from varsec.study.execute import StageStatus
from varsec.study.plan import plan_study
from varsec.study.report.claims import (
    DETECTOR_FLOOR,
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    NOT_RUN,
    evaluate_claims,
    extractor_floor,
)
from varsec.study.report.data import StudyResults
from varsec.study.report.render import Section, Table, to_html, to_latex, to_markdown
from varsec.study.results import row, rows_frame
from varsec.study.schema import load_study_text

CATEGORIES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
              "Sneaker", "Bag", "Ankle boot"]
N = 40  # users / cold items / pairs per synthetic vector


class Synthetic:
    """Study results made by hand for one study config."""

    def __init__(self, text: str, out) -> None:
        self.config = load_study_text(text)
        self.plan = plan_study(self.config)
        self.out = out
        self.cache = StageCache(out)
        self.frames: list[pd.DataFrame] = []
        self.rng = np.random.default_rng(0)
        self.info(self.find("data")[0], category_names=CATEGORIES)

    # -- stages -----------------------------------------------------------------------------
    def find(self, kind: str, scenario: str | None = None, **labels) -> list:
        found = [s for s in self.plan.of_kind(kind)
                 if (scenario is None or s.config.get("scenario") == scenario)
                 and all(s.labels.get(k) == v for k, v in labels.items())]
        assert found, (kind, scenario, labels)
        return found

    def one(self, kind: str, scenario: str | None = None, **labels):
        found = self.find(kind, scenario, **labels)
        assert len(found) == 1, (kind, scenario, labels, [s.name for s in found])
        return found[0]

    def info(self, stage, **values) -> None:
        path = self.cache.path(stage) / "info.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(path.read_text()) if path.is_file() else {}
        path.write_text(json.dumps({**old, **values}))

    def units(self, stage, **arrays) -> None:
        path = self.cache.path(stage) / UNITS
        path.parent.mkdir(parents=True, exist_ok=True)
        old = dict(np.load(path)) if path.is_file() else {}
        np.savez(path, **{**old, **arrays})

    def row(self, stage, metric: str, value: float, **fields) -> None:
        self.frames.append(rows_frame([row(metric, value, **fields)], stage.labels,
                                      self.config.study))

    def converged(self, stage, converged: bool) -> None:
        self.info(stage, convergence={"converged": converged, "iterative": True, "steps": 10,
                                      "total_gain": 1.0, "tail_gain": 0.0 if converged else 0.4})

    def vector(self, mean: float, spread: float = 0.01) -> np.ndarray:
        return mean + spread * self.rng.standard_normal(N)

    # -- models fit (or not) for purpose ------------------------------------------------------
    def extractor_accuracy(self, name: str, accuracy: float) -> None:
        for stage in self.find("extractor", extractor=name):
            self.row(stage, "accuracy", accuracy, protocol="classifier-test")

    def recommender_hr(self, name: str, hr: float, popularity: float = 0.2) -> None:
        for stage in self.find("evaluation", attack="none", defense="none", recommender=name):
            if stage.config.get("scenario") != "ranking":
                continue
            self.row(stage, "HR", hr, k=10, protocol="full")
            self.row(stage, "HR_popularity", popularity, k=10, protocol="full")

    def results(self) -> StudyResults:
        table = pd.concat(self.frames, ignore_index=True) if self.frames else \
            rows_frame([], {}, self.config.study)
        statuses = {s.key: StageStatus("done") for s in self.plan}
        return StudyResults(self.config, table, self.plan, statuses, self.out)

    def verdict(self, claim: str):
        return dict((c.id, v) for c, v in evaluate_claims(self.results()))[claim]


# -- 000: AIP -------------------------------------------------------------------------------------
AIP = """
study: aip-synthetic
extractors:
  cnn: {training: standard}
recommenders:
  bpr: {kind: bpr-mf}
  vbpr: {kind: vbpr, extractor: cnn}
  pipe: {kind: two-stage, first_stage: bpr, ranker: vbpr, k: 20}
attacks:
  insa: {kind: insa, recommender: pipe, eps: [8]}
  expa: {kind: expa, recommender: pipe, eps: [8]}
defenses:
  jpeg: {kind: jpeg, strengths: [50], attacks: [insa], adaptive: [insa]}
evaluation:
  protocols: [{kind: full}]
  ks: [5, 10]
"""


def _aip(tmp_path, insa=(0.6, 0.05), expa=(0.2, 0.05), test=(0.30, 0.30),
         jpeg=(0.5, 0.05), adaptive=0.5, fit=True, ranker=0.5,
         pipeline: float | None = None) -> Synthetic:
    """INSA / EXPA as (adversarial, cooperative) cold HR@5 means; test = (HR_test@5 beside the
    adversarial item, beside the cooperative one); ranker: vbpr's own full HR@10; pipeline: the
    clean pipeline's HR_test@10 (None: not recorded)."""
    s = Synthetic(AIP, tmp_path)
    s.extractor_accuracy("cnn", 0.9)
    s.recommender_hr("bpr", 0.5 if fit else 0.1)
    s.recommender_hr("vbpr", ranker)
    if pipeline is not None:
        stage = s.one("evaluation", "two-stage", attack="none", defense="none")
        s.row(stage, "HR_test", pipeline, k=10, protocol="two-stage-20")
    for attack, (adv, coop) in (("insa", insa), ("expa", expa)):
        stage = s.one("evaluation", "promotion", attack=attack, defense="none")
        a, c = s.vector(adv), s.vector(coop)
        s.units(stage, **{"cold|HR_cold@5": a, "cold|HR_coop@5": c,
                          "cold|delta_HR_cold@5": a - c,
                          "cold|HR_test@5": s.vector(test[0], 0.002),
                          "cold|HR_test_coop@5": s.vector(test[1], 0.002)})
        for metric, value in (("HR_cold", adv), ("HR_coop", coop)):
            s.row(stage, metric, value, k=5, protocol="two-stage-20")
    stage = s.one("evaluation", "promotion", attack="insa", defense="jpeg=50")
    s.units(stage, **{"cold|HR_cold@5": s.vector(jpeg[0]), "cold|HR_coop@5": s.vector(jpeg[1])})
    s.row(stage, "HR_cold", jpeg[0], k=5, protocol="two-stage-20")
    s.row(stage, "HR_coop", jpeg[1], k=5, protocol="two-stage-20")
    stage = s.one("evaluation", "promotion", attack="insa+adaptive")
    s.row(stage, "HR_cold", adaptive, k=5, protocol="two-stage-20")
    s.row(stage, "HR_coop", jpeg[1], k=5, protocol="two-stage-20")
    return s


def _aip_verdict(tmp_path, claim, **kwargs):
    s = _aip(tmp_path, **kwargs)
    return s, s.verdict(claim)


def test_insa_beats_the_others_both_ways(tmp_path):
    _, held = _aip_verdict(tmp_path / "a", "000-insa")
    assert held.status == HELD and "Wilcoxon" in held.test
    _, failed = _aip_verdict(tmp_path / "b", "000-insa", insa=(0.2, 0.05), expa=(0.6, 0.05))
    assert failed.status == NOT_HELD


def test_an_unconverged_insa_leaves_its_loss_open_but_not_its_win(tmp_path):
    s = _aip(tmp_path / "a", insa=(0.2, 0.05), expa=(0.6, 0.05))
    s.converged(s.one("attack", attack="insa"), False)
    verdict = s.verdict("000-insa")
    assert verdict.status == INCONCLUSIVE
    assert "did not converge" in verdict.reason and "insa eps 8 on pipe" in verdict.reason
    s = _aip(tmp_path / "b")
    s.converged(s.one("attack", attack="insa"), False)
    assert s.verdict("000-insa").status == HELD  # the attack won without converging


def test_a_recommender_below_popularity_makes_the_aip_claims_inconclusive(tmp_path):
    s, verdict = _aip_verdict(tmp_path, "000-insa", fit=False)
    assert verdict.status == INCONCLUSIVE
    assert "recommender bpr: clean full HR@10 0.1000, not above the popularity ranking's " \
        "0.2000" in verdict.reason
    assert s.verdict("000-promote").status == INCONCLUSIVE


def test_a_pipeline_is_judged_as_a_whole_and_its_weak_ranker_is_noted(tmp_path):
    # a content-only ranker (DVBPR) may lose to popularity alone and still rank the first
    # stage's candidates well: the pipeline beats popularity, the verdict stands
    _, verdict = _aip_verdict(tmp_path / "a", "000-insa", ranker=0.1, pipeline=0.4)
    assert verdict.status == HELD
    assert "ranker vbpr alone: full HR@10 0.1000 vs popularity 0.2000, judged inside " \
        "pipeline pipe" in verdict.evidence
    assert "pipeline pipe (not checked)" not in verdict.evidence  # checked, and said so
    _, verdict = _aip_verdict(tmp_path / "b", "000-insa", ranker=0.5, pipeline=0.15)
    assert verdict.status == INCONCLUSIVE
    assert "recommender pipe: clean HR_test@10 of the pipeline (popularity by full ranking) " \
        "0.1500, not above the popularity ranking's 0.2000" in verdict.reason
    _, verdict = _aip_verdict(tmp_path / "c", "000-insa", pipeline=0.4)
    assert verdict.status == HELD and "ranker vbpr alone" not in verdict.evidence


def test_missing_convergence_and_floors_are_named_but_block_nothing(tmp_path):
    s = Synthetic(AIP, tmp_path)
    stage = s.one("evaluation", "promotion", attack="insa", defense="none")
    s.units(stage, **{"cold|HR_cold@5": s.vector(0.6), "cold|HR_coop@5": s.vector(0.05)})
    stage = s.one("evaluation", "promotion", attack="expa", defense="none")
    s.units(stage, **{"cold|HR_cold@5": s.vector(0.6), "cold|HR_coop@5": s.vector(0.05)})
    verdict = s.verdict("000-promote")
    assert verdict.status == HELD
    assert "convergence of insa eps 8 on pipe (seed 0) not recorded" in verdict.evidence
    assert "HR@10 of bpr against popularity not recorded" in verdict.evidence


def test_attacks_promote_for_nearly_all_combinations(tmp_path):
    _, held = _aip_verdict(tmp_path / "a", "000-promote")
    assert held.status == HELD and "2 of 2 hold, 2 needed" in held.evidence
    _, failed = _aip_verdict(tmp_path / "b", "000-promote", expa=(0.05, 0.05))
    assert failed.status == NOT_HELD and "1 of 2 hold, 2 needed" in failed.evidence
    s = _aip(tmp_path / "c", expa=(0.05, 0.05))
    s.converged(s.one("attack", attack="expa"), False)
    assert s.verdict("000-promote").status == INCONCLUSIVE


def test_availability_both_ways(tmp_path):
    _, held = _aip_verdict(tmp_path / "a", "000-availability", test=(0.29, 0.30))
    assert held.status == HELD and "beside the cooperative one" in held.evidence
    _, failed = _aip_verdict(tmp_path / "b", "000-availability", test=(0.10, 0.30))
    assert failed.status == NOT_HELD and "bound ±0.07" in failed.evidence
    s = _aip(tmp_path / "c", test=(0.29, 0.30))
    s.converged(s.one("attack", attack="insa"), False)
    open_ = s.verdict("000-availability")
    assert open_.status == INCONCLUSIVE and "insa eps 8" in open_.reason


def test_availability_is_not_run_without_the_cooperative_test_hr(tmp_path):
    s = Synthetic(AIP, tmp_path)
    stage = s.one("evaluation", "promotion", attack="insa", defense="none")
    s.units(stage, **{"cold|HR_test@5": s.vector(0.3)})
    verdict = s.verdict("000-availability")
    assert verdict.status == NOT_RUN and "HR_test_coop" in verdict.evidence


def test_transforms_do_not_remove_insa_both_ways(tmp_path):
    _, held = _aip_verdict(tmp_path / "a", "000-transforms")
    assert held.status == HELD and "jpeg=50" in held.evidence
    _, failed = _aip_verdict(tmp_path / "b", "000-transforms", jpeg=(0.05, 0.05))
    assert failed.status == NOT_HELD


def test_adaptive_robustness_both_ways(tmp_path):
    _, held = _aip_verdict(tmp_path / "a", "varsec-adaptive", adaptive=0.01)
    assert held.status == HELD
    s = _aip(tmp_path / "b", adaptive=0.5)
    assert s.verdict("varsec-adaptive").status == NOT_HELD
    s = _aip(tmp_path / "c", adaptive=0.01)
    s.converged(s.one("attack", attack="insa+adaptive"), False)
    verdict = s.verdict("varsec-adaptive")
    assert verdict.status == INCONCLUSIVE and "insa+adaptive eps 8" in verdict.reason


# -- 001: TAaMR -----------------------------------------------------------------------------------
TAAMR = """
study: taamr-synthetic
extractors:
  T: {training: standard}
  AT: {training: pgd-at}
recommenders:
  vbpr-AT: {kind: vbpr, extractor: AT}
  amr-AT: {kind: amr, extractor: AT}
attacks:
  fgsm: {kind: fgsm, extractor: [T, AT], source_category: Sandal, target_category: Sneaker,
         eps: [8]}
  pgd: {kind: pgd, extractor: [T, AT], source_category: Sandal, target_category: Sneaker,
        eps: [4, 8]}
  cw: {kind: cw, extractor: [T], source_category: Sandal, target_category: Sneaker, eps: [255]}
evaluation:
  protocols: [{kind: full}]
  chr_k: 20
"""


def _taamr(tmp_path, vbpr_rise=1.0, amr_rise=0.0, t_accuracy=0.9, rates=None) -> Synthetic:
    s = Synthetic(TAAMR, tmp_path)
    s.extractor_accuracy("T", t_accuracy)
    s.extractor_accuracy("AT", 0.8)
    for rec in ("vbpr-AT", "amr-AT"):
        s.recommender_hr(rec, 0.5)
        clean = s.one("evaluation", "category", recommender=rec, attack="none")
        s.units(clean, **{"users|CHR@20": s.vector(1.0, 0.1)})
        rise = vbpr_rise if rec == "vbpr-AT" else amr_rise
        for stage in s.find("evaluation", "category", recommender=rec):
            if stage.labels["attack"] != "none":
                s.units(stage, **{"users|CHR@20": s.vector(1.0 + rise, 0.1)})
    rates = rates or {}
    for stage in s.find("attack"):
        key = (stage.labels["attack"], stage.labels["extractor"], stage.labels["eps"])
        default = 0.9 if stage.labels["extractor"] == "T" else 0.1
        s.row(stage, "success_rate", rates.get(key, default), protocol="attack")
    return s


def test_at_does_not_stop_the_push_on_vbpr_both_ways(tmp_path):
    held = _taamr(tmp_path / "a").verdict("001-at-push")
    assert held.status == HELD and "vbpr-AT on AT (pgd-at)" in held.evidence
    assert "amr-AT" not in held.evidence  # VBPR only: AMR has its own claim
    assert _taamr(tmp_path / "b", vbpr_rise=0.0).verdict("001-at-push").status == NOT_HELD


def test_a_push_outside_001s_premise_leaves_the_chr_claims_inconclusive(tmp_path):
    def with_categories(s, source_rank, target_rank):
        for stage in s.find("evaluation", "category"):
            if stage.labels["attack"] != "none":
                s.info(stage, categories={"categories": 10, "source": "Sandal",
                                          "source_rank": source_rank, "target": "Sneaker",
                                          "target_rank": target_rank})
        return s

    # Sandal -> Sneaker, both low in popularity: not 001's experiment, whichever way it goes
    for rise in (1.0, 0.0):
        s = with_categories(_taamr(tmp_path / f"no{rise}", vbpr_rise=rise), 8, 7)
        for claim in ("001-at-push", "001-amr-at"):
            verdict = s.verdict(claim)
            assert verdict.status == INCONCLUSIVE
            assert "001's premise does not hold: Sandal (popularity rank 8/10) -> Sneaker " \
                "(7/10)" in verdict.reason
    s = with_categories(_taamr(tmp_path / "yes"), 8, 1)  # a very popular target: the premise
    assert s.verdict("001-at-push").status == HELD


def test_evasion_runs_do_not_count_for_001s_poisoning_claims(tmp_path):
    evasion = TAAMR.replace("eps: [4, 8]}", "eps: [4, 8], threat: evasion}").replace(
        "eps: [8]}", "eps: [8], threat: evasion}").replace(
        "eps: [255]}", "eps: [255], threat: evasion}")
    s = Synthetic(evasion, tmp_path)
    for claim in ("001-at-push", "001-amr-at"):
        verdict = s.verdict(claim)
        assert verdict.status == NOT_RUN and "evasion runs do not count" in verdict.evidence


def test_at_push_is_not_run_without_vbpr(tmp_path):
    s = Synthetic(TAAMR.replace("  vbpr-AT: {kind: vbpr, extractor: AT}\n", ""), tmp_path)
    verdict = s.verdict("001-at-push")
    assert verdict.status == NOT_RUN and "VBPR" in verdict.evidence


def test_amr_with_at_stops_the_push_both_ways(tmp_path):
    held = _taamr(tmp_path / "a").verdict("001-amr-at")
    assert held.status == HELD and "3 of 3 hold, 3 needed" in held.evidence
    failed = _taamr(tmp_path / "b", amr_rise=1.0).verdict("001-amr-at")
    assert failed.status == NOT_HELD and "0 of 3 hold" in failed.evidence
    s = _taamr(tmp_path / "c")
    s.converged(s.one("attack", attack="pgd", extractor="AT", eps=8.0), False)
    open_ = s.verdict("001-amr-at")
    assert open_.status == INCONCLUSIVE and "pgd eps 8 on AT" in open_.reason


def test_pgd8_against_other_attack_kinds_both_ways(tmp_path):
    held = _taamr(tmp_path / "a", rates={("pgd", "T", 8.0): 1.0}).verdict("001-pgd8")
    assert held.status == HELD
    assert "T: pgd eps 8 vs fgsm eps 8" in held.evidence and "vs cw eps 255" in held.evidence
    assert "pgd eps 4" not in held.evidence  # PGD at eps 4 is no rival of PGD at eps 8
    failed = _taamr(tmp_path / "b", rates={("pgd", "T", 8.0): 0.5}).verdict("001-pgd8")
    assert failed.status == NOT_HELD


def test_pgd8_is_not_run_without_another_attack_kind(tmp_path):
    text = TAAMR.split("  fgsm:")[0] + TAAMR.split("eps: [8]}\n", 1)[1].split("  cw:")[0] + \
        "evaluation:\n  protocols: [{kind: full}]\n"
    s = Synthetic(text, tmp_path)
    for stage in s.find("attack"):
        s.row(stage, "success_rate", 0.9, protocol="attack")
    verdict = s.verdict("001-pgd8")
    assert verdict.status == NOT_RUN and "another attack kind" in verdict.evidence


def test_an_extractor_at_chance_makes_its_claims_inconclusive(tmp_path):
    s = _taamr(tmp_path, t_accuracy=0.22, rates={("pgd", "T", 8.0): 0.0})
    verdict = s.verdict("001-pgd8")
    assert verdict.status == INCONCLUSIVE
    assert "extractor T: clean accuracy 0.22, below the floor 0.55 (10 classes)" in \
        verdict.reason
    assert s.verdict("001-at-sr").status == INCONCLUSIVE
    assert extractor_floor(10) == pytest.approx(0.55) and extractor_floor(2) == 0.75


def test_at_lowers_success_both_ways(tmp_path):
    assert _taamr(tmp_path / "a").verdict("001-at-sr").status == HELD
    high = {(a, "AT", e): 0.95 for a, e in (("fgsm", 8.0), ("pgd", 4.0), ("pgd", 8.0))}
    assert _taamr(tmp_path / "b", rates=high).verdict("001-at-sr").status == NOT_HELD
    s = _taamr(tmp_path / "c")
    s.converged(s.one("attack", attack="pgd", extractor="AT", eps=4.0), False)
    open_ = s.verdict("001-at-sr")
    assert open_.status == INCONCLUSIVE and "pgd eps 4 on AT (seed 0)" in open_.reason


# -- 002: Yin et al. ------------------------------------------------------------------------------
YIN = """
study: yin-synthetic
extractors:
  cnn: {training: standard}
recommenders:
  vbpr: {kind: vbpr, extractor: cnn}
attacks:
  fgsm: {kind: fgsm, objective: bpr, recommender: vbpr, eps: [16]}
  pgd: {kind: pgd, objective: bpr, recommender: vbpr, eps: [16]}
defenses:
  recon: {kind: reconstruction, attacks: [fgsm]}
evaluation:
  protocols: [{kind: full}]
"""


def _yin(tmp_path, clean=0.5, attacked=0.1, restored=0.45, defended_clean=0.5,
         detection=0.9, calibration=0.9, pgd=None) -> Synthetic:
    s = Synthetic(YIN, tmp_path)
    s.extractor_accuracy("cnn", 0.9)
    s.recommender_hr("vbpr", clean)
    values = {("none", "none"): clean, ("fgsm", "none"): attacked,
              ("pgd", "none"): attacked if pgd is None else pgd, ("fgsm", "recon"): restored,
              ("none", "recon"): defended_clean}
    for stage in s.find("evaluation", "ranking"):
        key = (stage.labels["attack"], stage.labels["defense"])
        s.units(stage, **{"full|HR@10": (s.rng.random(N * 5) < values[key]).astype(float)})
    fit = next(d for d in s.find("defense") if d.config.get("action") == "fit")
    s.info(fit, calibration={"threshold": 1.0, "method": "accuracy", "accuracy": calibration})
    s.row(fit, "detection_accuracy", detection, protocol="detection", attack="fgsm", eps=16.0)
    return s


def test_collapse_measured_only_catalog_wide_is_inconclusive(tmp_path):
    """002's collapse is measured with each user's list attacked for that user; a catalog-wide
    attack (one image per item) is another threat model, whatever it finds."""
    for attacked in (0.1, 0.45):
        verdict = _yin(tmp_path / str(attacked), attacked=attacked).verdict("002-collapse")
        assert verdict.status == INCONCLUSIVE
        assert verdict.reason.startswith("measured under another threat model")
        assert "catalog-wide" in verdict.evidence and "vbpr / pgd eps 16" in verdict.evidence


PER_USER_ATTACKS = """
  fgsm-user: {kind: fgsm, objective: bpr-per-user, recommender: vbpr, eps: [16]}
  pgd-user: {kind: pgd, objective: bpr-per-user, recommender: vbpr, eps: [16]}
defenses:"""
YIN_PER_USER = YIN.replace("\ndefenses:", PER_USER_ATTACKS).replace(
    "protocols: [{kind: full}]", "protocols: [{kind: full}, {kind: sampled, negatives: 20}]")


def _yin_per_user(tmp_path, clean=0.5, fgsm=0.1, pgd=0.05, catalog=0.45,
                  sample: int | None = None, eps: str = "[16]", eps8: float = 0.4,
                  restored: float | None = None, schedule: str = "") -> Synthetic:
    """Yin's claims with per-user attacks (``sample``: how many of the clean evaluation's users
    they cover; ``eps``: the per-user FGSM's budgets, at eps 8 reaching ``eps8``) beside
    catalog-wide ones; with ``restored``, the reconstruction (trained on 002's schedule, the
    defaults, or on ``schedule``, its params) also applied to the per-user FGSM, which it
    brings to ``restored`` (the catalog-wide one stays at ``catalog``, clean images at
    ``clean``)."""
    text = YIN_PER_USER.replace("objective: bpr-per-user, recommender: vbpr, eps: [16]}",
                                f"objective: bpr-per-user, recommender: vbpr, eps: {eps}}}", 1)
    if restored is not None:
        params = f", params: {{{schedule}}}" if schedule else ""
        text = text.replace("recon: {kind: reconstruction, attacks: [fgsm]}",
                            f"recon: {{kind: reconstruction, attacks: [fgsm, fgsm-user]{params}}}")
    s = Synthetic(text, tmp_path)
    s.extractor_accuracy("cnn", 0.9)
    s.recommender_hr("vbpr", clean)
    values = {"none": clean, "fgsm": catalog, "pgd": catalog, "fgsm-user": fgsm,
              "pgd-user": pgd, "fgsm-user/recon": restored}
    users = np.arange(3, 3 + N * 5)
    chosen = users if sample is None else np.sort(s.rng.choice(users, sample, replace=False))
    for stage in s.find("evaluation", "ranking",
                        **({} if restored is not None else {"defense": "none"})):
        attack = stage.labels["attack"]
        key = attack if stage.labels["defense"] == "none" or attack != "fgsm-user" \
            else "fgsm-user/recon"
        value = eps8 if key == "fgsm-user" and stage.labels["eps"] == 8 else values[key]
        them = chosen if attack.endswith("-user") else users
        s.units(stage, **{"sampled-20|HR@10": (s.rng.random(len(them)) < value).astype(float),
                          "sampled-20|users": them})
    return s


def test_attacks_collapse_hr_both_ways(tmp_path):
    held = _yin_per_user(tmp_path / "a").verdict("002-collapse")
    assert held.status == HELD
    assert "per user (002's threat model): vbpr / pgd-user eps 16" in held.evidence
    assert "catalog-wide (one image per item" in held.evidence  # reported, decides nothing
    assert _yin_per_user(tmp_path / "b", fgsm=0.45).verdict("002-collapse").status == NOT_HELD
    s = _yin_per_user(tmp_path / "c", pgd=0.45)  # FGSM collapses HR, PGD stops short
    assert s.verdict("002-collapse").status == NOT_HELD
    s.converged(s.one("attack", attack="pgd-user"), False)
    open_ = s.verdict("002-collapse")
    assert open_.status == INCONCLUSIVE and "pgd-user eps 16 on vbpr" in open_.reason
    low = _yin_per_user(tmp_path / "d", clean=0.1, fgsm=0.01, pgd=0.01)  # below popularity
    assert low.verdict("002-collapse").status == INCONCLUSIVE
    assert "recommender vbpr" in low.verdict("002-collapse").reason


def test_collapse_is_judged_at_002s_eps_16_or_more(tmp_path):
    """002 Table 2 runs at eps 16 (Fig. 6: eps 8 barely moves the model): a per-user run below
    it is reported, not judged, and alone it leaves the verdict open."""
    s = _yin_per_user(tmp_path / "a", eps="[8, 16]")  # eps 8 stops at 0.4 of 0.5
    verdict = s.verdict("002-collapse")
    assert verdict.status == HELD
    assert "per user below 002's eps 16 (not judged): vbpr / fgsm-user eps 8" in verdict.evidence
    alone = _yin_per_user(tmp_path / "b", eps="[8]", fgsm=0.1, pgd=0.45)
    assert alone.verdict("002-collapse").status == NOT_HELD  # PGD at 16 stops short
    only_below = YIN_PER_USER.replace("  pgd-user: {kind: pgd, objective: bpr-per-user, "
                                      "recommender: vbpr, eps: [16]}\n", "")
    s = Synthetic(only_below.replace("objective: bpr-per-user, recommender: vbpr, eps: [16]}",
                                     "objective: bpr-per-user, recommender: vbpr, eps: [8]}"),
                  tmp_path / "d")
    s.extractor_accuracy("cnn", 0.9)
    s.recommender_hr("vbpr", 0.5)
    for stage in s.find("evaluation", "ranking", defense="none"):
        value = 0.5 if stage.labels["attack"] == "none" else 0.1
        s.units(stage, **{"sampled-20|HR@10": (s.rng.random(N * 5) < value).astype(float),
                          "sampled-20|users": np.arange(N * 5)})
    open_ = s.verdict("002-collapse")
    assert open_.status == INCONCLUSIVE
    assert open_.reason.startswith("measured below 002's budget: the per-user attacks ran under "
                                   "eps 16")


def test_collapse_pairs_a_per_user_sample_with_the_same_clean_users(tmp_path):
    s = _yin_per_user(tmp_path / "a", sample=60)
    verdict = s.verdict("002-collapse")
    assert verdict.status == HELD and "60 users" in verdict.evidence
    s = _yin_per_user(tmp_path / "b", fgsm=0.5, pgd=0.5, sample=60)
    assert s.verdict("002-collapse").status == NOT_HELD


def _yin_restore(tmp_path, clean=0.5, attacked=0.1, restored=0.45, eps="[16]",
                 sample: int | None = None, schedule: str = "") -> Synthetic:
    """002's restore claim: the per-user FGSM and PGD bring HR@10 to ``attacked``; the
    reconstruction brings the FGSM back to ``restored``."""
    return _yin_per_user(tmp_path, clean=clean, fgsm=attacked, pgd=attacked, eps=eps,
                         eps8=attacked, sample=sample, restored=restored, schedule=schedule)


def test_reconstruction_restores_under_002s_threat_model_both_ways(tmp_path):
    held = _yin_restore(tmp_path / "a").verdict("002-restore")
    assert held.status == HELD
    assert "per user (002's threat model): vbpr / fgsm-user / recon: HR@10" in held.evidence
    assert "catalog-wide (one image per item" in held.evidence  # reported, decides nothing
    assert _yin_restore(tmp_path / "b", restored=0.12).verdict("002-restore").status == NOT_HELD
    low = _yin_restore(tmp_path / "c", clean=0.1, attacked=0.01, restored=0.09)
    assert low.verdict("002-restore").status == INCONCLUSIVE  # below popularity
    sampled = _yin_restore(tmp_path / "d", sample=60).verdict("002-restore")
    assert sampled.status == HELD and "60 users" in sampled.evidence


def test_a_failure_of_a_defense_trained_below_002s_schedule_is_left_open(tmp_path):
    """An under-trained defense under-states the defense, as an unconverged attack under-states
    the attack: its failure leaves the verdict open; its success still counts."""
    short = "recon_epochs: 2, mix_epochs: 0"
    failed = _yin_restore(tmp_path / "a", restored=0.12, schedule=short).verdict("002-restore")
    assert failed.status == INCONCLUSIVE
    assert "defense recon trained 2 + 0 epochs, under 002's 10 + 3" in failed.reason
    assert "[left open: defense recon trained 2 + 0 epochs" in failed.evidence
    assert _yin_restore(tmp_path / "b", schedule=short).verdict("002-restore").status == HELD
    full = _yin_restore(tmp_path / "c", restored=0.12,
                        schedule="recon_epochs: 10, mix_epochs: 3").verdict("002-restore")
    assert full.status == NOT_HELD


def test_restore_measured_otherwise_is_inconclusive(tmp_path):
    """Catalog-wide FGSM only, a per-user FGSM below eps 16, or one that did not lower HR@10
    (nothing to restore): reported, and the verdict is open, whatever the numbers."""
    for restored in (0.45, 0.1):
        only_catalog = _yin(tmp_path / f"c{restored}", restored=restored).verdict("002-restore")
        assert only_catalog.status == INCONCLUSIVE
        assert only_catalog.reason.startswith("not measured as 002 measures it")
        assert "catalog-wide" in only_catalog.evidence
    below = _yin_restore(tmp_path / "e", eps="[8]").verdict("002-restore")
    assert below.status == INCONCLUSIVE and "per user below 002's eps 16" in below.evidence
    idle = _yin_restore(tmp_path / "i", attacked=0.5, restored=0.5).verdict("002-restore")
    assert idle.status == INCONCLUSIVE and "nothing to restore" in idle.reason


def test_reconstruction_is_harmless_both_ways(tmp_path):
    held = _yin(tmp_path / "a").verdict("002-harmless")
    assert held.status == HELD and "vbpr / recon: HR@10" in held.evidence
    s = _yin(tmp_path / "b", restored=0.1, defended_clean=0.2)
    assert s.verdict("002-harmless").status == NOT_HELD
    s = _yin(tmp_path / "c", clean=0.1)  # below the popularity ranking's 0.2
    assert s.verdict("002-harmless").status == INCONCLUSIVE
    assert "recommender vbpr" in s.verdict("002-harmless").reason


def test_detector_both_ways_and_at_chance(tmp_path):
    held = _yin(tmp_path / "a").verdict("002-detect")
    assert held.status == HELD
    failed = _yin(tmp_path / "b", detection=0.7).verdict("002-detect")
    assert failed.status == NOT_HELD and "detection accuracy 0.7000" in failed.evidence
    chance = _yin(tmp_path / "c", detection=0.47, calibration=0.5).verdict("002-detect")
    assert chance.status == INCONCLUSIVE
    assert f"calibration accuracy 0.50, below the floor {DETECTOR_FLOOR:.2f}" in chance.reason


def test_protocols_agree_both_ways(tmp_path):
    s = Synthetic(YIN.replace("[{kind: full}]", "[{kind: full}, {kind: sampled, negatives: 20}]")
                  .replace("  vbpr: {kind: vbpr, extractor: cnn}",
                           "  vbpr: {kind: vbpr, extractor: cnn}\n  bpr: {kind: bpr-mf}"),
                  tmp_path)
    for rec, full, sampled in (("vbpr", 0.3, 0.8), ("bpr", 0.2, 0.7)):
        stage = s.one("evaluation", "ranking", recommender=rec, attack="none", defense="none")
        s.row(stage, "HR", full, k=10, protocol="full")
        s.row(stage, "HR", sampled, k=10, protocol="sampled-20")
    assert s.verdict("varsec-protocols").status == HELD
    stage = s.one("evaluation", "ranking", recommender="bpr", attack="none", defense="none")
    s.row(stage, "HR", 0.95, k=10, protocol="sampled-20")  # bpr overtakes vbpr when sampled
    assert s.verdict("varsec-protocols").status == NOT_HELD
    # The floor is judged by full ranking when the study has it: popularity beating bpr only
    # among 20 sampled negatives (which flatter popularity) blocks nothing ...
    s.row(stage, "HR_popularity", 0.99, k=10, protocol="sampled-20")
    assert s.verdict("varsec-protocols").status == NOT_HELD
    # ... popularity beating it by full ranking makes the verdict inconclusive.
    s.row(stage, "HR_popularity", 0.5, k=10, protocol="full")
    unfit = s.verdict("varsec-protocols")
    assert unfit.status == INCONCLUSIVE
    assert "recommender bpr: clean full HR@10 " in unfit.reason
    assert "not above the popularity ranking's" in unfit.reason


# -- 004: thesis ----------------------------------------------------------------------------------
THESIS = """
study: thesis-synthetic
extractors:
  T: {training: standard}
  AT: {training: pgd-at}
  CAT: {training: curriculum-at}
attacks:
  pgd: {kind: pgd, items: pairs, extractor: [T, AT, CAT], eps: [4, 8]}
  fgsm: {kind: fgsm, items: pairs, extractor: [T], eps: [4, 8]}
evaluation:
  rank_min: [1, 3]
"""


def _thesis(tmp_path, rates=None, accuracy=0.9, text=THESIS) -> Synthetic:
    s = Synthetic(text, tmp_path)
    defaults = {("pgd", "T"): 0.98, ("pgd", "AT"): 0.01, ("pgd", "CAT"): 0.15,
                ("fgsm", "T"): 0.002}
    defaults.update(rates or {})
    for name in s.config.extractors:
        s.extractor_accuracy(name, accuracy)
    for stage in s.find("evaluation", "item2item"):
        value = defaults[(stage.labels["attack"], stage.labels["extractor"])]
        s.row(stage, "success_rate", value, k=3, protocol="item2item", ci=(value, value))
    return s


def test_pgd_near_total_both_ways(tmp_path):
    assert _thesis(tmp_path / "a").verdict("004-pgd").status == HELD
    s = _thesis(tmp_path / "b", rates={("pgd", "T"): 0.5})
    assert s.verdict("004-pgd").status == NOT_HELD
    s.converged(s.one("attack", attack="pgd", extractor="T", eps=8.0), False)
    open_ = s.verdict("004-pgd")
    assert open_.status == INCONCLUSIVE and "pgd eps 8 on T" in open_.reason


def test_fgsm_rare_both_ways(tmp_path):
    held = _thesis(tmp_path / "a").verdict("004-fgsm")
    assert held.status == HELD and "T eps 4" in held.evidence and "T eps 8" in held.evidence
    failed = _thesis(tmp_path / "b", rates={("fgsm", "T"): 0.03}).verdict("004-fgsm")
    assert failed.status == NOT_HELD and "threshold 0.01" in failed.evidence


def test_at_stops_pgd_both_ways(tmp_path):
    held = _thesis(tmp_path / "a").verdict("004-at")
    assert held.status == HELD and "CAT" not in held.evidence  # curriculum AT is its own claim
    s = _thesis(tmp_path / "b", rates={("pgd", "AT"): 0.4})
    assert s.verdict("004-at").status == NOT_HELD
    s = _thesis(tmp_path / "c")
    s.converged(s.one("attack", attack="pgd", extractor="AT", eps=8.0), False)
    assert s.verdict("004-at").status == INCONCLUSIVE


def test_cat_between_at_and_undefended_both_ways(tmp_path):
    held = _thesis(tmp_path / "a").verdict("004-cat")
    assert held.status == HELD and "eps 8: CAT 0.1500 vs undefended 0.9800" in held.evidence
    failed = _thesis(tmp_path / "b", rates={("pgd", "CAT"): 0.005}).verdict("004-cat")
    assert failed.status == NOT_HELD  # CAT as strong as AT: not between
    unfit = _thesis(tmp_path / "c", accuracy=0.3).verdict("004-cat")
    assert unfit.status == INCONCLUSIVE and "extractor CAT: clean accuracy 0.30" in unfit.reason


def test_cat_is_not_run_without_a_curriculum_extractor(tmp_path):
    text = THESIS.replace("  CAT: {training: curriculum-at}\n", "").replace(", CAT]", "]")
    verdict = _thesis(tmp_path, text=text).verdict("004-cat")
    assert verdict.status == NOT_RUN and "curriculum-AT" in verdict.evidence


# -- rendering ------------------------------------------------------------------------------------
def test_inconclusive_is_rendered_as_a_badge_everywhere(tmp_path):
    frame = pd.DataFrame([{"verdict": INCONCLUSIVE}, {"verdict": HELD}], index=["a", "b"])
    table = Table(frame, "claims", "claims")
    page = to_html("t", [Section("Claims", [("table", table)])])
    assert '<td class="inconclusive">inconclusive</td>' in page
    assert ".inconclusive{" in page
    assert "| a | inconclusive |" in to_markdown("t", [Section("Claims", [("table", table)])],
                                                 tmp_path)
    assert r"a & inconclusive \\" in to_latex(table)


def test_the_evaluations_write_the_floors_and_the_report_counts_inconclusive(tiny_run):
    table = tiny_run.table
    popularity = table[table["metric"] == "HR_popularity"]
    assert len(popularity) and set(popularity["attack"]) == {"none"}
    assert set(popularity["defense"]) == {"none"} and popularity["value"].between(0, 1).all()
    # one ranking per protocol and cutoff, whichever recommender's evaluation measured it
    assert popularity.groupby(["protocol", "k"])["value"].nunique().max() == 1
    assert {"full", "sampled-20"} <= set(popularity["protocol"])
    cooperative = table[table["metric"] == "HR_test_coop"]
    assert set(cooperative["attack"]) == {"insa", "expa"}
    assert cooperative["value"].between(0, 1).all()
    markdown = (tiny_run.out / "report.md").read_text()
    assert re.search(r"\d+ held, \d+ not held, \d+ inconclusive \(a model the verdict rests on",
                     markdown)
