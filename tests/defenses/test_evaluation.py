"""002 Table 2 / Table 3 helpers: rankings per condition, detection measures, histograms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from varsec.defenses import (
    ResizePad,
    detection_frame,
    detection_report,
    detection_table,
    distance_histograms,
    ranking_table,
    recovery,
    table2_conditions,
)
from varsec.defenses.evaluation import seen_items, user_test_items


@pytest.fixture(scope="module")
def fgsm_catalog(tiny_vbpr, tiny_dataset):
    """The whole catalog attacked with untargeted FGSM at eps 16 (002 eq 3-4)."""
    from varsec.attacks import FGSMStep, poison_catalog

    items, result = poison_catalog(tiny_vbpr, tiny_dataset, FGSMStep(16))
    assert np.array_equal(items, np.arange(tiny_dataset.n_items))
    return result.images


def test_table2_rows_and_consistency(tiny_vbpr, tiny_dataset, tiny_defense, fgsm_catalog):
    from varsec.metrics.ranking import evaluate_sampled

    clean = torch.from_numpy(np.ascontiguousarray(tiny_dataset.catalog.images))
    conditions = table2_conditions(clean, tiny_vbpr, {"FGSM": fgsm_catalog},
                                   tiny_defense.reconstruction, random_layer=ResizePad(seed=0))
    names = [c.name for c in conditions]
    assert names == ["VBPR-Clean", "OURS-Clean", "(rand)OURS-Clean", "VBPR-FGSM", "OURS-FGSM",
                     "(rand)OURS-FGSM"]
    assert all(c.images.dtype == torch.uint8 for c in conditions)
    table = ranking_table(conditions, tiny_dataset)
    assert set(table["protocol"]) == {"sampled-20", "full"}
    assert set(table["k"]) == {5, 10, 20} and set(table["metric"]) == {"HR", "NDCG"}
    assert table["value"].between(0, 1).all()
    direct = evaluate_sampled(lambda u, i: tiny_vbpr.score(u).gather(1, i),
                              tiny_dataset.n_items, user_test_items(tiny_dataset),
                              seen_items(tiny_dataset), 20, (10,), 0)
    assert recovery(table, "VBPR-Clean") == 1.0
    value = table[(table["condition"] == "VBPR-Clean") & (table["protocol"] == "sampled-20")
                  & (table["metric"] == "HR") & (table["k"] == 10)]["value"].item()
    assert value == pytest.approx(direct.summary()["HR@10"])
    assert recovery(table, "VBPR-FGSM") < 1.0  # the attack hurts


def test_detection_report_against_hand_counts(tiny_defense, tiny_dataset):
    items = tiny_defense.split.test
    clean = torch.from_numpy(np.ascontiguousarray(tiny_dataset.catalog.images[items]))
    adv = tiny_defense.adversarial_images("detector", items)
    detector, network = tiny_defense.detector, tiny_defense.reconstruction
    report = detection_report(detector, network, clean, adv, eps=16)
    clean_flags = detector.scores(clean, network) > detector.threshold
    adv_flags = detector.scores(adv, network) > detector.threshold
    tp, fn = int(adv_flags.sum()), int((~adv_flags).sum())
    fp, tn = int(clean_flags.sum()), int((~clean_flags).sum())
    assert report.confusion.tolist() == [[tn, fp], [fn, tp]]
    assert report.metrics["accuracy"] == pytest.approx((tp + tn) / (tp + tn + fp + fn))
    assert report.metrics["recall"] == pytest.approx(tp / (tp + fn))
    assert 0.0 <= report.metrics["roc_auc"] <= 1.0


def test_detection_table_shows_each_item_once_and_histograms(tiny_defense, tiny_dataset):
    items = tiny_defense.split.test
    clean = torch.from_numpy(np.ascontiguousarray(tiny_dataset.catalog.images[items]))
    adv = tiny_defense.adversarial_images("detector", items)
    reports = detection_table(tiny_defense.detector, tiny_defense.reconstruction, clean,
                              {16: adv, 32: adv})
    assert [r.eps for r in reports] == [16, 32]
    assert len(reports[0].labels) == len(items)
    frame = detection_frame(reports)
    assert {"accuracy", "precision", "recall", "roc_auc", "threshold", "tp"} <= set(frame["metric"])
    hist = distance_histograms(reports, bins=10)
    totals = hist.groupby(["eps", "class"])["count"].sum()
    assert totals[(16, "clean")] + totals[(16, "adversarial")] == len(items)
