"""varsec.vision: backbones (feature extractors / classifiers), classifier training including
adversarial training, robustness evaluation, and cached feature extraction (DESIGN.md section 4).

Images are float32 N x C x H x W in [0, 1]; every resize and normalisation lives inside the
backbone; eps is in 8-bit levels.
"""

from varsec.vision.adversarial import check_eps, eval_mode, pgd_linf, quantize_float
from varsec.vision.base import Backbone
from varsec.vision.checkpoint import Checkpoint, load_checkpoint, open_backbone, save_checkpoint
from varsec.vision.features import (
    FeatureCache,
    FeatureResult,
    compute_features,
    extract_features,
    feature_cache_key,
)
from varsec.vision.perturbation import float_to_uint8, uint8_to_float
from varsec.vision.registry import create_backbone, known_backbones, register_backbone
from varsec.vision.robustness import RobustnessReport, evaluate_robustness
from varsec.vision.splits import CatalogParts, catalog_parts
from varsec.vision.training import TrainConfig, TrainResult, accuracy, train_classifier

__all__ = [
    "Backbone",
    "CatalogParts",
    "Checkpoint",
    "FeatureCache",
    "FeatureResult",
    "RobustnessReport",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "catalog_parts",
    "check_eps",
    "compute_features",
    "create_backbone",
    "eval_mode",
    "evaluate_robustness",
    "extract_features",
    "feature_cache_key",
    "float_to_uint8",
    "known_backbones",
    "load_checkpoint",
    "open_backbone",
    "pgd_linf",
    "quantize_float",
    "register_backbone",
    "save_checkpoint",
    "train_classifier",
    "uint8_to_float",
]
