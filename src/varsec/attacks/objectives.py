"""Attack objectives: differentiable functions of an image batch that an attack maximises.

An objective is the *what* of an attack, a step rule (:mod:`varsec.attacks.engine`) the *how*;
adding an attack is adding an objective (DESIGN.md section 7). Every objective maps float images
``x`` (N x C x H x W in [0, 1]) and their positions ``index`` in the attacked set to one value per
image, so attacks on different images never interact and each image can stop on its own.

This module holds the base class and the classifier and feature objectives; the recommender
objectives are in :mod:`varsec.attacks.insa` and :mod:`varsec.attacks.bpr_untargeted`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varsec.attacks.quantize import check_positive, to_float
from varsec.attacks.registry import register_objective
from varsec.devices import module_device
from varsec.errors import ConfigError
from varsec.params import Param

FeatureFn = Callable[[Tensor], Tensor]
_TINY = 1e-12


class Objective(ABC):
    """Base class: ``loss`` (to maximise), optional ``success``, and the C&W form ``cw_loss``.

    Subclasses implement :meth:`loss`; those with a notion of success override
    :meth:`success` (checked on quantised images, for early stopping and C&W's binary search).
    :meth:`modules` lists the networks the engine puts in eval mode while attacking.
    ``family`` (registered objectives): ``"promotion"`` for objectives on cold items through a
    two-stage recommender (INSA, probe ranks), ``"ranking"`` for the BPR objectives through a
    pairwise visual recommender (002), None when the attack's items decide. ``per_user``: the
    objective attacks each user's evaluation list with images of its own (002 read per test
    triplet), so only the sampled protocol can measure it.
    """

    family: ClassVar[str | None] = None
    per_user: ClassVar[bool] = False

    @abstractmethod
    def loss(self, x: Tensor, index: Tensor) -> Tensor:
        """One value per image of ``x`` (``index``: positions in the attacked set) to maximise."""

    def success(self, x: Tensor, index: Tensor) -> Tensor | None:
        """Bool per image: has the attack reached its goal? None when there is no such notion."""
        return None

    @property
    def has_success(self) -> bool:
        """Whether :meth:`success` is defined (early stop and C&W's binary search need it)."""
        return type(self).success is not Objective.success

    def cw_loss(self, x: Tensor, index: Tensor) -> Tensor:
        """The term C&W minimises, ``f(x)``; by default minus :meth:`loss`."""
        return -self.loss(x, index)

    def cw_and_success(self, x: Tensor, index: Tensor) -> tuple[Tensor, Tensor | None]:
        """:meth:`cw_loss` and :meth:`success` of the same images (one pass through the model
        where the objective can: a query-only attack pays per evaluation)."""
        return self.cw_loss(x, index), self.success(x, index)

    def modules(self) -> list[nn.Module]:
        """The networks behind the objective (put in eval mode during an attack)."""
        return []

    def begin_step(self, step: int) -> None:  # noqa: B027  (an optional hook, not abstract)
        """Called by the engine before iteration ``step`` (1-based) of every batch; an objective
        that changes with the step (INSA's user minibatches) selects its data here."""

    def check_size(self, n_images: int) -> None:
        """Raise a ConfigError when per-image data (labels, targets) does not cover positions
        ``0..n_images-1`` of the attacked set."""
        return None

    @property
    def device(self) -> torch.device:
        """The device of the first parameter or buffer of :meth:`modules` (CPU when none)."""
        return module_device(*self.modules())

    @torch.no_grad()
    def evaluate(self, images: Any, index: Tensor | None = None, batch_size: int = 256) -> Tensor:
        """:meth:`loss` of uint8 / float images without gradients (e.g. before and after)."""
        x = to_float(images)
        index = torch.arange(len(x)) if index is None else torch.as_tensor(index).long()
        parts = []
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size].to(self.device)
            parts.append(self.loss(batch, index[start : start + batch_size]).detach().cpu())
        return torch.cat(parts) if parts else torch.zeros(0)


def _per_image(values: Any, name: str) -> Tensor | None:
    if values is None:
        return None
    tensor = torch.as_tensor(values).reshape(-1)
    if tensor.is_floating_point() or tensor.dtype == torch.bool:
        raise ConfigError(f"{name} must be integer class indices, got dtype {tensor.dtype}.")
    return tensor.long()


def _pick(values: Tensor, index: Tensor, device: torch.device) -> Tensor:
    """``values[index]``, or the single value broadcast to ``len(index)``."""
    if values.numel() == 1:
        return values.expand(len(index)).to(device)
    return values[index.to(values.device)].to(device)


