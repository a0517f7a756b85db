"""Robustness evaluation: clean and PGD accuracy per eps on the test part, quantised."""

from __future__ import annotations

import pytest

from varsec.errors import ConfigError, ModelError
from varsec.vision import create_backbone, evaluate_robustness
from varsec.vision.robustness import parse_eps_list


def test_report_has_clean_and_per_eps_accuracy(fmnist, trained_pgd):
    report = evaluate_robustness(trained_pgd.backbone, fmnist, [2, 8], steps=5, limit=200)
    assert report.part == "test" and report.items == 200 and report.steps == 5
    assert set(report.robust_acc) == {2.0, 8.0}
    assert report.clean_acc >= report.robust_acc[2.0] >= report.robust_acc[8.0]
    assert report.alpha == {2.0: 1.0, 8.0: 4.0}
    table = report.to_markdown()
    assert "| 0 (clean) |" in table and "| 8 (PGD-5) |" in table
    assert report.to_dict()["robust_acc"].keys() == {"2", "8"}


def test_eps_list_parsing_and_validation():
    assert parse_eps_list("2, 4,8") == [2.0, 4.0, 8.0]
    with pytest.raises(ConfigError, match="'x' is not a number"):
        parse_eps_list("2,x")
    with pytest.raises(ConfigError, match=r"eps must lie in \[1, 255\]"):
        parse_eps_list("0,8")
    with pytest.raises(ConfigError, match=r"got 300"):
        parse_eps_list("300")


def test_robustness_bad_input(fmnist_small, trained_standard):
    with pytest.raises(ConfigError, match="steps must be an integer >= 1"):
        evaluate_robustness(trained_standard.backbone, fmnist_small, [8], steps=0)
    small_head = create_backbone("fmnist-cnn", num_classes=3)
    with pytest.raises(ModelError, match="knows 3 classes but catalog"):
        evaluate_robustness(small_head, fmnist_small, [8])
