"""What the report is generated from: the results table plus the run's plan, statuses and cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from varsec.study.cache import UNITS, StageCache
from varsec.study.execute import StageStatus
from varsec.study.plan import Plan
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
                mask &= values.map(lambda v, f=wanted: bool(f(v)) if not pd.isna(v) else False)
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

    def select_stage(self, predicate: Callable[[Stage], bool]) -> list[Stage]:
        return [s for s in self.plan if self.done(s) and predicate(s)]


__all__ = ["ADVERSARIAL_TRAINING", "StudyResults"]
