"""Finding and reading pretrained weights offline: explicit files, torchvision's cache, downloads.

There is no network access at run time unless the caller asks for a download (DESIGN.md section
2); when the weights are absent the error says exactly which file to place where.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from varsec.checkpoints import read_checkpoint
from varsec.errors import ModelError
from varsec.io import sha256_file


def torchvision_cache_dir() -> Path:
    """torchvision's checkpoint folder: ``$TORCH_HOME/hub/checkpoints`` (default ~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def read_state_dict(path: str | os.PathLike[str], *, arch: str) -> dict[str, Tensor]:
    """Read a state dict from a ``.pth`` file (:func:`varsec.checkpoints.read_checkpoint`:
    tensors and plain values only, never arbitrary pickles).

    A dict wrapping the weights under ``state_dict`` or ``model`` is unwrapped.
    """
    payload = read_checkpoint(path, f"{arch} weights file")
    if isinstance(payload, dict):
        for key in ("state_dict", "model"):
            if isinstance(payload.get(key), dict):
                payload = payload[key]
    if not isinstance(payload, dict) or not all(isinstance(v, Tensor) for v in payload.values()):
        raise ModelError(f"{path}: does not hold a state dict of tensors for {arch}.")
    return payload


def _verify_hash_prefix(path: Path, arch: str) -> None:
    """torchvision file names end in the first 8 hex digits of the file's sha256; check them."""
    prefix = path.stem.rsplit("-", 1)[-1]
    if len(prefix) >= 8 and not sha256_file(path).startswith(prefix):
        raise ModelError(
            f"{path}: sha256 does not start with {prefix} as its name promises "
            f"(corrupted or not the official {arch} weights); replace it with the official file."
        )


def resolve_torchvision_weights(
    arch: str, url: str, weights: str | os.PathLike[str] | None, *, download: bool = False
) -> tuple[dict[str, Tensor], str] | None:
    """(state dict, source) for a torchvision model, or None when ``weights`` is None.

    ``weights="imagenet"`` looks in torchvision's cache for the official file name, downloads it
    (sha256-checked) only when ``download`` is true, and otherwise raises a ModelError that says
    which file to place where. Any other value is a path to a weights file.
    """
    if weights is None:
        return None
    if str(weights) != "imagenet":
        return read_state_dict(weights, arch=arch), str(weights)
    filename = url.rsplit("/", 1)[-1]
    cached = torchvision_cache_dir() / filename
    if cached.is_file():
        _verify_hash_prefix(cached, arch)
        return read_state_dict(cached, arch=arch), str(cached)
    if download:
        return _download(arch, url), url
    raise ModelError(
        f"the ImageNet weights of {arch} are not on this machine: place {filename} "
        f"(from {url}) in {cached.parent}, or pass weights=PATH to a copy "
        "(or allow a download with download=True / --download)."
    )


def _download(arch: str, url: str) -> dict[str, Tensor]:
    try:
        state = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", check_hash=True, progress=False, weights_only=True
        )
    except Exception as exc:  # URLError, RuntimeError on a bad hash, ...
        raise ModelError(
            f"download of the {arch} weights from {url} failed ({type(exc).__name__}: {exc}); "
            f"place the file in {torchvision_cache_dir()} by hand."
        ) from exc
    return state
