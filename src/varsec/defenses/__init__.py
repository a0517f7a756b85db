"""varsec.defenses: input transforms with their adaptive attacks, and Yin et al.'s
reconstruction + contrastive detection framework (DESIGN.md section 8).

Typical use::

    from varsec.defenses import JPEG, ResizePad
    defended = JPEG(quality=50)(images)                  # float NCHW in [0, 1], any extractor
    hook = JPEG(quality=50).adaptive_hook()              # BPDA, for run_attack(transform=hook)
    hook = ResizePad(seed=0).adaptive_hook(eot_samples=10)       # EOT over 10 draws

    from varsec.defenses import DefenseConfig, train_defense
    result = train_defense(vbpr, dataset, DefenseConfig(recon_epochs=3))
    result.detector.threshold                            # calibrated on held-out items
"""

from varsec.defenses.adaptive import AdaptiveResult, DetectorAwareObjective, adaptive_bpr_attack
from varsec.defenses.base import InputTransform, defend_images
from varsec.defenses.bit_depth import BitDepth
from varsec.defenses.checkpoint import (
    load_defense,
    load_detector,
    load_reconstruction,
    save_detector,
    save_reconstruction,
)
from varsec.defenses.detector import (
    YIN_THRESHOLD,
    Calibration,
    ContrastiveDetector,
    contrastive_loss,
)
from varsec.defenses.evaluation import (
    Condition,
    DetectionReport,
    detection_frame,
    detection_report,
    detection_table,
    distance_histograms,
    ranking_table,
    recovery,
    table2_conditions,
)
from varsec.defenses.joint import DefenseConfig, DefenseResult, ItemSplit, train_defense
from varsec.defenses.jpeg import JPEG
from varsec.defenses.median import MedianSmoothing
from varsec.defenses.reconstruction import PerceptualLoss, ReconstructionNet, pixel_loss
from varsec.defenses.resize_pad import ResizePad
from varsec.defenses.sweep import make_transform

__all__ = [
    "JPEG",
    "YIN_THRESHOLD",
    "AdaptiveResult",
    "BitDepth",
    "Calibration",
    "Condition",
    "ContrastiveDetector",
    "DefenseConfig",
    "DefenseResult",
    "DetectionReport",
    "DetectorAwareObjective",
    "InputTransform",
    "ItemSplit",
    "MedianSmoothing",
    "PerceptualLoss",
    "ReconstructionNet",
    "ResizePad",
    "adaptive_bpr_attack",
    "contrastive_loss",
    "defend_images",
    "detection_frame",
    "detection_report",
    "detection_table",
    "distance_histograms",
    "load_defense",
    "load_detector",
    "load_reconstruction",
    "make_transform",
    "pixel_loss",
    "ranking_table",
    "recovery",
    "save_detector",
    "save_reconstruction",
    "table2_conditions",
    "train_defense",
]
