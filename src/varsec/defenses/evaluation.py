"""Evaluating the reconstruction + detection defense as Yin et al. do (002 sec 4.4-4.5).

* **Table 2** (:func:`table2_conditions`, :func:`ranking_table`): HR@N and NDCG@N, N = 5, 10,
  20, with 20 sampled negatives (002 sec 4.2) and with full ranking side by side, for VBPR, AMR,
  VBPR + reconstruction ("OURS") and VBPR + reconstruction + random resize-pad ("(rand)OURS"),
  each on the clean catalog and on the catalog attacked with FGSM / PGD (eps = 16 in 002). Each
  model is attacked white-box through itself; OURS sees T applied to VBPR's attacked images
  (the attacker does not know T: the adaptive attacker is :mod:`varsec.defenses.adaptive`).
  A model seeing replaced images keeps its learned item terms
  (:func:`varsec.metrics.attack.attacked_scorer`).
* **Table 3** (:func:`detection_report`, :func:`detection_table`): detection accuracy at
  eps = 8, 16, 32, 64 on held-out items, each shown either clean or adversarial (about 50 %
  adversarial), plus precision, recall, ROC-AUC (scikit-learn), the confusion matrix (Fig. 8)
  and the two classes' distance distributions (Fig. 9, :func:`distance_histograms`: data only,
  the report layer plots them).

Every image a model or the detector sees is uint8 (defended images are rounded back to 8 bits).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from varsec.data.catalog import SPLIT_CODES, Dataset
from varsec.defenses.base import as_uint8_tensor, defend_images
from varsec.defenses.detector import ContrastiveDetector
from varsec.defenses.joint import calibration_halves
from varsec.errors import ConfigError
from varsec.params import check_int

YIN_KS = (5, 10, 20)
YIN_NEGATIVES = 20
YIN_DETECTION_EPS = (8, 16, 32, 64)
OURS = "OURS"
RAND = "(rand)"


@dataclass
class Condition:
    """One row group of 002 Table 2: ``model`` scoring the catalog with ``images`` (uint8, one
    per catalog item) instead of the clean ones."""

    name: str
    model: Any
    images: Tensor


def user_test_items(dataset: Dataset, max_users: int | None = None, seed: int = 0) -> np.ndarray:
    """Each user's test item (-1 for none), optionally for a seeded sample of users."""
    test = dataset.part("test")
    items = np.full(dataset.n_users, -1, dtype=np.int64)
    users, first = np.unique(test.user, return_index=True)
    items[users] = test.item[first]
    if max_users is not None and len(users) > max_users:
        keep = np.random.default_rng(seed).choice(users, max_users, replace=False)
        items[~np.isin(np.arange(dataset.n_users), keep)] = -1
    return items


def seen_items(dataset: Dataset, *, cold: bool = True) -> Any:
    """Per-user excluded items: train and validation positives (and every cold item)."""
    from varsec.metrics.ranking import build_exclusion

    rows = np.isin(dataset.split, [SPLIT_CODES["train"], SPLIT_CODES["validation"]])
    users, items = dataset.interactions.user[rows], dataset.interactions.item[rows]
    if cold and len(dataset.cold_items):
        users = np.concatenate([users, np.repeat(np.arange(dataset.n_users),
                                                 len(dataset.cold_items))])
        items = np.concatenate([items, np.tile(dataset.cold_items, dataset.n_users)])
    return build_exclusion(users, items, dataset.n_users, dataset.n_items)


def catalog_scorer(model: Any, clean: Tensor, images: Tensor) -> Callable[[Tensor], Tensor]:
    """``score_fn(users) -> [U, N]`` of ``model`` seeing ``images`` for every catalog item."""
    from varsec.metrics.attack import attacked_scorer

    if torch.equal(clean, images):
        return lambda users: model.score(users)
    return attacked_scorer(model, np.arange(len(clean)), clean, images)


