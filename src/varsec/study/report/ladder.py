"""The threat ladder: every promotion attack of a study placed on the rung of what its merchant
knows, with what it cost and what it achieved, and each defense applied to each rung.

Rungs, most knowledge first:

* **insider** - INSA: the user embeddings and the model (white-box);
* **expert** - EXPA: the extractor, not the users;
* **transfer** - an attack crafted on another model (a surrogate fitted on the interactions the
  merchant observes, ``observed_users``, or a pipeline on the merchant's own or public
  extractor) and evaluated on the platform's; its "knows" names the surrogate. Category and
  item-to-item transfer attacks are measured by other metrics: the transfer tables and the
  ``varsec-transfer`` claim carry them;
* **query (score)** - a query-only attack (Square) on a score the platform returns for an upload;
* **query (rank)** - a query-only attack on the item's rank in the merchant's probe accounts'
  lists (``objective: probe-rank``), evaluated on the other users;
* **semantic** - c-SEMA: no model at all, a popular item's image pasted in.

Rows are the platform's models (a surrogate's own evaluation is the transfer table's
diagonal). Per row: the cost (gradient steps, or queries per item), the cold items' HR_cold@5
with the adversarial and the cooperative image, the paired test between them and whether the
merchant promotes the item (adversarial above cooperative at the study's significance), then
the same HR_cold@5 behind each defense of the study.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from varsec.study.report.data import StudyResults
from varsec.study.report.transfer import describe_surrogate, paired_effect
from varsec.study.results import CLEAN
from varsec.study.stages import Stage

RUNGS = {
    "insider": "the user embeddings and the model (white-box)",
    "expert": "the extractor (white-box), not the users",
    "transfer": "a surrogate model, not the platform's",
    "query (score)": "the platform's score of each upload",
    "query (rank)": "its item's rank in its probe accounts' top-N lists",
    "semantic": "a popular item's image, no model",
}
LADDER_NOTE = ("One row per promotion attack and model, ordered from the most to the least the "
               "merchant knows; cost is gradient steps (INSA: Adam steps over user minibatches) "
               "or queries per item; 'promotes' is the paired test of HR_cold@5 with the "
               "adversarial vs the cooperative image at the study's significance; 'converged' "
               "is varsec's rule (the last 10% of steps or queries gained under 1% of the "
               "total): a 'no' that did not converge is open, more budget may promote. Defense "
               "columns: HR_cold@5 of the same attack's images behind the defense.")


def rung(results: StudyResults, evaluation: Stage, attack: Stage) -> str:
    """The rung of a promotion evaluation of ``attack`` (module docstring)."""
    from varsec.attacks.registry import attack_method

    if attack.labels.get("recommender") != evaluation.labels.get("recommender"):
        return "transfer"
    method = attack_method(str(attack.config["kind"]))
    objective = attack.config.get("objective")
    if not method.gradient or objective == "none":
        return "semantic"
    if method.step_unit == "queries":
        return "query (rank)" if objective == "probe-rank" else "query (score)"
    return "insider" if objective == "insa" else "expert"


def _cost(results: StudyResults, attack: Stage) -> str:
    info = results.info(attack)
    budget, convergence = (info.get(key) for key in ("budget", "convergence"))
    budget = budget if isinstance(budget, dict) else {}  # an older or odd record: no budget
    convergence = convergence if isinstance(convergence, dict) else {}
    from varsec.attacks.registry import attack_method

    if attack_method(str(attack.config["kind"])).step_unit == "queries":
        return f"{attack.config['steps']} queries per item"
    if not convergence.get("iterative", True):
        return "no gradient step" if attack.config.get("objective") == "none" else "one step"
    return f"{budget.get('optimizer_steps', attack.config.get('steps'))} gradient steps"


def knowledge(results: StudyResults, rung_name: str, attack: Stage) -> str:
    """What the merchant of ``attack`` knows: the rung's text; a transfer merchant's surrogate
    in words; for rank-only feedback how much of it (probe accounts and list length, the
    attack's own or the objective's defaults), so budgets of the same feedback line up and a
    richer feedback is told apart."""
    if rung_name == "transfer":
        crafted = str(attack.labels.get("crafted_on") or attack.labels.get("recommender"))
        return f"{RUNGS[rung_name]}: {describe_surrogate(results, crafted)}"
    if rung_name != "query (rank)":
        return RUNGS[rung_name]
    from varsec.attacks.registry import objective_params

    declared = objective_params(str(attack.config.get("objective")))
    given = attack.config.get("params") or {}
    probes, top_n = (given.get(name, declared[name].default) for name in ("probes", "top_n"))
    return f"its item's rank in {probes} probe accounts' top-{top_n} lists"


def converged_text(results: StudyResults, attack: Stage) -> str:
    """Whether ``attack`` converged by varsec's rule: yes, no, "one step" (not iterative) or
    "not recorded". An attack that did not converge under-states the merchant, so its
    "promotes: no" is open, not an answer."""
    record = results.info(attack).get("convergence") if results.done(attack) else None
    if not isinstance(record, dict):
        return "not recorded"
    if not record.get("iterative", True):
        return "one step"
    return "yes" if record.get("converged") else "no"


def _promotes(results: StudyResults, units: dict[str, np.ndarray]) -> tuple[float, bool] | None:
    adv, coop = units.get("cold|HR_cold@5"), units.get("cold|HR_coop@5")
    if adv is None or coop is None:
        return None
    return paired_effect(results, adv, coop)


def ladder_table(results: StudyResults) -> pd.DataFrame | None:
    """The ladder (None when the study has no promotion attack)."""
    records: dict[tuple[str, str, str], dict[str, Any]] = {}
    defended: dict[tuple[str, str, str], dict[str, float]] = {}
    budgets: dict[tuple[str, str, str], int] = {}
    for evaluation in results.stages("evaluation", "promotion"):
        attacks = results.upstream(evaluation, "attack")
        label = str(evaluation.labels.get("attack"))
        if not attacks or "+" in label:
            continue
        attack = attacks[0]
        if results.surrogate(evaluation.labels.get("recommender")):
            continue  # the attacker's own model: the transfer table's diagonal
        eps = evaluation.labels.get("eps")
        key = (rung(results, evaluation, attack), label + (f" eps {eps:g}" if eps else ""),
               str(evaluation.labels.get("recommender")))
        units = results.units(evaluation)
        if evaluation.labels.get("defense") != CLEAN:
            if "cold|HR_cold@5" in units:
                defended.setdefault(key, {})[str(evaluation.labels["defense"])] = \
                    float(np.mean(units["cold|HR_cold@5"]))
            continue
        test = _promotes(results, units)
        if test is None:
            continue
        records[key] = {
            "knows": knowledge(results, key[0], attack), "cost": _cost(results, attack),
            "HR_cold@5": float(np.mean(units["cold|HR_cold@5"])),
            "cooperative": float(np.mean(units["cold|HR_coop@5"])),
            "p": test[0], "promotes": "yes" if test[1] else "no",
            "converged": converged_text(results, attack)}
        budgets[key] = int(attack.config.get("steps") or 0)
    if not records:
        return None
    order = {name: i for i, name in enumerate(RUNGS)}
    rows = []
    # within a rung: one merchant (what it knows) at a time, by its budget
    for key in sorted(records, key=lambda k: (order[k[0]], records[k]["knows"], budgets[k],
                                              k[1], k[2])):
        rows.append({"rung": key[0], "attack": key[1], "model": key[2], **records[key],
                     **{f"{d} HR_cold@5": v for d, v in defended.get(key, {}).items()}})
    return pd.DataFrame(rows).set_index("rung")


def ladder_figure(results: StudyResults, out: Path) -> list[tuple[Path, str]]:
    """HR_cold@5 per rung, adversarial beside cooperative (one bar pair per attack)."""
    frame = ladder_table(results)
    if frame is None:
        return []
    from varsec.study.report.figures import _plt, _save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(frame) + 2), 3.2))
    x = np.arange(len(frame))
    ax.bar(x - 0.2, frame["HR_cold@5"], 0.4, label="adversarial")
    ax.bar(x + 0.2, frame["cooperative"], 0.4, label="cooperative")
    ax.set_xticks(x, [f"{r}\n{a}" for r, a in zip(frame.index, frame["attack"], strict=True)],
                  fontsize=7)
    ax.set_ylabel("HR_cold@5")
    ax.set_title("The threat ladder: what each merchant achieves")
    ax.legend(fontsize=7)
    return [(_save(fig, out / "ladder.png"), "HR_cold@5 of the cold items per rung of the "
             "threat ladder (most knowledge on the left), adversarial beside cooperative.")]


QUERY_NOTE = ("The query-only rungs at each query budget the study ran (one attack per budget "
              "with the same objective, items and eps): HR_cold@5 of the adversarial cold items "
              "and the cooperative images' on the platform's model; one series per feedback "
              "(a score, or the ranks of so many probe accounts' top-N lists) and model.")
SERIES = ("rung", "feedback", "model")  # one curve each


def query_curve(results: StudyResults) -> pd.DataFrame | None:
    """HR_cold@5 against the queries per item of every query-only rung (None: fewer than two
    budgets of one rung)."""
    frame = ladder_table(results)
    if frame is None:
        return None
    queries = frame[frame.index.str.startswith("query")]
    if not len(queries):
        return None
    budget = queries["cost"].str.extract(r"^(\d+) queries")[0].astype(float)
    curve = pd.DataFrame({"rung": list(queries.index), "feedback": list(queries["knows"]),
                          "model": list(queries["model"]),
                          "queries": budget.to_numpy(dtype=int),
                          "HR_cold@5": queries["HR_cold@5"].to_numpy(),
                          "cooperative": queries["cooperative"].to_numpy(),
                          "promotes": list(queries["promotes"]),
                          "converged": list(queries["converged"])})
    if curve.groupby(list(SERIES))["queries"].nunique().max() < 2:
        return None
    return curve.sort_values([*SERIES, "queries"]).set_index("rung")


def query_figure(results: StudyResults, out: Path) -> list[tuple[Path, str]]:
    """HR_cold@5 against queries per item (log scale), one line per query-only rung."""
    curve = query_curve(results)
    if curve is None:
        return []
    from varsec.study.report.figures import _plt, _save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    for (name, feedback, model), group in curve.reset_index().groupby(list(SERIES)):
        label = name if name != "query (rank)" else feedback.replace("its item's rank in ",
                                                                     "rank: ")
        ax.plot(group["queries"], group["HR_cold@5"], marker="o", label=f"{label} ({model})")
    ax.axhline(float(curve["cooperative"].mean()), color="grey", ls="--", lw=1,
               label="cooperative")
    ax.set_xscale("log")
    ax.set_xlabel("queries per item")
    ax.set_ylabel("HR_cold@5")
    ax.set_title("Query-only merchants: effect against queries")
    ax.legend(fontsize=7)
    return [(_save(fig, out / "queries.png"), "HR_cold@5 of the cold items against the queries "
             "each query-only merchant spent per item (one attack per budget).")]


__all__ = ["LADDER_NOTE", "QUERY_NOTE", "RUNGS", "converged_text", "knowledge", "ladder_figure",
           "ladder_table", "query_curve", "query_figure", "rung"]
