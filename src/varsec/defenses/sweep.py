"""Strength sweeps of the input transforms, as in Liu & Larson's Table 7 (000 sec 5.4).

For one recommender and one attack, a defense is applied at progressively stronger levels
(JPEG quality 90, 70, 50, 30, 10; bit depth 7 ... 2) and the question is: at which *weakest*
level does the adversarial cold item's HR@5 fall to (at or below) the cooperative item's
average HR@5? And what does that level cost clean recommendation when it is applied, as it
would be in practice, to every catalog image ("If these defenses would be applied in practice,
they would need to be applied to all images", 000 sec 5.4)?

Nothing here trains or ranks: :func:`run_sweep` takes callables that measure a transform, so a
study runner (or a notebook) plugs in whatever pipeline it has - the two-stage AIP protocol,
the non-adaptive attack (images attacked without the defense) or the adaptive one (re-attacked
through :meth:`~varsec.defenses.base.InputTransform.adaptive_hook` at each level).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from varsec.defenses.base import InputTransform
from varsec.defenses.bit_depth import BitDepth
from varsec.defenses.jpeg import JPEG
from varsec.defenses.median import MedianSmoothing
from varsec.defenses.resize_pad import ResizePad
from varsec.errors import ConfigError

# weakest level first (000 Table 7's column order)
LEVELS: dict[str, tuple[float, ...]] = {
    "jpeg": (90, 70, 50, 30, 10),
    "bit-depth": (7, 6, 5, 4, 3, 2),
    "median": (3, 5, 7),
    "resize-pad": (0.95, 0.9, 0.8),
}
_BUILDERS: dict[str, Callable[[Any], InputTransform]] = {
    "jpeg": lambda level: JPEG(quality=_whole(level, "JPEG quality")),
    "bit-depth": lambda level: BitDepth(bits=_whole(level, "bit depth")),
    "median": lambda level: MedianSmoothing(window=_whole(level, "median window")),
    "resize-pad": lambda level: ResizePad(ratio=float(level)),
}


def _whole(level: Any, what: str) -> int:
    if isinstance(level, bool) or not float(level).is_integer():
        raise ConfigError(f"a {what} level must be a whole number, got {level!r}.")
    return int(level)


def make_transform(kind: str, level: Any) -> InputTransform:
    """The transform ``kind`` at ``level`` (quality, bits, window, or resize ratio)."""
    if kind not in _BUILDERS:
        raise ConfigError(f"unknown defense kind {kind!r} (known: {', '.join(_BUILDERS)}).")
    return _BUILDERS[kind](level)


def sweep_levels(kind: str) -> tuple[float, ...]:
    """The default levels of ``kind``, weakest first (000 Table 7 for JPEG and bit depth)."""
    if kind not in LEVELS:
        raise ConfigError(f"unknown defense kind {kind!r} (known: {', '.join(LEVELS)}).")
    return LEVELS[kind]


@dataclass
class SweepPoint:
    """One level: adversarial and cooperative HR@5 after the defense, and its clean cost."""

    level: float
    hr_adversarial: float
    hr_cooperative: float
    clean_hr: float | None = None

    @property
    def success(self) -> bool:
        """The adversarial item fell to (at or below) the cooperative item's HR@5."""
        return self.hr_adversarial <= self.hr_cooperative


@dataclass
class SweepResult:
    """All levels of one (defense, recommender, attack) sweep, weakest first."""

    kind: str
    points: list[SweepPoint]
    baseline_clean_hr: float | None = None
    labels: dict[str, Any] = field(default_factory=dict)

    @property
    def weakest(self) -> float | None:
        """The weakest level that succeeds (None: no level does)."""
        return weakest_level([p.level for p in self.points],
                             [p.hr_adversarial for p in self.points],
                             [p.hr_cooperative for p in self.points])

    def point(self, level: float) -> SweepPoint:
        """The measurements at ``level``."""
        for p in self.points:
            if p.level == level:
                return p
        swept = [p.level for p in self.points]
        raise ConfigError(f"level {level!r} was not swept (swept: {swept}).")

    @property
    def cost(self) -> float | None:
        """Clean HR@10 lost at the weakest successful level (baseline minus defended)."""
        level = self.weakest
        if level is None or self.baseline_clean_hr is None:
            return None
        clean = self.point(level).clean_hr
        return None if clean is None else self.baseline_clean_hr - clean

    def to_frame(self) -> pd.DataFrame:
        """Tidy rows, one per level, with the labels (recommender, attack, attacker ...)."""
        rows = [{**self.labels, "defense": self.kind, "level": p.level,
                 "hr5_adversarial": p.hr_adversarial, "hr5_cooperative": p.hr_cooperative,
                 "success": p.success, "clean_hr10": p.clean_hr,
                 "clean_cost": (None if p.clean_hr is None or self.baseline_clean_hr is None
                                else self.baseline_clean_hr - p.clean_hr),
                 "weakest": p.level == self.weakest} for p in self.points]
        return pd.DataFrame.from_records(rows)


def weakest_level(levels: Sequence[float], hr_adversarial: Sequence[float],
                  hr_cooperative: Sequence[float] | float) -> float | None:
    """The first level (in sweep order, weakest first) whose adversarial HR@5 is at or below
    the cooperative one (a number, or one value per level); None when no level succeeds."""
    coop = ([float(hr_cooperative)] * len(levels) if isinstance(hr_cooperative, int | float)
            else [float(v) for v in hr_cooperative])
    if not len(levels) == len(hr_adversarial) == len(coop):
        raise ConfigError(f"give one adversarial and cooperative HR per level: {len(levels)} "
                          f"levels, {len(hr_adversarial)} and {len(coop)} values.")
    for level, adv, reference in zip(levels, hr_adversarial, coop, strict=True):
        if float(adv) <= reference:
            return level
    return None


