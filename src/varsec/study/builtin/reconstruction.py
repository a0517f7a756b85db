"""Yin et al.'s reconstruction + detection defense (002) inside a study.

The ``fit`` defense stage (inputs ``data`` and ``model``, the recommender it defends) trains the
reconstruction network T and the contrastive detector with
:func:`varsec.defenses.train_defense`: the recommender stays frozen and the defense crafts its
own training pairs through it (untargeted FGSM, and PGD when a phase mixes it in) with seed
``stage seed + 1``, so its training images are not the evaluated attack's. It writes

* ``reconstruction.pt`` and ``detector.pt`` (paired with T, threshold calibrated on held-out
  items unless ``params.threshold`` fixes it) and ``metrics.json`` (history, calibration, split);
* rows of the detection test (002 Table 3) at every ``detection_eps``: FGSM through the
  recommender on the defense's held-out test items (half shown clean, half adversarial):
  ``detection_accuracy``, ``detection_precision``, ``detection_recall``, ``roc_auc``,
  ``threshold`` and the confusion counts ``detection_tn`` / ``_fp`` / ``_fn`` / ``_tp``
  (protocol ``detection``, attack ``fgsm``, the eps);
* ``distances.npz`` for the histogram of 002 Fig. 9: ``clean`` and ``adversarial`` (the first
  eps), ``eps`` and ``by_eps`` (one row of adversarial distances per eps), ``threshold``.

The ``apply`` stages pass images through T (then the random resize + pad layer for the "(rand)"
rows) and, when there is a detector, record the share of inputs it flags; the adaptive attack
maximises the attack's own objective through T while keeping the detector score under its
threshold (:class:`varsec.defenses.DetectorAwareObjective`, EOT over the random layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from varsec.errors import ConfigError
from varsec.io import write_json_atomic
from varsec.study.builtin.common import load_backbone, load_dataset, load_model
from varsec.study.results import row
from varsec.study.stages import StageContext, StageOutput

DETECTION_ATTACK = "fgsm"  # the attack label of the detection rows (FGSM through the model)
DETECTION_METRICS = {"accuracy": "detection_accuracy", "precision": "detection_precision",
                     "recall": "detection_recall", "roc_auc": "roc_auc", "threshold": "threshold",
                     "tn": "detection_tn", "fp": "detection_fp", "fn": "detection_fn",
                     "tp": "detection_tp"}
SCORE_BATCH = 256


@dataclass
class Fitted:
    """What a fit stage trained: T (eval mode) and the detector (None without one)."""

    network: Any
    detector: Any | None


# -- fit ------------------------------------------------------------------------------------------
def fit_reconstruction(ctx: StageContext, config: dict[str, Any],
                       inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    """Train T and the detector, save them, and test the detector (see the module docstring)."""
    from varsec.defenses import DefenseConfig, train_defense

    dataset = load_dataset(inputs["data"])
    model = load_model(inputs["model"], ctx.device)
    backbone = load_backbone(inputs["model"].upstream("extractor"), ctx.device)
    settings = DefenseConfig.from_dict({**config["params"], "seed": config["seed"] + 1,
                                        "device": ctx.device})
    try:
        result = train_defense(model, dataset, settings, extractor=backbone,
                               on_epoch=lambda record: ctx.log(f"defense {record}"))
    except ConfigError as exc:  # e.g. perceptual stages the extractor does not have
        name = ctx.stage.labels.get("defense")
        raise ConfigError(f"defenses.{name}.params: {exc}") from exc
    _save(ctx, result)
    rows: list[dict[str, Any]] = []
    if result.detector is not None:
        eps_list = [float(e) for e in config["detection_eps"]] or [settings.eps]
        rows = _detection(ctx, model, dataset, result, eps_list, config["seed"])
    ctx.info.update(seconds=round(result.seconds, 1), history=result.history,
                    items={k: len(v) for k, v in result.split.to_dict().items()},
                    calibration=None if result.calibration is None
                    else result.calibration.to_dict())
    return rows


def _save(ctx: StageContext, result: Any) -> None:
    from varsec.defenses import save_detector, save_reconstruction
    from varsec.defenses.checkpoint import DETECTOR_FILE, RECONSTRUCTION_FILE

    settings = result.config.to_dict()
    network_hash = save_reconstruction(ctx.workdir / RECONSTRUCTION_FILE, result.reconstruction,
                                       train_config=settings)
    detector_hash = None
    if result.detector is not None:
        detector_hash = save_detector(ctx.workdir / DETECTOR_FILE, result.detector,
                                      result.reconstruction, train_config=settings)
    write_json_atomic(ctx.workdir / "metrics.json", {
        "config": settings, "history": result.history, "split": result.split.to_dict(),
        "calibration": None if result.calibration is None else result.calibration.to_dict(),
        "reconstruction_hash": network_hash, "detector_hash": detector_hash})
    ctx.info.update(reconstruction_hash=network_hash, detector_hash=detector_hash)


def _detection(ctx: StageContext, model: Any, dataset: Any, result: Any, eps_list: list[float],
               seed: int) -> list[dict[str, Any]]:
    """002 Table 3 on the held-out test items: rows and ``distances.npz``."""
    from varsec.defenses import detection_frame, detection_table

    test = result.split.test
    clean = torch.from_numpy(np.ascontiguousarray(dataset.catalog.images[test]))
    adversarial = {eps: _fgsm(model, dataset, result, test, eps, seed) for eps in eps_list}
    reports = detection_table(result.detector, result.reconstruction, clean, adversarial,
                              seed=seed)
    np.savez_compressed(
        ctx.workdir / "distances.npz", clean=reports[0].clean_scores,
        adversarial=reports[0].adversarial_scores, eps=np.asarray(eps_list, dtype=np.float64),
        by_eps=np.stack([r.adversarial_scores for r in reports]),
        threshold=np.float64(result.detector.threshold))
    frame = detection_frame(reports)
    sizes = {r.eps: len(r.scores) for r in reports}
    return [row(DETECTION_METRICS[m], v, protocol="detection", n=sizes[e],
                attack=DETECTION_ATTACK, eps=e)
            for e, m, v in frame.itertuples(index=False) if m in DETECTION_METRICS]


def _fgsm(model: Any, dataset: Any, result: Any, items: np.ndarray, eps: float,
          seed: int) -> torch.Tensor:
    """uint8 FGSM images of held-out ``items`` at ``eps``: the defense's own set at a budget it
    crafted (its held-out items were never trained on), else crafted here."""
    from varsec.attacks import FGSMStep, poison_catalog

    settings = result.config
    crafted = {settings.eps: "fgsm",
               **dict(zip(settings.detector_budgets, settings.detector_kinds, strict=True))}
    if eps in crafted and crafted[eps] in result.adversarial:
        return result.adversarial_images(crafted[eps], items)
    return poison_catalog(model, dataset, FGSMStep(eps), items, seed=seed,
                          batch_size=SCORE_BATCH)[1].images


# -- what the apply and attack stages load --------------------------------------------------------
def load_fitted(output: StageOutput, device: str = "cpu") -> Fitted:
    """T and the detector (paired with T) a fit stage wrote."""
    from varsec.defenses import load_defense

    network, detector = load_defense(output.path, device=device, verify=False)
    return Fitted(network.network, None if detector is None else detector.detector)


def random_layer(ratio: float | None, seed: int | None = None) -> nn.Module | None:
    """The random resize + pad layer after T ("(rand)" rows), or None."""
    if ratio is None:
        return None
    from varsec.defenses import ResizePad

    return ResizePad(ratio=float(ratio), seed=seed)


def reconstruct(fit: StageOutput, params: dict[str, Any], seed: int, device: str,
                images: np.ndarray) -> tuple[np.ndarray, float | None]:
    """uint8 images through T (and the random layer), and the share the detector flags (None
    without a detector); T runs once per image for both."""
    from varsec.defenses.base import module_device
    from varsec.vision.perturbation import float_to_uint8, uint8_to_float

    fitted = load_fitted(fit, device)
    layer = random_layer(params.get("random_resize_pad"), seed)
    out = np.empty_like(images)
    flagged = []
    target = module_device(fitted.network)
    with torch.no_grad():
        for start in range(0, len(images), SCORE_BATCH):
            chunk = np.ascontiguousarray(images[start:start + SCORE_BATCH])
            x = uint8_to_float(chunk, target)
            restored = fitted.network(x)
            if fitted.detector is not None:
                flagged.append(fitted.detector.distance(x, restored).cpu().numpy())
            seen = restored if layer is None else layer(restored)
            out[start:start + len(x)] = float_to_uint8(seen).cpu().numpy()
    if fitted.detector is None:
        return out, None
    scores = np.concatenate(flagged) if flagged else np.zeros(0)
    return out, float(np.mean(fitted.detector.decide(scores))) if scores.size else None


def detector_aware(objective: Any, params: dict[str, Any], fit: StageOutput,
                   device: str) -> tuple[Any, Any]:
    """(objective, engine hook) of the attack that knows T, the detector and the random layer:
    the detector-aware objective of varsec.defenses.adaptive (EOT over the random layer), or,
    without a detector, the attack through T (differentiable: no BPDA needed)."""
    from varsec.attacks import TransformHook
    from varsec.defenses import DetectorAwareObjective

    fitted = load_fitted(fit, device)
    layer = random_layer(params.get("random_resize_pad"))
    draws = int(params.get("eot_samples", 1)) if layer is not None else 1
    if fitted.detector is None:
        chain = fitted.network if layer is None else nn.Sequential(fitted.network, layer)
        return objective, TransformHook(chain, draws)
    wrapped = DetectorAwareObjective(objective, fitted.network, fitted.detector,
                                     penalty=float(params.get("adaptive_penalty", 10.0)),
                                     margin=float(params.get("adaptive_margin", 0.0)),
                                     random_layer=layer)
    # each draw re-samples the random layer inside the objective (as adaptive_bpr_attack does)
    return wrapped, TransformHook(nn.Identity(), draws) if draws > 1 else None


__all__ = ["DETECTION_ATTACK", "Fitted", "detector_aware", "fit_reconstruction", "load_fitted",
           "random_layer", "reconstruct"]