def ranking_table(
    conditions: Sequence[Condition],
    dataset: Dataset,
    *,
    ks: Sequence[int] = YIN_KS,
    n_negatives: int | None = YIN_NEGATIVES,
    full: bool = True,
    max_users: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """002 Table 2: tidy rows ``(condition, protocol, metric, k, value, n)`` of HR and NDCG.

    ``n_negatives`` sampled negatives per user (002: 20; None skips the sampled protocol) and,
    with ``full``, full ranking; the same sampled negatives for every condition.
    """
    from varsec.metrics.ranking import evaluate_full, evaluate_sampled

    tests, exclude = user_test_items(dataset, max_users, seed), seen_items(dataset)
    clean = as_uint8_tensor(dataset.catalog.images, "catalog images")
    records = []
    for condition in conditions:
        score_fn = catalog_scorer(condition.model, clean, as_uint8_tensor(condition.images))
        runs = []
        if n_negatives is not None:
            def score_items(users: Tensor, items: Tensor, fn: Any = score_fn) -> Tensor:
                return fn(users).gather(1, items.to(torch.long))
            runs.append(evaluate_sampled(score_items, dataset.n_items, tests, exclude,
                                         n_negatives, ks, seed))
        if full:
            runs.append(evaluate_full(score_fn, dataset.n_items, tests, exclude, ks))
        for result in runs:
            records += _rows(condition.name, result)
    return pd.DataFrame.from_records(
        records, columns=["condition", "protocol", "metric", "k", "value", "n"])


def _rows(name: str, result: Any) -> list[dict[str, Any]]:
    rows = []
    for key, value in result.summary().items():
        metric, _, k = key.partition("@")
        if metric in ("HR", "NDCG"):
            rows.append({"condition": name, "protocol": result.protocol, "metric": metric,
                         "k": int(k), "value": float(value), "n": int(result.n_users)})
    return rows


def defended(transform: Callable[[Tensor], Tensor], images: Tensor,
             batch_size: int = 256) -> Tensor:
    """uint8 images after a defense (reconstruction, random layer, ...), rounded to 8 bits."""
    return defend_images(transform, images, batch_size=batch_size)


def table2_conditions(
    clean: Any,
    vbpr: Any,
    attacked_vbpr: Mapping[str, Any],
    reconstruction: nn.Module,
    *,
    amr: Any | None = None,
    attacked_amr: Mapping[str, Any] | None = None,
    random_layer: Callable[[Tensor], Tensor] | None = None,
) -> list[Condition]:
    """The conditions of 002 Table 2 in its row order (Clean, then each attack).

    ``attacked_vbpr`` / ``attacked_amr`` map an attack name (``FGSM``, ``PGD``) to the uint8
    catalog attacked through that model; ``random_layer`` (e.g. ``ResizePad(seed=0)``) adds
    the ``(rand)OURS`` rows.
    """
    clean = as_uint8_tensor(clean, "clean catalog images")
    if amr is not None and set(attacked_amr or {}) != set(attacked_vbpr):
        raise ConfigError("give AMR the same attacks as VBPR (attacked_amr keys).")
    views = {"Clean": (clean, clean)}
    for attack, images in attacked_vbpr.items():
        amr_images = (attacked_amr or {}).get(attack, clean)
        views[attack] = (as_uint8_tensor(images, f"{attack} images"),
                         as_uint8_tensor(amr_images, f"AMR {attack} images"))
    conditions = []
    for attack, (for_vbpr, for_amr) in views.items():
        conditions.append(Condition(f"VBPR-{attack}", vbpr, for_vbpr))
        if amr is not None:
            conditions.append(Condition(f"AMR-{attack}", amr, for_amr))
        restored = defended(reconstruction, for_vbpr)
        conditions.append(Condition(f"{OURS}-{attack}", vbpr, restored))
        if random_layer is not None:
            rand = nn.Sequential(reconstruction, random_layer) if isinstance(
                random_layer, nn.Module) else (lambda x: random_layer(reconstruction(x)))
            conditions.append(Condition(f"{RAND}{OURS}-{attack}", vbpr, defended(rand, for_vbpr)))
    return conditions


def recovery(table: pd.DataFrame, defended_name: str, clean_name: str = "VBPR-Clean",
             metric: str = "HR", k: int = 10, protocol: str = "sampled-20") -> float:
    """Share of the clean model's ``metric@k`` that a condition keeps (the issue's target:
    ``recovery(t, "OURS-FGSM") >= 0.7``)."""
    def value(name: str) -> float:
        rows = table[(table["condition"] == name) & (table["metric"] == metric)
                     & (table["k"] == k) & (table["protocol"] == protocol)]
        if len(rows) != 1:
            raise ConfigError(f"no single {protocol} {metric}@{k} value for {name!r}.")
        return float(rows["value"].iloc[0])

    return value(defended_name) / value(clean_name)


# --------------------------------------------------------------------------------------------
# Detection (Table 3, Figs 8-9)
# --------------------------------------------------------------------------------------------


@dataclass
class DetectionReport:
    """Detection of one test set: labels 1 = adversarial, scores = detector distances."""

    eps: float | None
    threshold: float
    labels: np.ndarray
    scores: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((2, 2), dtype=np.int64))

    @property
    def clean_scores(self) -> np.ndarray:
        """Distances of the clean images."""
        return self.scores[self.labels == 0]

    @property
    def adversarial_scores(self) -> np.ndarray:
        """Distances of the adversarial images."""
        return self.scores[self.labels == 1]