def _check_length(values: Tensor | None, n_images: int, name: str) -> None:
    if values is not None and values.numel() != 1 and values.numel() < n_images:
        raise ConfigError(
            f"{name} has {values.numel()} entries for {n_images} images; give one per image or "
            "a single one for all."
        )


@register_objective("classifier-targeted", "classifier-untargeted")
class ClassifierObjective(Objective):
    """Classifier attack (Anelli et al. 001 sec 2, eq 3; Goodfellow / Madry / Carlini-Wagner).

    Untargeted: raise the cross-entropy of the true label (success: the prediction changes).
    Targeted: lower the cross-entropy of the target class ``m`` (success: the classifier says
    ``m``), e.g. Fashion-MNIST's sandal -> sneaker, the twin of 001's sandal -> running shoe.
    :meth:`cw_loss` is C&W's margin ``max(max_{i≠t} Z_i - Z_t, -κ)`` (targeted) or
    ``max(Z_y - max_{i≠y} Z_i, -κ)`` (untargeted) on the logits ``Z``.
    """

    params: ClassVar[dict[str, Param]] = {
        "kappa": Param(0.0, float, low=0, doc="C&W confidence margin of the classifier objectives")}

    def __init__(
        self,
        model: Any,
        labels: Any = None,
        *,
        target: Any = None,
        targeted: bool | None = None,
        kappa: float = 0.0,
    ) -> None:
        self.model = model
        self.targeted = target is not None if targeted is None else bool(targeted)
        if self.targeted and target is None:
            raise ConfigError("a targeted classifier attack needs a target class (target=...).")
        self.labels = _per_image(labels, "labels")
        self.target = _per_image(target, "target") if self.targeted else None
        if not self.targeted and self.labels is None:
            raise ConfigError("an untargeted classifier attack needs the true labels.")
        if isinstance(kappa, bool) or not isinstance(kappa, int | float) or kappa < 0:
            raise ConfigError(f"kappa must be a number >= 0, got {kappa!r}.")
        self.kappa = float(kappa)
        self._checked = False
        classes = getattr(self.model, "num_classes", None)
        if isinstance(classes, int):
            self._check_against(classes)

    def logits(self, x: Tensor) -> Tensor:
        """The classifier's logits (its ``logits`` method when it has one, else its forward)."""
        method = getattr(self.model, "logits", None)
        return method(x) if callable(method) else self.model(x)

    def modules(self) -> list[nn.Module]:
        return [self.model] if isinstance(self.model, nn.Module) else []

    def check_size(self, n_images: int) -> None:
        _check_length(self.labels, n_images, "labels")
        _check_length(self.target, n_images, "target")

    def _classes(self, index: Tensor, logits: Tensor) -> Tensor:
        values = self.target if self.targeted else self.labels
        assert values is not None
        if not self._checked:
            self._check_against(logits.shape[1])
        return _pick(values, index, logits.device)

    def _check_against(self, classes: int) -> None:
        """Class indices must fit the logits (checked once, on the first evaluation)."""
        for name, values in (("target", self.target), ("labels", self.labels)):
            if values is not None and values.numel() and (
                int(values.min()) < 0 or int(values.max()) >= classes
            ):
                raise ConfigError(
                    f"{name} must be class indices in [0, {classes - 1}], got "
                    f"{int(values.min())}..{int(values.max())}."
                )
        self._checked = True

    def loss(self, x: Tensor, index: Tensor) -> Tensor:
        logits = self.logits(x)
        ce = F.cross_entropy(logits, self._classes(index, logits), reduction="none")
        return -ce if self.targeted else ce

    def success(self, x: Tensor, index: Tensor) -> Tensor:
        logits = self.logits(x)
        return self._success(logits, self._classes(index, logits))

    def cw_loss(self, x: Tensor, index: Tensor) -> Tensor:
        logits = self.logits(x)
        return self._margin(logits, self._classes(index, logits))

    def cw_and_success(self, x: Tensor, index: Tensor) -> tuple[Tensor, Tensor | None]:
        logits = self.logits(x)
        classes = self._classes(index, logits)
        return self._margin(logits, classes), self._success(logits, classes)

    def _success(self, logits: Tensor, classes: Tensor) -> Tensor:
        predicted = logits.argmax(1)
        return predicted == classes if self.targeted else predicted != classes

    def _margin(self, logits: Tensor, classes: Tensor) -> Tensor:
        own = logits.gather(1, classes[:, None]).squeeze(1)
        others = logits.masked_fill(F.one_hot(classes, logits.shape[1]).bool(), -torch.inf)
        best_other = others.amax(1)
        margin = best_other - own if self.targeted else own - best_other
        return margin.clamp(min=-self.kappa)