def run_sweep(
    kind: str,
    adversarial_hr: Callable[[InputTransform], float],
    cooperative_hr: float | Callable[[InputTransform], float],
    *,
    levels: Sequence[float] | None = None,
    clean_hr: Callable[[InputTransform], float] | None = None,
    baseline_clean_hr: float | None = None,
    labels: Mapping[str, Any] | None = None,
) -> SweepResult:
    """Measure a defense at every level (weakest first); see the module docstring.

    ``adversarial_hr(t)``: the adversarial cold items' mean HR@5 with the defense ``t``;
    ``cooperative_hr``: the cooperative items' mean HR@5, fixed (000: the undefended
    cooperative image) or as a function of ``t`` (cooperative images defended too);
    ``clean_hr(t)``: clean HR@10 with ``t`` applied to every catalog image, whose drop from
    ``baseline_clean_hr`` is the defense's cost.
    """
    points = []
    for level in sweep_levels(kind) if levels is None else levels:
        transform = make_transform(kind, level)
        coop = cooperative_hr(transform) if callable(cooperative_hr) else float(cooperative_hr)
        clean = None if clean_hr is None else float(clean_hr(transform))
        points.append(SweepPoint(level, float(adversarial_hr(transform)), float(coop), clean))
    return SweepResult(kind, points, baseline_clean_hr, dict(labels or {}))


def two_stage_sweep(
    two_stage: Any,
    sets: Any,
    cooperative: Any,
    adversarial: Any | Callable[[InputTransform], Any],
    kind: str,
    *,
    levels: Sequence[float] | None = None,
    defend_cooperative: bool = False,
    clean_hr: Callable[[InputTransform], float] | None = None,
    baseline_clean_hr: float | None = None,
    labels: Mapping[str, Any] | None = None,
) -> SweepResult:
    """:func:`run_sweep` on the AIP two-stage protocol (000 sec 5.2, eq 5).

    ``two_stage`` / ``sets`` are a :class:`~varsec.recsys.two_stage.TwoStage` and its prepared
    candidate sets; ``cooperative`` the cold items' uint8 images; ``adversarial`` their uint8
    adversarial images (the non-adaptive attacker: attacked once, without the defense) or a
    callable ``transform -> images`` that re-attacks through the defense at each level (the
    adaptive attacker, e.g. with ``transform.adaptive_hook()``). The defense is applied to the
    adversarial images, and to the cooperative ones too with ``defend_cooperative``.
    """
    from varsec.defenses.base import defend_images
    from varsec.metrics.attack import aip_measures

    def measures(transform: InputTransform) -> Any:
        images = adversarial(transform) if callable(adversarial) else adversarial
        coop = defend_images(transform, cooperative) if defend_cooperative else cooperative
        return aip_measures(two_stage, sets, coop, defend_images(transform, images), ks=(5,))

    cache: dict[int, Any] = {}

    def cached(transform: InputTransform) -> Any:
        if id(transform) not in cache:
            cache.clear()
            cache[id(transform)] = measures(transform)
        return cache[id(transform)]

    coop_hr: float | Callable[[InputTransform], float]
    if defend_cooperative:
        coop_hr = lambda t: cached(t).value("HR_cold_coop", 5)  # noqa: E731
    else:
        coop_hr = aip_measures(two_stage, sets, cooperative, cooperative,
                               ks=(5,)).value("HR_cold_coop", 5)
    return run_sweep(kind, lambda t: cached(t).value("HR_cold_adv", 5), coop_hr,
                     levels=levels, clean_hr=clean_hr, baseline_clean_hr=baseline_clean_hr,
                     labels=labels)


def defended_catalog_hr(model: Any, dataset: Any, transform: Callable[[Any], Any] | None,
                        *, k: int = 10, n_negatives: int | None = None, seed: int = 0) -> float:
    """Clean HR@k of ``model`` when ``transform`` is applied to every catalog image (None: no
    defense); full ranking, or ``n_negatives`` sampled negatives."""
    import torch

    from varsec.defenses.base import defend_images
    from varsec.defenses.evaluation import Condition, ranking_table

    clean = torch.from_numpy(np.ascontiguousarray(dataset.catalog.images))
    images = clean if transform is None else defend_images(transform, clean)
    table = ranking_table([Condition("defended", model, images)], dataset, ks=(k,),
                          n_negatives=n_negatives, full=n_negatives is None, seed=seed)
    return float(table[table["metric"] == "HR"]["value"].iloc[0])


def sweep_table(results: Sequence[SweepResult]) -> pd.DataFrame:
    """000 Table 7 as data: one row per sweep with its weakest successful level and its cost."""
    rows = [{**r.labels, "defense": r.kind, "weakest_level": r.weakest, "clean_cost": r.cost,
             "levels": [p.level for p in r.points],
             "success": [p.success for p in r.points]} for r in results]
    return pd.DataFrame.from_records(rows)


__all__ = [
    "LEVELS",
    "SweepPoint",
    "SweepResult",
    "defended_catalog_hr",
    "make_transform",
    "run_sweep",
    "sweep_levels",
    "sweep_table",
    "two_stage_sweep",
    "weakest_level",
]
