"""The papers' headline claims, re-tested on this study's results.

A :class:`Claim` is a function over :class:`~varsec.study.report.data.StudyResults` that returns
a :class:`Verdict`: ``held``, ``not held``, ``inconclusive`` (with the reason) or ``not run``
(the study has no rows for it), the numbers behind the verdict and the significance test used.
Paired tests run on the per-unit vectors (users, cold items, pairs) the evaluation stages kept,
with the study's test (Wilcoxon signed-rank by default) and significance level.

A verdict rests only on models that work and attacks that did their job:

* **sanity floors**: every extractor a claim rests on (trained here) must reach a clean test
  accuracy of at least :func:`extractor_floor` (halfway from chance to perfect: 0.55 on 10
  classes); every recommender must rank better than popularity (clean HR@10 above
  ``HR_popularity@10``, by full ranking when the study has it: with a few uniformly sampled
  negatives, mostly from the long tail, popularity looks far better than it is, and a model
  that beats it by full ranking may not beat it there; a two-stage pipeline is judged as a
  whole, and its first stage on its own); every detector
  must reach a balanced accuracy of at least :data:`DETECTOR_FLOOR` on its calibration set.
  A model below its floor makes the claim ``inconclusive`` and the evidence names it and its
  figure; a figure that was not recorded is named as "not checked" and blocks nothing;
* **convergence**: an attack that did not converge (its stage's ``info["convergence"]``)
  under-states the attack. A comparison whose outcome that would explain (a defense that
  "works", an attack that "fails") is left open, and a claim whose verdict turns on open
  comparisons is ``inconclusive``; an attack that worked without converging still counts.
  Each claim's docstring says which of its outcomes an unconverged attack leaves open.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from varsec.study.plan import ADAPTIVE
from varsec.study.report.data import StudyResults
from varsec.study.report.robustness import INEFFECTIVE, ROBUST, UNTESTED, robustness
from varsec.study.results import CLEAN
from varsec.study.stages import Stage

HELD, NOT_HELD, NOT_RUN = "held", "not held", "not run"
INCONCLUSIVE = "inconclusive"

# Sanity floors: a verdict rests only on models that work (issue 13).
DETECTOR_FLOOR = 0.6  # balanced accuracy on the detector's own calibration set (chance: 0.5)
RECOMMENDER_K = 10  # the cutoff of the recommender floor (the nearest the study measured)


def extractor_floor(classes: int) -> float:
    """The clean accuracy an extractor's classifier must reach: halfway from chance to perfect,
    ``(1 + 1/C) / 2`` (0.55 on Fashion-MNIST's 10 categories, 0.75 on 2)."""
    return (1.0 + 1.0 / classes) / 2.0


@dataclass
class Verdict:
    """The outcome of re-testing one claim; ``reason`` says why it is inconclusive."""

    status: str
    evidence: str
    test: str = ""
    numbers: dict[str, float] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class Claim:
    """A headline claim of one of the works and how it is checked. A claim is checked on the
    white-box results on the platform's models (no attack measured on a model it was not
    crafted on, no attacker's surrogate) unless it is about transfer itself (``transfer``)."""

    id: str
    paper: str
    statement: str
    check: Callable[[StudyResults], Verdict]
    transfer: bool = False

    def judge(self, results: StudyResults) -> Verdict:
        """The verdict on ``results`` (their white-box part on the platform's models unless
        the claim is about transfer)."""
        return self.check(results if self.transfer else results.platform())


def _not_run(what: str) -> Verdict:
    return Verdict(NOT_RUN, f"the study has no {what}.")


def _paired(results: StudyResults, a: np.ndarray, b: np.ndarray) -> tuple[float, str]:
    """p-value of the study's paired test of a vs b (two-sided) and its description."""
    from varsec.metrics.stats import paired_test

    method = results.config.evaluation.test
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 2:
        return float("nan"), f"{method} (too few pairs)"
    test = paired_test(a[keep], b[keep], method=method)
    name = "Wilcoxon signed-rank" if method == "wilcoxon" else "paired t-test"
    return test.p_value, f"{name}, n={test.n}"


def _alpha(results: StudyResults) -> float:
    return results.config.evaluation.significance


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.4f}"


def _attack_name(stage: Stage) -> str:
    labels = stage.labels
    eps = f" eps {labels['eps']:g}" if labels.get("eps") is not None else ""
    target = labels.get("recommender") or labels.get("extractor") or "?"
    return f"{labels['attack']}{eps} on {target} (seed {labels.get('seed')})"


