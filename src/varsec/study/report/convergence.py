"""The report's view of attack convergence: the "Convergence" table and one figure per attack
kind, both read from the attack stages' ``convergence.npz`` and ``info["convergence"]``
(:mod:`varsec.study.builtin.attacks`; the rule is :func:`varsec.metrics.convergence.converged`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from varsec.metrics.convergence import RULE
from varsec.study.files import CONVERGENCE
from varsec.study.report.data import StudyResults
from varsec.study.stages import Stage

CURVE = CONVERGENCE
NOTE = (f"Rule: an attack has converged when its {RULE} (gain of the mean objective over the "
        "attacked items, per step; INSA with user minibatches per epoch, C&W its last "
        "binary-search round). 'no gain' marks an attack that never raised its objective. "
        "One-shot attacks (FGSM, c-SEMA) are not listed.")


def _model(stage: Stage) -> str:
    labels = stage.labels
    model = labels.get("recommender") or labels.get("extractor") or ""
    return f"{model} via {labels['defense']}" if labels.get("defense") else str(model)


def _iterative(results: StudyResults) -> list[tuple[Stage, dict[str, Any]]]:
    """Finished attack stages that recorded an iterative curve, with their summary."""
    found = []
    for stage in results.stages("attack"):
        summary = results.info(stage).get("convergence")
        if isinstance(summary, dict) and summary.get("iterative"):
            found.append((stage, summary))
    return found


def convergence_table(results: StudyResults) -> pd.DataFrame | None:
    """attack, model, eps, steps, total gain, tail gain, converged: one row per iterative
    attack stage (None when the study has none)."""
    records = []
    for stage, summary in _iterative(results):
        labels = stage.labels
        verdict = "yes" if summary.get("converged") else "NO"
        if summary.get("no_gain"):
            verdict += " (no gain)"
        unit = summary.get("unit", "step")
        records.append({
            "attack": str(labels["attack"]), "model": _model(stage),
            "eps": "" if labels.get("eps") is None else f"{labels['eps']:g}",
            "seed": labels.get("seed"),
            "steps": f"{summary.get('steps')}" + (" epochs" if unit == "epoch" else ""),
            "total gain": float(summary.get("total_gain", float("nan"))),
            "tail gain": float(summary.get("tail_gain", float("nan"))),
            "converged": verdict})
    if not records:
        return None
    frame = pd.DataFrame(records)
    if frame["seed"].nunique() <= 1:
        frame = frame.drop(columns="seed")
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="#")
    return frame


def _curve(results: StudyResults, stage: Stage) -> dict[str, np.ndarray] | None:
    path = results.cache.path(stage) / CURVE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def convergence_figures(results: StudyResults, out: Path) -> list[tuple[Path, str]]:
    """One figure per attack kind: the mean objective per step, one line per (eps, model),
    with the q10-q90 band over items."""
    from varsec.study.report.figures import _plt, _save

    by_kind: dict[str, list[tuple[Stage, dict[str, np.ndarray], str]]] = {}
    for stage, summary in _iterative(results):
        curve = _curve(results, stage)
        if curve is not None:
            kind = results.attack_kind(stage.labels["attack"]) or str(stage.labels["attack"])
            by_kind.setdefault(kind, []).append((stage, curve, summary.get("unit", "step")))
    figures = []
    for kind, curves in by_kind.items():
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        for stage, curve, _ in curves:
            eps = stage.labels.get("eps")
            label = f"{stage.labels['attack']} / {_model(stage)}" + (
                f" eps {eps:g}" if eps is not None else "")
            line, = ax.plot(curve["step"], curve["mean"], label=label)
            ax.fill_between(curve["step"], curve["q10"], curve["q90"], alpha=0.2,
                            color=line.get_color(), lw=0)
        ax.set_xlabel(curves[0][2])
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("minus the penalised C&W loss" if kind.startswith("cw")
                      else "objective (maximised)")
        ax.set_title(f"{kind}: objective per {curves[0][2]}")
        ax.legend(fontsize=7)
        figures.append((_save(fig, out / f"convergence_{kind}.png"),
                        f"{kind}: mean objective over the attacked items per {curves[0][2]} "
                        "(band: 10% to 90% of items), one line per eps and model."))
    return figures


__all__ = ["NOTE", "convergence_figures", "convergence_table"]
