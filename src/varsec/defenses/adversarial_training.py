"""Adversarial training of the extractor as a defense (Madry et al. 2018; TAaMR 001 sec 3.3;
thesis 004): the robust extractors are trained by the vision layer (``training: pgd-at``,
``free-at``, ``curriculum-at``); as a defense it names them, so the report compares the
attacks on them with the attacks on the undefended extractor. It changes the model, not the
images: nothing is applied to pixels and there is no strength to sweep.
"""

from __future__ import annotations

from varsec.defenses.registry import DefenseMethod, register_defense


@register_defense("adversarial-training")
class AdversarialTraining(DefenseMethod):
    """Robust extractors trained on adversarial examples (001 sec 3.3, 004)."""

    label = "adversarial training"
    pixel = False
    paper = "Madry et al. 2018; 001 sec 3.3"


__all__ = ["AdversarialTraining"]