class _Evidence:
    """Collects the comparisons behind a claim, the models they rest on and the attacks they
    used.

    A claim holds when at least ``need`` (a share, all by default) of its comparisons hold. It
    is **inconclusive** when a model it rests on is below its sanity floor (see
    :meth:`extractor`, :meth:`recommender`, :meth:`detector`), or when the outcome turns on
    comparisons that an attack which did not converge leaves open. An unconverged attack
    under-states the attack, so each comparison names the attacks whose under-statement would
    explain its outcome: ``doubt_if_ok`` when holding favours the weaker attack (a defense
    works, an attack fails), ``doubt_if_not`` when failing does. A convergence record that is
    missing (older caches, stand-in stages) is reported in the evidence but blocks nothing.
    """

    def __init__(self, results: StudyResults, test: str = "") -> None:
        self.results = results
        self.test = test
        self.lines: list[str] = []
        self.numbers: dict[str, float] = {}
        self.held = True
        self.outcomes: list[tuple[bool, bool]] = []  # (holds, outcome left open)
        self.unfit: dict[str, str] = {}  # model -> why it is below its floor
        self.notes: dict[str, None] = {}  # ordered set of "not recorded" remarks
        self.remarks: dict[str, None] = {}  # what was checked and passed, worth saying
        self.open: dict[str, None] = {}  # attacks that did not converge
        self.why_open: dict[str, None] = {}  # other reasons a failure is left open
        self._checked: set[str] = set()

    def p_value(self, a: np.ndarray, b: np.ndarray) -> float:
        """The study's paired test of a vs b; remembers its description."""
        p, self.test = _paired(self.results, a, b)
        return p

    def significant(self, p: float) -> bool:
        return p < _alpha(self.results)

    def add(self, key: str, ok: bool, number: float, line: str,
            doubt_if_ok: list[str] | tuple[str, ...] = (),
            doubt_if_not: list[str] | tuple[str, ...] = (), open_if_not: str = "") -> None:
        """One comparison; ``doubt_if_*``: unconverged attacks that would explain it;
        ``open_if_not``: another reason a failure does not decide (a defense trained below the
        paper's schedule)."""
        ok = bool(ok)
        doubt = list(doubt_if_ok if ok else doubt_if_not)
        why = "" if ok else open_if_not
        self.held &= ok
        self.numbers[key] = float(number)
        if doubt:
            line += f" [left open: {', '.join(doubt)} did not converge]"
        if why:
            line += f" [left open: {why}]"
            self.why_open[why] = None
        self.lines.append(line)
        self.outcomes.append((ok, bool(doubt) or bool(why)))

    # -- attacks ------------------------------------------------------------------------------
    def unconverged(self, stages: list[Stage] | tuple[Stage, ...]) -> list[str]:
        """The iterative attacks upstream of ``stages`` that did not converge (by name)."""
        found: list[str] = []
        for stage in stages:
            for attack, record in self.results.convergence(stage):
                name = _attack_name(attack)
                if record is None:
                    self.notes[f"convergence of {name} not recorded"] = None
                elif record.get("iterative", True) and not record.get("converged", True):
                    found.append(name)
                    self.open[f"{name}: {record.get('steps', '?')} steps, last gain "
                              f"{_fmt(record.get('tail_gain'))} of "
                              f"{_fmt(record.get('total_gain'))}"] = None
        return sorted(set(found))

    def attacks_of_rows(self, rows: pd.DataFrame) -> list[str]:
        """:meth:`unconverged` for the attack stages behind result rows."""
        stages: list[Stage] = []
        for labels in rows[["attack", "eps", "extractor", "recommender", "seed"]] \
                .drop_duplicates().itertuples(index=False):
            eps = None if pd.isna(labels.eps) else float(labels.eps)
            for stage in self.results.attack_stages(attack=str(labels.attack), eps=eps):
                if not pd.isna(labels.seed) and stage.labels.get("seed") != int(labels.seed):
                    continue
                target = labels.extractor if pd.isna(labels.recommender) else \
                    labels.recommender
                if target in (stage.labels.get("extractor"), stage.labels.get("recommender")):
                    stages.append(stage)
        return self.unconverged(stages)

    # -- models -------------------------------------------------------------------------------
    def extractor(self, name: str | None) -> None:
        """An extractor trained here must classify the catalog's categories with a clean
        accuracy of at least :func:`extractor_floor` (a pretrained backbone's head is not a
        catalog classifier: it is not checked)."""
        if not name or f"x:{name}" in self._checked:
            return
        self._checked.add(f"x:{name}")
        section = self.results.config.extractors.get(str(name))
        if section is None or (section.training == "none" and not section.checkpoint):
            return
        accuracy, classes = self.results.clean_accuracy(name), self.results.classes()
        if accuracy is None or not classes:
            self.notes[f"clean accuracy of extractor {name} not recorded"] = None
            return
        floor = extractor_floor(classes)
        if accuracy < floor:
            self.unfit[f"extractor {name}"] = (
                f"extractor {name}: clean accuracy {accuracy:.2f}, below the floor {floor:.2f} "
                f"({classes} classes)")

    def recommender(self, name: str | None) -> None:
        """A recommender must beat the popularity ranking: clean HR@10 above
        ``HR_popularity@10`` under :func:`_floor_protocol`. A two-stage pipeline is judged as a
        whole (its clean ``HR_test@10`` on the same test users, beside the popularity ranking's)
        and its first stage on its own: the ranker only reorders the first stage's candidates,
        and a content-only ranker such as DVBPR (no item bias) cannot learn a popularity the
        images do not show, so its own full ranking is noted, not a floor."""
        if not name or f"r:{name}" in self._checked:
            return
        self._checked.add(f"r:{name}")
        results = self.results
        protocol = _floor_protocol(results)
        k = _cutoff(list(results.config.evaluation.ks), RECOMMENDER_K)
        parts = results.components(name)
        if parts == [name]:
            self._above_popularity(name, results.clean_hr(name, protocol, k), protocol, k,
                                   f"clean {protocol} HR@{k}")
            return
        first, ranker = parts[0], parts[-1]
        pipeline = results.clean_pipeline_hr(name, k)
        self._above_popularity(name, pipeline, protocol, k, f"clean HR_test@{k} of the "
                               f"pipeline (popularity by {protocol} ranking)", baseline_of=first)
        self.recommender(first)
        alone = results.clean_hr(ranker, protocol, k)
        baseline = results.clean_hr(ranker, protocol, k, metric="HR_popularity")
        if alone is not None and baseline is not None and not alone > baseline:
            self.remarks[f"ranker {ranker} alone: {protocol} HR@{k} {alone:.4f} vs popularity "
                         f"{baseline:.4f}, judged inside pipeline {name}"] = None

    def _above_popularity(self, name: str, hr: float | None, protocol: str, k: int, what: str,
                          baseline_of: str | None = None) -> None:
        baseline = self.results.clean_hr(baseline_of or name, protocol, k,
                                         metric="HR_popularity")
        if hr is None or baseline is None:
            self.notes[f"{what} of {name} against popularity not recorded"] = None
        elif not hr > baseline:
            self.unfit[f"recommender {name}"] = (
                f"recommender {name}: {what} {hr:.4f}, not above the popularity ranking's "
                f"{baseline:.4f}")

    def detector(self, recommender: str | None) -> None:
        """A detector must separate its own calibration set above chance: balanced accuracy at
        least :data:`DETECTOR_FLOOR`."""
        if f"d:{recommender}" in self._checked:
            return
        self._checked.add(f"d:{recommender}")
        records = self.results.detector_calibration(recommender)
        for record in records:
            accuracy = record.get("accuracy")
            name = f"detector of {record.get('defense')} for {recommender}"
            if not isinstance(accuracy, int | float):
                self.notes[f"calibration accuracy of the {name} not recorded"] = None
            elif accuracy < DETECTOR_FLOOR:
                self.unfit[name] = (f"{name} (seed {record.get('seed')}): calibration accuracy "
                                    f"{accuracy:.2f}, below the floor {DETECTOR_FLOOR:.2f}")
        if not records:
            self.notes[f"calibration of the detector for {recommender} not recorded"] = None

    # -- verdict ------------------------------------------------------------------------------
    def verdict(self, missing: str, need: float = 1.0) -> Verdict:
        """The verdict, or "not run" (the study has no ``missing``) when nothing was compared.

        ``need``: the share of comparisons that must hold (1.0: every one)."""
        if not self.lines:
            return _not_run(missing)
        required = math.ceil(need * len(self.outcomes) - 1e-9)
        ok = sum(held for held, _ in self.outcomes)
        sure_ok = sum(held and not doubt for held, doubt in self.outcomes)
        maybe_ok = ok + sum(not held and doubt for held, doubt in self.outcomes)
        reason = ""
        if self.unfit:
            status = INCONCLUSIVE
            reason = "; ".join(self.unfit.values())
        elif sure_ok >= required:
            status = HELD
        elif maybe_ok < required:
            status = NOT_HELD
        else:
            status = INCONCLUSIVE
            reason = "; ".join(
                ([f"attacks that did not converge leave the outcome open "
                  f"({'; '.join(self.open)})"] if self.open or not self.why_open else [])
                + list(self.why_open))
        parts = ([f"inconclusive: {reason}"] if reason else []) + self.lines
        if need < 1.0:
            parts.append(f"{ok} of {len(self.outcomes)} hold, {required} needed")
        if self.remarks:
            parts.append("; ".join(self.remarks))
        if self.notes:
            parts.append("; ".join(self.notes) + " (not checked)")
        return Verdict(status, "; ".join(parts), self.test, self.numbers, reason)


def _cutoff(values: list[int], wanted: int) -> int:
    return wanted if wanted in values or not values else \
        min(values, key=lambda v: abs(v - wanted))


def _floor_protocol(results: StudyResults) -> str:
    """The protocol of the recommenders' popularity floor: full ranking when the study has it,
    else its sampled protocol."""
    if any(p.kind == "full" for p in results.config.evaluation.protocols):
        return "full"
    return _ranking_protocol(results)


def _ranking_protocol(results: StudyResults) -> str:
    sampled = sorted((p.negatives, p.name) for p in results.config.evaluation.protocols
                     if p.kind == "sampled")
    return sampled[0][1] if sampled else "full"


