"""What a claim not held here would take, from the diagnosis sweeps the study ran.

An attack's ``diagnose`` section (schema: :class:`~varsec.study.schema.DiagnoseSection`) runs the
same attack at more eps (and steps); its stages carry the label ``<attack>+diagnose`` and no
claim rests on them. For every claim whose verdict is ``not held``, each sweep is tried: the
claim is re-checked on a view of the results in which the attack ran only at one eps of its
sweep (:meth:`~varsec.study.report.data.StudyResults.sweep_view`), eps by eps, ascending. A
sweep that leaves the claim's verdict, numbers and evidence unchanged (or "not run") does not
bear on it and is skipped. The diagnosis is the smallest eps at which the claim holds, or "not
held up to" the sweep's largest eps, with the evidence at that eps: "needs eps 51 on 28 px
images where the thesis needed 7.65" rather than a bare verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from varsec.study.plan import DIAGNOSE
from varsec.study.report.claims import HELD, NOT_HELD, NOT_RUN, Claim, Verdict
from varsec.study.report.data import StudyResults

NO_SWEEP = ("no diagnosis sweep of this study bears on it (give the attack it rests on a "
            "`diagnose:` section with larger eps or more steps)")


@dataclass
class Diagnosis:
    """A claim not held here, re-checked at each eps of one attack's diagnosis sweep."""

    claim: str
    attack: str
    budget: str  # the attack's own eps and steps
    sweep: str  # the sweep's steps
    outcomes: list[tuple[float, Verdict]]

    @property
    def reached(self) -> float | None:
        """The smallest eps of the sweep at which the claim holds (None: at none)."""
        return next((eps for eps, verdict in self.outcomes if verdict.status == HELD), None)

    @property
    def finding(self) -> str:
        """One line: what the claim would take here."""
        if self.reached is not None:
            return f"holds from eps {self.reached:g} ({self.sweep}); the study ran {self.budget}"
        largest = self.outcomes[-1][0]
        return f"not held up to eps {largest:g} ({self.sweep}); the study ran {self.budget}"

    @property
    def evidence(self) -> str:
        """The evidence at the eps that decides the finding (the first held one, else the
        largest)."""
        eps, verdict = next(((e, v) for e, v in self.outcomes if v.status == HELD),
                            self.outcomes[-1])
        return f"eps {eps:g}: {verdict.evidence}"


def _budget(results: StudyResults, attack: str) -> tuple[str, str]:
    """The attack's own budget and the sweep's steps, as words ("one step" for FGSM)."""
    from varsec.attacks.registry import attack_method

    section = results.config.attacks[attack]
    eps = ", ".join(f"{e:g}" for e in section.eps)
    if not attack_method(section.kind).iterative:
        return f"eps {eps}", "one step"
    sweep_steps = section.diagnose.steps if section.diagnose and section.diagnose.steps else \
        section.steps
    return f"eps {eps} at {section.steps} steps", f"{sweep_steps} steps"


def _recheck(claim: Claim, view: StudyResults) -> Verdict:
    try:
        return claim.judge(view)
    except (KeyError, ValueError, IndexError) as exc:
        return Verdict(NOT_RUN, f"could not be checked ({type(exc).__name__}: {exc}).")


def diagnose(results: StudyResults, claim: Claim, verdict: Verdict) -> list[Diagnosis]:
    """The diagnoses of one claim from every sweep that bears on it (``results``: the full
    results, sweeps included; ``verdict``: the claim's verdict on the primary results)."""
    found = []
    for attack, eps_list in results.sweeps():
        outcomes = [(eps, _recheck(claim, results.sweep_view(attack, eps))) for eps in eps_list]
        if all(v.status == NOT_RUN for _, v in outcomes):
            continue
        # a sweep that changes only what is reported beside the judged comparisons (an
        # attack the claim does not rest on) does not bear on it
        if all(v.status == verdict.status and v.numbers == verdict.numbers
               for _, v in outcomes):
            continue
        budget, sweep = _budget(results, attack)
        found.append(Diagnosis(claim.id, attack, budget, sweep, outcomes))
    return found


def diagnosis_table(results: StudyResults,
                    verdicts: list[tuple[Claim, Verdict]]) -> pd.DataFrame | None:
    """One row per (claim not held, sweep that bears on it): the verdict at each eps of the
    sweep, what the claim would take and the deciding evidence (None: no claim is not held)."""
    rows = []
    for claim, verdict in verdicts:
        if verdict.status != NOT_HELD:
            continue
        diagnoses = diagnose(results, claim, verdict)
        if not diagnoses:
            rows.append({"id": claim.id, "sweep": "", "verdict per eps": "",
                         "what it takes here": NO_SWEEP, "evidence": ""})
        for found in diagnoses:
            rows.append({
                "id": claim.id, "sweep": f"{found.attack}{DIAGNOSE}",
                "verdict per eps": "; ".join(f"eps {eps:g}: {v.status}"
                                             for eps, v in found.outcomes),
                "what it takes here": found.finding, "evidence": found.evidence})
    if not rows:
        return None
    return pd.DataFrame(rows).set_index("id")


DIAGNOSIS_NOTE = ("Each claim not held above, re-checked as if the attack had run at each eps of "
                  "its diagnosis sweep (attack label <attack>+diagnose; no verdict above rests "
                  "on these runs). A sweep that does not change the claim's numbers is not "
                  "listed.")

__all__ = ["DIAGNOSIS_NOTE", "NO_SWEEP", "Diagnosis", "diagnose", "diagnosis_table"]
