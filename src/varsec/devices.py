"""Devices: the one rule for a device a user names, where a model's tensors live, seeded RNGs.

DESIGN.md section 2: CPU by default, ``cuda`` (or ``cuda:N``) when the machine has it; no code
path requires a GPU. Every place that takes a device (the study's ``device:``, ``--device`` of
the commands, ``TrainConfig``, ``DefenseConfig``, a recommender's ``device`` parameter, the
checkpoint loaders, ``run_attack``) checks it with :func:`check_device` before any compute, so a
CUDA device on a machine without CUDA is one :class:`~varsec.errors.ConfigError` naming the
value, never a torch error half-way through a run.
"""

from __future__ import annotations

import contextlib
import itertools
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from varsec.errors import ConfigError

#: What a device may be, for help texts and messages.
DEVICES = "cpu, cuda or cuda:N"
DEVICE_HELP = f"Torch device: {DEVICES} (cuda only where the machine has it)."
CPU = torch.device("cpu")


def device_problem(device: Any) -> str | None:
    """Why ``device`` cannot be used on this machine (the end of a sentence that starts with the
    field's name), or None when it can."""
    resolved = None
    if isinstance(device, str | torch.device):  # not an int: torch reads one as a CUDA index
        with contextlib.suppress(RuntimeError, TypeError, ValueError):
            resolved = torch.device(device)
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        return f"must be {DEVICES}, got {str(device)!r}."
    if resolved.type == "cpu":
        return None
    if not torch.cuda.is_available():
        return f"{str(device)!r} needs CUDA, which this machine does not have; use cpu."
    count = torch.cuda.device_count()
    if resolved.index is not None and resolved.index >= count:
        return (f"{str(device)!r} names CUDA device {resolved.index}, but this machine has "
                f"{count} (cuda:0 to cuda:{count - 1}).")
    return None


def check_device(device: str | torch.device | None, name: str = "device") -> torch.device:
    """The torch device ``device`` names (None: the CPU); a ConfigError naming ``name`` and the
    value when it is not :data:`DEVICES` or not present on this machine."""
    if device is None:
        return CPU
    problem = device_problem(device)
    if problem is not None:
        raise ConfigError(f"{name} {problem}")
    return torch.device(device)


def module_device(*owners: Any) -> torch.device:
    """Where the first of ``owners`` that holds tensors keeps them: a module's first parameter
    or buffer (a bound method counts as its module), another object's own ``device``
    attribute; the CPU when none has either."""
    for owner in owners:
        if isinstance(owner, types.MethodType):
            owner = owner.__self__
        if isinstance(owner, nn.Module):
            for tensor in itertools.chain(owner.parameters(), owner.buffers()):
                return tensor.device
            continue
        device = getattr(owner, "device", None)
        if isinstance(device, torch.device):
            return device
    return CPU


@contextlib.contextmanager
def seeded(seed: int, device: torch.device = CPU) -> Iterator[None]:
    """Run a block with torch's global RNG of the CPU (and of ``device`` when it is a GPU)
    seeded with ``seed``; the previous states are restored afterwards."""
    gpus = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.default_generator.manual_seed(int(seed))
        for index in gpus:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(int(seed))
        yield


__all__ = ["CPU", "DEVICES", "DEVICE_HELP", "check_device", "device_problem", "module_device",
           "seeded"]