# -- shared lookups -------------------------------------------------------------------------------
AIP_KINDS = ("insa", "expa", "csema")
SHARE_NEARLY_ALL = 0.75  # "nearly all" (000 sec 5.3.1: 15 of 18 in Table 6) / "75 %" (001)
AVAILABILITY_SHARE = 0.25  # the largest relative change of the test items' HR@5 (000 Table 6)


def _promotion(results: StudyResults, kinds: tuple[str, ...],
               defense: str = CLEAN) -> list[Stage]:
    return [s for s in results.stages("evaluation", "promotion")
            if results.attack_kind(s.labels["attack"]) in kinds
            and s.labels["defense"] == defense and "+" not in str(s.labels["attack"])]


def _largest_eps(stages: list[Stage]) -> list[Stage]:
    best: dict[tuple, Stage] = {}
    for stage in stages:
        key = (stage.labels["recommender"], stage.labels["attack"], stage.labels["seed"])
        eps = stage.labels.get("eps") or 0
        if key not in best or eps > (best[key].labels.get("eps") or 0):
            best[key] = stage
    return list(best.values())


def _unit(results: StudyResults, stage: Stage, name: str) -> np.ndarray | None:
    units = results.units(stage)
    return units.get(name)


def _key(stage: Stage) -> str:
    labels = stage.labels
    eps = f" eps {labels['eps']:g}" if labels.get("eps") is not None else ""
    return f"{labels['recommender']} / {labels['attack']}{eps}"


# -- 000: AIP -------------------------------------------------------------------------------------
def insa_beats_others(results: StudyResults) -> Verdict:
    """INSA vs EXPA / c-SEMA on the same items. Holding favours INSA: an unconverged EXPA leaves
    a held open, an unconverged INSA a failure."""
    insa = _largest_eps(_promotion(results, ("insa",)))
    others = _largest_eps(_promotion(results, ("expa", "csema")))
    if not insa or not others:
        return _not_run("promotion evaluations of INSA and of EXPA or c-SEMA")
    evidence = _Evidence(results)
    for a in insa:
        delta_a = _unit(results, a, "cold|delta_HR_cold@5")
        for b in others:
            if (b.labels["recommender"], b.labels["seed"]) != (a.labels["recommender"],
                                                              a.labels["seed"]):
                continue
            delta_b = _unit(results, b, "cold|delta_HR_cold@5")
            if delta_a is None or delta_b is None or len(delta_a) != len(delta_b):
                continue
            evidence.recommender(a.labels["recommender"])
            p = evidence.p_value(delta_a, delta_b)
            key = f"{a.labels['recommender']}: {a.labels['attack']} vs {b.labels['attack']}"
            evidence.add(key, delta_a.mean() > delta_b.mean() and evidence.significant(p),
                         delta_a.mean() - delta_b.mean(),
                         f"{key}: ΔHR_cold@5 {_fmt(delta_a.mean())} vs {_fmt(delta_b.mean())} "
                         f"(p={p:.3g})", doubt_if_ok=evidence.unconverged([b]),
                         doubt_if_not=evidence.unconverged([a]))
    return evidence.verdict("paired per-item results for INSA and EXPA / c-SEMA on the same "
                            "items")


def _adversarial_vs_cooperative(evidence: _Evidence, stage: Stage, key: str, what: str) -> None:
    adv, coop = (_unit(evidence.results, stage, f"cold|HR_{w}@5") for w in ("cold", "coop"))
    if adv is None or coop is None:
        return
    evidence.recommender(stage.labels["recommender"])
    p = evidence.p_value(adv, coop)
    evidence.add(key, adv.mean() > coop.mean() and evidence.significant(p),
                 adv.mean() - coop.mean(),
                 f"{key}: {what} HR@5 {_fmt(adv.mean())} vs cooperative {_fmt(coop.mean())} "
                 f"(p={p:.3g})", doubt_if_not=evidence.unconverged([stage]))


def attacks_promote(results: StudyResults) -> Verdict:
    """000 sec 5.3.1: "for nearly all combinations of AIP attack and visually-aware recommender
    system the attack is successful": at least three in four (recommender, attack) pairs raise
    the cold item's HR@5 significantly above its cooperative image's. An attack claim: an
    unconverged attack's failure leaves the verdict open, its success stands."""
    stages = _largest_eps(_promotion(results, AIP_KINDS))
    if not stages:
        return _not_run("promotion evaluations")
    evidence = _Evidence(results)
    for stage in stages:
        _adversarial_vs_cooperative(evidence, stage, _key(stage), "adversarial")
    return evidence.verdict("per-item promotion results", need=SHARE_NEARLY_ALL)


def availability_kept(results: StudyResults) -> Verdict:
    """000 sec 3.3 / Table 6 (availability): the test item's HR@5 beside the adversarial cold
    item stays within a quarter of its HR@5 beside the cooperative image (the paper's largest
    change is 0.0054, a quarter of the test items' HR@5). Holding says the attack does little
    harm, so an unconverged attack leaves a held open (it under-states the harm)."""
    evidence = _Evidence(results)
    for stage in _largest_eps(_promotion(results, AIP_KINDS)):
        adv = _unit(results, stage, "cold|HR_test@5")
        coop = _unit(results, stage, "cold|HR_test_coop@5")
        if adv is None or coop is None or len(adv) != len(coop):
            continue
        evidence.recommender(stage.labels["recommender"])
        p = evidence.p_value(adv, coop)
        change = float(adv.mean() - coop.mean())
        bound = AVAILABILITY_SHARE * float(coop.mean())
        evidence.add(_key(stage), abs(change) <= bound, change,
                     f"{_key(stage)}: test HR@5 {_fmt(adv.mean())} beside the adversarial item "
                     f"vs {_fmt(coop.mean())} beside the cooperative one (change {change:+.4f}, "
                     f"bound ±{bound:.4f}, p={p:.3g})",
                     doubt_if_ok=evidence.unconverged([stage]))
    return evidence.verdict("promotion evaluations with the test items' HR@5 beside the "
                            "cooperative image (HR_test_coop)")


def transforms_do_not_remove_insa(results: StudyResults) -> Verdict:
    """An attack claim: an unconverged INSA's failure leaves the verdict open."""
    evidence = _Evidence(results)
    for stage in results.stages("evaluation", "promotion"):
        if results.attack_kind(stage.labels["attack"]) != "insa":
            continue
        kind, strength = results.defense_kind(stage.labels["defense"])
        if kind not in ("jpeg", "bit-depth") or strength is None:
            continue
        if (kind == "jpeg" and strength <= 10) or (kind == "bit-depth" and strength <= 2):
            continue  # levels that destroy the image content (000 sec 5.4)
        key = f"{_key(stage)} / {stage.labels['defense']}"
        _adversarial_vs_cooperative(evidence, stage, key, "defended INSA")
    return evidence.verdict("INSA evaluations behind JPEG or bit-depth reduction")


# -- 001: TAaMR -----------------------------------------------------------------------------------
def _poisoning(results: StudyResults, label: str) -> bool:
    """Whether a category attack's rows come from 001's own threat model (poisoning: the
    recommender retrained on the attacked catalog); evasion runs are not 001's experiment."""
    from varsec.study.schema import POISONING, attack_threat

    attack = results.config.attacks.get(str(label).split("+")[0])
    return attack is not None and attack_threat(attack) == POISONING


