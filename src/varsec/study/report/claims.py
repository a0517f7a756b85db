"""The papers' headline claims, re-tested on this study's results.

A :class:`Claim` is a function over :class:`~varsec.study.report.data.StudyResults` that returns
a :class:`Verdict`: ``held``, ``not held`` or ``not run`` (the study has no rows for it), the
numbers behind the verdict and the significance test used. Paired tests run on the per-unit
vectors (users, cold items, pairs) the evaluation stages kept, with the study's test
(Wilcoxon signed-rank by default) and significance level.
"""

from __future__ import annotations

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


@dataclass
class Verdict:
    """The outcome of re-testing one claim."""

    status: str
    evidence: str
    test: str = ""
    numbers: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """A headline claim of one of the works and how it is checked."""

    id: str
    paper: str
    statement: str
    check: Callable[[StudyResults], Verdict]


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


class _Evidence:
    """Collects the comparisons behind a claim; it holds when every comparison holds."""

    def __init__(self, results: StudyResults, test: str = "") -> None:
        self.results = results
        self.test = test
        self.lines: list[str] = []
        self.numbers: dict[str, float] = {}
        self.held = True

    def p_value(self, a: np.ndarray, b: np.ndarray) -> float:
        """The study's paired test of a vs b; remembers its description."""
        p, self.test = _paired(self.results, a, b)
        return p

    def significant(self, p: float) -> bool:
        return p < _alpha(self.results)

    def add(self, key: str, ok: bool, number: float, line: str) -> None:
        self.held &= bool(ok)
        self.numbers[key] = float(number)
        self.lines.append(line)

    def verdict(self, missing: str) -> Verdict:
        """The verdict, or "not run" (the study has no ``missing``) when nothing was compared."""
        if not self.lines:
            return _not_run(missing)
        return Verdict(HELD if self.held else NOT_HELD, "; ".join(self.lines), self.test,
                       self.numbers)


# -- shared lookups -------------------------------------------------------------------------------
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


# -- 000: AIP -------------------------------------------------------------------------------------
def insa_beats_others(results: StudyResults) -> Verdict:
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
            p = evidence.p_value(delta_a, delta_b)
            key = f"{a.labels['recommender']}: {a.labels['attack']} vs {b.labels['attack']}"
            evidence.add(key, delta_a.mean() > delta_b.mean() and evidence.significant(p),
                         delta_a.mean() - delta_b.mean(),
                         f"{key}: ΔHR_cold@5 {_fmt(delta_a.mean())} vs {_fmt(delta_b.mean())} "
                         f"(p={p:.3g})")
    return evidence.verdict("paired per-item results for INSA and EXPA / c-SEMA on the same "
                            "items")


def _adversarial_vs_cooperative(evidence: _Evidence, stage: Stage, key: str, what: str) -> None:
    adv, coop = (_unit(evidence.results, stage, f"cold|HR_{w}@5") for w in ("cold", "coop"))
    if adv is None or coop is None:
        return
    p = evidence.p_value(adv, coop)
    evidence.add(key, adv.mean() > coop.mean() and evidence.significant(p),
                 adv.mean() - coop.mean(),
                 f"{key}: {what} HR@5 {_fmt(adv.mean())} vs cooperative {_fmt(coop.mean())} "
                 f"(p={p:.3g})")


def attacks_promote(results: StudyResults) -> Verdict:
    stages = _largest_eps(_promotion(results, ("insa", "expa", "csema")))
    if not stages:
        return _not_run("promotion evaluations")
    evidence = _Evidence(results)
    for stage in stages:
        key = f"{stage.labels['recommender']} / {stage.labels['attack']}"
        _adversarial_vs_cooperative(evidence, stage, key, "adversarial")
    return evidence.verdict("per-item promotion results")


def transforms_do_not_remove_insa(results: StudyResults) -> Verdict:
    evidence = _Evidence(results)
    for stage in results.stages("evaluation", "promotion"):
        if results.attack_kind(stage.labels["attack"]) != "insa":
            continue
        kind, strength = results.defense_kind(stage.labels["defense"])
        if kind not in ("jpeg", "bit-depth") or strength is None:
            continue
        if (kind == "jpeg" and strength <= 10) or (kind == "bit-depth" and strength <= 2):
            continue  # levels that destroy the image content (000 sec 5.4)
        key = f"{stage.labels['recommender']} / {stage.labels['attack']} eps " \
              f"{stage.labels.get('eps')} / {stage.labels['defense']}"
        _adversarial_vs_cooperative(evidence, stage, key, "defended INSA")
    return evidence.verdict("INSA evaluations behind JPEG or bit-depth reduction")


