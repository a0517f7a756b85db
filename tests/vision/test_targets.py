"""The Fashion-MNIST targets of issue 3 as assertions (about 10 minutes).

Run them with ``pytest -m benchmark tests/vision``; without ``-m benchmark`` they are skipped
(``make test`` deselects them). The configurations are those of ``benchmarks/vision.py``; the
figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import pytest

from varsec.vision import TrainConfig, evaluate_robustness, train_classifier

COMMON = {"batch_size": 128, "lr": 0.05, "eps": 8.0, "seed": 0}


@pytest.fixture(autouse=True)
def _only_when_asked(request):
    markexpr = request.config.getoption("markexpr") or ""
    if "benchmark" not in markexpr.replace("not benchmark", ""):
        pytest.skip("slow target check: run with -m benchmark")


@pytest.mark.benchmark
def test_standard_fmnist_cnn_is_accurate_and_fragile(fmnist):
    result = train_classifier(fmnist, TrainConfig(mode="standard", epochs=8, **COMMON))
    report = evaluate_robustness(result.backbone, fmnist, [8], steps=20)
    assert report.clean_acc >= 0.90
    assert report.robust_acc[8.0] <= 0.10


@pytest.mark.benchmark
def test_pgd_at_fmnist_cnn_is_robust(fmnist):
    config = TrainConfig(mode="pgd-at", epochs=3, steps=3, **COMMON)
    result = train_classifier(fmnist, config)
    report = evaluate_robustness(result.backbone, fmnist, [8], steps=20)
    assert report.clean_acc >= 0.80
    assert report.robust_acc[8.0] >= 0.65
