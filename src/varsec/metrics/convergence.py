"""Convergence of iterative attacks: the one rule every verdict uses (DESIGN.md section 7).

An iterative attack records its objective per step (:attr:`varsec.attacks.AttackResult.history`,
steps x items). Its *curve* is the mean objective over items at each step. The rule:

    an attack has converged when the last ``tail`` (10%) of its steps gained less than
    ``tolerance`` (1%) of its total gain.

Definitions, on the curve ``v[0..n-1]`` oriented so that larger is better (the engine maximises;
``maximise=False`` negates a curve that is minimised):

* ``total_gain = v[n-1] - v[0]``; ``tail_gain = v[n-1] - v[n-1-k]`` with
  ``k = max(1, ceil(tail * n))`` tail steps (at most ``n - 1``). A run of fewer than 10 steps
  therefore judges its last step alone.
* converged when ``tail_gain < tolerance * total_gain``: a tail that still gains exactly 1% has
  not converged. A tail that lost value (``tail_gain < 0``) is converged: more steps of the same
  rule do not raise the kept iterate.
* **no gain**: when ``total_gain <= 0`` (a flat curve, a one-step run, or a curve that ended
  below its start) the attack counts as converged trivially, since there is nothing left to gain
  along its path, but the check is flagged ``no_gain`` so a report can say the attack never
  raised its objective (a step size too large or too small, a saturated objective).
* ``best_so_far``: the engine's step rules (PGD, Adam, FGSM) return the *last* iterate, so the
  stage judges the raw curve, the curve of what is kept. For an attack that keeps its best
  iterate, pass ``best_so_far=True``: the curve becomes its running maximum, so noise in the
  tail cannot count as a loss.

The entry at step ``t`` is the objective at the iterate the step-``t`` gradient is taken at, i.e.
after ``t`` steps (entry 0 is the start); the final iterate is not evaluated again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from varsec.errors import ConfigError, DataError

RULE = "last 10% of steps gained under 1% of the total gain"
QUANTILES = {"q10": 0.1, "q50": 0.5, "q90": 0.9}


@dataclass(frozen=True)
class ConvergenceCheck:
    """The verdict of :func:`converged` and the numbers behind it."""

    converged: bool
    steps: int
    total_gain: float
    tail_gain: float
    tail_steps: int
    no_gain: bool
    rule: str

    def as_info(self) -> dict[str, Any]:
        """The summary an attack stage keeps in its info.json (JSON types only)."""
        return {"converged": self.converged, "iterative": True, "steps": self.steps,
                "total_gain": self.total_gain, "tail_gain": self.tail_gain,
                "tail_steps": self.tail_steps, "no_gain": self.no_gain, "rule": self.rule}


def _rule_text(tail: float, tolerance: float) -> str:
    if tail == 0.1 and tolerance == 0.01:
        return RULE
    return f"last {tail:.0%} of steps gained under {tolerance:.0%} of the total gain"


def _check_fraction(value: Any, name: str, *, allow_one: bool) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0 or value > 1 or (value == 1 and not allow_one):
        upper = "1]" if allow_one else "1)"
        raise ConfigError(f"{name} must be a number in (0, {upper}, got {value!r}.")
    return float(value)


def _as_curve(curve: Any) -> np.ndarray:
    values = np.asarray(curve, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise DataError(f"a convergence curve must be a non-empty 1-D sequence of values per "
                        f"step, got shape {values.shape}.")
    if not np.isfinite(values).all():
        step = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataError(f"a convergence curve must be finite, got {values[step]} at step {step}.")
    return values


def converged(curve: Any, tail: float = 0.1, tolerance: float = 0.01, *,
              maximise: bool = True, best_so_far: bool = False) -> ConvergenceCheck:
    """Judge a per-step objective curve by the rule of the module docstring.

    ``curve`` holds one value per step (the mean objective over items); ``tail`` is the share
    of steps judged, ``tolerance`` the share of the total gain they may still add.
    """
    tail = _check_fraction(tail, "tail", allow_one=True)
    tolerance = _check_fraction(tolerance, "tolerance", allow_one=False)
    values = _as_curve(curve)
    values = values if maximise else -values
    if best_so_far:
        values = np.maximum.accumulate(values)
    n = len(values)
    k = min(max(1, math.ceil(tail * n - 1e-9)), max(n - 1, 1))
    total = float(values[-1] - values[0])
    tail_gain = float(values[-1] - values[n - 1 - k]) if n > 1 else 0.0
    no_gain = total <= 0
    done = no_gain or tail_gain < tolerance * total
    return ConvergenceCheck(bool(done), n, total, tail_gain, k, bool(no_gain),
                            _rule_text(tail, tolerance))


def combine_histories(histories: list[Any]) -> np.ndarray:
    """One steps x items array from several runs' histories (chunks, models): items side by
    side; a shorter run keeps its last value over the steps it did not take."""
    arrays = [np.asarray(h, dtype=np.float64) for h in histories if h is not None]
    arrays = [a.reshape(len(a), -1) for a in arrays if a.size]
    if not arrays:
        raise DataError("no attack history to combine: no iterative run recorded its steps.")
    steps = max(len(a) for a in arrays)
    padded = [np.concatenate([a, np.repeat(a[-1:], steps - len(a), axis=0)]) for a in arrays]
    return np.concatenate(padded, axis=1)


def curve_summary(history: Any) -> dict[str, np.ndarray]:
    """Per step: ``step`` (0..n-1), ``mean`` and the ``q10`` / ``q50`` / ``q90`` quantiles of
    the objective over items, from a steps x items history."""
    values = np.asarray(history, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise DataError(f"an attack history must be steps x items with both at least 1, got "
                        f"shape {values.shape}.")
    summary = {"step": np.arange(values.shape[0], dtype=np.int64), "mean": values.mean(1)}
    for name, q in QUANTILES.items():
        summary[name] = np.quantile(values, q, axis=1)
    return summary


__all__ = ["QUANTILES", "RULE", "ConvergenceCheck", "combine_histories", "converged",
           "curve_summary"]
