"""A platform's own input transform as a defense: ``kind: external`` with
``factory: "package.module:build"`` in a study (:func:`varsec.registry.build_external`).

The factory, called with the defense's ``params``, builds an
:class:`~varsec.defenses.base.InputTransform` (float N x C x H x W in [0, 1] to the same shape,
with its declared adaptive attacker). The study applies it at one level, as a registered
transform is applied at each strength (its output rounded to uint8), and its adaptive attack is
the transform's own: BPDA for a deterministic one, EOT over ``eot_samples`` draws (default 10)
for a random one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from varsec.defenses.base import InputTransform, defend_images
from varsec.defenses.registry import DefenseMethod, register_defense
from varsec.registry import EXTERNAL, build_external

TRANSFORM = "a varsec input transform (a subclass of varsec.defenses.InputTransform)"
EOT_SAMPLES = 10  # draws of the adaptive attack over a random transform


def build_external_transform(factory: str, params: dict[str, Any]) -> InputTransform:
    """The input transform ``factory`` builds with ``params``."""
    return build_external(factory, params, InputTransform, TRANSFORM)


@register_defense(EXTERNAL)
class ExternalDefense(DefenseMethod):
    """An input transform built by a study's factory (module docstring): one level, attacked
    adaptively by the transform's own attacker."""

    label: ClassVar[str] = "external input transform"
    adaptive: ClassVar[str | None] = "the transform's own (bpda or eot)"

    @classmethod
    def transform(cls, params: dict[str, Any]) -> InputTransform:
        """The transform of a stage's params: ``factory`` and its ``params``."""
        return build_external_transform(params["factory"], dict(params.get("params") or {}))

    @classmethod
    def defender(cls, *, strength: Any, params: dict[str, Any], seed: int | None,
                 fitted: Any, device: str) -> Callable[[Any], Any]:
        transform = cls.transform(params)
        return lambda images: (defend_images(transform, images).numpy(), None)

    @classmethod
    def adaptive_attack(cls, objective: Any, *, strength: Any, params: dict[str, Any],
                        fitted: Any, device: str) -> tuple[Any, Any]:
        transform = cls.transform(params)
        draws = EOT_SAMPLES if transform.adaptive == "eot" else None
        return objective, transform.adaptive_hook(draws)


__all__ = ["TRANSFORM", "ExternalDefense", "build_external_transform"]
