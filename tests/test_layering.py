"""DESIGN.md section 1: data flows one way, each layer imports only the layers above it.

The order is data, vision, recsys, metrics, attacks, defenses, study; ``errors.py``,
``io.py``, ``params.py``, ``registry.py``, ``devices.py`` and ``checkpoints.py`` are shared by
all (and import no layer);
``cli.py`` may import everything. Every import in the source tree counts, also those inside
functions or ``TYPE_CHECKING`` blocks, and ``importlib.import_module("varsec....")`` calls
with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "varsec"
LAYERS = ("data", "vision", "recsys", "metrics", "attacks", "defenses", "study")
SHARED = ("checkpoints", "devices", "errors", "io", "params", "registry")
RANK = {name: rank for rank, name in enumerate(LAYERS)}
RANK["cli"] = len(LAYERS)

# Violations outside the files this test's author owns, kept visible until they are fixed:
# (importing module, imported module). Remove an entry once its import is gone.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank_of(module: str) -> int | None:
    """Layer rank of a varsec module: shared modules and the package root -1, cli last."""
    parts = module.split(".")
    if parts[0] != "varsec":
        return None
    if len(parts) == 1 or parts[1] in SHARED:
        return -1
    return RANK.get(parts[1])


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of a varsec module in one source file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports_in(path.read_text(encoding="utf-8"), package)


def imports_in(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every varsec import in ``source``, a module of ``package``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative import: resolve against the module's package
                parts = package.split(".")
                module = ".".join(parts[: len(parts) - node.level + 1] + ([module] if module
                                                                          else []))
            found.append((node.lineno, module))
            # `from varsec import metrics` / `from . import metrics` imports the layer itself
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names
                      if module == "varsec" and alias.name in RANK]
        elif isinstance(node, ast.Call) and _is_import_module(node):
            found.append((node.lineno, node.args[0].value))
    return [(line, name) for line, name in found if name.split(".")[0] == "varsec"]


def _is_import_module(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return (name == "import_module" and bool(node.args) and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str))


def violations() -> list[tuple[str, str, str]]:
    """(importing module, imported module, "file:line") for every import of a lower layer."""
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        importer = module_name(path)
        own = rank_of(importer)
        if own == RANK["cli"]:
            continue  # the command line may import every layer
        for line, imported in imported_modules(path):
            other = rank_of(imported)
            if other is not None and own is not None and other > own:
                where = f"{path.relative_to(SOURCE.parents[1])}:{line}"
                found.append((importer, imported, where))
    return found


def test_the_scan_finds_every_kind_of_import():
    source = """
import varsec.data.catalog
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from varsec.attacks.engine import Attack
def later():
    from varsec.metrics.ranking import evaluate_full
    from ..study import runner
    from . import base
    from varsec import defenses
    importlib.import_module("varsec.cli")
"""
    found = {name: rank_of(name) for _, name in imports_in(source, "varsec.recsys")}
    assert found == {"varsec.data.catalog": 0, "varsec.attacks.engine": 4,
                     "varsec.metrics.ranking": 3, "varsec.study": 6, "varsec.recsys": 2,
                     "varsec": -1, "varsec.defenses": 5, "varsec.cli": 7}


def test_the_scan_sees_the_layers():
    modules = {module_name(path) for path in SOURCE.rglob("*.py")}
    assert {f"varsec.{layer}" for layer in LAYERS} <= modules
    imports = imported_modules(SOURCE / "metrics" / "ranking.py")
    assert any(name == "varsec.recsys.ranking" for _, name in imports)
    assert rank_of("varsec.errors") == -1 and rank_of("varsec.cli") == len(LAYERS)


def test_no_layer_imports_a_layer_below_it():
    unexpected = [v for v in violations() if (v[0], v[1]) not in KNOWN_EXCEPTIONS]
    listing = "\n".join(f"{where}: {importer} imports {imported}"
                        for importer, imported, where in unexpected)
    assert not unexpected, f"imports against the layer order of DESIGN.md section 1:\n{listing}"


def test_known_exceptions_still_exist():
    current = {(importer, imported) for importer, imported, _ in violations()}
    fixed = sorted(KNOWN_EXCEPTIONS - current)
    assert not fixed, f"fixed, remove from KNOWN_EXCEPTIONS: {fixed}"