def _category_pairs(results: StudyResults, kind: str) -> list[tuple[Stage, Stage]]:
    """(clean, attacked) category evaluations of recommenders of ``kind`` on robust
    extractors, under poisoning only."""
    pairs = []
    clean = {(s.labels["recommender"], s.labels["seed"], s.config.get("source_category")): s
             for s in results.stages("evaluation", "category", attack=CLEAN, defense=CLEAN)}
    for stage in results.stages("evaluation", "category", defense=CLEAN):
        if stage.labels["attack"] == CLEAN or not _poisoning(results, stage.labels["attack"]) \
                or results.recommender_kind(stage.labels["recommender"]) != kind or \
                not results.robust(stage.labels["extractor"]):
            continue
        key = (stage.labels["recommender"], stage.labels["seed"],
               stage.config.get("source_category"))
        if key in clean:
            pairs.append((clean[key], stage))
    return pairs


def _chr(evidence: _Evidence, clean: Stage, attacked: Stage) -> tuple[float, float, float] | None:
    """(CHR@K attacked, CHR@K clean, p) of one pair, checking the models it rests on and 001's
    premise: a push between categories that are not a low-popularity source and a very popular
    target is not 001's experiment, so the claim is inconclusive there."""
    k = evidence.results.config.evaluation.chr_k
    holds, ranks = evidence.results.category_premise(attacked)
    if holds is False:
        evidence.unfit[f"premise {ranks}"] = (f"001's premise does not hold: {ranks} is not a "
                                             "low-popularity source pushed towards a very "
                                             "popular target")
    before = _unit(evidence.results, clean, f"users|CHR@{k}")
    after = _unit(evidence.results, attacked, f"users|CHR@{k}")
    if before is None or after is None or len(before) != len(after):
        return None
    evidence.recommender(attacked.labels["recommender"])
    evidence.extractor(attacked.labels["extractor"])
    return float(after.mean()), float(before.mean()), evidence.p_value(after, before)


def _no_poisoning_runs(model: str) -> Verdict:
    """Not run: a claim of 001 on ``model`` with none of its category attacks."""
    return _not_run(f"poisoning category attacks on {model} over adversarially trained "
                    "extractors (001's threat model; evasion runs do not count)")


def at_does_not_stop_push(results: StudyResults) -> Verdict:
    """001 on VBPR ("the data poisoning is always effective in any defended settings"): the
    strongest attack still raises CHR@K significantly on every VBPR over an adversarially trained
    extractor. An attack claim: a failure is left open when one of the model's attacks did not
    converge (a converged one might have pushed)."""
    pairs = _category_pairs(results, "vbpr")
    if not pairs:
        return _no_poisoning_runs("VBPR")
    evidence = _Evidence(results)
    k = results.config.evaluation.chr_k
    by_model: dict[tuple, list[tuple[float, float, float, Stage]]] = {}
    for clean, attacked in pairs:
        values = _chr(evidence, clean, attacked)
        if values is not None:
            key = (attacked.labels["recommender"], attacked.labels["extractor"])
            by_model.setdefault(key, []).append((*values, attacked))
    for (rec, ext), values in by_model.items():
        after, before, p, _ = max(values, key=lambda v: v[0] - v[1])
        evidence.add(f"{rec}/{ext}", after > before and evidence.significant(p), after - before,
                     f"{rec} on {ext} ({results.training(ext)}): strongest attack CHR@{k} "
                     f"{_fmt(after)} vs {_fmt(before)} without attack (p={p:.3g})",
                     doubt_if_not=evidence.unconverged([v[3] for v in values]))
    return evidence.verdict("paired CHR results")


def amr_at_stops_push(results: StudyResults) -> Verdict:
    """001 on AMR: "the joint usage of adversarial training ... and the adversarial
    regularization ... significantly reduced the effectiveness of the dataset poisoning. Indeed,
    75% of attacks have not increased the CHR@20": at least three in four attacks on AMR over an
    adversarially trained extractor do not raise CHR@K significantly. A defense claim: an attack
    that did not converge leaves its "not raised" open."""
    pairs = _category_pairs(results, "amr")
    if not pairs:
        return _no_poisoning_runs("AMR")
    evidence = _Evidence(results)
    k = results.config.evaluation.chr_k
    for clean, attacked in pairs:
        values = _chr(evidence, clean, attacked)
        if values is None:
            continue
        after, before, p = values
        key = f"{_key(attacked)} (seed {attacked.labels['seed']})"
        raised = after > before and evidence.significant(p)
        evidence.add(key, not raised, after - before,
                     f"{key}: CHR@{k} {_fmt(after)} vs {_fmt(before)} without attack "
                     f"(p={p:.3g})", doubt_if_ok=evidence.unconverged([attacked]))
    return evidence.verdict("paired CHR results on AMR", need=SHARE_NEARLY_ALL)


def _success(results: StudyResults, robust: bool | None) -> pd.DataFrame:
    rows = results.rows(protocol="attack", metric="success_rate", recommender=None,
                        defense=CLEAN)
    if robust is None or not len(rows):
        return rows
    mask = rows["extractor"].map(lambda e: results.robust(e) == robust)
    return rows[mask.astype(bool)]


def pgd8_strongest(results: StudyResults) -> Verdict:
    """001: PGD at eps 8 is "the most powerful method": its success rate on a standard
    extractor is positive and at least every other attack kind's (FGSM, C&W, ...) on the same
    extractor and seed at eps 8 or a larger budget. An unconverged PGD leaves a failure open,
    an unconverged rival a held."""
    rows = _success(results, robust=False)
    if len(rows):
        rows = rows[rows["extractor"].map(lambda e: results.training(e) == "standard")
                    .astype(bool)]
    if not len(rows):
        return _not_run("attack success rates on a standard extractor")
    kinds = rows["attack"].map(results.attack_kind)
    pgd = rows[(kinds == "pgd") & (rows["eps"] == 8)]
    others = rows[(kinds != "pgd") & (rows["eps"] >= 8)]
    evidence = _Evidence(results, "comparison of success rates")
    for _, a in pgd.iterrows():
        rivals = others[(others["extractor"] == a["extractor"]) & (others["seed"] == a["seed"])]
        for _, b in rivals.iterrows():
            evidence.extractor(a["extractor"])
            key = f"{a['extractor']}: {a['attack']} eps 8 vs {b['attack']} eps {b['eps']:g}"
            ok = a["value"] > 0 and a["value"] >= b["value"]
            evidence.add(key, ok, a["value"] - b["value"],
                         f"{key} (seed {a['seed']}): success rate {_fmt(a['value'])} vs "
                         f"{_fmt(b['value'])}",
                         doubt_if_ok=evidence.attacks_of_rows(rivals.loc[[b.name]]),
                         doubt_if_not=evidence.attacks_of_rows(pgd.loc[[a.name]]))
    return evidence.verdict("PGD at eps 8 and another attack kind at eps 8 or more on the same "
                            "standard extractor")


def at_lowers_success(results: StudyResults) -> Verdict:
    """A defense claim: the attack on the robust extractor must have converged for a held; an
    unconverged attack on the standard one leaves a failure open."""
    standard, robust = _success(results, robust=False), _success(results, robust=True)
    if not len(standard) or not len(robust):
        return _not_run("attack success rates on both standard and adversarially trained "
                        "extractors")
    evidence = _Evidence(results, "comparison of means")
    for (attack, eps), group in robust.groupby(["attack", "eps"]):
        base = standard[(standard["attack"] == attack) & (standard["eps"] == eps)]
        if not len(base):
            continue
        for name in {*group["extractor"], *base["extractor"]}:
            evidence.extractor(name)
        robust_rate, standard_rate = group["value"].mean(), base["value"].mean()
        evidence.add(f"{attack} eps {eps:g}", robust_rate < standard_rate,
                     standard_rate - robust_rate,
                     f"{attack} eps {eps:g}: {_fmt(robust_rate)} robust vs "
                     f"{_fmt(standard_rate)} standard",
                     doubt_if_ok=evidence.attacks_of_rows(group),
                     doubt_if_not=evidence.attacks_of_rows(base))
    return evidence.verdict("the same attack on both kinds of extractor")


