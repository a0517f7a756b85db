"""Classifier training on catalog categories: standard, PGD-AT, free AT and curriculum AT."""

from varsec.vision.training.config import MODES, TrainConfig
from varsec.vision.training.loop import (
    MODE_CLASSES,
    TrainResult,
    accuracy,
    build_backbone,
    train_classifier,
)
from varsec.vision.training.mode import TrainingMode

__all__ = [
    "MODES",
    "MODE_CLASSES",
    "TrainConfig",
    "TrainResult",
    "TrainingMode",
    "accuracy",
    "build_backbone",
    "train_classifier",
]
