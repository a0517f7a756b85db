"""Yin et al.'s reconstruction + detection defense (002 sec 3.3-3.5) as a registered defense.

:meth:`ReconstructionDefense.fit` trains the reconstruction network T and the contrastive
detector with :func:`varsec.defenses.train_defense` against a frozen recommender (the defense
crafts its own training pairs through it, untargeted FGSM and PGD when a phase mixes it in,
with seed ``seed + 1``, so its training images are not the evaluated attack's) and writes into
its output directory

* ``reconstruction.pt`` and ``detector.pt`` (paired with T, threshold calibrated on held-out
  items unless ``params.threshold`` fixes it) and ``metrics.json`` (history, calibration, split);
* ``distances.npz`` for the histogram of 002 Fig. 9: ``clean`` and ``adversarial`` (the first
  eps), ``eps`` and ``by_eps`` (one row of adversarial distances per eps), ``threshold``;

and returns the detection test (002 Table 3) at every detection eps: FGSM through the
recommender on the defense's held-out test items (half shown clean, half adversarial), as
records (``detection_accuracy``, ``_precision``, ``_recall``, ``roc_auc``, ``threshold`` and the
confusion counts, attack ``fgsm``). :meth:`defender` passes images through T (then the random
resize + pad layer for the "(rand)" rows) and measures the share the detector flags;
:meth:`adaptive` is the attacker that knows T, the detector and the random layer
(:class:`~varsec.defenses.adaptive.DetectorAwareObjective`, EOT over the random layer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from varsec.defenses.registry import DefenseMethod, FitResult, register_defense
from varsec.io import write_json_atomic

DETECTION_ATTACK = "fgsm"  # the attack label of the detection records (FGSM through the model)
DETECTION_METRICS = {"accuracy": "detection_accuracy", "precision": "detection_precision",
                     "recall": "detection_recall", "roc_auc": "roc_auc", "threshold": "threshold",
                     "tn": "detection_tn", "fp": "detection_fp", "fn": "detection_fn",
                     "tp": "detection_tp"}
DISTANCES_FILE = "distances.npz"
SCORE_BATCH = 256


@dataclass
class Fitted:
    """What a fit trained: T (eval mode) and the detector (None without one)."""

    network: Any
    detector: Any | None


@register_defense("reconstruction")
class ReconstructionDefense(DefenseMethod):
    """Yin et al.'s reconstruction network T with its contrastive detector (002 sec 3.3-3.5):
    trained against one recommender, applied to the images; its adaptive attacker is
    detector-aware."""

    label = "reconstruction + detector"
    trained = True
    adaptive = "detector-aware"
    paper = "002 sec 3.3-3.5"

    # -- fit ------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, out: Path, dataset: Any, model: Any, extractor: Any, params: dict[str, Any],
            seed: int, device: str, detection_eps: list[float] | None = None,
            log: Callable[[str], None] | None = None) -> FitResult:
        """Train T and the detector, save them into ``out`` and test the detector."""
        from varsec.defenses import DefenseConfig, train_defense

        settings = DefenseConfig.from_dict({**params, "seed": seed + 1, "device": device})
        result = train_defense(model, dataset, settings, extractor=extractor,
                               on_epoch=None if log is None else
                               (lambda record: log(f"defense {record}")))
        info = _save(out, result)
        records: list[dict[str, Any]] = []
        if result.detector is not None:
            eps_list = [float(e) for e in detection_eps or []] or [settings.eps]
            records = _detection(out, model, dataset, result, eps_list, seed)
        info.update(seconds=round(result.seconds, 1), history=result.history,
                    items={k: len(v) for k, v in result.split.to_dict().items()},
                    calibration=None if result.calibration is None
                    else result.calibration.to_dict())
        return FitResult(records, info)

    # -- apply ----------------------------------------------------------------------------------
    @classmethod
    def defender(cls, *, strength: Any, params: dict[str, Any], seed: int,
                 fitted: Path | None, device: str) -> Callable[[np.ndarray], Any]:
        """uint8 images -> (through T and the random layer, the share the detector flags or
        None without a detector); T runs once per image for both."""
        assert fitted is not None
        return lambda images: _reconstruct(fitted, params, seed, device, images)

    @classmethod
    def adaptive_attack(cls, objective: Any, *, strength: Any, params: dict[str, Any],
                        fitted: Path | None, device: str) -> tuple[Any, Any]:
        """(objective, engine hook) of the attack that knows T, the detector and the random
        layer: the detector-aware objective (EOT over the random layer), or, without a
        detector, the attack through T (differentiable: no BPDA needed)."""
        from varsec.attacks import TransformHook
        from varsec.defenses.adaptive import DetectorAwareObjective

        assert fitted is not None
        loaded = load_fitted(fitted, device)
        layer = random_layer(params.get("random_resize_pad"))
        draws = int(params.get("eot_samples", 1)) if layer is not None else 1
        if loaded.detector is None:
            chain = loaded.network if layer is None else nn.Sequential(loaded.network, layer)
            return objective, TransformHook(chain, draws)
        wrapped = DetectorAwareObjective(objective, loaded.network, loaded.detector,
                                         penalty=float(params.get("adaptive_penalty", 10.0)),
                                         margin=float(params.get("adaptive_margin", 0.0)),
                                         random_layer=layer)
        # each draw re-samples the random layer inside the objective (as adaptive_bpr_attack)
        return wrapped, TransformHook(nn.Identity(), draws) if draws > 1 else None


def _save(out: Path, result: Any) -> dict[str, Any]:
    from varsec.defenses.checkpoint import (
        DETECTOR_FILE,
        RECONSTRUCTION_FILE,
        save_detector,
        save_reconstruction,
    )

    settings = result.config.to_dict()
    network_hash = save_reconstruction(out / RECONSTRUCTION_FILE, result.reconstruction,
                                       train_config=settings)
    detector_hash = None
    if result.detector is not None:
        detector_hash = save_detector(out / DETECTOR_FILE, result.detector,
                                      result.reconstruction, train_config=settings)
    write_json_atomic(out / "metrics.json", {
        "config": settings, "history": result.history, "split": result.split.to_dict(),
        "calibration": None if result.calibration is None else result.calibration.to_dict(),
        "reconstruction_hash": network_hash, "detector_hash": detector_hash})
    return {"reconstruction_hash": network_hash, "detector_hash": detector_hash}


def _detection(out: Path, model: Any, dataset: Any, result: Any, eps_list: list[float],
               seed: int) -> list[dict[str, Any]]:
    """002 Table 3 on the held-out test items: records and ``distances.npz``."""
    from varsec.defenses.evaluation import detection_frame, detection_table

    test = result.split.test
    clean = torch.from_numpy(np.ascontiguousarray(dataset.catalog.images[test]))
    adversarial = {eps: _fgsm(model, dataset, result, test, eps, seed) for eps in eps_list}
    reports = detection_table(result.detector, result.reconstruction, clean, adversarial,
                              seed=seed)
    np.savez_compressed(
        out / DISTANCES_FILE, clean=reports[0].clean_scores,
        adversarial=reports[0].adversarial_scores, eps=np.asarray(eps_list, dtype=np.float64),
        by_eps=np.stack([r.adversarial_scores for r in reports]),
        threshold=np.float64(result.detector.threshold))
    frame = detection_frame(reports)
    sizes = {r.eps: len(r.scores) for r in reports}
    return [{"metric": DETECTION_METRICS[m], "value": v, "protocol": "detection",
             "n": sizes[e], "attack": DETECTION_ATTACK, "eps": e}
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


def load_fitted(directory: Path, device: str = "cpu") -> Fitted:
    """T and the detector (paired with T) a fit wrote into ``directory``."""
    from varsec.defenses.checkpoint import load_defense

    network, detector = load_defense(directory, device=device, verify=False)
    return Fitted(network.network, None if detector is None else detector.detector)


def random_layer(ratio: float | None, seed: int | None = None) -> nn.Module | None:
    """The random resize + pad layer after T ("(rand)" rows), or None."""
    if ratio is None:
        return None
    from varsec.defenses.resize_pad import ResizePad

    return ResizePad(ratio=float(ratio), seed=seed)


def _reconstruct(fitted_dir: Path, params: dict[str, Any], seed: int, device: str,
                 images: np.ndarray) -> tuple[np.ndarray, float | None]:
    from varsec.devices import module_device
    from varsec.vision.perturbation import float_to_uint8, uint8_to_float

    fitted = load_fitted(fitted_dir, device)
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


__all__ = ["DETECTION_ATTACK", "DETECTION_METRICS", "Fitted", "ReconstructionDefense",
           "load_fitted", "random_layer"]
