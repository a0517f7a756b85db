"""What every method registry shares: loading the package whose files register the methods.

A registry (attacks, defenses) is filled by decorators in the methods' own files, so it is
complete once every module of its package is imported: a new method is one new file in the
package and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

_IMPORTED: set[str] = set()


def import_submodules(package: str) -> None:
    """Import every module of ``package`` once (each registers the methods it defines)."""
    if package in _IMPORTED:
        return
    module = importlib.import_module(package)
    for found in pkgutil.iter_modules(module.__path__):
        importlib.import_module(f"{package}.{found.name}")
    _IMPORTED.add(package)


__all__ = ["import_submodules"]
