"""Checkpoints of the reconstruction network and the detector (like the vision layer's).

Each is one ``torch.save`` dict written atomically and read with ``weights_only=True``: the
architecture config, the weights, the training config, provenance hashes (extractor, dataset,
recommender), metrics, and a weights hash verified on load. A detector checkpoint also records
the hash of the reconstruction network it was trained with and its threshold with how it was set;
loading it next to another reconstruction network is a :class:`~varsec.errors.ModelError`,
because its distances are only meaningful against the ``T`` it learned with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from varsec import __version__
from varsec.checkpoints import check_recorded_hash, cpu_state, read_checkpoint, write_checkpoint
from varsec.defenses import detector as det
from varsec.defenses import reconstruction as rec
from varsec.devices import check_device
from varsec.errors import ConfigError, ModelError
from varsec.vision.base import load_state_into
from varsec.vision.checkpoint import rebuild_backbone

VERSION = 1
RECONSTRUCTION_FILE = "reconstruction.pt"
DETECTOR_FILE = "detector.pt"


@dataclass
class ReconstructionCheckpoint:
    """A loaded reconstruction network (eval mode) and what its file records."""

    network: rec.ReconstructionNet
    path: Path
    weights_hash: str
    train_config: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class DetectorCheckpoint:
    """A loaded detector (eval mode, threshold restored) and what its file records."""

    detector: det.ContrastiveDetector
    path: Path
    weights_hash: str
    reconstruction_hash: str
    train_config: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def _payload(kind: str, module: Any, **extra: Any) -> dict[str, Any]:
    return {"format": kind, "version": VERSION, "varsec_version": __version__,
            "config": module.config, "weights_hash": module.weights_hash(),
            "state_dict": cpu_state(module), **extra}


def _write(path: str | os.PathLike[str], payload: dict[str, Any]) -> str:
    write_checkpoint(path, payload)
    return payload["weights_hash"]


def save_reconstruction(
    path: str | os.PathLike[str],
    network: rec.ReconstructionNet,
    *,
    train_config: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> str:
    """Write ``network`` atomically; returns its weights hash.

    ``provenance`` records what it was trained against (extractor, dataset, recommender hashes).
    """
    return _write(path, _payload(rec.KIND, network, train_config=train_config,
                                 provenance=provenance or {}, metrics=metrics or {}))


def save_detector(
    path: str | os.PathLike[str],
    detector: det.ContrastiveDetector,
    reconstruction: rec.ReconstructionNet | str,
    *,
    train_config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> str:
    """Write ``detector`` paired with ``reconstruction`` (the network or its weights hash)."""
    paired = reconstruction if isinstance(reconstruction, str) else reconstruction.weights_hash()
    calibration = None if detector.calibration is None else detector.calibration.to_dict()
    return _write(path, _payload(det.KIND, detector, reconstruction_hash=paired,
                                 threshold=detector.threshold, calibration=calibration,
                                 train_config=train_config, metrics=metrics or {}))


def _verify(module: Any, payload: dict[str, Any], path: Path, verify: bool) -> str:
    digest = module.weights_hash()
    if verify:
        check_recorded_hash(path, payload.get("weights_hash"), digest)
    return digest


def load_reconstruction(path: str | os.PathLike[str], *, device: str = "cpu",
                        verify: bool = True) -> ReconstructionCheckpoint:
    """Read a reconstruction network written by :func:`save_reconstruction`."""
    path, target = Path(path), check_device(device)
    payload = read_checkpoint(path, "varsec reconstruction network checkpoint", kind=rec.KIND,
                              version=VERSION)
    try:
        network = rec.ReconstructionNet(**payload["config"])
    except (ConfigError, TypeError) as exc:
        raise ModelError(f"{path}: cannot rebuild its reconstruction network ({exc}).") from exc
    load_state_into(network, payload["state_dict"], arch="reconstruction network",
                    source=str(path))
    digest = _verify(network, payload, path, verify)
    network.eval().to(target)
    return ReconstructionCheckpoint(network, path, digest, payload.get("train_config"),
                                    payload.get("provenance") or {}, payload.get("metrics") or {})


def _build_detector(config: dict[str, Any], path: Path) -> det.ContrastiveDetector:
    encoder = rebuild_backbone(config.get("backbone"), config.get("backbone_kwargs"), path)
    try:
        return det.ContrastiveDetector(
            encoder, layer=config.get("layer"), embed_dim=config["embed_dim"],
            hidden_dim=config["hidden_dim"], temperature=config["temperature"])
    except (ConfigError, KeyError) as exc:
        raise ModelError(f"{path}: cannot rebuild its detector ({exc}).") from exc


def load_detector(
    path: str | os.PathLike[str],
    reconstruction: rec.ReconstructionNet | str,
    *,
    device: str = "cpu",
    verify: bool = True,
) -> DetectorCheckpoint:
    """Read a detector written by :func:`save_detector`, paired with ``reconstruction``.

    ``reconstruction`` is the network the detector will score against (or its weights hash);
    one other than the network the detector was trained with is a ModelError.
    """
    path, target = Path(path), check_device(device)
    payload = read_checkpoint(path, "varsec detector checkpoint", kind=det.KIND, version=VERSION)
    expected = payload.get("reconstruction_hash")
    given = reconstruction if isinstance(reconstruction, str) else reconstruction.weights_hash()
    if given != expected:
        raise ModelError(
            f"{path}: this detector was trained with reconstruction network {str(expected)[:12]}, "
            f"not with the given one ({given[:12]}); its distances are only meaningful against "
            "its own network."
        )
    detector = _build_detector(payload["config"], path)
    load_state_into(detector, payload["state_dict"], arch="detector", source=str(path))
    digest = _verify(detector, payload, path, verify)
    if payload.get("calibration") is not None:
        detector.calibration = det.Calibration(**payload["calibration"])
        detector.threshold = detector.calibration.threshold
    elif payload.get("threshold") is not None:
        detector.set_threshold(float(payload["threshold"]), source=str(path))
    detector.eval().to(target)
    return DetectorCheckpoint(detector, path, digest, str(expected),
                              payload.get("train_config"), payload.get("metrics") or {})


def load_defense(directory: str | os.PathLike[str], *, device: str = "cpu",
                 verify: bool = True) -> tuple[ReconstructionCheckpoint, DetectorCheckpoint | None]:
    """The reconstruction network and (when present) the detector of a ``train-defense`` run."""
    directory = Path(directory)
    loaded = load_reconstruction(directory / RECONSTRUCTION_FILE, device=device, verify=verify)
    detector_path = directory / DETECTOR_FILE
    if not detector_path.is_file():
        return loaded, None
    return loaded, load_detector(detector_path, loaded.network, device=device, verify=verify)


__all__ = [
    "DETECTOR_FILE",
    "RECONSTRUCTION_FILE",
    "DetectorCheckpoint",
    "ReconstructionCheckpoint",
    "load_defense",
    "load_detector",
    "load_reconstruction",
    "save_detector",
    "save_reconstruction",
]