# -- 002: Yin et al. ------------------------------------------------------------------------------
def _ranking_stage(results: StudyResults, recommender: str, attack: str, defense: str,
                   seed: int, eps: float | None = None) -> Stage | None:
    for stage in results.stages("evaluation", "ranking", recommender=recommender, attack=attack,
                                defense=defense, seed=seed):
        if eps is None or stage.labels.get("eps") == eps:
            return stage
    return None


def _ranking_units(results: StudyResults, stage: Stage, metric: str) -> np.ndarray | None:
    return _unit(results, stage, f"{_ranking_protocol(results)}|{metric}")


def _untargeted(results: StudyResults, kinds: tuple[str, ...] = ("fgsm", "pgd",
                                                                 "bpr-untargeted")) -> list[Stage]:
    return [s for s in results.stages("evaluation", "ranking", defense=CLEAN)
            if s.labels["attack"] != CLEAN and results.attack_kind(s.labels["attack"]) in kinds]


def _per_user_attack(results: StudyResults, label: str) -> bool:
    """Whether the attack behind ``label`` attacks each user's list with images of its own
    (002's evaluation-time reading of its triplet attack, objective ``bpr-per-user``)."""
    from varsec.study.schema import per_user

    attack = results.config.attacks.get(str(label).split("+")[0])
    return attack is not None and per_user(attack)


def _hr_pair(results: StudyResults, attacked: Stage,
             clean: Stage) -> tuple[np.ndarray, np.ndarray] | None:
    """(attacked, clean) per-user HR@10 on the same users: a per-user attack may cover a sample
    of the clean evaluation's users (units ``<protocol>|users``)."""
    after, before = (_ranking_units(results, s, "HR@10") for s in (attacked, clean))
    if after is None or before is None:
        return None
    if len(after) != len(before):
        users_after, users_before = (_ranking_units(results, s, "users") for s in (attacked,
                                                                                  clean))
        if users_after is None or users_before is None or \
                not np.isin(users_after, users_before).all():
            return None
        before = before[np.searchsorted(users_before, users_after)]
    return after, before


Cell = tuple[str, bool, float, str]  # one comparison: key, holds, number, evidence line


def _report_beside(evidence: _Evidence, beside: dict[str, list[Cell]], judged: bool) -> None:
    """Comparisons measured otherwise than the paper measures them (by what they measured):
    remarks beside the judged ones, or, when nothing was judged, the evidence of a verdict the
    caller leaves open."""
    for what, cells in beside.items():
        if judged:
            evidence.remarks[f"{what} (not judged): {'; '.join(c[3] for c in cells)}"] = None
            continue
        for key, ok, number, line in cells:
            evidence.add(key, ok, number, f"{what}: {line}")


MERCHANT = ("catalog-wide (one image per item for every user, a merchant's upload; varsec's own "
            "question, not 002's threat model)")
YIN_EPS = 16.0  # 002 Table 2's budget; Fig. 6: eps 8 "do[es] not greatly affect" the model


def attacks_collapse_hr(results: StudyResults) -> Verdict:
    """002 Table 2: FGSM / PGD on the BPR loss collapse VBPR's HR@10 (to under half of clean,
    significantly), under 002's threat model: each user's sampled list attacked for that user
    (objective ``bpr-per-user``; :mod:`varsec.attacks.bpr_per_user`), at 002's eps 16 or more
    (smaller budgets are reported, not judged). A catalog-wide attack (one image per item over
    the training triplets, a merchant's upload) is reported beside it and decides nothing: when
    only such attacks ran, the verdict is inconclusive (measured under another threat model).
    An attack claim: an unconverged attack's failure leaves it open."""
    stages = _untargeted(results)
    if not stages:
        return _not_run("untargeted attacks through a recommender")
    evidence = _Evidence(results)
    own = [s for s in stages if _per_user_attack(results, s.labels["attack"])]
    judged = [s for s in own if (s.labels.get("eps") or 0) >= YIN_EPS]
    beside: dict[str, list[Cell]] = {}  # measured otherwise than 002, by what they measured
    for stage in stages:
        clean = _ranking_stage(results, stage.labels["recommender"], CLEAN, CLEAN,
                               stage.labels["seed"])
        pair = None if clean is None else _hr_pair(results, stage, clean)
        if pair is None:
            continue
        after, before = pair
        evidence.recommender(stage.labels["recommender"])
        p = evidence.p_value(after, before)
        key = _key(stage)
        line = (f"{key}: HR@10 {_fmt(after.mean())} vs {_fmt(before.mean())} clean (p={p:.3g}, "
                f"{len(after)} users)")
        collapsed = after.mean() < 0.5 * before.mean() and evidence.significant(p)
        ratio = after.mean() / before.mean() if before.mean() else float("nan")
        what = f"per user below 002's eps {YIN_EPS:g}" if stage in own else MERCHANT
        if stage in judged:
            evidence.add(key, collapsed, ratio, f"per user (002's threat model): {line}",
                         doubt_if_not=evidence.unconverged([stage]))
        else:
            beside.setdefault(what, []).append((key, collapsed, ratio, line))
    _report_beside(evidence, beside, judged=bool(judged))
    if not judged and evidence.lines:
        evidence.unfit["threat model"] = (
            "measured under another threat model: every attack is catalog-wide, while 002's "
            "collapse is measured with each user's sampled list attacked for that user "
            "(objective bpr-per-user)" if not own else
            f"measured below 002's budget: the per-user attacks ran under eps {YIN_EPS:g} "
            "(002 Table 2: eps 16)")
    return evidence.verdict("clean and attacked evaluations of the same recommender")


def _reconstruction(results: StudyResults, label: str) -> bool:
    return results.defense_kind(label)[0] == "reconstruction"


def reconstruction_restores(results: StudyResults) -> Verdict:
    """002 Table 2: the reconstruction network restores HR@10 under FGSM (significantly above
    the attacked HR and at least 80% of clean), against 002's non-adaptive attacker (the
    adaptive one is :func:`defenses_robust`'s) under 002's threat model: the per-user FGSM
    (objective ``bpr-per-user``) at 002's eps 16 or more, on an attack that lowered HR@10 (else
    there is nothing to restore). A catalog-wide FGSM behind the defense is reported beside it
    and decides nothing; when nothing was measured as 002 measures it, the verdict is open. A
    defense claim: an unconverged attack leaves a held open."""
    evidence = _Evidence(results)
    judged: list[tuple[Cell, Stage]] = []
    beside: dict[str, list[Cell]] = {}
    for stage in results.stages("evaluation", "ranking"):
        attack = str(stage.labels["attack"])
        if not _reconstruction(results, stage.labels["defense"]) or \
                results.attack_kind(attack) != "fgsm" or attack.endswith(ADAPTIVE):
            continue
        cell = _restore_cell(results, evidence, stage)
        if cell is None:
            continue
        what = _not_002s_restore(results, stage, broke=cell[-1])
        if what is None:
            judged.append((cell[:4], stage))
        else:
            beside.setdefault(what, []).append(cell[:4])
    for (key, ok, number, line), stage in judged:
        evidence.add(key, ok, number, f"per user (002's threat model): {line}",
                     doubt_if_ok=evidence.unconverged([stage]),
                     open_if_not=_undertrained(results, str(stage.labels["defense"])))
    _report_beside(evidence, beside, judged=bool(judged))
    if beside and not judged:
        short = {MERCHANT: "catalog-wide FGSM"}
        evidence.unfit["threat model"] = (
            "not measured as 002 measures it: 002 restores HR under the per-user FGSM "
            f"(objective bpr-per-user) at eps {YIN_EPS:g} or more that lowered it; here only "
            + ", ".join(sorted(short.get(what, what) for what in beside)))
    return evidence.verdict("FGSM evaluations behind the reconstruction defense")


