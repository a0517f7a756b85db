"""The defense stage: apply (or fit) a defense.

Output contract:

* ``action: apply`` on an attack - ``items.npy`` (as the attack's) and ``adversarial.npy`` (the
  defended adversarial images), uint8 N x C x H x W; ``cooperative.npy`` (the same items' clean
  images, defended) for promotion attacks, whose evaluation compares the two; ``pairs.npy`` is
  copied for item-to-item attacks;
* ``action: apply`` on clean images - ``catalog.npy``: every catalog image, defended (what the
  defense costs clean recommendation quality);
* ``action: fit`` (reconstruction) - the trained network and detector, read by the ``apply``
  stages and by adaptive attacks, and the detection rows (see
  :mod:`varsec.study.builtin.reconstruction`).

Rows: an ``apply`` stage of a reconstruction defense with a detector writes ``flagged`` (protocol
``detection``): the share of its input images the detector flags as adversarial (on clean images:
its false-positive rate). Input transforms (JPEG, bit depth, median, random resize + pad) come
from ``varsec.defenses``; :func:`adaptive_objective` builds the attack that knows a defense.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import numpy as np

from varsec.study.builtin import reconstruction
from varsec.study.builtin.common import load_dataset
from varsec.study.results import row
from varsec.study.stages import (
    StageContext,
    StageOutput,
    StageUnavailableError,
    register_stage,
)

Defend = Callable[[np.ndarray], tuple[np.ndarray, float | None]]


def input_transform(kind: str, strength: float, seed: int | None = None) -> Any:
    """The input transform ``kind`` at ``strength``, seeded when it is random and ``seed`` is
    set (resize-pad)."""
    from varsec.defenses.registry import build_transform, defense_class

    seeded = seed is not None and "seed" in defense_class(kind).params
    return build_transform(kind, strength, **({"seed": seed} if seeded else {}))


def adaptive_objective(objective: Any, through: dict[str, Any], fit: StageOutput | None,
                       device: str) -> tuple[Any, Any]:
    """(objective, engine hook) of the attack that knows the defense ``through`` describes:
    BPDA for JPEG / bit depth / median, EOT for resize-pad, detector-aware for reconstruction."""
    if through["kind"] == "reconstruction":
        if fit is None:
            raise StageUnavailableError("an adaptive attack on reconstruction needs its fit stage.")
        return reconstruction.detector_aware(objective, through["params"], fit, device)
    transform = input_transform(through["kind"], through["strength"])
    draws = through["params"].get("eot_samples") if transform.adaptive == "eot" else None
    return objective, transform.adaptive_hook(draws)


def _defender(ctx: StageContext, config: dict[str, Any],
              inputs: dict[str, StageOutput]) -> Defend:
    """uint8 images -> (defended uint8 images, share flagged by a detector or None)."""
    if config["kind"] == "reconstruction":
        fit = inputs["model"]
        return lambda images: reconstruction.reconstruct(fit, config["params"], config["seed"],
                                                         ctx.device, images)
    from varsec.defenses import defend_images

    transform = input_transform(config["kind"], config["strength"], config["seed"])
    return lambda images: (defend_images(transform, images).numpy(), None)


def _apply(ctx: StageContext, config: dict[str, Any],
           inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    defend = _defender(ctx, config, inputs)
    dataset = load_dataset(inputs["data"])
    images = np.asarray(dataset.catalog.images)
    attack = inputs.get("attack")
    if attack is None:
        catalog, flagged = defend(images)
        np.save(ctx.workdir / "catalog.npy", catalog)
        return _flag_rows(flagged, len(catalog))
    items = np.load(attack.file("items.npy"))
    defended, flagged = defend(np.load(attack.file("adversarial.npy")))
    np.save(ctx.workdir / "items.npy", items)
    np.save(ctx.workdir / "adversarial.npy", defended)
    if attack.info.get("family", "promotion") == "promotion":
        np.save(ctx.workdir / "cooperative.npy", defend(images[items])[0])
    if attack.file("pairs.npy").is_file():
        shutil.copy(attack.file("pairs.npy"), ctx.workdir / "pairs.npy")
    return _flag_rows(flagged, len(defended))


def _flag_rows(flagged: float | None, n: int) -> list[dict[str, Any]]:
    return [] if flagged is None else [row("flagged", flagged, protocol="detection", n=n)]


def _estimate(config: dict[str, Any], study: Any) -> float:
    """Rough seconds: a fit by its epochs (mix and joint epochs also attack with PGD)."""
    scale = {"quick": 1.0, "default": 5.0, "paper": 40.0}.get(study.dataset.profile, 5.0)
    if config["action"] != "fit":
        from varsec.study.schema import defense_fact

        return scale * (3.0 if defense_fact(config["kind"], "trained") else 1.0)
    from varsec.defenses import DefenseConfig

    settings = DefenseConfig.from_dict(config["params"])
    epochs = settings.recon_epochs + settings.detector_epochs + \
        (settings.mix_epochs + settings.joint_epochs) * (1 + settings.pgd_steps / 2)
    return scale * (5.0 + 3.0 * epochs)


@register_stage("defense", version="2", estimate=_estimate)
def defense_stage(ctx: StageContext, config: dict[str, Any],
                  inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    """Apply or fit the defense (see the module docstring for the outputs)."""
    ctx.info.update(kind=config["kind"], action=config["action"])
    if config["action"] == "fit":
        return reconstruction.fit_reconstruction(ctx, config, inputs)
    ctx.info.update(strength=config["strength"])
    return _apply(ctx, config, inputs)
