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
import inspect
import pkgutil
import re
import types
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

from varsec.errors import ConfigError, VarsecError

_IMPORTED: set[str] = set()
# The kind of a study section whose method an external factory builds.
EXTERNAL = "external"
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
FACTORY_RE = re.compile(rf"^({_DOTTED}):({_DOTTED})\Z")


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


def check_factory_spec(spec: str) -> str:
    """``spec`` when it reads ``package.module:attribute`` (ValueError otherwise)."""
    if not isinstance(spec, str) or FACTORY_RE.match(spec.strip()) is None:
        raise ValueError(f"a factory is 'package.module:callable' (e.g. 'my_platform.audit:"
                         f"build'), got {spec!r}")
    return spec.strip()


def load_factory(spec: str) -> Callable[..., Any]:
    """The callable ``spec`` (``package.module:attribute``) names: the module is imported and
    the (dotted) attribute looked up; each failure is one ConfigError sentence."""
    try:
        text = check_factory_spec(spec)
    except ValueError as exc:
        raise ConfigError(f"{exc}.") from None
    module_name, attribute = text.split(":", 1)
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # any import failure of foreign code is the factory's
        raise ConfigError(f"factory {spec!r}: module {module_name!r} cannot be imported "
                          f"({type(exc).__name__}: {exc}).") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"factory {spec!r}: {getattr(target, '__name__', module_name)} "
                              f"has no attribute {part!r}.")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"factory {spec!r} is a {type(target).__name__}, not a callable "
                          "(a function or a class that builds the method).")
    return target


def accepted_keywords(factory: Callable[..., Any], names: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``names`` that ``factory`` takes as keyword arguments (all of them when
    it takes ``**kwargs``; none when its signature cannot be read)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(names)
    takes = {p.name for p in parameters if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                       inspect.Parameter.POSITIONAL_OR_KEYWORD)}
    return {k: v for k, v in names.items() if k in takes}


def build_external(spec: str, params: Mapping[str, Any], expected: type | tuple[type, ...],
                   what: str, context: Mapping[str, Any] | None = None) -> Any:
    """Import the factory ``spec``, call it with ``params`` (and the entries of ``context``,
    e.g. the study's seed and device, that its signature takes) and return what it built,
    which must be an instance of ``expected`` (``what`` names that kind in the message)."""
    factory = load_factory(spec)
    arguments = {**accepted_keywords(factory, context or {}), **params}
    try:
        built = factory(**arguments)
    except VarsecError as exc:
        raise ConfigError(f"factory {spec!r} refused its params: {str(exc).rstrip('.')}.") \
            from None
    except Exception as exc:  # foreign code: whatever it raises is one line naming it
        raise ConfigError(f"factory {spec!r} failed when called with "
                          f"{_arguments(arguments)}: {type(exc).__name__}: {exc}.") from None
    if not isinstance(built, expected):
        raise ConfigError(f"factory {spec!r} built a {type(built).__name__}, not {what}.")
    return built


def _arguments(arguments: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in arguments.items()) or "no arguments"


def external_key(spec: str | None, version: str | None) -> dict[str, Any]:
    """What keys the stages of a method varsec cannot hash: the factory (when there is one),
    the user's ``version`` (when set) and the installed distribution that provides the
    factory's module (``name==version``, when one does)."""
    key: dict[str, Any] = {}
    if spec is not None:
        key["factory"] = spec
        package = _distribution(spec.split(":", 1)[0])
        if package is not None:
            key["package"] = package
    if version is not None:
        key["version"] = version
    return key


def _distribution(module: str) -> str | None:
    """``name==version`` of the installed distribution whose files hold ``module``."""
    top = module.split(".", 1)[0]
    names = metadata.packages_distributions().get(top) or []
    for name in sorted(set(names)):
        try:
            return f"{name}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:  # pragma: no cover - listed, then removed
            continue
    return None


__all__ = ["EXTERNAL", "FACTORY_RE", "accepted_keywords", "build_external",
           "check_factory_spec", "external_key", "import_submodules", "load_factory",
           "load_plugins"]