YIN_SCHEDULE = {"recon_epochs": 10, "mix_epochs": 3}  # 002 sec 4.3: epochs of T's training


def _undertrained(results: StudyResults, defense: str) -> str:
    """Why the reconstruction defense ``defense`` may be too weakly trained to decide 002's
    restore claim against it ("" when it had at least 002's schedule): an under-trained defense
    under-states the defense, as an unconverged attack under-states the attack."""
    from varsec.defenses.joint import DefenseConfig

    section = results.config.defenses.get(defense.split("=")[0])
    params = dict(section.params) if section is not None else {}
    trained = {name: int(params.get(name, getattr(DefenseConfig, name)))
               for name in YIN_SCHEDULE}
    if all(trained[name] >= need for name, need in YIN_SCHEDULE.items()):
        return ""
    return (f"defense {defense} trained {trained['recon_epochs']} + {trained['mix_epochs']} "
            f"epochs, under 002's {YIN_SCHEDULE['recon_epochs']} + {YIN_SCHEDULE['mix_epochs']} "
            "(benchmarks/diagnose_restore.py trains it on 002's schedule)")


def _not_002s_restore(results: StudyResults, stage: Stage, broke: bool) -> str | None:
    """Why an evaluation behind the reconstruction defense is not 002's measurement (None
    when it is)."""
    if not _per_user_attack(results, stage.labels["attack"]):
        return MERCHANT
    if (stage.labels.get("eps") or 0) < YIN_EPS:
        return f"per user below 002's eps {YIN_EPS:g}"
    return None if broke else "per user, the attack did not lower HR@10 (nothing to restore)"


def _restore_cell(results: StudyResults, evidence: _Evidence,
                  stage: Stage) -> tuple[str, bool, float, str, bool] | None:
    """(key, restored, restored HR, line, whether the attack lowered HR) of one evaluation
    behind the reconstruction defense, on the users the attack covered."""
    labels = stage.labels
    attacked = _ranking_stage(results, labels["recommender"], labels["attack"], CLEAN,
                              labels["seed"], labels.get("eps"))
    clean = _ranking_stage(results, labels["recommender"], CLEAN, CLEAN, labels["seed"])
    restored = _ranking_units(results, stage, "HR@10")
    pair = None if attacked is None or clean is None else _hr_pair(results, attacked, clean)
    if restored is None or pair is None or len(restored) != len(pair[0]):
        return None
    broken, base = pair
    evidence.recommender(labels["recommender"])
    broke = broken.mean() < base.mean() and evidence.significant(evidence.p_value(broken, base))
    p = evidence.p_value(restored, broken)
    ok = restored.mean() > broken.mean() and evidence.significant(p) and \
        restored.mean() >= 0.8 * base.mean()
    key = f"{labels['recommender']} / {labels['attack']} / {labels['defense']}"
    line = (f"{key}: HR@10 {_fmt(restored.mean())} reconstructed vs {_fmt(broken.mean())} "
            f"attacked and {_fmt(base.mean())} clean (p={p:.3g}, {len(restored)} users)")
    return key, bool(ok), float(restored.mean()), line, bool(broke)


def reconstruction_harmless(results: StudyResults) -> Verdict:
    """No attack involved: only the recommender's floor applies."""
    evidence = _Evidence(results)
    for stage in results.stages("evaluation", "ranking", attack=CLEAN):
        if not _reconstruction(results, stage.labels["defense"]):
            continue
        recommender = stage.labels["recommender"]
        clean = _ranking_stage(results, recommender, CLEAN, CLEAN, stage.labels["seed"])
        if clean is None:
            continue
        after, before = (_ranking_units(results, s, "HR@10") for s in (stage, clean))
        if after is None or before is None:
            continue
        evidence.recommender(recommender)
        p = evidence.p_value(after, before)
        key = f"{recommender} / {stage.labels['defense']}"
        evidence.add(key, after.mean() >= 0.95 * before.mean() or not evidence.significant(p),
                     after.mean() - before.mean(),
                     f"{key}: HR@10 {_fmt(after.mean())} reconstructed vs "
                     f"{_fmt(before.mean())} clean (p={p:.3g})")
    return evidence.verdict("clean evaluations behind the reconstruction defense")


def detector_accurate(results: StudyResults) -> Verdict:
    """Detection accuracy above 0.85 at every eps, for every detector; a detector below its
    calibration floor (:data:`DETECTOR_FLOOR`) makes the verdict inconclusive (its test FGSM is
    one step: no convergence to check)."""
    rows = results.rows(metric="detection_accuracy")
    if not len(rows):
        return _not_run("detection results")
    evidence = _Evidence(results, "threshold on the measured accuracy")
    for (recommender, eps), group in rows.groupby(["recommender", "eps"], dropna=False):
        evidence.detector(None if pd.isna(recommender) else str(recommender))
        value = float(group["value"].min())
        evidence.add(f"{recommender} eps {eps:g}", value > 0.85, value,
                     f"{recommender} eps {eps:g}: detection accuracy {_fmt(value)} "
                     "(threshold 0.85)")
    return evidence.verdict("detection results")


# -- 004: thesis ----------------------------------------------------------------------------------
AT_KINDS = ("pgd-at", "free-at")  # the thesis' AT (curriculum AT is its own claim)


def _item2item(results: StudyResults, kind: str, trainings: tuple[str, ...],
               largest: bool = True) -> pd.DataFrame:
    """Item-to-item success at rank 3 of attack ``kind`` on extractors trained as
    ``trainings`` ("undefended": standard or pretrained), at the largest eps unless not
    ``largest``."""
    rows = results.rows(protocol="item2item", metric="success_rate", k=3, defense=CLEAN)
    if not len(rows):
        return rows
    kinds = rows["attack"].map(results.attack_kind)
    mask = (kinds == kind) & rows["extractor"].map(
        lambda e: (results.training(e) or "none") in trainings)
    rows = rows[mask.astype(bool)]
    return rows[rows["eps"] == rows["eps"].max()] if len(rows) and largest else rows


UNDEFENDED = ("standard", "none")


def _threshold(evidence: _Evidence, rows: pd.DataFrame, what: str, ok: Callable[[float], bool],
               bound: str, attack_claim: bool) -> None:
    """One comparison per (extractor, eps) of a rate with a threshold."""
    for (extractor, eps), group in rows.groupby(["extractor", "eps"]):
        evidence.extractor(str(extractor))
        value = float(group["value"].mean())
        doubt = evidence.attacks_of_rows(group)
        evidence.add(f"{extractor} eps {eps:g}", ok(value), value,
                     f"{extractor} eps {eps:g}: {what} {_fmt(value)} (CI low "
                     f"{_fmt(group['ci_low'].mean())}); {bound}",
                     doubt_if_not=doubt if attack_claim else (),
                     doubt_if_ok=() if attack_claim else doubt)


