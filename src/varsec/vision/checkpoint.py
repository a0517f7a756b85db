"""Backbone checkpoints: one ``torch.save`` dict, written atomically, read without pickled code.

A checkpoint carries the architecture (registry name + constructor arguments), the weights, the
training config, the hash of the catalog it was trained on, its metrics, and a checkpoint hash
over architecture and weights (:meth:`Backbone.weights_hash`) that is verified on load and keys
every cache built on the backbone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from varsec import __version__
from varsec.checkpoints import check_recorded_hash, cpu_state, read_checkpoint, write_checkpoint
from varsec.devices import check_device
from varsec.errors import ConfigError, ModelError
from varsec.vision.base import Backbone, load_state_into
from varsec.vision.registry import backbone_parameters, create_backbone

FORMAT = "varsec-backbone"
VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: the ready backbone (in eval mode) and what the file records."""

    backbone: Backbone
    path: Path
    checkpoint_hash: str
    backbone_name: str
    backbone_kwargs: dict[str, Any]
    train_config: dict[str, Any] | None = None
    catalog_hash: str | None = None
    category_names: list[str] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike[str],
    backbone: Backbone,
    *,
    train_config: dict[str, Any] | None = None,
    catalog_hash: str | None = None,
    category_names: list[str] | None = None,
    metrics: dict[str, Any] | None = None,
) -> str:
    """Write ``backbone`` and its provenance to ``path`` atomically; returns the checkpoint hash."""
    digest = backbone.weights_hash()
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "varsec_version": __version__,
        "backbone": backbone.name,
        "backbone_kwargs": dict(backbone.arch_config),
        "state_dict": cpu_state(backbone),
        "train_config": train_config,
        "catalog_hash": catalog_hash,
        "category_names": list(category_names) if category_names else None,
        "metrics": metrics or {},
        "checkpoint_hash": digest,
    }
    write_checkpoint(path, payload)
    return digest


def rebuild_backbone(name: Any, kwargs: dict[str, Any] | None, path: Path) -> Backbone:
    """The backbone ``name`` a checkpoint at ``path`` records, built from its ``kwargs`` without
    pretrained weights (the checkpoint's own replace them); a ModelError naming the file."""
    kwargs = dict(kwargs or {})
    try:
        if "weights" in backbone_parameters(name):
            kwargs["weights"] = None
        return create_backbone(name, **kwargs)
    except ConfigError as exc:
        reason = str(exc).rstrip(".")
        raise ModelError(f"{path}: cannot rebuild its {name} backbone ({reason}).") from exc


def _build(payload: dict[str, Any], path: Path, into: Backbone | None = None) -> Backbone:
    name = payload["backbone"]
    if into is not None:  # built by its owner (an external factory): only the weights are read
        load_state_into(into, payload["state_dict"], arch=type(into).__name__, source=str(path))
        return into
    backbone = rebuild_backbone(name, payload.get("backbone_kwargs"), path)
    load_state_into(backbone, payload["state_dict"], arch=name, source=str(path))
    return backbone


def load_checkpoint(
    path: str | os.PathLike[str],
    expected_backbone: str | None = None,
    *,
    device: str = "cpu",
    verify: bool = True,
    into: Backbone | None = None,
) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` and rebuild its backbone.

    ``expected_backbone`` names the architecture the caller needs: a checkpoint of another one is
    a ModelError. ``verify`` recomputes the checkpoint hash (a mismatch: a corrupted file).
    ``into``: a backbone built by its owner (one the registry does not know, such as a study's
    external factory builds) that receives the saved weights instead of a rebuilt one.
    """
    path = Path(path)
    check_device(device)
    payload = read_checkpoint(path, "varsec backbone checkpoint", kind=FORMAT, version=VERSION,
                              hint="; plain weights go to a backbone's weights= argument")
    name = payload.get("backbone")
    if expected_backbone is not None and name != expected_backbone:
        raise ModelError(
            f"{path}: checkpoint is for backbone {name!r}, not the expected {expected_backbone!r}."
        )
    backbone = _build(payload, path, into)
    digest = backbone.weights_hash()
    if verify:
        check_recorded_hash(path, payload.get("checkpoint_hash"), digest)
    backbone.eval().to(device)
    return Checkpoint(
        backbone=backbone,
        path=path,
        checkpoint_hash=digest,
        backbone_name=name,
        backbone_kwargs=dict(payload.get("backbone_kwargs") or {}),
        train_config=payload.get("train_config"),
        catalog_hash=payload.get("catalog_hash"),
        category_names=payload.get("category_names"),
        metrics=payload.get("metrics") or {},
    )


def open_backbone(
    spec: str | os.PathLike[str], *, device: str = "cpu", **kwargs: Any
) -> tuple[Backbone, str]:
    """A backbone from a registry name (built with ``kwargs``) or a checkpoint file.

    Returns the backbone (eval mode) and its checkpoint hash (the weights hash for a name).
    """
    check_device(device)
    text = str(spec)
    path = Path(text)
    if path.suffix in (".pt", ".pth", ".ckpt") or path.is_file():
        if kwargs:
            raise ConfigError(
                f"{path}: a checkpoint fixes its own architecture and weights; "
                f"drop {', '.join(sorted(kwargs))}."
            )
        checkpoint = load_checkpoint(path, device=device)
        return checkpoint.backbone, checkpoint.checkpoint_hash
    try:
        backbone = create_backbone(text, **kwargs)
    except ConfigError as exc:
        if "unknown backbone" in str(exc):
            raise ConfigError(f"{str(exc)[:-1]}, or a checkpoint file (.pt).") from exc
        raise
    backbone.eval().to(device)
    return backbone, backbone.weights_hash()
