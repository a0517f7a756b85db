"""Report cells: a small non-zero number (a p-value, a rate) never reads as zero."""

from __future__ import annotations

import pytest

from varsec.study.report.render import cell


@pytest.mark.parametrize(("value", "text"), [
    (0.0519, "0.0519"), (0.0, "0.0000"), (1.0, "1.0000"), (0.00005, "0.0001"),
    (3.89e-18, "3.9e-18"), (-2e-6, "-2e-06"), (12345.6, "1.235e+04"),
    (None, ""), (float("nan"), ""), ("yes", "yes"), (7, "7"),
])
def test_a_cell_keeps_small_numbers_visible(value, text):
    assert cell(value) == text
