"""The transfer matrix: promotion attacks crafted on one model (a surrogate) and evaluated on
another (the platform's), beside the white-box diagonal.

An attack with ``evaluate: [...]`` is evaluated on each listed recommender; when that is not the
model it was crafted on, the evaluation measures a transfer attack: a merchant who attacks a
surrogate (a model fitted on the interactions they could observe, ``observed_users``, or on
another extractor) and uploads the result to the platform. Each cell is the cold items' mean
HR_cold@5 with the adversarial image, beside the cooperative image's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from varsec.study.report.data import StudyResults
from varsec.study.results import CLEAN

TRANSFER_NOTE = ("Rows: the attack and the model it was crafted on (a surrogate, or the model "
                 "itself); columns: the model it is evaluated on. Each cell: HR_cold@5 of the "
                 "adversarial cold items (the cooperative images' in brackets); the cells where "
                 "row and column name the same model are the white-box diagonal.")


def _cell(results: StudyResults, stage: object) -> tuple[float, float] | None:
    units = results.units(stage)  # type: ignore[arg-type]
    adversarial, cooperative = units.get("cold|HR_cold@5"), units.get("cold|HR_coop@5")
    if adversarial is None or cooperative is None:
        return None
    return float(np.mean(adversarial)), float(np.mean(cooperative))


def transfer_table(results: StudyResults) -> pd.DataFrame | None:
    """The matrix (None when no attack was evaluated on a model other than its target)."""
    cells: dict[tuple[str, str], str] = {}
    transferred = False
    for stage in results.stages("evaluation", "promotion", defense=CLEAN):
        attacks = results.upstream(stage, "attack")
        if not attacks or "+" in str(stage.labels.get("attack")):
            continue
        crafted = attacks[0].labels.get("recommender")
        evaluated = stage.labels.get("recommender")
        value = _cell(results, stage)
        if crafted is None or evaluated is None or value is None:
            continue
        eps = stage.labels.get("eps")
        row = f"{stage.labels['attack']}" + (f" eps {eps:g}" if eps is not None else "") + \
            f" / crafted on {crafted}"
        cells[(row, str(evaluated))] = f"{value[0]:.4f} ({value[1]:.4f})"
        transferred |= crafted != evaluated
    if not transferred:
        return None
    frame = pd.Series(cells).unstack()
    frame.index.name = "attack / crafted on"
    return frame.fillna("")


__all__ = ["TRANSFER_NOTE", "transfer_table"]
