"""The defense stage: apply (or fit) a defense.

Output contract:

* ``action: apply`` on an attack - ``items.npy`` (as the attack's), ``adversarial.npy`` (the
  defended adversarial images) and ``cooperative.npy`` (the same items' clean images, defended),
  all uint8 N x C x H x W (``pairs.npy`` is copied for item-to-item attacks);
* ``action: apply`` on clean images - ``catalog.npy``: every catalog image, defended (what the
  defense costs clean recommendation quality);
* ``action: fit`` (reconstruction) - the trained network, read by the ``apply`` stages;
  rows for reconstruction + detection: ``detection_accuracy`` ... per eps, and
  ``distances.npz`` (``clean``, ``adversarial``) for the detector histogram.

Input transforms (JPEG, bit depth, median, random resize + pad) come from ``varsec.defenses``;
the reconstruction defense is not wired into the study runner yet and says so.
"""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np

from varsec.study.builtin.common import load_dataset
from varsec.study.stages import (
    StageContext,
    StageOutput,
    StageUnavailableError,
    register_stage,
)

TRANSFORMS = ("jpeg", "bit-depth", "median", "resize-pad")
NOT_AVAILABLE = ("defense stages are not available yet: the defense layer (varsec.defenses, "
                 "issue 6) does not provide {kind} yet")
RECONSTRUCTION_PENDING = ("the reconstruction defense is not wired into the study runner yet "
                          "(varsec.defenses.train_defense needs the attacked recommender)")


def _reason(config: dict[str, Any]) -> str | None:
    if config["kind"] not in TRANSFORMS:
        return RECONSTRUCTION_PENDING
    try:
        from varsec.defenses import defend_images, make_transform  # noqa: F401
    except ImportError:
        return NOT_AVAILABLE.format(kind=config["kind"])
    return None


def _apply(ctx: StageContext, config: dict[str, Any], inputs: dict[str, StageOutput]) -> None:
    from varsec.defenses import defend_images, make_transform

    if config["kind"] == "resize-pad":  # random: seeded from the stage
        from varsec.defenses import ResizePad

        transform = ResizePad(ratio=float(config["strength"]), seed=config["seed"])
    else:
        transform = make_transform(config["kind"], config["strength"])
    dataset = load_dataset(inputs["data"])
    images = np.asarray(dataset.catalog.images)
    attack = inputs.get("attack")
    if attack is None:
        np.save(ctx.workdir / "catalog.npy", defend_images(transform, images).numpy())
        return
    items = np.load(attack.file("items.npy"))
    adversarial = np.load(attack.file("adversarial.npy"))
    np.save(ctx.workdir / "items.npy", items)
    np.save(ctx.workdir / "adversarial.npy", defend_images(transform, adversarial).numpy())
    np.save(ctx.workdir / "cooperative.npy", defend_images(transform, images[items]).numpy())
    if attack.file("pairs.npy").is_file():
        shutil.copy(attack.file("pairs.npy"), ctx.workdir / "pairs.npy")


@register_stage("defense", version="1", available=_reason)
def defense_stage(ctx: StageContext, config: dict[str, Any],
                  inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    """Apply or fit the defense (see the module docstring for the outputs)."""
    reason = _reason(config)
    if reason:
        raise StageUnavailableError(reason)
    _apply(ctx, config, inputs)
    ctx.info.update(kind=config["kind"], strength=config["strength"])
    return []
