"""The backbone registry: names -> backbone classes (one file per backbone in ``backbones/``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from varsec.errors import ConfigError
from varsec.vision.base import Backbone

B = TypeVar("B", bound=type[Backbone])

_REGISTRY: dict[str, type[Backbone]] = {}


def register_backbone(name: str) -> Callable[[B], B]:
    """Class decorator: register a :class:`Backbone` subclass under ``name``."""

    def decorate(cls: B) -> B:
        if not (isinstance(cls, type) and issubclass(cls, Backbone)):
            raise TypeError(f"{cls!r} is not a Backbone subclass.")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ConfigError(f"backbone name {name!r} is already registered.")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_builtins() -> None:
    import varsec.vision.backbones  # noqa: F401  (registers the built-in backbones)
    from varsec.registry import load_plugins

    load_plugins("varsec.backbones", "Backbone", lambda cls: issubclass(cls, Backbone),
                 _REGISTRY, register_backbone)


def known_backbones() -> list[str]:
    """The registered backbone names, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def backbone_class(name: str) -> type[Backbone]:
    """The class registered under ``name``; a ConfigError listing the known names otherwise."""
    _load_builtins()
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown backbone {name!r} (known: {', '.join(sorted(_REGISTRY))})."
        )
    return _REGISTRY[name]


def backbone_parameters(name: str) -> set[str]:
    """The keyword arguments the backbone ``name`` accepts."""
    signature = inspect.signature(backbone_class(name).__init__)
    return {p for p in signature.parameters if p != "self"}


def create_backbone(name: str, **kwargs: Any) -> Backbone:
    """Build the backbone ``name`` with ``kwargs`` (unknown arguments are a ConfigError)."""
    cls = backbone_class(name)
    accepted = backbone_parameters(name)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(
            f"backbone {name!r} has no argument {unknown[0]!r} "
            f"(accepted: {', '.join(sorted(accepted)) or 'none'})."
        )
    return cls(**kwargs)
