"""``varsec train-defense``: train Yin et al.'s reconstruction network and contrastive detector
(002 sec 3.3-3.5) against a trained visual recommender, and save them as checkpoints.

The output directory receives ``reconstruction.pt``, ``detector.pt`` (paired with that
reconstruction network, threshold calibrated on held-out items unless fixed) and
``metrics.json`` (config, per-epoch history, calibration, item split sizes, hashes) and a
``manifest.json`` of kind ``defense`` (the sha256 of each file). The directory is written as a
whole, atomically: a failed run leaves nothing behind. An earlier defense in ``--out`` is
replaced; any other existing file or non-empty directory is refused before training unless
``--force``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from varsec.defenses.joint import DefenseConfig
from varsec.devices import DEVICE_HELP
from varsec.errors import ConfigError, DataError
from varsec.params import field_defaults

DEFENSE_KIND = "defense"  # the manifest kind of a train-defense output directory
D = field_defaults(DefenseConfig)  # the options' defaults: DefenseConfig is their one home


def _threshold(text: str) -> str | float:
    if text in ("accuracy", "fpr"):
        return text
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"--threshold must be 'accuracy', 'fpr' or a number (e.g. 0.2), got {text!r}."
        ) from None


def _budgets(text: str) -> float | tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--detector-eps must be comma-separated 8-bit levels (e.g. 16,32,64), got {text!r}."
        ) from None
    return values[0] if len(values) == 1 else values


def _echo_epoch(record: dict[str, Any]) -> None:
    parts = [f"{record['phase']} epoch {record['epoch']}"]
    parts += [f"{k} {v:.4g}" for k, v in record.items()
              if k not in ("phase", "epoch", "seconds") and isinstance(v, float)]
    parts.append(f"{record['seconds']:.0f}s")
    typer.echo(", ".join(parts), err=True)


def _load(dataset: Path, recommender: Path, extractor: str, device: str) -> tuple[Any, Any, Any]:
    from varsec.attacks.insa import require_visual
    from varsec.data.catalog import Dataset
    from varsec.data.sources import open_source
    from varsec.recsys.base import Recommender
    from varsec.vision.checkpoint import open_backbone

    data = open_source(dataset)
    if not isinstance(data, Dataset):
        raise DataError(f"{dataset}: train-defense needs a dataset with interactions (a saved "
                        "varsec dataset or a simulation), not a catalog alone.")
    model = Recommender.load(recommender, device=device)
    require_visual(model, "train-defense")
    backbone, backbone_hash = open_backbone(extractor, device=device)
    model.attach_extractor(backbone)
    return data, model, (backbone, backbone_hash)


def train_defense_command(
    dataset: Path = typer.Option(..., "--dataset", help="A saved varsec dataset directory."),
    recommender: Path = typer.Option(..., "--recommender", help="A visual recommender "
                                     "checkpoint (VBPR, AMR) trained on that dataset."),
    extractor: str = typer.Option(..., "--extractor", help="The recommender's feature "
                                  "extractor: a backbone checkpoint (.pt) or registry name; "
                                  "also the perceptual-loss network."),
    out: Path = typer.Option(..., "--out", help="Output directory (written atomically)."),
    force: bool = typer.Option(False, "--force", help="Replace --out even when it is a "
                               "non-empty directory that is not a varsec defense."),
    eps: float = typer.Option(D["eps"], help="Attack budget of the training pairs, 8-bit "
                              "levels."),
    pgd_steps: int = typer.Option(D["pgd_steps"], help="PGD steps of the (clean, FGSM, PGD) "
                                  "phase."),
    detector_eps: str = typer.Option(f"{D['detector_eps']:g}", help="FGSM budget(s) of the "
                                     "detector's pairs, e.g. 16 or 16,32,64."),
    recon_epochs: int = typer.Option(D["recon_epochs"], help="Epochs on (clean, FGSM) inputs."),
    mix_epochs: int = typer.Option(D["mix_epochs"], help="Epochs on (clean, FGSM, PGD) inputs."),
    detector_epochs: int = typer.Option(D["detector_epochs"], help="Detector epochs "
                                        "(reconstruction frozen)."),
    joint_epochs: int = typer.Option(D["joint_epochs"], help="End-to-end epochs with the whole "
                                     "eq 12."),
    alpha: float = typer.Option(D["alpha"], help="Weight of the perceptual loss (eq 12)."),
    beta: float = typer.Option(D["beta"], help="Weight of the contrastive loss (eq 12)."),
    gamma: float = typer.Option(D["gamma"], help="Weight of the recommender loss (eq 12)."),
    width: int = typer.Option(D["width"], help="Feature maps of the reconstruction network."),
    blocks: int = typer.Option(D["blocks"], help="Residual blocks of the reconstruction "
                               "network."),
    detector_backbone: str = typer.Option(D["detector_backbone"], help="Registry name of the "
                                          "detector's encoder."),
    embed_dim: int = typer.Option(D["embed_dim"], help="Detector embedding size."),
    temperature: float = typer.Option(D["temperature"], help="InfoNCE temperature tau (eq 9)."),
    lr: float = typer.Option(D["lr"], help="Adam learning rate of the reconstruction network."),
    detector_lr: float = typer.Option(D["detector_lr"], help="Adam learning rate of the "
                                      "detector."),
    batch_size: int = typer.Option(D["batch_size"], help="Triplets (two images each) per "
                                   "minibatch."),
    holdout: float = typer.Option(D["holdout_fraction"], help="Share of items never trained on "
                                  "(half calibrates the threshold)."),
    max_items: int | None = typer.Option(D["max_items"], help="Train on at most this many "
                                         "items."),
    threshold: str = typer.Option(D["threshold"], help="accuracy or fpr (calibrated), or a "
                                  "fixed number such as 0.2 (Yin et al.)."),
    target_fpr: float = typer.Option(D["target_fpr"], help="Clean false-positive rate for "
                                     "--threshold fpr."),
    seed: int = typer.Option(D["seed"], help="Seed of the split, attacks, initialisation, "
                             "sampling."),
    device: str = typer.Option(D["device"], help=DEVICE_HELP),
) -> None:
    """Train the reconstruction network and the contrastive detector (Yin et al. 002).

    The recommender stays frozen; training pairs come from the untargeted BPR attack through
    it (FGSM, then FGSM and PGD). The detector's threshold is calibrated on held-out items.

    Example: varsec train-defense --dataset runs/data --recommender runs/vbpr.pt
    --extractor runs/fmnist-cnn.pt --out runs/defense --recon-epochs 3
    """
    from varsec.defenses.checkpoint import (
        DETECTOR_FILE,
        RECONSTRUCTION_FILE,
        save_detector,
        save_reconstruction,
    )
    from varsec.defenses.joint import train_defense
    from varsec.io import atomic_dir, check_output_dir, write_json_atomic, write_output_manifest

    check_output_dir(out, DEFENSE_KIND, overwrite=force)
    config = DefenseConfig(
        eps=eps, pgd_steps=pgd_steps, detector_eps=_budgets(detector_eps),
        recon_epochs=recon_epochs,
        mix_epochs=mix_epochs, detector_epochs=detector_epochs, joint_epochs=joint_epochs,
        alpha=alpha, beta=beta, gamma=gamma, width=width, blocks=blocks,
        detector_backbone=detector_backbone, embed_dim=embed_dim, temperature=temperature,
        lr=lr, detector_lr=detector_lr, batch_size=batch_size, holdout_fraction=holdout,
        max_items=max_items, threshold=_threshold(threshold), target_fpr=target_fpr, seed=seed,
        device=device,
    )
    data, model, (backbone, backbone_hash) = _load(dataset, recommender, extractor, device)
    result = train_defense(model, data, config, extractor=backbone, on_epoch=_echo_epoch)
    provenance = {"dataset_hash": data.content_hash(), "extractor_hash": backbone_hash,
                  "recommender": str(recommender)}
    metrics = {"history": result.history, "seconds": round(result.seconds, 1),
               "items": {k: len(v) for k, v in result.split.to_dict().items()},
               "calibration": None if result.calibration is None
               else result.calibration.to_dict()}
    with atomic_dir(out, kind=DEFENSE_KIND, overwrite=force) as tmp:
        network_hash = save_reconstruction(tmp / RECONSTRUCTION_FILE, result.reconstruction,
                                           train_config=config.to_dict(), provenance=provenance,
                                           metrics=metrics)
        detector_hash = None
        if result.detector is not None:
            detector_hash = save_detector(tmp / DETECTOR_FILE, result.detector,
                                          result.reconstruction, train_config=config.to_dict(),
                                          metrics=metrics)
        write_json_atomic(tmp / "metrics.json", {
            **metrics, "config": config.to_dict(), "provenance": provenance,
            "split": result.split.to_dict(), "reconstruction_hash": network_hash,
            "detector_hash": detector_hash})
        write_output_manifest(tmp, DEFENSE_KIND, {"reconstruction_hash": network_hash,
                                                  "detector_hash": detector_hash})
    _report(out, network_hash, result)


def _report(out: Path, network_hash: str, result: Any) -> None:
    text = f"wrote {out}: reconstruction {network_hash[:12]}"
    calibration = result.calibration
    if calibration is not None:
        how = ("fixed" if calibration.method == "fixed" else
               f"calibrated ({calibration.method}) on {calibration.n_clean} clean + "
               f"{calibration.n_adversarial} adversarial held-out images, balanced accuracy "
               f"{calibration.accuracy:.3f}")
        text += f", detector threshold {calibration.threshold:.4f} {how}"
    typer.echo(text + f", {result.seconds:.0f}s.")


def register(app: typer.Typer) -> None:
    """Add ``varsec train-defense`` to the root app."""
    app.command("train-defense")(train_defense_command)


__all__ = ["register", "train_defense_command"]
