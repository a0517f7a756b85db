"""Checkpoint files: the one writer and the one reader of every ``torch.save`` file varsec uses.

Backbone, recommender, reconstruction-network and detector checkpoints, and third-party weights
files (torchvision's ``.pth``), are all read by :func:`read_checkpoint`: on the CPU with
``torch.load(weights_only=True)``, so a file may hold tensors and plain values but never code.
A missing, truncated or corrupt file, or one that pickles other Python objects, is one
:class:`~varsec.errors.ModelError` sentence naming it. varsec's own formats carry ``format`` and
``version`` fields, checked here, and a hash of their weights, which the loader recomputes and
compares with :func:`check_recorded_hash`. :func:`write_checkpoint` writes atomically.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from varsec.errors import ModelError
from varsec.io import atomic_path, not_a_file_message

_FOREIGN = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def write_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """``torch.save`` ``payload`` to ``path`` atomically (nothing half-written is left)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def cpu_state(module: nn.Module) -> dict[str, Tensor]:
    """A module's state dict, detached and on the CPU (what a checkpoint stores)."""
    return {key: value.detach().cpu() for key, value in module.state_dict().items()}


def read_checkpoint(path: str | os.PathLike[str], what: str, *, kind: str | None = None,
                    version: int | None = None, hint: str = "") -> Any:
    """What ``torch.save`` wrote to ``path``, read safely (tensors and plain values only).

    ``what`` names the file in messages (``"varsec backbone checkpoint"``). With ``kind`` the
    payload must be a dict whose ``format`` is ``kind`` and whose ``version`` is at most
    ``version``; ``hint`` ends the message of a file of another format.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(not_a_file_message(path, f"no such {what}"))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises unpickling, EOF, zip and key errors for bad files
        foreign = _FOREIGN.search(str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
        if foreign is not None:
            raise ModelError(f"{path}: not a {what}: it pickles {foreign.group(1)}, and varsec "
                             "reads only tensors and plain values from a checkpoint, never code "
                             "(torch.load weights_only).") from None
        raise ModelError(f"{path}: not a readable {what} ({_damage(exc)}).") from None
    if kind is not None:
        _check_format(path, payload, what, kind, version, hint)
    return payload


def _damage(exc: Exception) -> str:
    if isinstance(exc, EOFError):
        return "empty or truncated"
    if "zip archive" in str(exc):
        return "truncated or damaged archive"
    return "not a file torch.save wrote, or a damaged one"


def _check_format(path: Path, payload: Any, what: str, kind: str, version: int | None,
                  hint: str) -> None:
    if not isinstance(payload, dict) or payload.get("format") != kind:
        if not isinstance(payload, dict):
            found = f"it holds a {type(payload).__name__}"
        elif "format" in payload:
            found = f"format {payload['format']!r}"
        else:
            found = "it has no format field"
        raise ModelError(f"{path}: not a {what} ({found}){hint}.")
    if version is not None and payload.get("version", 0) > version:
        raise ModelError(f"{path}: {what} format version {payload.get('version')} is newer "
                         f"than this varsec reads ({version}); upgrade varsec.")


def check_recorded_hash(path: str | os.PathLike[str], recorded: Any, actual: str) -> None:
    """A ModelError unless the weights hash recomputed from what was read (``actual``) is the
    one the file records (a damaged or edited file)."""
    if recorded != actual:
        raise ModelError(f"{path}: weights do not match the hash recorded in the file "
                         "(damaged or edited?).")


__all__ = ["check_recorded_hash", "cpu_state", "read_checkpoint", "write_checkpoint"]
