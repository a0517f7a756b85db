"""The convergence rule on hand-made curves (varsec.metrics.convergence)."""

from __future__ import annotations

import numpy as np
import pytest

from varsec.errors import ConfigError, DataError
from varsec.metrics.convergence import (
    RULE,
    combine_histories,
    converged,
    curve_summary,
)


def test_a_saturating_curve_converges():
    curve = 1 - np.exp(-np.arange(100) / 8)  # tail gains ~3e-5 of ~1
    check = converged(curve)
    assert check.converged and not check.no_gain
    assert check.steps == 100 and check.tail_steps == 10
    assert check.total_gain == pytest.approx(curve[-1] - curve[0])
    assert check.tail_gain == pytest.approx(curve[-1] - curve[89])
    assert check.rule == RULE


def test_a_linear_curve_has_not_converged():
    check = converged(np.arange(50, dtype=float))
    assert not check.converged
    assert check.tail_steps == 5
    assert check.tail_gain == pytest.approx(5.0) and check.total_gain == pytest.approx(49.0)


def test_a_tail_that_still_gains_exactly_one_percent_has_not_converged():
    curve = np.concatenate([np.linspace(0, 99, 18), [99.5, 100.0]])  # 20 steps, tail = 2
    check = converged(curve)
    assert check.tail_steps == 2
    assert check.total_gain == 100.0 and check.tail_gain == 1.0
    assert not check.converged
    just_under = curve.copy()
    just_under[17] = 99.0 + 1e-6
    assert converged(just_under).converged


def test_a_flat_curve_has_converged_but_is_flagged_no_gain():
    check = converged(np.full(30, 2.5))
    assert check.converged and check.no_gain
    assert check.total_gain == 0.0 and check.tail_gain == 0.0


def test_a_short_run_judges_its_last_step():
    check = converged([0.0, 5.0, 9.0, 9.05])
    assert check.tail_steps == 1
    assert check.tail_gain == pytest.approx(0.05)
    assert check.converged  # 0.05 < 1% of 9.05
    assert not converged([0.0, 5.0, 9.0, 9.5]).converged


def test_a_single_step_is_trivially_converged():
    check = converged([3.0])
    assert check.converged and check.no_gain and check.steps == 1


def test_a_decreasing_curve_is_no_gain_when_maximised_and_judged_when_minimised():
    curve = np.linspace(10, 0, 40)
    up = converged(curve)
    assert up.converged and up.no_gain and up.total_gain == pytest.approx(-10.0)
    down = converged(curve, maximise=False)
    assert not down.converged and not down.no_gain
    assert down.total_gain == pytest.approx(10.0)
    settled = converged(10 * np.exp(-np.arange(40) / 3), maximise=False)
    assert settled.converged


def test_noise_in_the_tail_counts_as_kept_or_as_best_so_far():
    rise = 1 - np.exp(-np.arange(100) / 10)
    noisy = rise.copy()
    noisy[-1] = rise[-1] - 0.2  # the last iterate fell back: no gain in the raw tail
    assert converged(noisy).converged
    spike = rise.copy()
    spike[95] = 1.5  # one lucky step late in the run
    assert not converged(spike, best_so_far=True).converged  # the best rose in the tail
    assert converged(rise, best_so_far=True).converged


def test_custom_tail_and_tolerance_name_themselves():
    check = converged(np.arange(10.0), tail=0.5, tolerance=0.6)
    assert check.tail_steps == 5 and check.converged  # 5 of 9 < 60%
    assert check.rule == "last 50% of steps gained under 60% of the total gain"


@pytest.mark.parametrize(("curve", "message"), [
    ([], "non-empty 1-D"),
    ([[1.0, 2.0]], "non-empty 1-D"),
    ([1.0, float("nan"), 2.0], "got nan at step 1"),
    ([1.0, float("inf")], "got inf at step 1"),
])
def test_a_bad_curve_is_one_data_error(curve, message):
    with pytest.raises(DataError, match=message) as caught:
        converged(curve)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("name", "value"), [
    ("tail", 0), ("tail", 1.5), ("tail", True), ("tail", "0.1"), ("tolerance", 1.0),
    ("tolerance", -0.01), ("tolerance", float("nan")),
])
def test_a_bad_tail_or_tolerance_is_one_config_error(name, value):
    with pytest.raises(ConfigError, match=f"^{name} must be a number in"):
        converged([0.0, 1.0], **{name: value})


def test_curve_summary_gives_mean_and_quantiles_per_step():
    history = np.array([[0.0, 1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0, 10.0]])
    summary = curve_summary(history)
    assert summary["step"].tolist() == [0, 1]
    assert summary["mean"].tolist() == [2.0, 4.0]
    assert summary["q50"].tolist() == [2.0, 3.0]
    assert summary["q10"][0] == pytest.approx(0.4) and summary["q90"][1] == pytest.approx(7.6)
    with pytest.raises(DataError, match="steps x items"):
        curve_summary(np.zeros((0, 3)))


def test_combine_histories_puts_items_side_by_side_and_pads_short_runs():
    long = np.array([[0.0], [1.0], [2.0]])
    short = np.array([[5.0, 6.0], [7.0, 8.0]])
    combined = combine_histories([long, None, short])
    assert combined.tolist() == [[0.0, 5.0, 6.0], [1.0, 7.0, 8.0], [2.0, 7.0, 8.0]]
    with pytest.raises(DataError, match="no attack history"):
        combine_histories([None])
