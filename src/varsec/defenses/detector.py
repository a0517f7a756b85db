"""The contrastive adversarial-image detector of Yin, Liu, Gong & Li (002 sec 3.4, eq 7-10).

The detection network ``f = h ∘ g`` is an encoder ``g`` (any registered varsec backbone; 002 uses
ResNet-50's 2048-d average pool) and a projection head ``h(s) = W2 ReLU(W1 s)`` to a 128-d
embedding (eq 7). For each item it sees four views: the clean image, its adversarial version and
the reconstructions of both by the network T (:mod:`varsec.defenses.reconstruction`), and is
trained with the InfoNCE-style loss of eq 9 over the positive and negative pair sets of eq 8:

    S_pos = {(clean, clean_recon), (clean, adv_recon), (clean_recon, adv_recon)}
    S_neg = {(adv, clean), (adv, adv_recon), (clean_recon, adv)}
    L(x) = -log( Σ_{S_pos} exp(sim/τ) / Σ_{S_pos ∪ S_neg} exp(sim/τ) ),   sim = cosine,

averaged over items (eq 10). The detection score of an input image is the Euclidean distance
between the embeddings of the input and of its reconstruction ``T(input)`` (sec 3.4); the
embeddings are unit-normalised first (the loss only sees their directions, so the score is
``sqrt(2 - 2 cos)`` in [0, 2] and a fixed threshold means the same thing for every model).
A score above the threshold flags the image as adversarial.

The threshold is never a silent default: :meth:`ContrastiveDetector.calibrate` picks it on
validation images (best balanced accuracy, or a target false-positive rate on clean images) and
records how; :meth:`ContrastiveDetector.set_threshold` fixes it (002 uses 0.2). Deciding with no
threshold is a :class:`~varsec.errors.ModelError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varsec.defenses.base import as_uint8_tensor, module_hash
from varsec.errors import ConfigError, ModelError
from varsec.params import check_choice, check_int, check_number
from varsec.vision.base import Backbone
from varsec.vision.perturbation import uint8_to_float
from varsec.vision.registry import create_backbone

KIND = "varsec-detector"
YIN_THRESHOLD = 0.2  # 002 sec 3.4 and 4.5
METHODS = ("accuracy", "fpr")
VIEWS = ("clean", "adv", "clean_recon", "adv_recon")
POSITIVE_PAIRS = (("clean", "clean_recon"), ("clean", "adv_recon"), ("clean_recon", "adv_recon"))
NEGATIVE_PAIRS = (("adv", "clean"), ("adv", "adv_recon"), ("clean_recon", "adv"))


def contrastive_loss(views: dict[str, Tensor], temperature: float) -> Tensor:
    """Yin et al.'s eq 9-10: InfoNCE over the pair sets of eq 8, averaged over the items.

    ``views`` maps each of :data:`VIEWS` to the N x D embeddings of the N items.
    """
    missing = [v for v in VIEWS if v not in views]
    if missing:
        raise ConfigError(f"the contrastive loss needs the views {', '.join(VIEWS)}; "
                          f"missing {', '.join(missing)}.")

    def logits(pairs: tuple[tuple[str, str], ...]) -> Tensor:
        sims = [F.cosine_similarity(views[a], views[b], dim=1) for a, b in pairs]
        return torch.stack(sims, dim=1) / temperature

    positive, negative = logits(POSITIVE_PAIRS), logits(NEGATIVE_PAIRS)
    every = torch.cat([positive, negative], dim=1)
    return (torch.logsumexp(every, dim=1) - torch.logsumexp(positive, dim=1)).mean()


@dataclass(frozen=True)
class Calibration:
    """How the threshold was set: ``method`` is ``accuracy``, ``fpr`` or ``fixed``."""

    threshold: float
    method: str
    n_clean: int = 0
    n_adversarial: int = 0
    accuracy: float | None = None
    true_positive_rate: float | None = None
    false_positive_rate: float | None = None
    target_fpr: float | None = None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return asdict(self)


def _rates(clean: np.ndarray, adv: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(balanced accuracy, TPR, FPR) of the rule ``distance > threshold``."""
    tpr = float(np.mean(adv > threshold)) if adv.size else float("nan")
    fpr = float(np.mean(clean > threshold)) if clean.size else float("nan")
    return 0.5 * (tpr + 1.0 - fpr), tpr, fpr