def detection_report(detector: ContrastiveDetector, reconstruction: Callable[[Tensor], Tensor],
                     clean: Any, adversarial: Any, eps: float | None = None) -> DetectionReport:
    """Accuracy, precision, recall, ROC-AUC and confusion matrix ``[[TN, FP], [FN, TP]]`` of
    the calibrated detector on uint8 clean and adversarial images (different items)."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    threshold = detector.require_threshold()
    clean_scores = detector.scores(clean, reconstruction)
    adv_scores = detector.scores(adversarial, reconstruction)
    scores = np.concatenate([clean_scores, adv_scores]).astype(np.float64)
    labels = np.concatenate([np.zeros(len(clean_scores)), np.ones(len(adv_scores))]).astype(int)
    predicted = detector.decide(scores).astype(int)
    both = len(np.unique(labels)) == 2
    metrics = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(labels, scores)) if both else float("nan"),
        "n_clean": float(len(clean_scores)), "n_adversarial": float(len(adv_scores)),
    }
    confusion = confusion_matrix(labels, predicted, labels=[0, 1])
    return DetectionReport(eps, threshold, labels, scores, metrics, confusion)


def detection_table(
    detector: ContrastiveDetector,
    reconstruction: Callable[[Tensor], Tensor],
    clean: Any,
    adversarial_by_eps: Mapping[float, Any],
    seed: int = 0,
) -> list[DetectionReport]:
    """002 Table 3: one report per eps. ``clean`` and every ``adversarial_by_eps[eps]`` hold
    the same items in the same order; a seeded half of the items is shown clean, the other
    half adversarial, so no item appears in both versions."""
    clean = as_uint8_tensor(clean, "clean images")
    shown_clean, shown_adv = calibration_halves(np.arange(len(clean)), seed)
    reports = []
    for eps, images in adversarial_by_eps.items():
        adv = as_uint8_tensor(images, f"eps={eps} images")
        if adv.shape != clean.shape:
            raise ConfigError(f"eps={eps}: adversarial images {tuple(adv.shape)} do not match the "
                              f"clean images {tuple(clean.shape)}.")
        reports.append(detection_report(detector, reconstruction, clean[shown_clean],
                                         adv[shown_adv], eps))
    return reports


def detection_frame(reports: Sequence[DetectionReport]) -> pd.DataFrame:
    """Tidy rows ``(eps, metric, value)``: accuracy, precision, recall, roc_auc, threshold,
    and the confusion counts tn, fp, fn, tp."""
    records = []
    for report in reports:
        tn, fp, fn, tp = (int(v) for v in report.confusion.ravel())
        values = {**report.metrics, "threshold": report.threshold,
                  "tn": tn, "fp": fp, "fn": fn, "tp": tp}
        records += [{"eps": report.eps, "metric": k, "value": float(v)} for k, v in values.items()]
    return pd.DataFrame.from_records(records, columns=["eps", "metric", "value"])


def distance_histograms(reports: Sequence[DetectionReport], bins: int = 30) -> pd.DataFrame:
    """002 Fig. 9 as data: rows ``(eps, class, left, right, count)`` over shared bins."""
    bins = check_int(bins, "bins", low=1)
    every = np.concatenate([r.scores for r in reports]) if reports else np.zeros(0)
    edges = np.histogram_bin_edges(every if every.size else [0.0, 1.0], bins=bins)
    records = []
    for report in reports:
        for label, values in (("clean", report.clean_scores),
                              ("adversarial", report.adversarial_scores)):
            counts, _ = np.histogram(values, bins=edges)
            records += [{"eps": report.eps, "class": label, "left": float(edges[b]),
                         "right": float(edges[b + 1]), "count": int(counts[b])}
                        for b in range(bins)]
    return pd.DataFrame.from_records(records, columns=["eps", "class", "left", "right", "count"])


__all__ = [
    "OURS",
    "RAND",
    "YIN_DETECTION_EPS",
    "YIN_KS",
    "YIN_NEGATIVES",
    "Condition",
    "DetectionReport",
    "catalog_scorer",
    "defended",
    "detection_frame",
    "detection_report",
    "detection_table",
    "distance_histograms",
    "ranking_table",
    "recovery",
    "seen_items",
    "table2_conditions",
    "user_test_items",
]