# -- 001: TAaMR -----------------------------------------------------------------------------------
def _category_pairs(results: StudyResults) -> list[tuple[Stage, Stage]]:
    pairs = []
    clean = {(s.labels["recommender"], s.labels["seed"], s.config.get("source_category")): s
             for s in results.stages("evaluation", "category", attack=CLEAN, defense=CLEAN)}
    for stage in results.stages("evaluation", "category", defense=CLEAN):
        if stage.labels["attack"] == CLEAN:
            continue
        key = (stage.labels["recommender"], stage.labels["seed"],
               stage.config.get("source_category"))
        if key in clean:
            pairs.append((clean[key], stage))
    return pairs


def at_does_not_stop_push(results: StudyResults) -> Verdict:
    k = results.config.evaluation.chr_k
    pairs = [(c, a) for c, a in _category_pairs(results) if results.robust(a.labels["extractor"])]
    if not pairs:
        return _not_run("category attacks on adversarially trained extractors")
    evidence = _Evidence(results)
    by_model: dict[tuple, list[tuple[float, float, float]]] = {}
    for clean, attacked in pairs:
        before = _unit(results, clean, f"users|CHR@{k}")
        after = _unit(results, attacked, f"users|CHR@{k}")
        if before is None or after is None or len(before) != len(after):
            continue
        key = (attacked.labels["recommender"], attacked.labels["extractor"])
        by_model.setdefault(key, []).append((after.mean(), before.mean(),
                                             evidence.p_value(after, before)))
    for (rec, ext), values in by_model.items():
        after, before, p = max(values, key=lambda v: v[0] - v[1])
        evidence.add(f"{rec}/{ext}", after > before and evidence.significant(p), after - before,
                     f"{rec} on {ext} ({results.training(ext)}): strongest attack CHR@{k} "
                     f"{_fmt(after)} vs {_fmt(before)} without attack (p={p:.3g})")
    return evidence.verdict("paired CHR results")


def _success(results: StudyResults, robust: bool | None) -> pd.DataFrame:
    rows = results.rows(protocol="attack", metric="success_rate", recommender=None,
                        defense=CLEAN)
    if robust is None or not len(rows):
        return rows
    mask = rows["extractor"].map(lambda e: results.robust(e) == robust)
    return rows[mask.astype(bool)]


def pgd8_strongest(results: StudyResults) -> Verdict:
    rows = _success(results, robust=False)
    rows = rows[rows["extractor"].map(lambda e: results.training(e) == "standard").astype(bool)]
    if not len(rows):
        return _not_run("attack success rates on a standard extractor")
    kinds = rows["attack"].map(results.attack_kind)
    pgd = rows[(kinds == "pgd") & (rows["eps"] == 8)]
    if not len(pgd):
        return _not_run("a PGD attack at eps 8 on a standard extractor")
    best = float(pgd["value"].max())
    others = rows.drop(pgd.index)
    top_other = float(others["value"].max()) if len(others) else float("nan")
    held = best > 0 and (not len(others) or best >= top_other)
    return Verdict(HELD if held else NOT_HELD,
                   f"PGD eps 8 success rate {_fmt(best)}; best other attack {_fmt(top_other)}",
                   "comparison of means", {"pgd8": best, "best_other": top_other})


def at_lowers_success(results: StudyResults) -> Verdict:
    standard, robust = _success(results, robust=False), _success(results, robust=True)
    if not len(standard) or not len(robust):
        return _not_run("attack success rates on both standard and adversarially trained "
                        "extractors")
    evidence = _Evidence(results, "comparison of means")
    for (attack, eps), group in robust.groupby(["attack", "eps"]):
        base = standard[(standard["attack"] == attack) & (standard["eps"] == eps)]
        if not len(base):
            continue
        robust_rate, standard_rate = group["value"].mean(), base["value"].mean()
        evidence.add(f"{attack} eps {eps:g}", robust_rate < standard_rate,
                     standard_rate - robust_rate,
                     f"{attack} eps {eps:g}: {_fmt(robust_rate)} robust vs "
                     f"{_fmt(standard_rate)} standard")
    return evidence.verdict("the same attack on both kinds of extractor")


# -- 002: Yin et al. ------------------------------------------------------------------------------
def _ranking_protocol(results: StudyResults) -> str:
    sampled = sorted((p.negatives, p.name) for p in results.config.evaluation.protocols
                     if p.kind == "sampled")
    return sampled[0][1] if sampled else "full"


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