def feature_map(extractor: Any, layer: str | None = None) -> FeatureFn:
    """The image -> feature function of an extractor: ``features(x, layer)`` or the callable."""
    method = getattr(extractor, "features", None)
    if callable(method):
        return (lambda x: method(x, layer)) if layer is not None else method
    if layer is not None:
        raise ConfigError("layer= needs an extractor with a features(x, layer) method.")
    if callable(extractor):
        return extractor
    raise ConfigError(
        f"extractor must be a backbone or a callable on images, got {type(extractor).__name__}."
    )


METRICS = ("l2", "cosine")


@register_objective("feature-l2", "feature-cosine")
class FeatureTarget(Objective):
    """Move an image's features towards target features (EXPA, Liu & Larson 000 sec 4.2, eq 7).

    ``metric="l2"``: minimise ``||Φ(x + δ) - Φ(x_target)||_2`` (EXPA with the hook item's image
    as the target). ``metric="cosine"``: minimise the cosine distance ``1 - cos(Φ(x + δ), Φ(t))``
    (Normann's item-to-item attack, thesis 004 "Attacks": pull the attack article towards the
    target article in the k-NN's embedding). :meth:`loss` is minus the distance; success is
    ``distance <= threshold`` when a threshold is given, or ``success_fn(features, index)``.
    """

    def __init__(
        self,
        extractor: Any,
        target_features: Any = None,
        *,
        target_images: Any = None,
        metric: str = "l2",
        layer: str | None = None,
        threshold: float | None = None,
        success_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> None:
        if metric not in METRICS:
            raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}.")
        if (target_features is None) == (target_images is None):
            raise ConfigError(
                "a feature-target attack needs exactly one of target_features and target_images "
                "(e.g. the hook item's image)."
            )
        self.extractor, self.metric = extractor, metric
        self.features = feature_map(extractor, layer)
        self.threshold = None if threshold is None else check_positive(threshold, "threshold")
        self.success_fn = success_fn
        if target_images is not None:
            target_features = self._embed(target_images)
        self.targets = torch.as_tensor(target_features, dtype=torch.float32).detach()
        if self.targets.ndim == 1:
            self.targets = self.targets[None]
        if self.targets.ndim != 2:
            raise ConfigError(
                f"target features must be D or N x D, got shape {tuple(self.targets.shape)}."
            )

    @torch.no_grad()
    def _embed(self, images: Any) -> Tensor:
        x = to_float(images, "target_images").to(self.device)
        return self.features(x).reshape(len(x), -1).float()

    def modules(self) -> list[nn.Module]:
        return [self.extractor] if isinstance(self.extractor, nn.Module) else []

    def check_size(self, n_images: int) -> None:
        if len(self.targets) != 1 and len(self.targets) < n_images:
            raise ConfigError(
                f"target features have {len(self.targets)} rows for {n_images} images; give one "
                "per image or a single one for all."
            )

    def _target(self, index: Tensor, device: torch.device) -> Tensor:
        if len(self.targets) == 1:
            return self.targets.to(device).expand(len(index), -1)
        return self.targets[index.to(self.targets.device)].to(device)

    def distance_of(self, features: Tensor, index: Tensor) -> Tensor:
        """The distance of given features to the targets of ``index`` (per image)."""
        target = self._target(index, features.device)
        if self.metric == "l2":
            return ((features - target).pow(2).sum(1) + _TINY).sqrt()
        return 1.0 - F.cosine_similarity(features, target, dim=1, eps=1e-8)

    def distance(self, x: Tensor, index: Tensor) -> Tensor:
        """L2 or cosine distance of ``Φ(x)`` to the target features, per image."""
        return self.distance_of(self.features(x).reshape(len(x), -1), index)

    def loss(self, x: Tensor, index: Tensor) -> Tensor:
        return -self.distance(x, index)

    def cw_loss(self, x: Tensor, index: Tensor) -> Tensor:
        return self.distance(x, index)

    @property
    def has_success(self) -> bool:
        return self.threshold is not None or self.success_fn is not None

    def success(self, x: Tensor, index: Tensor) -> Tensor | None:
        if not self.has_success:
            return None
        features = self.features(x).reshape(len(x), -1)
        if self.success_fn is not None:
            return self.success_fn(features, index)
        return self.distance_of(features, index) <= self.threshold


__all__ = ["METRICS", "ClassifierObjective", "FeatureTarget", "Objective", "feature_map"]
