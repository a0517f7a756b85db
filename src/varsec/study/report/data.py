"""What the report is generated from: the results table plus the run's plan, statuses and cache."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from varsec.study.cache import UNITS, StageCache
from varsec.study.execute import StageStatus
from varsec.study.plan import DIAGNOSE, Plan
from varsec.study.results import CLEAN
from varsec.study.schema import StudyConfig
from varsec.study.stages import Stage

ADVERSARIAL_TRAINING = ("pgd-at", "free-at", "curriculum-at")


@dataclass
class StudyResults:
    """The results table and everything needed to go back to per-unit values."""

    config: StudyConfig
    table: pd.DataFrame
    plan: Plan
    statuses: dict[str, StageStatus]
    out: Path

    @property
    def cache(self) -> StageCache:
        return StageCache(self.out)

    # -- rows ---------------------------------------------------------------------------------
    def rows(self, **filters: Any) -> pd.DataFrame:
        """Rows whose columns equal the given values (a list means any of; a callable tests)."""
        frame = self.table
        mask = pd.Series(True, index=frame.index)
        for column, wanted in filters.items():
            values = frame[column]
            if callable(wanted):
                mask &= values.map(lambda v, f=wanted: bool(f(v)) if not pd.isna(v)
                                   else False).astype(bool)
            elif isinstance(wanted, list | tuple | set):
                mask &= values.isin(list(wanted)).fillna(False).astype(bool)
            elif wanted is None:
                mask &= values.isna()
            else:
                mask &= (values == wanted).fillna(False).astype(bool)
        return frame[mask]

    def value(self, **filters: Any) -> float | None:
        """The single value matching the filters (the mean over seeds when several)."""
        rows = self.rows(**filters)
        return float(rows["value"].mean()) if len(rows) else None

    # -- stages -------------------------------------------------------------------------------
    def done(self, stage: Stage) -> bool:
        status = self.statuses.get(stage.key)
        return bool(status and status.ok)

    def stages(self, kind: str, scenario: str | None = None, **labels: Any) -> list[Stage]:
        """Finished stages of ``kind`` (and evaluation ``scenario``) with the given labels."""
        found = []
        for stage in self.plan.of_kind(kind):
            if not self.done(stage):
                continue
            if scenario is not None and stage.config.get("scenario") != scenario:
                continue
            if all(stage.labels.get(k) == v for k, v in labels.items()):
                found.append(stage)
        return found

    def units(self, stage: Stage) -> dict[str, np.ndarray]:
        """The per-unit vectors an evaluation stage kept ({} when none)."""
        path = self.cache.path(stage) / UNITS
        if not path.is_file():
            return {}
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def info(self, stage: Stage) -> dict[str, Any]:
        return self.cache.info(stage)

    @property
    def dataset_info(self) -> dict[str, Any]:
        """The data stage's summary (sizes, simulated or not)."""
        for stage in self.plan.of_kind("data"):
            if self.done(stage):
                return self.info(stage)
        return {}

    # -- config lookups -----------------------------------------------------------------------
    def attack_kind(self, label: str) -> str | None:
        """The kind of the attack behind an attack label (``insa``, ``pgd+adaptive`` -> pgd)."""
        name = str(label).split("+")[0]
        attack = self.config.attacks.get(name)
        return attack.kind if attack else None

    def defense_kind(self, label: str) -> tuple[str | None, float | None]:
        """(kind, strength) of a defense label such as ``jpeg=50``."""
        name, _, strength = str(label).partition("=")
        defense = self.config.defenses.get(name)
        return (defense.kind if defense else None, float(strength) if strength else None)

    def training(self, extractor: str | None) -> str | None:
        """The training mode of an extractor (None when unknown)."""
        section = self.config.extractors.get(str(extractor)) if extractor else None
        return section.training if section else None

    def robust(self, extractor: str | None) -> bool:
        """True for an adversarially trained extractor."""
        return self.training(extractor) in ADVERSARIAL_TRAINING

    def not_run(self) -> list[tuple[Stage, str]]:
        """Stages that did not run, with the reason."""
        return [(s, self.statuses[s.key].reason) for s in self.plan
                if s.key in self.statuses and self.statuses[s.key].state == "not-run"]

    def clean(self) -> str:
        return CLEAN

    # -- what a verdict rests on ----------------------------------------------------------------
    def upstream(self, stage: Stage, kind: str) -> list[Stage]:
        """The stages of ``kind`` that ``stage`` depends on (itself included when it is one),
        nearest first."""
        by_key = self.plan.by_key
        found, queue, seen = [], [stage], set()
        while queue:
            node = queue.pop(0)
            if node.key in seen:
                continue
            seen.add(node.key)
            if node.kind == kind:
                found.append(node)
            queue.extend(by_key[k] for k in node.inputs.values() if k in by_key)
        return found

    def attack_stages(self, **labels: Any) -> list[Stage]:
        """Finished attack stages with the given labels (``eps=None`` matches any eps)."""
        eps = labels.pop("eps", None)
        return [s for s in self.stages("attack", **labels)
                if eps is None or s.labels.get("eps") == eps]

    def convergence(self, stage: Stage) -> list[tuple[Stage, dict[str, Any] | None]]:
        """Each attack stage upstream of ``stage`` (an evaluation, defense or attack stage) with
        the convergence record its info.json holds (None: not recorded, e.g. an older cache)."""
        records = []
        for attack in self.upstream(stage, "attack"):
            record = self.info(attack).get("convergence") if self.done(attack) else None
            records.append((attack, record if isinstance(record, dict) else None))
        return records

    def recommender_kind(self, name: str | None) -> str | None:
        """The kind of a recommender of the study (None when unknown)."""
        section = self.config.recommenders.get(str(name)) if name else None
        return section.kind if section else None

    def components(self, name: str) -> list[str]:
        """A two-stage recommender's first stage and ranker; any other recommender itself."""
        section = self.config.recommenders.get(name)
        if section is None or section.kind != "two-stage":
            return [name]
        return [str(part) for part in (section.first_stage, section.ranker) if part]

    def classes(self) -> int | None:
        """How many item categories the catalog has (None when it has none)."""
        names = self.dataset_info.get("category_names")
        return len(names) if names else None

    def clean_accuracy(self, extractor: str) -> float | None:
        """An extractor's clean test accuracy on the catalog's categories (mean over seeds;
        the validation accuracy its training recorded when there is no test row)."""
        value = self.value(protocol="classifier-test", metric="accuracy", extractor=extractor,
                           attack=CLEAN)
        if value is not None and np.isfinite(value):
            return value
        recorded = [(self.info(s).get("metrics") or {}).get("val_clean_acc")
                    for s in self.stages("extractor", extractor=extractor)]
        recorded = [float(v) for v in recorded if isinstance(v, int | float)]
        return float(np.mean(recorded)) if recorded else None

    def clean_hr(self, recommender: str, protocol: str, k: int,
                 metric: str = "HR") -> float | None:
        """A recommender's clean, undefended ``metric@k`` under ``protocol`` (mean over seeds);
        ``metric="HR_popularity"`` gives the popularity baseline measured beside it."""
        return self.value(recommender=recommender, protocol=protocol, metric=metric, k=k,
                          attack=CLEAN, defense=CLEAN)

    def clean_pipeline_hr(self, recommender: str, k: int) -> float | None:
        """A two-stage recommender's clean, undefended ``HR_test@k``: how often its pipeline
        ranks the user's test item in the top k (mean over seeds)."""
        rows = self.rows(recommender=recommender, metric="HR_test", k=k, attack=CLEAN,
                         defense=CLEAN, protocol=lambda p: str(p).startswith("two-stage"))
        return float(rows["value"].mean()) if len(rows) else None

    def detector_calibration(self, recommender: str | None) -> list[dict[str, Any]]:
        """The calibration records of the detectors fitted for ``recommender`` (one per seed
        and defense; a detector with a fixed threshold has none)."""
        records = []
        for stage in self.stages("defense", recommender=recommender):
            if stage.config.get("action") != "fit":
                continue
            calibration = self.info(stage).get("calibration")
            if isinstance(calibration, dict):
                records.append({**calibration, "defense": stage.labels.get("defense"),
                                "seed": stage.labels.get("seed")})
        return records

    def category_premise(self, stage: Stage) -> tuple[bool | None, str]:
        """Whether a category evaluation's attack meets 001's premise (a low-popularity source
        pushed towards a very popular target: the source in the less popular half of the
        categories by training interactions, the target in the top fifth), and the ranks as
        words; None when the evaluation did not record its categories."""
        choice = self.info(stage).get("categories")
        if not isinstance(choice, dict) or "categories" not in choice:
            return None, ""
        n = int(choice["categories"])
        source, target = choice.get("source_rank"), choice.get("target_rank")
        holds = source is not None and target is not None and source > n / 2 and \
            target <= max(1, round(n / 5))
        return holds, (f"{choice.get('source')} (popularity rank {source}/{n}) -> "
                       f"{choice.get('target')} ({target}/{n})")

    def select_stage(self, predicate: Callable[[Stage], bool]) -> list[Stage]:
        return [s for s in self.plan if self.done(s) and predicate(s)]

    # -- diagnosis sweeps -----------------------------------------------------------------------
    def primary(self) -> StudyResults:
        """These results without the diagnosis sweeps (what the claims and tables rest on)."""
        return self._relabelled(lambda label, eps: None if DIAGNOSE in label else label)

    def white_box(self) -> StudyResults:
        """These results without the transfer measurements (an attack measured on a model it
        was not crafted on, :func:`varsec.study.plan.transferred`): what the papers' tables and
        claims rest on, so a surrogate's number is never read as a white-box one."""
        from varsec.study.plan import transferred

        stages = [s for s in self.plan if not (s.kind == "evaluation"
                                               and transferred(self.config, s.labels))]
        table = self.table
        if len(table):
            columns = ["attack", "crafted_on", "extractor", "recommender"]
            keep = [not transferred(self.config, dict(zip(columns, values, strict=True)))
                    for values in table[columns].itertuples(index=False, name=None)]
            table = table[keep].reset_index(drop=True)
        return StudyResults(self.config, table, Plan(stages), self.statuses, self.out)

    def surrogate(self, recommender: str | None) -> bool:
        """Whether ``recommender`` (or a part of its pipeline) is a transfer attacker's
        surrogate: fitted on only the users the attacker observes (``observed_users`` < 1)."""
        for part in self.components(str(recommender)):
            section = self.config.recommenders.get(part)
            if section is not None and section.observed_users < 1:
                return True
        return False

    def platform(self) -> StudyResults:
        """The white-box results (:meth:`white_box`) on the platform's own models: without the
        rows and stages of an attacker's surrogate recommender, which is the merchant's tool,
        not a recommender the papers' claims are about."""
        view = self.white_box()
        stages = [s for s in view.plan if not self.surrogate(s.labels.get("recommender"))]
        table = view.table
        if len(table):
            keep = [not (isinstance(r, str) and self.surrogate(r)) for r in table["recommender"]]
            table = table[keep].reset_index(drop=True)
        return StudyResults(self.config, table, Plan(stages), self.statuses, self.out)

    def sweeps(self) -> list[tuple[str, list[float]]]:
        """(attack, the eps its diagnosis sweep finished at, ascending) for every sweep."""
        found = []
        for name, attack in self.config.attacks.items():
            if attack.diagnose is None:
                continue
            done = {float(s.labels["eps"]) for s in self.stages("attack", attack=name + DIAGNOSE)
                    if s.labels.get("eps") is not None}
            if done:
                found.append((name, sorted(done)))
        return found

    def sweep_view(self, attack: str, eps: float) -> StudyResults:
        """These results as if ``attack`` had run only at its diagnosis sweep's ``eps``: the
        sweep's stages and rows at that eps take the attack's labels, the attack's own runs (and
        every other sweep) are left out."""
        sweep = attack + DIAGNOSE

        def relabel(label: str, at: float | None) -> str | None:
            if label.startswith(sweep):
                same = at is not None and math.isclose(at, eps)
                return attack + label[len(sweep):] if same else None
            if label == attack or label.startswith(attack + "+") or DIAGNOSE in label:
                return None
            return label
        return self._relabelled(relabel)

    def _relabelled(self, relabel: Callable[[str, float | None], str | None]) -> StudyResults:
        """A copy whose stages and rows carry ``relabel(attack label, eps)`` (None: dropped)."""
        stages = []
        for stage in self.plan:
            label = stage.labels.get("attack")
            if label is None:
                stages.append(stage)
                continue
            new = relabel(str(label), _eps(stage.labels.get("eps")))
            if new is not None:
                stages.append(stage if new == label else
                              replace(stage, labels={**stage.labels, "attack": new}))
        table = self.table.copy()
        if len(table):
            labels = [relabel(str(a), _eps(e)) if not pd.isna(a) else a
                      for a, e in zip(table["attack"], table["eps"], strict=True)]
            keep = [a is not None for a in labels]
            table["attack"] = [a for a in labels]
            table = table[keep].reset_index(drop=True)
        return StudyResults(self.config, table, Plan(stages), self.statuses, self.out)


def _eps(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


__all__ = ["ADVERSARIAL_TRAINING", "StudyResults"]
