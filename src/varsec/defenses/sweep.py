"""The input transform of a kind at one strength: what a defense strength sweep applies.

A study sweeps a transform over its strengths (JPEG quality 90, 70, 50, 30, 10 and bit depth
7 ... 2 in Liu & Larson's Table 7, 000 sec 5.4; each transform's ``default_sweep``) and builds
each level from the defense registry.
"""

from __future__ import annotations

from typing import Any

from varsec.defenses.base import InputTransform
from varsec.defenses.registry import build_transform


def make_transform(kind: str, level: Any) -> InputTransform:
    """The registered input transform ``kind`` with its swept parameter (quality, bits, window,
    resize ratio) at ``level``; :func:`~varsec.defenses.registry.build_transform` under the
    name the benchmarks use."""
    return build_transform(kind, level)


__all__ = ["make_transform"]
