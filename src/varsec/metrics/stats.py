"""Paired significance tests and bootstrap confidence intervals over per-user metric values.

Two systems evaluated on the same users (e.g. ``RankingResult["NDCG@10"]`` before and after an
attack, same test items and, for the sampled protocol, the same seed) give paired per-user arrays.
:func:`paired_test` runs the Wilcoxon signed-rank test or the paired t-test on them (DESIGN.md
section 6, "Statistics"); :func:`bootstrap_ci` and :func:`paired_bootstrap_ci` give percentile
bootstrap intervals of a mean and of a mean paired difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from varsec.errors import ConfigError

_BOOTSTRAP_CELLS = 1 << 22  # resample indices drawn per block (bounds memory)
_METHODS = ("wilcoxon", "ttest")


@dataclass(frozen=True)
class PairedTestResult:
    """Outcome of a paired test of ``a`` against ``b``; ``mean_diff`` is ``mean(a - b)``."""

    statistic: float
    p_value: float
    mean_diff: float
    n: int
    method: str


def _as_values(values: Any, name: str) -> np.ndarray:
    """A finite 1-D float64 array from an array, tensor or sequence."""
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ConfigError(f"{name} must be a non-empty 1-D array, got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ConfigError(
            f"{name} contains {int((~np.isfinite(array)).sum())} NaN or infinite values; drop "
            "those users from both arrays first."
        )
    return array


def _paired(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate two paired arrays of equal length."""
    x, y = _as_values(a, "a"), _as_values(b, "b")
    if x.size != y.size:
        raise ConfigError(
            f"paired arrays must have equal length (one value per user), got {x.size} and "
            f"{y.size}."
        )
    return x, y


def paired_test(a: Any, b: Any, method: str = "wilcoxon") -> PairedTestResult:
    """Two-sided paired test of per-user values ``a`` vs ``b`` over the same users.

    ``method="wilcoxon"`` uses :func:`scipy.stats.wilcoxon` (zero differences dropped, scipy's
    default), ``"ttest"`` :func:`scipy.stats.ttest_rel`. When every difference is zero the systems
    are indistinguishable: the result is ``statistic=0.0, p_value=1.0`` instead of a scipy error.
    """
    if method not in _METHODS:
        raise ConfigError(f"method must be one of {', '.join(_METHODS)}, got {method!r}.")
    x, y = _paired(a, b)
    if x.size < 2:
        raise ConfigError(f"paired_test needs at least 2 paired values, got {x.size}.")
    diff = x - y
    mean_diff = float(diff.mean())
    if not diff.any():
        return PairedTestResult(0.0, 1.0, 0.0, int(x.size), method)
    test = scipy.stats.wilcoxon(x, y) if method == "wilcoxon" else scipy.stats.ttest_rel(x, y)
    return PairedTestResult(float(test.statistic), float(test.pvalue), mean_diff, int(x.size),
                            method)


def bootstrap_ci(
    values: Any, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    Resamples are drawn with ``numpy.random.default_rng(seed)`` in memory-bounded blocks, so the
    same seed gives the same interval.
    """
    x = _as_values(values, "values")
    n_resamples = _check_resamples(n_resamples)
    if not 0.0 < float(confidence) < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence!r}.")
    rng = np.random.default_rng(seed)
    block = max(1, _BOOTSTRAP_CELLS // x.size)
    means = np.concatenate([
        x[rng.integers(0, x.size, size=(min(block, n_resamples - start), x.size))].mean(1)
        for start in range(0, n_resamples, block)
    ])
    tail = (1.0 - float(confidence)) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_bootstrap_ci(
    a: Any, b: Any, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(a - b)``, resampling users (pairs kept together)."""
    x, y = _paired(a, b)
    return bootstrap_ci(x - y, n_resamples=n_resamples, confidence=confidence, seed=seed)


def _check_resamples(n_resamples: Any) -> int:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)):
        raise ConfigError(f"n_resamples must be a positive integer, got {n_resamples!r}.")
    if n_resamples <= 0:
        raise ConfigError(f"n_resamples must be a positive integer, got {n_resamples!r}.")
    return int(n_resamples)