def pgd_near_total(results: StudyResults) -> Verdict:
    """An attack claim: an unconverged PGD's failure leaves the verdict open."""
    rows = _item2item(results, "pgd", UNDEFENDED)
    if not len(rows):
        return _not_run("item-to-item PGD on an undefended extractor")
    evidence = _Evidence(results, "threshold on the measured rate")
    _threshold(evidence, rows, "PGD success at rank 3", lambda v: v >= 0.9, "threshold 0.9",
               attack_claim=True)
    return evidence.verdict("item-to-item PGD on an undefended extractor")


def fgsm_rare(results: StudyResults) -> Verdict:
    """The thesis' FGSM table: 0.07-0.27 % at rank 3 over eps 0.01-0.05; under 1 % at every eps
    here. FGSM is one step: there is no convergence to check."""
    rows = _item2item(results, "fgsm", UNDEFENDED, largest=False)
    if not len(rows):
        return _not_run("item-to-item FGSM on an undefended extractor")
    evidence = _Evidence(results, "threshold on the measured rate")
    _threshold(evidence, rows, "FGSM success at rank 3", lambda v: v < 0.01, "threshold 0.01",
               attack_claim=False)
    return evidence.verdict("item-to-item FGSM on an undefended extractor")


def at_stops_pgd(results: StudyResults) -> Verdict:
    """A defense claim: a held needs PGD on the robust extractor to have converged."""
    rows = _item2item(results, "pgd", AT_KINDS)
    if not len(rows):
        return _not_run("item-to-item PGD on an adversarially (PGD or free) trained extractor")
    evidence = _Evidence(results, "threshold on the measured rate")
    _threshold(evidence, rows, "PGD success at rank 3 (robust extractor)", lambda v: v <= 0.05,
               "threshold 0.05", attack_claim=False)
    return evidence.verdict("item-to-item PGD on an adversarially trained extractor")


def cat_between(results: StudyResults) -> Verdict:
    """Thesis (eps 0.05): PGD success at rank 3 is 98.32 % undefended, 14.89 % with curriculum
    AT and 0.07 % with AT: CAT lies strictly between, at the largest eps all three were
    attacked at. "CAT below undefended" is a defense comparison (an unconverged PGD on CAT
    leaves it open when it holds); "CAT above AT" is left open when it holds by an unconverged
    PGD on AT, and when it fails by one on CAT."""
    groups = {name: _item2item(results, "pgd", trainings, largest=False)
              for name, trainings in (("undefended", UNDEFENDED), ("CAT", ("curriculum-at",)),
                                      ("AT", AT_KINDS))}
    if any(not len(g) for g in groups.values()):
        return _not_run("item-to-item PGD on undefended, curriculum-AT and AT extractors")
    common = set.intersection(*(set(g["eps"]) for g in groups.values()))
    if not common:
        return _not_run("item-to-item PGD at one eps on all three kinds of extractor")
    eps = max(common)
    at = {name: g[g["eps"] == eps] for name, g in groups.items()}
    evidence = _Evidence(results, "comparison of means")
    for group in at.values():
        for extractor in sorted(set(group["extractor"])):
            evidence.extractor(extractor)
    rate = {name: float(g["value"].mean()) for name, g in at.items()}
    doubt = {name: evidence.attacks_of_rows(g) for name, g in at.items()}
    evidence.add("CAT < undefended", rate["CAT"] < rate["undefended"],
                 rate["undefended"] - rate["CAT"],
                 f"eps {eps:g}: CAT {_fmt(rate['CAT'])} vs undefended "
                 f"{_fmt(rate['undefended'])}", doubt_if_ok=doubt["CAT"],
                 doubt_if_not=doubt["undefended"])
    evidence.add("CAT > AT", rate["CAT"] > rate["AT"], rate["CAT"] - rate["AT"],
                 f"eps {eps:g}: CAT {_fmt(rate['CAT'])} vs AT {_fmt(rate['AT'])}",
                 doubt_if_ok=doubt["AT"], doubt_if_not=doubt["CAT"])
    return evidence.verdict("item-to-item PGD on the three kinds of extractor")


# -- varsec ---------------------------------------------------------------------------------------
def _adaptive_stages(results: StudyResults, target: str, attack: str, eps: float | None,
                     defense: str) -> list[Stage]:
    return [s for s in results.attack_stages(attack=attack + ADAPTIVE, defense=defense, eps=eps)
            if target in (s.labels.get("recommender"), s.labels.get("extractor"))]


def defenses_robust(results: StudyResults) -> Verdict:
    """Every defense that was attacked adaptively stops the adaptive attacker (issue 6: a
    defense is called robust only against the attacker that knows it). A defense claim: an
    adaptive attack that did not converge leaves a "robust" open."""
    records = [r for r in robustness(results) if r.verdict not in (UNTESTED, INEFFECTIVE)]
    if not records:
        return _not_run("adaptive attacks through a defense (adaptive: true) on an attack "
                        "that succeeds without it")
    evidence = _Evidence(results, "comparison of means with the stopping value")
    for r in records:
        key = f"{r.target} / {r.attack}" + (f" eps {r.eps:g}" if r.eps is not None else "") + \
            f" / {r.defense}"
        stages = _adaptive_stages(results, r.target, r.attack, r.eps, r.defense)
        evidence.add(key, r.verdict == ROBUST,
                     float(r.adaptive) if r.adaptive is not None else float("nan"),
                     f"{key}: {r.metric} {_fmt(r.undefended)} undefended, {_fmt(r.defended)} "
                     f"non-adaptive, {_fmt(r.adaptive)} adaptive (stopped at "
                     f"{_fmt(r.stopped_at)}): {r.verdict}",
                     doubt_if_ok=evidence.unconverged(stages))
    return evidence.verdict("adaptive attacks through a defense")


def outsiders_promote(results: StudyResults) -> Verdict:
    """The threat ladder's question: does a merchant without insider access (expert, transfer,
    query-only, semantic) still promote its item? One comparison per such rung of
    :func:`varsec.study.report.ladder.ladder_table` (its paired test and cost); held when at
    least one promotes. An attack claim: the failure of a rung whose attack did not converge
    (the ladder's ``converged`` column) leaves it open."""
    from varsec.study.report.ladder import ladder_table

    frame = ladder_table(results)
    outsiders = None if frame is None else frame[frame.index != "insider"]
    if outsiders is None or not len(outsiders):
        return _not_run("promotion attacks by merchants without insider access (expert, "
                        "transfer, query-only or semantic rungs)")
    evidence = _Evidence(results, "Wilcoxon signed-rank per rung (see the threat ladder)")
    for rung_name, row in outsiders.iterrows():
        key = f"{rung_name}: {row['attack']} on {row['model']}"
        open_ = row.get("converged") == "no"
        if open_:
            evidence.open[f"{row['attack']}: {row['cost']}"] = None
        evidence.add(key, row["promotes"] == "yes", row["HR_cold@5"] - row["cooperative"],
                     f"{key} ({row['cost']}): HR_cold@5 {_fmt(row['HR_cold@5'])} vs "
                     f"cooperative {_fmt(row['cooperative'])} (p={row['p']:.3g}), promotes: "
                     f"{row['promotes']}", doubt_if_not=[str(row["attack"])] if open_ else ())
    return evidence.verdict("outsider rungs", need=1 / len(outsiders))  # one is enough


