"""EXPA, the expert attack (Liu & Larson, AIP 000 sec 4.2, eq 7).

The attacker knows a popular *hook* item and the recommender's pre-trained feature extractor
(not its user embeddings) and pulls the cold item's features towards the hook's:

    δ <- argmin_δ ||Φ(x_i + δ) - Φ(x_hook)||_2                  (000 eq 7)

solved by Adam on δ with clipping (000 Alg. 1; :class:`~varsec.attacks.engine.AdamStep`, the
paper uses lr 0.01 and 5000 iterations) or by PGD. The hook is the most-interacted training item
by default (the paper's choice) or any given id (:func:`~varsec.attacks.hooks.resolve_hook`).
``metric="cosine"`` gives the thesis' cosine-distance variant.
"""

from __future__ import annotations

from typing import Any

from varsec.attacks.engine import AdamAttack
from varsec.attacks.hooks import catalog_pixels, resolve_hook
from varsec.attacks.objectives import FeatureTarget
from varsec.attacks.registry import register_attack
from varsec.data.catalog import Dataset, ItemCatalog


def expa_objective(
    extractor: Any,
    source: Dataset | ItemCatalog,
    hook: Any = None,
    *,
    metric: str = "l2",
    layer: str | None = None,
    threshold: float | None = None,
) -> FeatureTarget:
    """The EXPA objective: features of the hook item's image as the target of every image.

    ``hook`` is an item id (default: the most-interacted training item of ``source``).
    """
    index = resolve_hook(source, hook)
    hook_image = catalog_pixels(source, [index], "EXPA (it needs the hook item's image)")
    return FeatureTarget(extractor, target_images=hook_image, metric=metric, layer=layer,
                         threshold=threshold)


@register_attack("expa")
class ExpaAttack(AdamAttack):
    """EXPA (AIP 000 sec 4.2): Adam on the perturbation of a cold item's image, pulling its
    features towards the hook item's (the expert knows the extractor, not the users); AIP's lr
    0.01 in [0, 1] units is 2.55 levels."""

    objective = "feature-l2"
    family = "promotion"
    paper = "000 sec 4.2"


__all__ = ["expa_objective"]