def best_accuracy_threshold(clean: np.ndarray, adv: np.ndarray) -> float:
    """The threshold (a midpoint between observed distances) of best balanced accuracy."""
    values = np.unique(np.concatenate([clean, adv]))
    if len(values) == 1:
        return float(values[0])
    candidates = np.concatenate([[values[0] - 1e-6], (values[1:] + values[:-1]) / 2])
    tpr = (adv[None, :] > candidates[:, None]).mean(1)
    fpr = (clean[None, :] > candidates[:, None]).mean(1)
    return float(candidates[int(np.argmax(tpr - fpr))])


class ContrastiveDetector(nn.Module):
    """Encoder (a registered backbone) + MLP head to ``embed_dim`` (002 eq 7); see module doc.

    ``backbone`` is a registry name (built with ``backbone_kwargs``) or a ready
    :class:`~varsec.vision.base.Backbone` (e.g. a copy of the recommender's extractor to start
    from); ``layer`` is the encoder layer the head reads (its default feature layer);
    ``hidden_dim`` defaults to the encoder's feature size; ``temperature`` is τ of eq 9.
    """

    def __init__(
        self,
        backbone: str | Backbone = "fmnist-cnn",
        backbone_kwargs: dict[str, Any] | None = None,
        *,
        layer: str | None = None,
        embed_dim: int = 128,
        hidden_dim: int | None = None,
        temperature: float = 0.1,
    ) -> None:
        super().__init__()
        if isinstance(backbone, Backbone):
            if backbone_kwargs:
                raise ConfigError("backbone_kwargs only apply to a backbone given by name.")
            encoder = backbone
        else:
            encoder = create_backbone(str(backbone), **(backbone_kwargs or {}))
        self.encoder = encoder
        self.layer = encoder.check_layer(layer)
        features = encoder.feature_dims[self.layer]
        self.embed_dim = check_int(embed_dim, "embed_dim", low=1, owner="detector")
        self.hidden_dim = features if hidden_dim is None else check_int(
            hidden_dim, "hidden_dim", low=1, owner="detector")
        self.temperature = check_number(temperature, "temperature", low=0, low_open=True,
                                        owner="detector")
        self.head = nn.Sequential(nn.Linear(features, self.hidden_dim), nn.ReLU(),
                                  nn.Linear(self.hidden_dim, self.embed_dim))
        self.threshold: float | None = None
        self.calibration: Calibration | None = None

    # -- identity -----------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (what a checkpoint needs to rebuild the detector)."""
        return {"backbone": self.encoder.name, "backbone_kwargs": dict(self.encoder.arch_config),
                "layer": self.layer, "embed_dim": self.embed_dim, "hidden_dim": self.hidden_dim,
                "temperature": self.temperature}

    def weights_hash(self) -> str:
        """sha256 over the architecture and every parameter and buffer (not the threshold)."""
        return module_hash(KIND, self.config, self)

    # -- embedding and scores -----------------------------------------------------------------
    def embed(self, x: Tensor) -> Tensor:
        """``z = h(g(x))`` (002 eq 7): N x ``embed_dim`` embeddings of float images."""
        return self.head(self.encoder.features(x, self.layer).flatten(1))

    def distance(self, x: Tensor, reconstructed: Tensor) -> Tensor:
        """Detection score: Euclidean distance of the unit-normalised embeddings of ``x`` and
        of its reconstruction (002 sec 3.4); differentiable."""
        both = F.normalize(self.embed(torch.cat([x, reconstructed])), dim=1)
        return (both[: len(x)] - both[len(x):]).norm(dim=1)

    def score(self, x: Tensor, reconstruction: Callable[[Tensor], Tensor]) -> Tensor:
        """Detection scores of float images ``x``: ``distance(x, T(x))``."""
        return self.distance(x, reconstruction(x))

    @torch.no_grad()
    def scores(self, images: Any, reconstruction: Callable[[Tensor], Tensor],
               batch_size: int = 256) -> np.ndarray:
        """Detection scores of uint8 images (batched, eval mode, no gradients)."""
        pixels = as_uint8_tensor(images)
        device = next(self.parameters()).device
        modes = [(m, m.training) for m in (self, reconstruction) if isinstance(m, nn.Module)]
        for module, _ in modes:
            module.eval()
        try:
            parts = [self.score(uint8_to_float(pixels[s : s + batch_size], device),
                                reconstruction).cpu()
                     for s in range(0, len(pixels), batch_size)]
        finally:
            for module, mode in modes:
                module.train(mode)
        return torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.float32)

    # -- the decision -------------------------------------------------------------------------
    def require_threshold(self) -> float:
        """The threshold; a ModelError when it was never calibrated nor set."""
        if self.threshold is None:
            raise ModelError(
                "the detector's threshold was never calibrated: call calibrate(clean, "
                f"adversarial) on validation scores or set_threshold({YIN_THRESHOLD}) "
                "(Yin et al.'s fixed value) before deciding."
            )
        return self.threshold

    def decide(self, distances: Any) -> np.ndarray:
        """Bool per score: True = adversarial (score above the threshold)."""
        threshold = self.require_threshold()
        return np.asarray(distances, dtype=np.float64) > threshold

    def predict(self, images: Any, reconstruction: Callable[[Tensor], Tensor],
                batch_size: int = 256) -> np.ndarray:
        """Bool per uint8 image: True = flagged adversarial."""
        self.require_threshold()
        return self.decide(self.scores(images, reconstruction, batch_size))

    def set_threshold(self, value: float, source: str = "fixed") -> Calibration:
        """Fix the threshold (e.g. 002's 0.2) and record it as such."""
        self.threshold = check_number(value, "detector threshold")
        self.calibration = Calibration(threshold=self.threshold, method="fixed", source=source)
        return self.calibration

    def calibrate(self, clean: Any, adversarial: Any, method: str = "accuracy",
                  target_fpr: float = 0.05) -> Calibration:
        """Set the threshold from validation scores of clean and adversarial images.

        ``accuracy``: the threshold of best balanced accuracy; ``fpr``: the smallest threshold
        that flags at most ``target_fpr`` of the clean images.
        """
        clean_d = np.asarray(clean, dtype=np.float64).reshape(-1)
        adv_d = np.asarray(adversarial, dtype=np.float64).reshape(-1)
        check_choice(method, "calibration method", METHODS)
        if clean_d.size == 0 or (method == "accuracy" and adv_d.size == 0):
            raise ConfigError("calibrating the threshold needs validation scores of clean "
                              "images (and of adversarial ones for method 'accuracy').")
        target_fpr = check_number(target_fpr, "target_fpr", low=0, high=1, low_open=True,
                                  high_open=True)
        if method == "accuracy":
            threshold = best_accuracy_threshold(clean_d, adv_d)
        else:
            threshold = float(np.quantile(clean_d, 1.0 - target_fpr, method="higher"))
        accuracy, tpr, fpr = _rates(clean_d, adv_d, threshold)
        self.threshold = threshold
        self.calibration = Calibration(
            threshold=threshold, method=method, n_clean=int(clean_d.size),
            n_adversarial=int(adv_d.size), accuracy=accuracy, true_positive_rate=tpr,
            false_positive_rate=fpr, target_fpr=target_fpr if method == "fpr" else None,
            source="validation images",
        )
        return self.calibration


__all__ = [
    "KIND",
    "METHODS",
    "NEGATIVE_PAIRS",
    "POSITIVE_PAIRS",
    "VIEWS",
    "YIN_THRESHOLD",
    "Calibration",
    "ContrastiveDetector",
    "best_accuracy_threshold",
    "contrastive_loss",
]