def attacks_collapse_hr(results: StudyResults) -> Verdict:
    stages = _untargeted(results)
    if not stages:
        return _not_run("untargeted attacks through a recommender")
    evidence = _Evidence(results)
    for stage in stages:
        clean = _ranking_stage(results, stage.labels["recommender"], CLEAN, CLEAN,
                               stage.labels["seed"])
        if clean is None:
            continue
        after, before = (_ranking_units(results, s, "HR@10") for s in (stage, clean))
        if after is None or before is None:
            continue
        p = evidence.p_value(after, before)
        key = f"{stage.labels['recommender']} / {stage.labels['attack']} eps " \
              f"{stage.labels.get('eps')}"
        evidence.add(key, after.mean() < 0.5 * before.mean() and evidence.significant(p),
                     after.mean() / before.mean() if before.mean() else float("nan"),
                     f"{key}: HR@10 {_fmt(after.mean())} vs {_fmt(before.mean())} clean "
                     f"(p={p:.3g})")
    return evidence.verdict("clean and attacked evaluations of the same recommender")


def _reconstruction(results: StudyResults, label: str) -> bool:
    return results.defense_kind(label)[0] == "reconstruction"


def reconstruction_restores(results: StudyResults) -> Verdict:
    """002's claim, against 002's (non-adaptive) attacker; the adaptive one is
    :func:`defenses_robust`'s."""
    evidence = _Evidence(results)
    for stage in results.stages("evaluation", "ranking"):
        attack = str(stage.labels["attack"])
        if not _reconstruction(results, stage.labels["defense"]) or \
                results.attack_kind(attack) != "fgsm" or attack.endswith(ADAPTIVE):
            continue
        labels = stage.labels
        attacked = _ranking_stage(results, labels["recommender"], labels["attack"], CLEAN,
                                  labels["seed"], labels.get("eps"))
        clean = _ranking_stage(results, labels["recommender"], CLEAN, CLEAN, labels["seed"])
        if attacked is None or clean is None:
            continue
        restored, broken, base = (_ranking_units(results, s, "HR@10")
                                  for s in (stage, attacked, clean))
        if restored is None or broken is None or base is None:
            continue
        p = evidence.p_value(restored, broken)
        ok = restored.mean() > broken.mean() and evidence.significant(p) and \
            restored.mean() >= 0.8 * base.mean()
        key = f"{labels['recommender']} / {labels['attack']} / {labels['defense']}"
        evidence.add(key, ok, restored.mean(),
                     f"{key}: HR@10 {_fmt(restored.mean())} reconstructed vs "
                     f"{_fmt(broken.mean())} attacked and {_fmt(base.mean())} clean "
                     f"(p={p:.3g})")
    return evidence.verdict("FGSM evaluations behind the reconstruction defense")


def reconstruction_harmless(results: StudyResults) -> Verdict:
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
        p = evidence.p_value(after, before)
        evidence.add(recommender,
                     after.mean() >= 0.95 * before.mean() or not evidence.significant(p),
                     after.mean() - before.mean(),
                     f"{recommender}: HR@10 {_fmt(after.mean())} reconstructed vs "
                     f"{_fmt(before.mean())} clean (p={p:.3g})")
    return evidence.verdict("clean evaluations behind the reconstruction defense")


def detector_accurate(results: StudyResults) -> Verdict:
    rows = results.rows(metric="detection_accuracy")
    if not len(rows):
        return _not_run("detection results")
    worst = float(rows["value"].min())
    return Verdict(HELD if worst > 0.85 else NOT_HELD,
                   f"lowest detection accuracy over eps {_fmt(worst)} (threshold 0.85)",
                   "threshold on the measured accuracy", {"worst": worst})


# -- 004: thesis ----------------------------------------------------------------------------------
def _item2item(results: StudyResults, kind: str, robust: bool) -> pd.DataFrame:
    rows = results.rows(protocol="item2item", metric="success_rate", k=3, defense=CLEAN)
    if not len(rows):
        return rows
    kinds = rows["attack"].map(results.attack_kind)
    mask = (kinds == kind) & rows["extractor"].map(lambda e: results.robust(e) == robust)
    rows = rows[mask.astype(bool)]
    return rows[rows["eps"] == rows["eps"].max()] if len(rows) else rows


def pgd_near_total(results: StudyResults) -> Verdict:
    rows = _item2item(results, "pgd", robust=False)
    if not len(rows):
        return _not_run("item-to-item PGD on an undefended extractor")
    value = float(rows["value"].mean())
    low = rows["ci_low"].mean()
    return Verdict(HELD if value >= 0.9 else NOT_HELD,
                   f"success at rank 3 {_fmt(value)} (CI low {_fmt(low)}) at eps "
                   f"{rows['eps'].max():g}; threshold 0.9", "threshold on the measured rate",
                   {"success@3": value})


