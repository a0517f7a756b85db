"""The base class of the input-transform defenses, and helpers shared by every defense module.

An :class:`InputTransform` is an ``nn.Module`` on float32 N x C x H x W images in [0, 1] that
returns images of the same shape, so it can sit in front of any extractor
(``nn.Sequential(JPEG(quality=50), backbone)``) or in front of a recommender's ``score_images``.
Its parameters are declared (``params``: name -> :class:`~varsec.params.Param`) and
validated on construction (a :class:`~varsec.errors.ConfigError` naming the value), like ART's
``params`` + ``_check_params``.

Every transform declares the attack that knows it (DESIGN.md section 8: a defense is only called
robust against the adaptive attacker): :meth:`InputTransform.adaptive_hook` returns the
:class:`~varsec.attacks.transforms.TransformHook` the attack engine puts in front of its objective
- BPDA with the identity as the straight-through stand-in for the non-differentiable transforms
(JPEG, bit depth, median; Athalye, Carlini & Wagner 2018, sec 4.1) and EOT over ``T`` draws for
the random one (resize + pad; Athalye et al. 2018). The non-adaptive attacker is the engine
without a hook: it attacks the undefended model and the defense is applied afterwards.

Measured images are honest (DESIGN.md section 2): :func:`defend_images` applies a transform to
uint8 images and rounds the result back to uint8.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from varsec.attacks.transforms import TransformHook
from varsec.defenses.registry import DefenseMethod
from varsec.devices import check_device, module_device
from varsec.errors import ConfigError
from varsec.params import Param, check_int, check_params, unknown_names
from varsec.params import describe as describe_params
from varsec.vision.perturbation import check_float_images, float_to_uint8, uint8_to_float

ADAPTIVE_KINDS = ("bpda", "eot")


class InputTransform(nn.Module, DefenseMethod, ABC):
    """A preprocessing defense with declared parameters and a declared adaptive attack.

    Subclasses set ``name``, ``params``, ``adaptive`` (``"bpda"`` or ``"eot"``) and implement
    :meth:`_transform`; extra cross-parameter checks go in :meth:`_check_params`.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    adaptive: ClassVar[str] = "bpda"
    channels: ClassVar[tuple[int, ...] | None] = None  # accepted channel counts (None: any)
    # what varsec.defenses.registry reads: the parameter a study sweeps and its default levels
    strength: ClassVar[str | None] = None
    default_sweep: ClassVar[tuple[float, ...]] = ()
    pixel: ClassVar[bool] = True
    trained: ClassVar[bool] = False

    # -- the interface of varsec.defenses.registry.DefenseMethod (fit: nothing to train) -----
    @classmethod
    def defender(cls, *, strength: Any, params: dict[str, Any], seed: int | None,
                 fitted: Any, device: str) -> Callable[[Any], tuple[np.ndarray, None]]:
        """uint8 images -> (the transform at ``strength`` applied, rounded to uint8; None: no
        detector). A random transform is seeded with ``seed``."""
        from varsec.defenses.registry import build_transform

        seeded = seed is not None and "seed" in cls.params
        transform = build_transform(cls.name, strength, **({"seed": seed} if seeded else {}))
        return lambda images: (defend_images(transform, images).numpy(), None)

    @classmethod
    def adaptive_attack(cls, objective: Any, *, strength: Any, params: dict[str, Any],
                        fitted: Any, device: str) -> tuple[Any, TransformHook]:
        """The attack that knows the transform: the objective unchanged behind its BPDA or EOT
        hook (``params["eot_samples"]`` draws for a random transform)."""
        from varsec.defenses.registry import build_transform

        transform = build_transform(cls.name, strength)
        draws = params.get("eot_samples") if cls.adaptive == "eot" else None
        return objective, transform.adaptive_hook(draws)

    def __init__(self, **values: Any) -> None:
        super().__init__()
        for key, value in check_params(self.label, self.params, values).items():
            setattr(self, key, value)
        self._check_params()

    @classmethod
    def from_params(cls, **values: Any) -> InputTransform:
        """Build from a config mapping; an unknown name is a ConfigError listing the known."""
        message = unknown_names(cls.label, cls.params, values)
        if message:
            raise ConfigError(message)
        return cls(**values)

    # -- parameters ---------------------------------------------------------------------------
    def _check_params(self) -> None:
        """Cross-parameter checks (subclasses); single values are checked from ``params``."""

    @property
    def settings(self) -> dict[str, Any]:
        """The declared parameters and their values (for manifests and results tables)."""
        return {key: getattr(self, key) for key in self.params}

    def describe(self) -> dict[str, Any]:
        """Name, adaptive attack and declared parameters of this defense: one
        :func:`varsec.params.describe` record per parameter, with its ``value`` here."""
        records = [{**record, "value": getattr(self, record["name"])}
                   for record in describe_params(self.params)]
        return {"defense": self.name, "adaptive": self.adaptive, "params": records}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items())

    # -- the transform ------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """The defended images: float32 N x C x H x W in [0, 1], the shape of ``x``."""
        self.check_images(x)
        return self._transform(x)

    @abstractmethod
    def _transform(self, x: Tensor) -> Tensor:
        """Transform a checked batch."""

    def check_images(self, x: Tensor) -> None:
        """A ConfigError unless ``x`` is a float N x C x H x W batch in [0, 1] it accepts."""
        check_image_batch(x, self.label)
        if self.channels is not None and x.shape[1] not in self.channels:
            allowed = " or ".join(str(c) for c in self.channels)
            raise ConfigError(
                f"{self.label} takes {allowed}-channel images, got {x.shape[1]} channels."
            )

    # -- the attack that knows it ---------------------------------------------------------------
    def adaptive_hook(self, eot_samples: int | None = None) -> TransformHook:
        """The engine hook of the adaptive attack on this defense (BPDA or EOT, see module doc).

        ``eot_samples`` is the number of draws T an EOT hook averages over (default 10); it is
        refused for the deterministic transforms, whose draws would all be the same.
        """
        if self.adaptive == "bpda":
            if eot_samples not in (None, 1):
                raise ConfigError(
                    f"{self.label} is deterministic: its adaptive attack is BPDA, and EOT over "
                    f"{eot_samples} draws would repeat one draw; leave eot_samples unset."
                )
            return TransformHook(self, 1, True)
        samples = 10 if eot_samples is None else eot_samples
        return TransformHook(self, samples, False)

    def defend(self, images: Any, batch_size: int = 256) -> Tensor:
        """uint8 images defended and rounded back to uint8 (honest quantisation)."""
        return defend_images(self, images, batch_size=batch_size)