def transfer_succeeds(results: StudyResults) -> Verdict:
    """Issue 15's transfer question: does a merchant who crafts its attack on a surrogate (a
    model fitted on the users it observes, an extractor trained on its own half of the catalog,
    public ImageNet weights) still succeed on the platform's model? One comparison per transfer
    cell of :func:`varsec.study.report.transfer.transfer_verdicts` (its paired test); held when
    at least one succeeds. The platform's models a cell is measured on must clear their floors
    (a weak surrogate is the attacker's own limit, not checked). An attack claim: an
    unconverged attack's failure leaves the verdict open."""
    from varsec.study.report.transfer import describe_surrogate, transfer_verdicts

    verdicts = [v for v in transfer_verdicts(results) if v.succeeds is not None]
    missing = "attacks measured on a model they were not crafted on (evaluate: naming another " \
        "model) with per-unit values"
    if not verdicts:
        return _not_run(missing)
    evidence = _Evidence(results, f"{results.config.evaluation.test} per transfer cell (see "
                         "the transfer tables)")
    for verdict in verdicts:
        m = verdict.measurement
        for stage in m.stages:
            evidence.recommender(stage.labels.get("recommender"))
            evidence.extractor(stage.labels.get("extractor"))
        key = f"{m.family}: {m.attack} crafted on {describe_surrogate(results, m.crafted_on)}, " \
            f"measured on {m.column}"
        assert m.without is not None
        evidence.add(f"{key} / {m.measure}", bool(verdict.succeeds),
                     m.with_attack - m.without,
                     f"{key}: {m.measure} {_fmt(m.with_attack)} vs {_fmt(m.without)} without "
                     f"the attack (p={verdict.p:.3g}"
                     + (f"; {verdict.note}" if verdict.note else "") + "), succeeds: "
                     f"{'yes' if verdict.succeeds else 'no'}",
                     doubt_if_not=evidence.unconverged(m.stages))
    return evidence.verdict("transfer cells", need=1 / len(verdicts))  # one is enough


def protocols_agree(results: StudyResults) -> Verdict:
    """No attack involved: only the recommenders' floors apply."""
    rows = results.rows(attack=CLEAN, defense=CLEAN, metric="HR", k=10)
    rows = rows[rows["protocol"].map(lambda p: p == "full" or str(p).startswith("sampled"))
                .astype(bool)]
    means = rows.groupby(["protocol", "recommender"])["value"].mean().unstack(0)
    if means.shape[1] < 2 or means.shape[0] < 2:
        return _not_run("two recommenders under both the full and a sampled protocol")
    from scipy.stats import kendalltau

    full = means["full"] if "full" in means else means.iloc[:, 0]
    evidence = _Evidence(results, "Kendall tau of the orders")
    for recommender in means.index:  # an order among models that lose to popularity is noise
        evidence.recommender(str(recommender))
    for protocol in means.columns:
        if protocol == full.name:
            continue
        tau = kendalltau(full, means[protocol]).statistic
        order = list(means[protocol].sort_values().index)
        evidence.add(f"tau {protocol}", order == list(full.sort_values().index), tau,
                     f"{protocol}: order {' < '.join(order)} vs full "
                     f"{' < '.join(full.sort_values().index)} (Kendall tau {tau:.2f})")
    return evidence.verdict("second protocol")


CLAIMS: list[Claim] = [
    Claim("000-insa", "000", "INSA raises cold-item HR@5 far more than EXPA and c-SEMA",
          insa_beats_others),
    Claim("000-promote", "000", "For nearly all combinations of AIP attack and visually-aware "
          "recommender the attack is successful: the adversarial image's HR@5 is above the "
          "cooperative image's (at least 3 in 4 combinations)", attacks_promote),
    Claim("000-availability", "000", "The attacks barely move the test items (availability): "
          "their HR@5 beside the adversarial item stays within 25% of their HR@5 beside the "
          "cooperative image", availability_kept),
    Claim("000-transforms", "000", "JPEG compression and bit-depth reduction do not remove INSA "
          "(at levels that keep the image recognisable)", transforms_do_not_remove_insa),
    Claim("001-at-push", "001", "Adversarial training of the extractor does not protect VBPR: "
          "the push of the source category still raises CHR@K", at_does_not_stop_push),
    Claim("001-amr-at", "001", "Adversarial training of the extractor together with AMR stops "
          "the push: at least 75% of the attacks do not raise CHR@K", amr_at_stops_push),
    Claim("001-pgd8", "001", "PGD at eps 8 is the most successful attack on the undefended "
          "extractor: its success rate is at least that of every other attack kind (FGSM, C&W) "
          "at eps 8 or more", pgd8_strongest),
    Claim("001-at-sr", "001", "Adversarial training lowers the attacks' success rate",
          at_lowers_success),
    Claim("002-collapse", "002", "FGSM and PGD on the BPR loss collapse VBPR's HR@10",
          attacks_collapse_hr),
    Claim("002-restore", "002", "Reconstruction restores HR under FGSM", reconstruction_restores),
    Claim("002-harmless", "002", "Reconstruction does not hurt clean recommendation",
          reconstruction_harmless),
    Claim("002-detect", "002", "The detector separates adversarial from clean images "
          "(accuracy above 0.85 at every eps)", detector_accurate),
    Claim("004-pgd", "004", "PGD success at rank 3 is near 100% on an undefended extractor",
          pgd_near_total),
    Claim("004-fgsm", "004", "FGSM rarely succeeds: under 1% at rank 3 at every eps",
          fgsm_rare),
    Claim("004-at", "004", "Adversarial training cuts PGD success at rank 3 to a few percent",
          at_stops_pgd),
    Claim("004-cat", "004", "Curriculum adversarial training lies between: PGD success at rank "
          "3 below the undefended extractor's and above the adversarially trained one's",
          cat_between),
    Claim("varsec-adaptive", "varsec", "The defenses stop the attacker that knows them (BPDA, "
          "EOT, detector-aware): robust against the adaptive attacker", defenses_robust),
    Claim("varsec-protocols", "varsec", "The sampled protocol orders the recommenders as full "
          "ranking does (HR@10)", protocols_agree),
    Claim("varsec-outsider", "varsec", "A merchant without insider access (expert, transfer, "
          "query-only or semantic) still promotes its item: at least one such rung raises "
          "HR_cold@5 significantly", outsiders_promote, transfer=True),
    Claim("varsec-transfer", "varsec", "A merchant without the platform's model still succeeds "
          "with an attack crafted on a surrogate (observed users, its own extractor, public "
          "weights): at least one transfer cell is significantly better than no attack",
          transfer_succeeds, transfer=True),
]


def evaluate_claims(results: StudyResults) -> list[tuple[Claim, Verdict]]:
    """Every claim's verdict; a claim whose check fails on odd data is reported not run."""
    verdicts = []
    for claim in CLAIMS:
        try:
            verdict = claim.judge(results)
        except (KeyError, ValueError, IndexError) as exc:
            verdict = Verdict(NOT_RUN, f"could not be checked ({type(exc).__name__}: {exc}).")
        verdicts.append((claim, verdict))
    return verdicts


__all__ = ["CLAIMS", "DETECTOR_FLOOR", "HELD", "INCONCLUSIVE", "NOT_HELD", "NOT_RUN", "Claim",
           "Verdict", "evaluate_claims", "extractor_floor"]
