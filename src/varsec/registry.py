"""What every method registry shares: loading the package whose files register the methods,
and the plugins other packages declare.

A registry (backbones, recommenders, attacks, defenses) is filled by decorators in the methods'
own files, so it is complete once every module of its package is imported: a new method is one
new file in the package and nothing else.

**Plugins** let a platform audit its own model without forking: an installed package declares
an entry point in the group of the registry (``varsec.backbones``, ``varsec.recommenders``,
``varsec.attacks``, ``varsec.defenses``) naming the module or class that holds its method, e.g.
in its ``pyproject.toml``::

    [project.entry-points."varsec.recommenders"]
    my-model = "my_package.model:MyModel"

Loading the registry loads the entry point: a class registered by its own decorator counts as
it is, a class without one is registered under the entry point's name. A plugin that does not
import, or that is not a method of the group's kind, is one ConfigError line naming it.
"""

from __future__ import annotations

import importlib
import pkgutil
import types
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

from varsec.errors import ConfigError

_IMPORTED: set[str] = set()


def import_submodules(package: str) -> None:
    """Import every module of ``package`` once (each registers the methods it defines)."""
    if package in _IMPORTED:
        return
    module = importlib.import_module(package)
    for found in pkgutil.iter_modules(module.__path__):
        importlib.import_module(f"{package}.{found.name}")
    _IMPORTED.add(package)


def load_plugins(group: str, kind: str, accepts: Callable[[type], bool],
                 registered: Mapping[str, Any], register: Callable[[str], Callable]) -> None:
    """Load every installed entry point of ``group`` once.

    An entry point names a module (its methods registered themselves when it was imported) or
    a class of the registry's ``kind`` (one ``accepts`` takes): that class is registered with
    the decorator ``register(entry point name)`` unless it is among ``registered``'s values
    already (its own decorator ran, or it inherits its parent's name).
    """
    if group in _IMPORTED:
        return
    _IMPORTED.add(group)  # one attempt per process, even when a plugin fails
    for entry in metadata.entry_points(group=group):
        try:
            loaded = entry.load()
        except Exception as exc:  # any import failure of foreign code is the plugin's
            raise ConfigError(f"plugin {entry.name!r} ({group}: {entry.value}) cannot be "
                              f"loaded: {type(exc).__name__}: {exc}.") from None
        try:
            if isinstance(loaded, type) and accepts(loaded):
                if loaded not in registered.values():
                    register(entry.name)(loaded)
            elif not isinstance(loaded, types.ModuleType):
                raise TypeError(f"{loaded!r} is not a varsec {kind} class or a module")
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"plugin {entry.name!r} ({group}: {entry.value}) is not usable: "
                              f"{str(exc).rstrip('.')}.") from None


__all__ = ["import_submodules", "load_plugins"]
