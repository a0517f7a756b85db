"""Transfer attacks: each attack crafted on one model (a surrogate) and measured on another (the
platform's), beside the white-box diagonal, with a paired test per transfer cell.

An attack whose ``evaluate`` names a model it was not crafted on measures a transfer attack: a
merchant who attacks a surrogate (a model fitted on the interactions they observe,
``observed_users``; an extractor they trained on their own half of the catalog, ``catalog_half``
and ``seed_offset``; or public weights, ``training: none``) and uploads the result to the
platform. Rows of the matrices are the attack and the model it was crafted on, columns the model
it is measured on; a cell whose row and column name the same model is white-box (the diagonal).

Per family:

* **promotion** (columns: recommenders): the cold items' HR_cold@5 with the adversarial image,
  the cooperative image's in brackets;
* **category** (columns: extractors): the success rate of that extractor's classifier (does it
  now say the target class? the crafted-on extractor's own is the attack stage's), and CHR@K of
  the source category of each recommender built on it, the clean-trained model's in brackets
  (under poisoning the platform's model is retrained on *its* features of the attacked images);
* **item2item** (columns: extractors): success at each rank_min in that extractor's visual kNN,
  the clean images' in brackets.

Each transfer cell (off the diagonal) gets a plain statement: does the merchant without the
platform's model still succeed? A paired test at the study's significance on the per-unit values
the evaluation kept: per cold item HR_cold@5 adversarial vs cooperative (the threat ladder's
test), per user CHR@K after vs before, per attacked item the platform classifier's success on
the adversarial vs the clean image, per pair whether the attack item ranks within the largest
rank_min of its target's neighbours, adversarial vs clean (with the mean rank's own test beside
it: pairs may move significantly nearer without entering any rank_min).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from varsec.study.plan import ADAPTIVE, DIAGNOSE
from varsec.study.report.data import StudyResults
from varsec.study.results import CLEAN
from varsec.study.stages import Stage

TRANSFER_NOTE = ("Rows: the attack and the model it was crafted on (a surrogate, or the model "
                 "itself); columns: the model it is evaluated on. Each cell: HR_cold@5 of the "
                 "adversarial cold items (the cooperative images' in brackets); the cells where "
                 "row and column name the same model are the white-box diagonal.")
CATEGORY_NOTE = ("Rows: the category attack and the extractor it was crafted on; columns: the "
                 "extractor it is measured through. Each cell: the success rate of that "
                 "extractor's classifier on the attacked images (the clean images' in brackets "
                 "where measured), and CHR@K of the source category for each recommender built "
                 "on it (the clean-trained model's in brackets); the diagonal is white-box.")
ITEM2ITEM_NOTE = ("Rows: the item-to-item attack and the extractor it was crafted on; columns: "
                  "the extractor whose visual kNN measures it. Each cell: the share of pairs "
                  "whose attack item ranks within rank_min of its target's neighbours (the clean "
                  "images' in brackets); the diagonal is white-box.")
VERDICT_NOTE = ("One row per transfer cell (crafted on one model, measured on another): the "
                "measure with and without the attack, the study's paired test over the units "
                "it averages and whether the merchant without the platform's model still "
                "succeeds (better than without the attack at the study's significance). Item-"
                "to-item: success at the largest rank_min, with the mean rank of the attack "
                "items among their targets' neighbours (lower is nearer) and its own test.")


@dataclass
class Measurement:
    """One measure of one attack (row) on one model (column), pooled over seeds."""

    family: str
    attack: str  # the row's attack label, with eps
    crafted_on: str
    column: str  # the model it is measured on (a recommender or an extractor)
    measure: str
    higher: bool = True  # whether a higher value means the attack did better
    adversarial: list[np.ndarray] = field(default_factory=list)  # per seed
    baseline: list[np.ndarray] = field(default_factory=list)  # per seed (may be empty)
    stages: list[Stage] = field(default_factory=list)
    text_format: str = "{:.4f}"

    @property
    def diagonal(self) -> bool:
        return self.crafted_on == self.column

    @property
    def with_attack(self) -> float:
        return float(np.mean(np.concatenate(self.adversarial)))

    @property
    def without(self) -> float | None:
        return float(np.mean(np.concatenate(self.baseline))) if self.baseline else None

    def text(self) -> str:
        shown = self.text_format.format(self.with_attack)
        return shown if self.without is None else \
            f"{shown} ({self.text_format.format(self.without)})"


def paired_effect(results: StudyResults, adversarial: np.ndarray, baseline: np.ndarray,
                  higher: bool = True) -> tuple[float, bool] | None:
    """(p, succeeds) of the study's paired test of per-unit values with vs without the attack:
    succeeds when the attack moved them the wanted way on average (``higher``: up) at the
    study's significance; None with fewer than two pairs."""
    from varsec.metrics.stats import paired_test

    a, b = np.asarray(adversarial, np.float64), np.asarray(baseline, np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 2:
        return None
    p = paired_test(a[keep], b[keep], method=results.config.evaluation.test).p_value
    gain = float(np.mean(a[keep] - b[keep]))
    better = gain > 0 if higher else gain < 0
    return p, bool(better and p < results.config.evaluation.significance)


def _primary(label: Any) -> bool:
    """An attack's own run (not adaptive, not a diagnosis sweep)."""
    text = str(label)
    return text != CLEAN and not text.endswith(ADAPTIVE) and DIAGNOSE not in text


def _row(stage: Stage, name: str | None = None) -> str:
    eps = stage.labels.get("eps")
    return (name or str(stage.labels["attack"])) + (f" eps {eps:g}" if eps is not None else "")


class _Collector:
    def __init__(self) -> None:
        self.found: dict[tuple[str, ...], Measurement] = {}

    def add(self, stage: Stage, family: str, row: str, column: str, measure: str,
            adversarial: np.ndarray | None, baseline: np.ndarray | None, **options: Any) -> None:
        crafted = str(stage.labels.get("crafted_on"))
        key = (family, row, crafted, column, measure)
        entry = self.found.setdefault(key, Measurement(family, row, crafted, column, measure,
                                                       **options))
        if entry.stages and stage.labels.get("seed") in {s.labels.get("seed")
                                                         for s in entry.stages}:
            return  # the same model measured twice (a kNN recommender and its extractor)
        entry.stages.append(stage)
        if adversarial is not None:
            entry.adversarial.append(np.asarray(adversarial, np.float64))
        if baseline is not None:
            entry.baseline.append(np.asarray(baseline, np.float64))


def _promotion(results: StudyResults, found: _Collector) -> None:
    for stage in results.stages("evaluation", "promotion", defense=CLEAN):
        if not _primary(stage.labels.get("attack")) or not stage.labels.get("crafted_on"):
            continue
        units = results.units(stage)
        adversarial, cooperative = units.get("cold|HR_cold@5"), units.get("cold|HR_coop@5")
        if adversarial is None or cooperative is None:
            continue
        found.add(stage, "promotion", _row(stage), str(stage.labels["recommender"]),
                  "HR_cold@5", adversarial, cooperative)


def _category(results: StudyResults, found: _Collector) -> None:
    for stage in results.stages("evaluation", "classifier", defense=CLEAN):
        if not _primary(stage.labels.get("attack")):
            continue
        units = results.units(stage)
        found.add(stage, "category", _row(stage), str(stage.labels["extractor"]),
                  "success rate", units.get("items|success_rate"),
                  units.get("items|success_rate_clean"), text_format="{:.3f}")
    _white_box_success(results, found)
    k = results.config.evaluation.chr_k
    clean = {(s.labels["recommender"], s.labels["seed"], s.config.get("source_category")): s
             for s in results.stages("evaluation", "category", attack=CLEAN, defense=CLEAN)}
    for stage in results.stages("evaluation", "category", defense=CLEAN):
        label = str(stage.labels.get("attack"))
        if not _primary(label) or not stage.labels.get("crafted_on"):
            continue
        name, _, threat = label.partition("+")
        before = clean.get((stage.labels["recommender"], stage.labels["seed"],
                            stage.config.get("source_category")))
        after = results.units(stage).get(f"users|CHR@{k}")
        base = results.units(before).get(f"users|CHR@{k}") if before is not None else None
        if after is None or base is None or len(after) != len(base):
            continue
        found.add(stage, "category", _row(stage, name), str(stage.labels["extractor"]),
                  f"CHR@{k} of {stage.labels['recommender']} ({threat or 'poisoning'})", after,
                  base, text_format="{:.3f}")


def _white_box_success(results: StudyResults, found: _Collector) -> None:
    """The diagonal's success rate: the attack stage's own (its classifier, its images)."""
    from varsec.study.schema import attack_family

    for stage in results.stages("attack"):
        attack = results.config.attacks.get(str(stage.labels.get("attack")))
        if attack is None or attack_family(attack) != "category" or \
                not stage.labels.get("crafted_on"):
            continue
        rows = results.rows(protocol="attack", metric="success_rate",
                            attack=stage.labels["attack"], extractor=stage.labels["extractor"],
                            seed=stage.labels["seed"])
        rows = rows[rows["eps"].isna()] if stage.labels.get("eps") is None else \
            rows[rows["eps"] == stage.labels["eps"]]
        if len(rows):
            found.add(stage, "category", _row(stage), str(stage.labels["extractor"]),
                      "success rate", np.array([rows["value"].mean()]), None,
                      text_format="{:.3f}")


def _item2item(results: StudyResults, found: _Collector) -> None:
    ranks = sorted(results.config.evaluation.rank_min)
    for stage in results.stages("evaluation", "item2item", defense=CLEAN):
        if not _primary(stage.labels.get("attack")) or not stage.labels.get("crafted_on"):
            continue
        units = results.units(stage)
        column = str(stage.labels["extractor"])
        for r in ranks:
            found.add(stage, "item2item", _row(stage), column, f"success@{r}",
                      units.get(f"pairs|success_rate@{r}"),
                      units.get(f"pairs|success_rate_clean@{r}"), text_format="{:.3f}")
        found.add(stage, "item2item", _row(stage), column, "rank", units.get("pairs|rank_adv"),
                  units.get("pairs|rank_clean"), higher=False, text_format="{:.1f}")


def measurements(results: StudyResults) -> list[Measurement]:
    """Every attack's measures on every model it was evaluated on (diagonal included)."""
    found = _Collector()
    _promotion(results, found)
    _category(results, found)
    _item2item(results, found)
    return [m for m in found.found.values() if m.adversarial]


def _matrix(cells: Iterable[Measurement], family: str,
            measures: Any = None) -> pd.DataFrame | None:
    """The family's matrix (None when none of its attacks was measured on another model)."""
    chosen = [m for m in cells if m.family == family and (measures is None or measures(m))]
    if not any(not m.diagonal for m in chosen):
        return None
    texts: dict[tuple[str, str], list[str]] = {}
    for m in chosen:
        text = m.text() if family == "promotion" else f"{m.measure} {m.text()}"
        texts.setdefault((f"{m.attack} / crafted on {m.crafted_on}", m.column), []).append(text)
    frame = pd.Series({key: "; ".join(parts) for key, parts in texts.items()}).unstack()
    frame.index.name = "attack / crafted on"
    return frame.fillna("")


def transfer_table(results: StudyResults) -> pd.DataFrame | None:
    """Promotion: HR_cold@5 of the adversarial (cooperative) images (None when no promotion
    attack was evaluated on a model other than its target)."""
    return _matrix(measurements(results), "promotion")


def category_table(results: StudyResults) -> pd.DataFrame | None:
    """Category attacks: the success rate of each extractor's classifier and CHR@K of the
    recommenders built on it."""
    return _matrix(measurements(results), "category")


def item2item_table(results: StudyResults) -> pd.DataFrame | None:
    """Item-to-item attacks: success at each rank_min in each extractor's visual kNN."""
    return _matrix(measurements(results), "item2item", lambda m: m.measure != "rank")


@dataclass(frozen=True)
class Verdict:
    """Whether one transfer cell's attack still works on the model it was not crafted on."""

    measurement: Measurement
    p: float | None
    succeeds: bool | None  # None: no paired units
    note: str = ""  # item-to-item: how far the pairs moved (the mean rank's paired test)


def _test(results: StudyResults, m: Measurement) -> tuple[float, bool] | None:
    adversarial, baseline = np.concatenate(m.adversarial), np.concatenate(m.baseline)
    if len(adversarial) != len(baseline):
        return None
    return paired_effect(results, adversarial, baseline, m.higher)


def transfer_verdicts(results: StudyResults) -> list[Verdict]:
    """The paired test of every transfer cell's measure that kept per-unit values. Item-to-item:
    success at the largest rank_min (the thesis' success, at its most lenient threshold), with
    the mean rank's own test as a note (pairs can move significantly nearer their targets and
    still stay out of every rank_min)."""
    found = [m for m in measurements(results) if not m.diagonal and m.baseline]
    ranks = {(m.attack, m.crafted_on, m.column): m for m in found if m.measure == "rank"}
    largest = f"success@{max(results.config.evaluation.rank_min)}"
    verdicts = []
    for m in found:
        if m.family == "item2item" and m.measure != largest:
            continue
        test = _test(results, m)
        note = ""
        rank = ranks.get((m.attack, m.crafted_on, m.column))
        if m.family == "item2item" and rank is not None:
            moved = _test(results, rank)
            note = f"mean rank {rank.with_attack:.1f} vs {rank.without:.1f} clean" + \
                ("" if moved is None else f" (p={moved[0]:.2g})")
        verdicts.append(Verdict(m, None if test is None else test[0],
                                None if test is None else test[1], note))
    return verdicts


def describe_surrogate(results: StudyResults, model: str) -> str:
    """What a model an attack was crafted on is, in words (a surrogate's view, or the
    platform's own model)."""
    config = results.config
    if model in config.extractors:
        section = config.extractors[model]
        if section.training == "none" and section.checkpoint is None:
            size = section.backbone_options.get("input_size")
            return f"{section.backbone}'s public weights" + (f" at {size} px" if size else "")
        parts = []
        if section.catalog_half is not None:
            parts.append("trained on one half of the catalog")
        if section.seed_offset:
            parts.append(f"seed +{section.seed_offset}")
        return f"extractor {model}" + (f" ({', '.join(parts)})" if parts else "")
    observed = [config.recommenders[p].observed_users for p in results.components(model)
                if p in config.recommenders]
    share = min(observed, default=1.0)
    ranker = config.recommenders.get(results.components(model)[-1])
    extractor = ranker.extractor if ranker is not None else None
    parts = [f"fitted on {share:.0%} of the users"] if share < 1 else []
    if extractor in config.extractors and (config.extractors[extractor].catalog_half is not None
                                           or config.extractors[extractor].seed_offset
                                           or config.extractors[extractor].training == "none"):
        parts.append(f"on {describe_surrogate(results, extractor)}")
    return f"{model}" + (f" ({', '.join(parts)})" if parts else "")


def verdict_table(results: StudyResults) -> pd.DataFrame | None:
    """One row per transfer cell: does the merchant without the platform's model still succeed?
    (None when the study has no transfer cell with paired units.)"""
    records = []
    for verdict in transfer_verdicts(results):
        m = verdict.measurement
        records.append({
            "family": m.family, "attack": m.attack,
            "crafted on": describe_surrogate(results, m.crafted_on), "measured on": m.column,
            "measure": m.measure + (f" ({verdict.note})" if verdict.note else ""),
            "with the attack": m.with_attack, "without": m.without,
            "p": "n/a" if verdict.p is None else f"{verdict.p:.2g}",
            "succeeds": "n/a (too few units)" if verdict.succeeds is None else
            ("yes" if verdict.succeeds else "no")})
    if not records:
        return None
    return pd.DataFrame(records).set_index("family")


__all__ = ["CATEGORY_NOTE", "ITEM2ITEM_NOTE", "TRANSFER_NOTE", "VERDICT_NOTE", "Measurement",
           "Verdict", "category_table", "describe_surrogate", "item2item_table", "measurements",
           "paired_effect", "transfer_table", "transfer_verdicts", "verdict_table"]
