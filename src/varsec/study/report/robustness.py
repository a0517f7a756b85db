"""Each defense against the non-adaptive and the adaptive attacker (DESIGN.md section 8).

For every defended attack the study evaluated, one :class:`Robustness` record holds the key
metric of the attack's scenario without the defense, behind it (the attacker did not know the
defense) and behind it again with the adaptive attacker (``<attack>+adaptive``: BPDA, EOT or
detector-aware), next to the value that means "the attack is stopped":

* ``ranking``: HR@10 (the Yin protocol) stopped when at least 80 % of clean HR@10 is kept;
* ``promotion``: adversarial cold-item HR@5, stopped at or below the cooperative image's HR@5
  (000 Table 7);
* ``category``: CHR@K of the source category, stopped at or below its clean CHR@K;
* ``item2item``: success at rank 3, stopped at or below the clean image's rate.

A defense is called robust only when it stops the adaptive attacker; without an adaptive run
it is "untested" whatever it does against the non-adaptive one, and an attack that is stopped
even without the defense gives no verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from varsec.study.plan import ADAPTIVE
from varsec.study.report.data import StudyResults
from varsec.study.results import CLEAN

ROBUST, NOT_ROBUST, UNTESTED = "robust", "not robust", "untested (no adaptive attacker)"
INEFFECTIVE = "no verdict (the attack does not succeed without the defense)"
KEPT_SHARE = 0.8  # ranking: the share of clean HR@10 a defense must keep


@dataclass
class Robustness:
    """One defended attack: the metric undefended, defended, defended vs the adaptive attacker."""

    scenario: str
    target: str
    attack: str
    eps: float | None
    defense: str
    metric: str
    undefended: float | None
    defended: float | None
    adaptive: float | None
    reference: float | None

    @property
    def stopped_at(self) -> float | None:
        """The value at which the attack counts as stopped (see the module docstring)."""
        if self.reference is None or self.scenario != "ranking":
            return self.reference
        return KEPT_SHARE * self.reference

    def stops(self, value: float | None) -> bool | None:
        """Whether ``value`` means the attack is stopped (None when not measured)."""
        bound = self.stopped_at
        if value is None or bound is None or not np.isfinite(value):
            return None
        return value >= bound if self.scenario == "ranking" else value <= bound

    @property
    def verdict(self) -> str:
        """robust / not robust against the adaptive attacker; untested without one, no verdict
        when the attack is stopped even without the defense."""
        stopped = self.stops(self.adaptive)
        if stopped is None:
            return UNTESTED
        if self.stops(self.undefended):
            return INEFFECTIVE
        return ROBUST if stopped else NOT_ROBUST


def _ranking_protocol(results: StudyResults) -> str:
    sampled = sorted((p.negatives, p.name) for p in results.config.evaluation.protocols
                     if p.kind == "sampled")
    return sampled[0][1] if sampled else "full"


def _cutoff(values: list[int], wanted: int) -> int:
    return wanted if wanted in values else min(values, key=lambda v: abs(v - wanted))


def _measure(results: StudyResults, scenario: str) -> tuple[dict[str, Any], str | None]:
    """(row filters of the key metric, metric of the same stage that is the reference, or None:
    the clean undefended value)."""
    ev = results.config.evaluation
    if scenario == "ranking":
        return {"metric": "HR", "k": _cutoff(ev.ks, 10),
                "protocol": _ranking_protocol(results)}, None
    if scenario == "promotion":
        return {"metric": "HR_cold", "k": _cutoff(ev.ks, 5),
                "protocol": lambda p: str(p).startswith("two-stage")}, "HR_coop"
    if scenario == "category":
        return {"metric": "CHR", "k": ev.chr_k, "protocol": "full"}, None
    return {"metric": "success_rate", "k": _cutoff(ev.rank_min, 3),
            "protocol": "item2item"}, "success_rate_clean"


def robustness(results: StudyResults) -> list[Robustness]:
    """One record per defended (non-adaptive) attack evaluation, seeds averaged."""
    records: dict[tuple, Robustness] = {}
    for stage in results.stages("evaluation"):
        labels = stage.labels
        attack, defense = str(labels["attack"]), str(labels["defense"])
        if CLEAN in (attack, defense) or attack.endswith(ADAPTIVE):
            continue
        scenario = str(stage.config.get("scenario"))
        target = labels.get("recommender") or labels.get("extractor")
        key = (scenario, target, attack, labels.get("eps"), defense)
        if key not in records:
            records[key] = _record(results, scenario, labels)
    return list(records.values())


def _record(results: StudyResults, scenario: str, labels: dict[str, Any]) -> Robustness:
    filters, own_reference = _measure(results, scenario)
    who = {"recommender": labels.get("recommender"), "extractor": labels.get("extractor")}
    eps = labels.get("eps")
    at = {**filters, **who, "eps": (lambda e: e == eps) if eps is not None else None}
    attack, defense = str(labels["attack"]), str(labels["defense"])
    if own_reference is None:
        clean = {**filters, **who, "attack": CLEAN, "defense": CLEAN}
        reference = results.value(**clean)
    else:
        reference = results.value(**{**at, "metric": own_reference, "attack": attack,
                                     "defense": defense})
    return Robustness(
        scenario=scenario, target=str(who["recommender"] or who["extractor"]), attack=attack,
        eps=eps, defense=defense, metric=f"{filters['metric']}@{filters['k']}",
        undefended=results.value(**at, attack=attack, defense=CLEAN),
        defended=results.value(**at, attack=attack, defense=defense),
        adaptive=results.value(**at, attack=attack + ADAPTIVE, defense=defense),
        reference=reference)


__all__ = ["INEFFECTIVE", "KEPT_SHARE", "NOT_ROBUST", "ROBUST", "UNTESTED", "Robustness",
           "robustness"]
