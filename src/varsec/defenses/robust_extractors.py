"""Robust extractors in the loop: VBPR and AMR on standard, PGD-AT and free-AT extractors,
attacked with targeted FGSM / PGD / C&W (Anelli, Di Noia, Malitesta & Merra, 001 sec 2-3,
Tables 1-2: the T / AT / FAT columns).

The attacker perturbs the images of a low-recommended source category so that the feature
extractor classifies them as a popular target category (001 eq 3; Fashion-MNIST's sandal ->
sneaker is the twin of 001's sandal -> running shoe). Measured per (recommender, extractor,
attack):

* success rate (the extractor now says the target class) and feature loss (MSE between the
  features of the clean and adversarial images), 001 Table 2;
* CHR@K of the source category before and after (the mean number of its items in a user's
  top-K list, what 001 Table 1 prints), with the recommender scoring the attacked items from
  their adversarial images and keeping its learned item terms.

Everything is built from the vision (training modes), recsys (fit), attacks (front) and
metrics (attack, ranking) layers; adversarial images are uint8 before anything measures them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from varsec.data.catalog import Dataset, ItemCatalog
from varsec.errors import ConfigError, DataError

COLUMNS = {"standard": "T", "pgd-at": "AT", "free-at": "FAT"}
RECOMMENDER_KINDS = ("vbpr", "amr")
ATTACKS = ("fgsm", "pgd", "cw")


@dataclass(frozen=True)
class AttackSpec:
    """One targeted attack of 001: ``kind`` (fgsm, pgd, cw), ``eps`` in 8-bit levels (C&W: an
    optional L-inf cap), ``steps`` (PGD / C&W iterations), ``c`` (C&W's constant)."""

    kind: str
    eps: float | None = 8.0
    steps: int = 10
    c: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ATTACKS:
            raise ConfigError(f"attack kind must be one of {', '.join(ATTACKS)}, "
                              f"got {self.kind!r}.")
        if self.kind != "cw" and self.eps is None:
            raise ConfigError(f"a {self.kind} attack needs eps (8-bit levels).")

    @property
    def label(self) -> str:
        """``FGSM (eps=4)``-style name, as in 001's tables."""
        name = {"fgsm": "FGSM", "pgd": "PGD", "cw": "C&W"}[self.kind]
        return name if self.eps is None else f"{name} (eps={self.eps:g})"


# 001 Tables 1-2: FGSM and PGD at eps 4 and 8, and C&W.
PAPER_ATTACKS = (AttackSpec("fgsm", 4), AttackSpec("fgsm", 8), AttackSpec("pgd", 4),
                 AttackSpec("pgd", 8), AttackSpec("cw", None, steps=50))


def train_extractors(catalog: ItemCatalog, modes: Sequence[str] = tuple(COLUMNS),
                     config: Any = None, **overrides: Any) -> dict[str, Any]:
    """One classifier backbone per training mode (standard, pgd-at, free-at) on the catalog's
    categories, with the vision layer's trainer; returns mode -> backbone (eval mode)."""
    from varsec.vision.training import TrainConfig, train_classifier

    base = config or TrainConfig()
    return {mode: train_classifier(catalog, base.replace(mode=mode, **overrides)).backbone
            for mode in modes}


def build_recommenders(dataset: Dataset, extractors: Mapping[str, Any],
                       kinds: Sequence[str] = RECOMMENDER_KINDS,
                       **hyperparameters: Any) -> dict[tuple[str, str], Any]:
    """(kind, mode) -> a VBPR / AMR fitted on each extractor's features (extractor attached)."""
    from varsec.recsys import create_recommender

    unknown = [k for k in kinds if k not in RECOMMENDER_KINDS]
    if unknown:
        raise ConfigError(f"recommender kind must be vbpr or amr, got {unknown[0]!r}.")
    return {(kind, mode): create_recommender(kind, **hyperparameters).fit(dataset,
                                                                          extractor=extractor)
            for mode, extractor in extractors.items() for kind in kinds}


def targeted_attack(extractor: Any, images: Any, labels: Any, target: int, spec: AttackSpec,
                    *, seed: int = 0, batch_size: int = 128) -> Any:
    """Targeted attack of 001 eq 3 on the extractor: uint8 images pushed towards ``target``."""
    from varsec.attacks.front import CW, FGSM, PGD

    options = {"seed": seed, "batch_size": batch_size}
    if spec.kind == "fgsm":
        attack: Any = FGSM(extractor, eps=spec.eps, **options)
    elif spec.kind == "pgd":
        attack = PGD(extractor, eps=spec.eps, alpha=max(spec.eps / 4, 1.0), steps=spec.steps,
                     **options)
    else:
        attack = CW(extractor, c=spec.c, steps=spec.steps, eps=spec.eps, **options)
    return attack.targeted(target).run(images, labels)


def category_items(dataset: Dataset, category: Any) -> tuple[int, np.ndarray]:
    """(category code, catalog indices of its items)."""
    catalog = dataset.catalog
    if catalog.categories is None:
        raise DataError(f"catalog {catalog.name!r} has no categories to attack.")
    code = catalog.category_code(category)
    items = np.flatnonzero(np.asarray(catalog.categories) == code)
    if len(items) == 0:
        raise DataError(f"category {category!r} has no items in catalog {catalog.name!r}.")
    return code, items


def _exclusion(dataset: Dataset) -> Any:
    from varsec.defenses.evaluation import seen_items

    return seen_items(dataset, cold=False)


def robust_extractor_table(
    dataset: Dataset,
    extractors: Mapping[str, Any],
    recommenders: Mapping[tuple[str, str], Any],
    source: Any,
    target: Any,
    attacks: Sequence[AttackSpec] = PAPER_ATTACKS,
    *,
    k: int = 20,
    max_items: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """001 Tables 1-2 as tidy rows ``(recommender, extractor, column, attack, metric, value)``.

    Metrics: ``success_rate``, ``feature_loss`` (per extractor and attack),
    ``CHR@k`` (count) and ``CHR_share@k`` of the source category with ``No-Attack`` rows for the
    clean catalog. ``max_items`` attacks a seeded sample of the source items.
    """
    from varsec.attacks.hooks import catalog_pixels
    from varsec.metrics.attack import attacked_scorer, classifier_success_rate, feature_loss
    from varsec.metrics.ranking import chr_at_k

    source_code, items = category_items(dataset, source)
    target_code = dataset.catalog.category_code(target)
    if max_items is not None and len(items) > max_items:
        items = np.sort(np.random.default_rng(seed).choice(items, max_items, replace=False))
    clean = catalog_pixels(dataset, items, "the targeted attack")
    categories, exclude = np.asarray(dataset.catalog.categories), _exclusion(dataset)
    labels = torch.full((len(items),), source_code, dtype=torch.long)
    records: list[dict[str, Any]] = []

    def chr_rows(model: Any, score_fn: Any, names: dict[str, Any]) -> None:
        share, count = chr_at_k(score_fn, dataset.n_users, categories, source_code, k, exclude)
        records.append({**names, "metric": f"CHR@{k}", "value": count})
        records.append({**names, "metric": f"CHR_share@{k}", "value": share})

    for mode, extractor in extractors.items():
        column = COLUMNS.get(mode, mode)
        models = {kind: m for (kind, m_mode), m in recommenders.items() if m_mode == mode}
        for kind, model in models.items():
            chr_rows(model, model.score, {"recommender": kind, "extractor": mode,
                                          "column": column, "attack": "No-Attack"})
        for spec in attacks:
            result = targeted_attack(extractor, clean, labels, target_code, spec, seed=seed)
            adv = result.images
            names = {"extractor": mode, "column": column, "attack": spec.label}
            success = classifier_success_rate(extractor, adv, target=target_code)
            loss = float(np.mean(feature_loss(extractor, clean, adv)))
            records.append({**names, "recommender": None, "metric": "success_rate",
                            "value": success})
            records.append({**names, "recommender": None, "metric": "feature_loss",
                            "value": loss})
            for kind, model in models.items():
                scorer = attacked_scorer(model, items, clean, adv)
                chr_rows(model, scorer, {**names, "recommender": kind})
    columns = ["recommender", "extractor", "column", "attack", "metric", "value"]
    return pd.DataFrame.from_records(records, columns=columns)


__all__ = [
    "ATTACKS",
    "COLUMNS",
    "PAPER_ATTACKS",
    "RECOMMENDER_KINDS",
    "AttackSpec",
    "build_recommenders",
    "category_items",
    "robust_extractor_table",
    "targeted_attack",
    "train_extractors",
]