def check_image_batch(x: Any, what: str) -> None:
    """A ConfigError unless ``x`` is a float N x C x H x W tensor with values in [0, 1]."""
    check_float_images(x, what, in_range=True)


def as_uint8_tensor(images: Any, what: str = "images") -> Tensor:
    """uint8 N x C x H x W images (numpy or torch) as a CPU tensor; a ConfigError otherwise."""
    tensor = images if isinstance(images, Tensor) else torch.as_tensor(np.asarray(images))
    if tensor.dtype != torch.uint8 or tensor.ndim != 4:
        raise ConfigError(
            f"{what} must be uint8 N x C x H x W images, got {tensor.dtype} with shape "
            f"{tuple(tensor.shape)}."
        )
    return tensor


@torch.no_grad()
def defend_images(
    transform: Callable[[Tensor], Tensor],
    images: Any,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> Tensor:
    """Apply ``transform`` to uint8 images in batches and round the result to uint8 (CPU).

    ``transform`` is any callable on float images in [0, 1] (an :class:`InputTransform`, a
    reconstruction network, a composition). Modules are run in eval mode.
    """
    pixels = as_uint8_tensor(images)
    batch_size = check_int(batch_size, "batch_size", low=1)
    target = check_device(device) if device is not None else module_device(transform)
    out = torch.empty_like(pixels)
    modes = _eval_modes(transform)
    try:
        for start in range(0, len(pixels), batch_size):
            x = uint8_to_float(pixels[start : start + batch_size], target)
            y = transform(x)
            out[start : start + len(x)] = float_to_uint8(y).cpu()
    finally:
        for module, mode in modes:
            module.train(mode)
    return out


def _eval_modes(transform: Any) -> list[tuple[nn.Module, bool]]:
    if not isinstance(transform, nn.Module):
        return []
    modes = [(m, m.training) for m in transform.modules()]
    transform.eval()
    return modes


def module_hash(kind: str, config: dict[str, Any], module: nn.Module) -> str:
    """sha256 over a module's kind, its architecture config and every parameter and buffer."""
    digest = hashlib.sha256()
    digest.update(kind.encode())
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for key, value in module.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode() + repr(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


__all__ = [
    "ADAPTIVE_KINDS",
    "InputTransform",
    "as_uint8_tensor",
    "check_image_batch",
    "defend_images",
    "module_hash",
]
