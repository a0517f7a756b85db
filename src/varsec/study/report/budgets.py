"""The report's "Attack budgets: used here and in the paper" table: per attack stage, the budget
it ran with (``info["budget"]``, written by :mod:`varsec.study.builtin.attacks`) beside the
paper's (the attack's ``paper_budget`` in the study), and whether it matches the paper.

Stages without ``info["budget"]`` (older caches, stand-in stages) are left out; a study with no
budget at all gets no table.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from varsec.study.report.data import StudyResults
from varsec.study.stages import Stage

TITLE = "Attack budgets: used here and in the paper"
STEM = "budgets"
REL_TOL = 5e-3  # a paper's step size is printed rounded (PGD-128: 12.75 / 128 = 0.0996)
YES, LESS, MORE, MIXED = "yes", "less", "more", "mixed"
NO_PAPER = "no paper budget"
NOT_COMPARABLE = "not comparable"
NOTE = ("Steps as the study gives them (INSA: epochs, each one Adam step per user minibatch; "
        "the optimizer steps they make beside them when they differ); step sizes in 8-bit "
        "levels (C&W-L2: Adam's rate in tanh space, not compared with a pixel step); reach = "
        "optimizer steps x step size, the farthest a pixel can move, against eps. 'as the "
        f"paper': {YES} when the steps and the step size (where both are given, within "
        f"{REL_TOL:.1%}) equal the paper's, {LESS} / {MORE} when the budget used is below / "
        f"above it, {MIXED} when one is below and the other above, {NO_PAPER} when the study "
        "declares none for the attack (paper_budget).")


def _number(value: Any) -> float | None:
    """``value`` as a float (None when it is not a finite number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _model(labels: dict[str, Any]) -> str:
    model = labels.get("recommender") or labels.get("extractor") or ""
    return f"{model} via {labels['defense']}" if labels.get("defense") else str(model)


def _compared_steps(kind: str | None, budget: dict[str, Any]) -> float | None:
    """The steps the paper's count is about: INSA's epochs, every other attack's optimizer
    steps (FGSM: 1, whatever ``steps`` the section carries)."""
    if kind == "insa":
        return _number(budget.get("steps"))
    return _number(budget.get("optimizer_steps", budget.get("steps")))


def _sign(used: float, paper: float) -> int:
    if math.isclose(used, paper, rel_tol=REL_TOL):
        return 0
    return -1 if used < paper else 1


def as_the_paper(kind: str | None, budget: dict[str, Any]) -> str:
    """yes / less / more / mixed / not comparable / no paper budget for one stage's budget."""
    paper = budget.get("paper")
    if not isinstance(paper, dict):
        return NO_PAPER
    signs = []
    used_steps, paper_steps = _compared_steps(kind, budget), _number(paper.get("steps"))
    if used_steps is not None and paper_steps is not None:
        signs.append(_sign(used_steps, paper_steps))
    used_size, paper_size = _number(budget.get("step_size")), _number(paper.get("step_size"))
    if used_size is not None and paper_size is not None and budget.get("unit") != "tanh":
        signs.append(_sign(used_size, paper_size))
    if not signs:
        return NOT_COMPARABLE
    if all(s == 0 for s in signs):
        return YES
    if all(s <= 0 for s in signs):
        return LESS
    return MORE if all(s >= 0 for s in signs) else MIXED


def _steps_cells(kind: str | None, budget: dict[str, Any]) -> tuple[str, str]:
    """(steps used, optimizer steps when they differ) as text."""
    steps, taken = _number(budget.get("steps")), _number(budget.get("optimizer_steps"))
    if "steps" not in budget:
        return ("one-shot", "")  # c-SEMA records only the paper's budget
    if steps is None:
        return ("", "")
    if kind == "insa":
        return (f"{steps:g} epochs", "" if taken is None else f"{taken:g}")
    if taken is None or taken == steps:
        return (f"{steps:g}", "")
    return (f"{taken:g}", "")  # FGSM: one step whatever the section's steps say


def _reach_cell(budget: dict[str, Any], eps: float | None) -> str:
    reach = _number(budget.get("reach"))
    if reach is None:
        return "n/a (tanh space)" if budget.get("unit") == "tanh" else ""
    if eps is None:
        return _fmt(reach)
    verdict = "reaches" if reach >= eps - 1e-9 else "short of"
    return f"{_fmt(reach)}, {verdict} eps {eps:g}"


def _paper_cells(paper: Any) -> tuple[str, str, str]:
    """(paper steps, paper step size, note) as text."""
    if not isinstance(paper, dict):
        return ("", "", "")
    steps = _number(paper.get("steps"))
    users = _number(paper.get("users_per_step"))
    steps_text = "" if steps is None else f"{steps:g}"
    if users is not None:
        steps_text += f" ({users:g} users per step)"
    size = _number(paper.get("step_size"))
    return (steps_text.strip(), "" if size is None else f"{_fmt(size)} levels",
            str(paper.get("note") or ""))


def budget_row(labels: dict[str, Any], kind: str | None,
               budget: dict[str, Any]) -> dict[str, Any]:
    """One row of the table for an attack stage's labels, kind and ``info["budget"]``."""
    eps = _number(labels.get("eps"))
    if eps is None:
        eps = _number(budget.get("eps"))
    steps, taken = _steps_cells(kind, budget)
    size = _number(budget.get("step_size"))
    unit = budget.get("unit") or "8-bit levels"
    unit = "levels" if unit == "8-bit levels" else str(unit)
    paper_steps, paper_size, note = _paper_cells(budget.get("paper"))
    return {"attack": str(labels.get("attack", "")), "model": _model(labels),
            "eps": "" if eps is None else f"{eps:g}", "seed": labels.get("seed"),
            "steps": steps, "optimizer steps": taken,
            "step size": "" if size is None else f"{_fmt(size)} {unit}",
            "reach": _reach_cell(budget, eps), "paper steps": paper_steps,
            "paper step size": paper_size, "paper note": note,
            "as the paper": as_the_paper(kind, budget)}


def _kind(results: StudyResults, stage: Stage) -> str | None:
    kind = stage.config.get("kind") if isinstance(stage.config, dict) else None
    return str(kind) if kind else results.attack_kind(str(stage.labels.get("attack", "")))


def budget_table(results: StudyResults) -> pd.DataFrame | None:
    """One row per finished attack stage that recorded its budget (None when none did)."""
    records = []
    for stage in results.stages("attack"):
        budget = results.info(stage).get("budget")
        if isinstance(budget, dict):
            records.append(budget_row(stage.labels, _kind(results, stage), budget))
    if not records:
        return None
    frame = pd.DataFrame(records)
    if frame["seed"].nunique() <= 1:
        frame = frame.drop(columns="seed")
    if not frame["optimizer steps"].astype(bool).any():
        frame = frame.drop(columns="optimizer steps")
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="#")
    return frame


__all__ = ["NOTE", "STEM", "TITLE", "as_the_paper", "budget_row", "budget_table"]
