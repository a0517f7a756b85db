"""What every method registry shares: loading the package whose files register the methods.

A registry (attacks, defenses) is filled by decorators in the methods' own files, so it is
complete once every module of its package is imported: a new method is one new file in the
package and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package: str) -> None:
    """Import every module of ``package`` (each registers the methods it defines)."""
    module = importlib.import_module(package)
    for found in pkgutil.iter_modules(module.__path__):
        importlib.import_module(f"{package}.{found.name}")


__all__ = ["import_submodules"]
