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

TRANSFORMS = ("jpeg", "bit-depth", "median", "resize-pad")
NOT_AVAILABLE = ("defense stages are not available yet: the defense layer (varsec.defenses, "
                 "issue 6) does not provide {kind} yet")
_NEEDS = {"reconstruction": ("train_defense", "load_defense", "DetectorAwareObjective",
                             "detection_table")}
Defend = Callable[[np.ndarray], tuple[np.ndarray, float | None]]


def unavailable(config: dict[str, Any]) -> str | None:
    """Why a defense of ``config["kind"]`` cannot run today (None when the layer has it)."""
    try:
        import varsec.defenses as defenses
    except ImportError:
        return NOT_AVAILABLE.format(kind=config["kind"])
    needed = _NEEDS.get(config["kind"], ("defend_images", "make_transform"))
    missing = [name for name in needed if not hasattr(defenses, name)]
    return NOT_AVAILABLE.format(kind=", ".join(missing)) if missing else None


def input_transform(kind: str, strength: float, seed: int | None = None) -> Any:
    """The input transform ``kind`` at ``strength`` (resize-pad: seeded when ``seed`` is set)."""
    from varsec.defenses import ResizePad, make_transform

    if kind == "resize-pad":
        return ResizePad(ratio=float(strength), seed=seed)
    return make_transform(kind, strength)


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
        return scale * (1.0 if config["kind"] in TRANSFORMS else 3.0)
    from varsec.defenses import DefenseConfig

    settings = DefenseConfig.from_dict(config["params"])
    epochs = settings.recon_epochs + settings.detector_epochs + \
        (settings.mix_epochs + settings.joint_epochs) * (1 + settings.pgd_steps / 2)
    return scale * (5.0 + 3.0 * epochs)


@register_stage("defense", version="2", estimate=_estimate, available=unavailable)
def defense_stage(ctx: StageContext, config: dict[str, Any],
                  inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    """Apply or fit the defense (see the module docstring for the outputs)."""
    reason = unavailable(config)
    if reason:
        raise StageUnavailableError(reason)
    ctx.info.update(kind=config["kind"], action=config["action"])
    if config["action"] == "fit":
        return reconstruction.fit_reconstruction(ctx, config, inputs)
    ctx.info.update(strength=config["strength"])
    return _apply(ctx, config, inputs)