def fgsm_rare(results: StudyResults) -> Verdict:
    rows = _item2item(results, "fgsm", robust=False)
    if not len(rows):
        return _not_run("item-to-item FGSM on an undefended extractor")
    value = float(rows["value"].mean())
    return Verdict(HELD if value < 0.05 else NOT_HELD,
                   f"FGSM success at rank 3 {_fmt(value)}; threshold 0.05",
                   "threshold on the measured rate", {"success@3": value})


def at_stops_pgd(results: StudyResults) -> Verdict:
    robust, plain = _item2item(results, "pgd", True), _item2item(results, "pgd", False)
    if not len(robust):
        return _not_run("item-to-item PGD on an adversarially trained extractor")
    value = float(robust["value"].mean())
    base = float(plain["value"].mean()) if len(plain) else float("nan")
    return Verdict(HELD if value <= 0.05 else NOT_HELD,
                   f"PGD success at rank 3 {_fmt(value)} on the robust extractor vs "
                   f"{_fmt(base)} undefended; threshold 0.05", "threshold on the measured rate",
                   {"robust": value, "undefended": base})


# -- varsec ---------------------------------------------------------------------------------------
def defenses_robust(results: StudyResults) -> Verdict:
    """Every defense that was attacked adaptively stops the adaptive attacker (issue 6: a
    defense is called robust only against the attacker that knows it)."""
    records = [r for r in robustness(results) if r.verdict not in (UNTESTED, INEFFECTIVE)]
    if not records:
        return _not_run("adaptive attacks through a defense (adaptive: true) on an attack "
                        "that succeeds without it")
    lines, numbers = [], {}
    for r in records:
        key = f"{r.target} / {r.attack}" + (f" eps {r.eps:g}" if r.eps is not None else "") + \
            f" / {r.defense}"
        numbers[key] = float(r.adaptive) if r.adaptive is not None else float("nan")
        lines.append(f"{key}: {r.metric} {_fmt(r.undefended)} undefended, {_fmt(r.defended)} "
                     f"non-adaptive, {_fmt(r.adaptive)} adaptive (stopped at "
                     f"{_fmt(r.stopped_at)}): {r.verdict}")
    held = all(r.verdict == ROBUST for r in records)
    return Verdict(HELD if held else NOT_HELD, "; ".join(lines),
                   "comparison of means with the stopping value", numbers)


def protocols_agree(results: StudyResults) -> Verdict:
    rows = results.rows(attack=CLEAN, defense=CLEAN, metric="HR", k=10)
    rows = rows[rows["protocol"].map(lambda p: p == "full" or str(p).startswith("sampled"))
                .astype(bool)]
    means = rows.groupby(["protocol", "recommender"])["value"].mean().unstack(0)
    if means.shape[1] < 2 or means.shape[0] < 2:
        return _not_run("two recommenders under both the full and a sampled protocol")
    from scipy.stats import kendalltau

    full = means["full"] if "full" in means else means.iloc[:, 0]
    evidence = _Evidence(results, "Kendall tau of the orders")
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
    Claim("000-promote", "000", "Every AIP attack raises its cold item's HR@5 above the "
          "cooperative image's", attacks_promote),
    Claim("000-transforms", "000", "JPEG compression and bit-depth reduction do not remove INSA "
          "(at levels that keep the image recognisable)", transforms_do_not_remove_insa),
    Claim("001-at-push", "001", "Adversarial training of the extractor does not stop the push "
          "of the source category (CHR@K still rises)", at_does_not_stop_push),
    Claim("001-pgd8", "001", "PGD at eps 8 is the most successful attack on the undefended "
          "extractor", pgd8_strongest),
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
    Claim("004-fgsm", "004", "FGSM rarely succeeds (under 5% at rank 3)", fgsm_rare),
    Claim("004-at", "004", "Adversarial training cuts PGD success at rank 3 to a few percent",
          at_stops_pgd),
    Claim("varsec-adaptive", "varsec", "The defenses stop the attacker that knows them (BPDA, "
          "EOT, detector-aware): robust against the adaptive attacker", defenses_robust),
    Claim("varsec-protocols", "varsec", "The sampled protocol orders the recommenders as full "
          "ranking does (HR@10)", protocols_agree),
]


def evaluate_claims(results: StudyResults) -> list[tuple[Claim, Verdict]]:
    """Every claim's verdict; a claim whose check fails on odd data is reported not run."""
    verdicts = []
    for claim in CLAIMS:
        try:
            verdict = claim.check(results)
        except (KeyError, ValueError, IndexError) as exc:
            verdict = Verdict(NOT_RUN, f"could not be checked ({type(exc).__name__}: {exc}).")
        verdicts.append((claim, verdict))
    return verdicts


__all__ = ["CLAIMS", "HELD", "NOT_HELD", "NOT_RUN", "Claim", "Verdict", "evaluate_claims"]
