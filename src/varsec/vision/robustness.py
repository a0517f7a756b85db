"""Robustness evaluation of a classifier backbone: clean accuracy and PGD accuracy per epsilon.

Measured on the catalog's test part (``source_split == 'test'``), which training never sees.
Every adversarial image is quantised to 8 bits inside its eps-ball before it is classified
(DESIGN.md section 2). The attack is L-inf PGD (Madry et al., 2018) with a random start,
``steps`` steps (20 by default: "PGD-20") of 2.5 * eps / steps levels unless ``alpha`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from varsec.data.catalog import ItemCatalog
from varsec.errors import ConfigError, ModelError
from varsec.params import check_int
from varsec.vision.adversarial import check_eps, default_alpha
from varsec.vision.base import Backbone
from varsec.vision.splits import image_batch, label_batch, num_classes, part_indices
from varsec.vision.training.loop import accuracy


@dataclass
class RobustnessReport:
    """Clean and PGD accuracies of one backbone on one catalog part."""

    backbone: str
    part: str
    items: int
    steps: int
    clean_acc: float
    robust_acc: dict[float, float] = field(default_factory=dict)
    alpha: dict[float, float] = field(default_factory=dict)
    checkpoint_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (eps keys as strings)."""
        return {
            "backbone": self.backbone, "part": self.part, "items": self.items,
            "steps": self.steps, "clean_acc": self.clean_acc,
            "robust_acc": {f"{e:g}": a for e, a in self.robust_acc.items()},
            "alpha": {f"{e:g}": a for e, a in self.alpha.items()},
            "checkpoint_hash": self.checkpoint_hash,
        }

    def to_markdown(self) -> str:
        """A small markdown table: one row per eps (eps 0 = clean)."""
        lines = [f"| eps (8-bit levels) | accuracy ({self.part}, n={self.items}) |", "|---|---|",
                 f"| 0 (clean) | {self.clean_acc:.2%} |"]
        lines += [f"| {e:g} (PGD-{self.steps}) | {a:.2%} |" for e, a in self.robust_acc.items()]
        return "\n".join(lines)


def parse_eps_list(text: str) -> list[float]:
    """Parse ``"2,4,8"`` into validated eps values (8-bit levels)."""
    values = []
    for token in str(text).split(","):
        token = token.strip()
        try:
            values.append(float(token))
        except ValueError:
            raise ConfigError(f"eps list {text!r}: {token!r} is not a number.") from None
    return [check_eps(v) for v in values]


def _check_classifier(backbone: Backbone, catalog: ItemCatalog) -> None:
    if backbone.num_classes is None:
        raise ModelError(f"backbone {backbone.name!r} does not classify; it has no accuracy.")
    if backbone.num_classes < num_classes(catalog):
        raise ModelError(
            f"backbone {backbone.name!r} knows {backbone.num_classes} classes but catalog "
            f"{catalog.name!r} has {num_classes(catalog)} categories."
        )


def evaluate_robustness(
    backbone: Backbone,
    catalog: ItemCatalog,
    eps: list[float] | tuple[float, ...] = (2, 4, 8),
    *,
    steps: int = 20,
    alpha: float | None = None,
    part: str = "test",
    limit: int | None = None,
    batch_size: int = 250,
    seed: int = 0,
    val_fraction: float = 0.1,
    checkpoint_hash: str | None = None,
) -> RobustnessReport:
    """Clean accuracy and PGD-``steps`` accuracy at every eps on the catalog's ``part``.

    ``limit`` evaluates a seeded random sample of that many items (quick checks).
    """
    eps_values = [check_eps(e) for e in eps]
    steps = check_int(steps, "steps", low=1)
    _check_classifier(backbone, catalog)
    indices = part_indices(catalog, part, val_fraction=val_fraction, seed=seed)
    if limit is not None and limit < len(indices):
        indices = np.sort(np.random.default_rng(seed).choice(indices, limit, replace=False))
    images, labels = image_batch(catalog, indices), label_batch(catalog, indices)
    backbone.check_images(images[:1])
    report = RobustnessReport(
        backbone=backbone.name, part=part, items=len(indices), steps=steps,
        clean_acc=accuracy(backbone, images, labels, batch_size=batch_size),
        checkpoint_hash=checkpoint_hash,
    )
    for value in eps_values:
        step = alpha if alpha is not None else default_alpha(value, steps)
        report.alpha[value] = step
        report.robust_acc[value] = accuracy(
            backbone, images, labels, eps=value, steps=steps, alpha=step,
            batch_size=batch_size, seed=seed,
        )
    return report
