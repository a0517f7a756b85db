"""varsec.attacks: one engine (FGSM, PGD, Adam-on-δ, C&W) + objectives (classifier, feature
target, INSA, BPR-untargeted) + c-SEMA, and a torchattacks-like front (DESIGN.md section 7).

Budgets are in 8-bit levels (``eps=8`` means 8/255) and every adversarial image leaves the engine
as uint8 inside its budget. Typical use::

    from varsec.attacks import PGD, INSA, AdamStep, run_attack

    adv = PGD(classifier, eps=8, alpha=2, steps=10)(images, labels)         # classifiers
    result = run_attack(INSA(vbpr), cold_images, AdamStep(eps=32, steps=100))   # AIP
    result.images  # uint8 N x C x H x W
"""

from varsec.attacks.bpr_untargeted import BPRUntargeted, poison_catalog
from varsec.attacks.csema import CORNERS, CSemaResult, InsetPlacement, csema, csema_batch
from varsec.attacks.cw import CWL2Step, CWLinfStep
from varsec.attacks.engine import (
    AdamStep,
    AttackResult,
    FGSMStep,
    PGDStep,
    Problem,
    StepRule,
    project,
    run_attack,
)
from varsec.attacks.expa import expa_objective
from varsec.attacks.front import CW, FGSM, PGD, PGDL2, Attack, CWLinf
from varsec.attacks.hooks import (
    catalog_pixels,
    most_interacted_item,
    require_pixels,
    resolve_hook,
    select_items,
)
from varsec.attacks.insa import INSA
from varsec.attacks.objectives import ClassifierObjective, FeatureTarget, Objective
from varsec.attacks.quantize import (
    budget_levels,
    check_eps,
    load_png,
    quantize,
    save_png,
    to_float,
    to_uint8,
)
from varsec.attacks.transforms import TransformHook

__all__ = [
    "CORNERS",
    "CW",
    "FGSM",
    "INSA",
    "PGD",
    "PGDL2",
    "AdamStep",
    "Attack",
    "AttackResult",
    "BPRUntargeted",
    "CSemaResult",
    "CWL2Step",
    "CWLinf",
    "CWLinfStep",
    "ClassifierObjective",
    "FGSMStep",
    "FeatureTarget",
    "InsetPlacement",
    "Objective",
    "PGDStep",
    "Problem",
    "StepRule",
    "TransformHook",
    "budget_levels",
    "catalog_pixels",
    "check_eps",
    "csema",
    "csema_batch",
    "expa_objective",
    "load_png",
    "most_interacted_item",
    "poison_catalog",
    "project",
    "quantize",
    "require_pixels",
    "resolve_hook",
    "run_attack",
    "save_png",
    "select_items",
    "to_float",
    "to_uint8",
]
