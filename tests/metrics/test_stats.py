"""Paired tests against scipy directly, and bootstrap intervals of known distributions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from varsec.errors import ConfigError
from varsec.metrics import PairedTestResult, bootstrap_ci, paired_bootstrap_ci, paired_test


@pytest.fixture
def paired() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.random(80)
    return a, a - 0.05 + 0.1 * rng.standard_normal(80)


def test_wilcoxon_matches_scipy(paired):
    a, b = paired
    result = paired_test(a, b)
    reference = scipy.stats.wilcoxon(a, b)
    assert isinstance(result, PairedTestResult) and result.method == "wilcoxon"
    assert result.statistic == pytest.approx(reference.statistic)
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.mean_diff == pytest.approx(np.mean(a - b)) and result.n == 80


def test_ttest_matches_scipy(paired):
    a, b = paired
    result = paired_test(torch.from_numpy(a), list(b), method="ttest")
    reference = scipy.stats.ttest_rel(a, b)
    assert result.statistic == pytest.approx(reference.statistic)
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.p_value < 0.05  # the shift of 0.05 is detected with 80 users


@pytest.mark.parametrize("method", ["wilcoxon", "ttest"])
def test_identical_systems_give_p_one(method):
    values = np.array([0.0, 1.0, 0.5, 0.5, 1.0])
    result = paired_test(values, values.copy(), method=method)
    assert (result.statistic, result.p_value, result.mean_diff, result.n) == (0.0, 1.0, 0.0, 5)


def test_paired_test_rejects_bad_input():
    with pytest.raises(ConfigError, match=r"paired arrays must have equal length \(one value per "
                                          r"user\), got 3 and 2\."):
        paired_test([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ConfigError, match=r"method must be one of wilcoxon, ttest, got 'sign'\."):
        paired_test([1.0, 2.0], [1.0, 2.0], method="sign")
    with pytest.raises(ConfigError, match=r"at least 2 paired values, got 1\."):
        paired_test([1.0], [2.0])
    with pytest.raises(ConfigError, match=r"a contains 1 NaN or infinite values"):
        paired_test([1.0, np.nan], [2.0, 1.0])
    with pytest.raises(ConfigError, match=r"b must be a non-empty 1-D array, got shape \(2, 1\)"):
        paired_test([1.0, 2.0], [[1.0], [2.0]])


def test_bootstrap_ci_contains_true_mean_and_is_seeded():
    values = np.random.default_rng(1).normal(3.0, 1.0, size=400)
    low, high = bootstrap_ci(values, n_resamples=2000, confidence=0.95, seed=0)
    assert low < 3.0 < high
    # the percentile interval is close to the normal-theory one: mean +- 1.96 s / sqrt(n)
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert high - low == pytest.approx(2 * half, rel=0.15)
    assert bootstrap_ci(values, seed=0) == bootstrap_ci(values, seed=0)
    assert bootstrap_ci(values, seed=0) != bootstrap_ci(values, seed=1)
    narrow = bootstrap_ci(values, confidence=0.5, seed=0)
    assert low < narrow[0] < narrow[1] < high


def test_bootstrap_coverage_of_a_bernoulli_mean():
    # HR-like 0/1 values with true mean 0.3: about 90% of 90% intervals cover it
    rng = np.random.default_rng(2)
    covered = [
        bootstrap_ci(rng.random(200) < 0.3, n_resamples=400, confidence=0.9, seed=s)
        for s in range(40)
    ]
    rate = np.mean([low <= 0.3 <= high for low, high in covered])
    assert 0.75 <= rate <= 1.0


def test_paired_bootstrap_is_bootstrap_of_differences(paired):
    a, b = paired
    assert paired_bootstrap_ci(a, b, seed=3) == bootstrap_ci(a - b, seed=3)
    low, high = paired_bootstrap_ci(a, b, seed=3)
    assert low < np.mean(a - b) < high and low > 0.0
    assert bootstrap_ci(np.full(10, 0.25)) == (0.25, 0.25)


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ConfigError, match=r"paired arrays must have equal length"):
        paired_bootstrap_ci([1.0, 2.0], [1.0])
    with pytest.raises(ConfigError, match=r"confidence must lie strictly between 0 and 1, "
                                          r"got 1\.5"):
        bootstrap_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(ConfigError, match=r"n_resamples must be a positive integer, got 0\."):
        bootstrap_ci([1.0, 2.0], n_resamples=0)
    with pytest.raises(ConfigError, match=r"values must be a non-empty 1-D array, "
                                          r"got shape \(0,\)"):
        bootstrap_ci([])
