"""The defense stage: apply (or fit) a defense.

Output contract:

* ``action: apply`` on an attack - ``items.npy`` (as the attack's) and ``adversarial.npy`` (the
  defended adversarial images), uint8 N x C x H x W; ``cooperative.npy`` (the same items' clean
  images, defended) for promotion attacks, whose evaluation compares the two; ``pairs.npy`` is
  copied for item-to-item attacks, ``lists.npz`` for per-user attacks;
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

from varsec.errors import ConfigError
from varsec.study.builtin.common import load_backbone, load_dataset, load_model
from varsec.study.files import ADVERSARIAL, CATALOG, COOPERATIVE, ITEMS, LISTS, PAIRS
from varsec.study.results import row
from varsec.study.stages import (
    StageContext,
    StageOutput,
    StageUnavailableError,
    register_stage,
)

Defend = Callable[[np.ndarray], tuple[np.ndarray, float | None]]


def adaptive_objective(objective: Any, through: dict[str, Any], fit: StageOutput | None,
                       device: str) -> tuple[Any, Any]:
    """(objective, engine hook) of the attack that knows the defense ``through`` describes
    (the registered defense's ``adaptive_attack``: BPDA, EOT or detector-aware)."""
    from varsec.defenses.registry import defense_class

    method = defense_class(through["kind"])
    if method.trained and fit is None:
        raise StageUnavailableError(f"an adaptive attack on {through['kind']} needs its fit "
                                    "stage.")
    return method.adaptive_attack(objective, strength=through["strength"],
                                  params=through["params"],
                                  fitted=None if fit is None else fit.path, device=device)


def _defender(ctx: StageContext, config: dict[str, Any],
              inputs: dict[str, StageOutput]) -> Defend:
    """uint8 images -> (defended uint8 images, share flagged by a detector or None): the
    registered defense's ``defender`` (a trained one reads its fit stage, the ``model``
    input)."""
    from varsec.defenses.registry import defense_class

    method = defense_class(config["kind"])
    fitted = inputs["model"].path if method.trained else None
    return method.defender(strength=config.get("strength"), params=config["params"],
                           seed=config["seed"], fitted=fitted, device=ctx.device)


def _fit(ctx: StageContext, config: dict[str, Any],
         inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    """Train the defense against the ``model`` input (its extractor too); its records become
    rows (the module docstring)."""
    from varsec.defenses.registry import defense_class

    model_output = inputs["model"]
    try:
        fitted = defense_class(config["kind"]).fit(
            ctx.workdir, load_dataset(inputs["data"]), load_model(model_output, ctx.device),
            load_backbone(model_output.upstream("extractor"), ctx.device), config["params"],
            config["seed"], ctx.device, detection_eps=config.get("detection_eps"), log=ctx.log)
    except ConfigError as exc:  # e.g. perceptual stages the extractor does not have
        raise ConfigError(f"defenses.{ctx.stage.labels.get('defense')}.params: {exc}") from exc
    ctx.info.update(fitted.info)
    return [row(r.pop("metric"), r.pop("value"), **r) for r in fitted.records]


def _apply(ctx: StageContext, config: dict[str, Any],
           inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    defend = _defender(ctx, config, inputs)
    dataset = load_dataset(inputs["data"])
    images = np.asarray(dataset.catalog.images)
    attack = inputs.get("attack")
    if attack is None:
        catalog, flagged = defend(images)
        np.save(ctx.workdir / CATALOG, catalog)
        return _flag_rows(flagged, len(catalog))
    items = np.load(attack.file(ITEMS))
    defended, flagged = defend(np.load(attack.file(ADVERSARIAL)))
    np.save(ctx.workdir / ITEMS, items)
    np.save(ctx.workdir / ADVERSARIAL, defended)
    if attack.info.get("family", "promotion") == "promotion":
        np.save(ctx.workdir / COOPERATIVE, defend(images[items])[0])
    for name in (PAIRS, LISTS):
        if attack.file(name).is_file():
            shutil.copy(attack.file(name), ctx.workdir / name)
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
        return _fit(ctx, config, inputs)
    ctx.info.update(strength=config["strength"])
    return _apply(ctx, config, inputs)
